//! `rebalance check` (who is outside the band) and `rebalance plan` (the
//! moves the balancer would make). Both change nothing.

use std::time::Duration;

use keel_proto::v1::{
    RebalanceCheckRequest, RebalanceCheckResponse, RebalancePlanResponse, ServerLoad,
};
use serde::Serialize;

use crate::client::Master;
use crate::error::Error;
use crate::output::{self, Align, Table};
use crate::sim;

/// One server's load in `--json` output.
#[derive(Debug, Serialize, PartialEq)]
pub struct LoadJson {
    /// Server id.
    pub server: String,
    /// `100 * used / capacity`.
    pub utilization_pct: f64,
    /// Bytes held.
    pub used_bytes: u64,
    /// Bytes counted as 100 %.
    pub capacity_bytes: u64,
}

impl From<&ServerLoad> for LoadJson {
    fn from(l: &ServerLoad) -> Self {
        LoadJson {
            server: l.server.clone(),
            utilization_pct: l.utilization_pct,
            used_bytes: l.used_bytes,
            capacity_bytes: l.capacity_bytes,
        }
    }
}

/// `rebalance check --json`: the RebalanceCheck fields in snake_case.
#[derive(Debug, Serialize, PartialEq)]
pub struct CheckJson {
    /// Capacity-weighted average over live servers.
    pub average_utilization_pct: f64,
    /// Half-width of the band, in percentage points.
    pub threshold_pct: f64,
    /// No server outside the band.
    pub balanced: bool,
    /// Above `average + threshold`.
    pub overloaded: Vec<LoadJson>,
    /// Below `average - threshold`.
    pub underloaded: Vec<LoadJson>,
    /// Every live server.
    pub servers: Vec<LoadJson>,
}

impl From<&RebalanceCheckResponse> for CheckJson {
    fn from(r: &RebalanceCheckResponse) -> Self {
        let loads = |v: &[ServerLoad]| v.iter().map(LoadJson::from).collect();
        CheckJson {
            average_utilization_pct: r.average_utilization_pct,
            threshold_pct: r.threshold_pct,
            balanced: r.balanced,
            overloaded: loads(&r.overloaded),
            underloaded: loads(&r.underloaded),
            servers: loads(&r.servers),
        }
    }
}

/// Runs `rebalance check`.
pub async fn check(master: &Master, json: bool) -> Result<(), Error> {
    let req = RebalanceCheckRequest {};
    let resp = master
        .call(
            "rebalance check",
            master.client.clone().rebalance_check(req),
        )
        .await?;
    if json {
        output::print_json(&CheckJson::from(&resp))
    } else {
        output::print_stdout(&render_check(&resp))
    }
}

/// The human view of a check.
pub fn render_check(r: &RebalanceCheckResponse) -> String {
    let (avg, th) = (r.average_utilization_pct, r.threshold_pct);
    let mut out = format!(
        "average utilization {}, threshold ±{th:.1} points: band {:.1}% to {:.1}%\n\n",
        output::pct(avg).trim_start(),
        (avg - th).max(0.0),
        avg + th,
    );
    // Older masters may leave `servers` empty: show the outliers then.
    let rows = if r.servers.is_empty() {
        r.overloaded
            .iter()
            .chain(&r.underloaded)
            .collect::<Vec<_>>()
    } else {
        r.servers.iter().collect()
    };
    let mut t = Table::new(&[
        ("SERVER", Align::Left),
        ("CAPACITY", Align::Right),
        ("USED", Align::Right),
        ("UTILIZATION", Align::Left),
        ("STATUS", Align::Left),
    ]);
    for l in rows {
        t.row(vec![
            l.server.clone(),
            output::size(l.capacity_bytes),
            output::size(l.used_bytes),
            output::utilization(l.utilization_pct),
            band_status(r, &l.server).into(),
        ]);
    }
    if !t.is_empty() {
        out.push_str(&t.render());
        out.push('\n');
    }
    out.push_str(&verdict(r));
    out.push('\n');
    out
}

fn band_status(r: &RebalanceCheckResponse, server: &str) -> &'static str {
    if r.overloaded.iter().any(|l| l.server == server) {
        "overloaded"
    } else if r.underloaded.iter().any(|l| l.server == server) {
        "underloaded"
    } else {
        "within band"
    }
}

fn verdict(r: &RebalanceCheckResponse) -> String {
    let names = |v: &[ServerLoad]| {
        v.iter()
            .map(|l| l.server.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if r.overloaded.is_empty() && r.underloaded.is_empty() {
        return "balanced: every server is within the band".into();
    }
    format!(
        "not balanced: {} overloaded [{}], {} underloaded [{}]",
        r.overloaded.len(),
        names(&r.overloaded),
        r.underloaded.len(),
        names(&r.underloaded)
    )
}

/// One planned move in `--json` output.
#[derive(Debug, Serialize, PartialEq)]
pub struct PlannedMoveJson {
    /// Chunk id.
    pub chunk: String,
    /// Source server.
    pub from: String,
    /// Target server.
    pub to: String,
    /// Chunk size.
    pub bytes: u64,
}

/// `rebalance plan --json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct PlanJson {
    /// The moves, in the order they would run.
    pub moves: Vec<PlannedMoveJson>,
    /// Sum of the moves' bytes.
    pub bytes: u64,
    /// No plan can move less than this.
    pub lower_bound_bytes: u64,
    /// Why the planner did or did not do something.
    pub notes: Vec<String>,
    /// Whether every server ends inside the band.
    pub reaches_band: bool,
    /// The average the plan aims at.
    pub average_utilization_pct: f64,
    /// Predicted time for the plan to run, at the servers' migration
    /// bandwidth and the queue's limits (as `keelctl sim --from-master`).
    pub eta_seconds: f64,
}

impl PlanJson {
    /// A plan with its predicted running time.
    pub fn new(r: &RebalancePlanResponse, eta: Duration) -> Self {
        PlanJson {
            moves: r
                .moves
                .iter()
                .map(|m| PlannedMoveJson {
                    chunk: m.chunk.clone(),
                    from: m.from.clone(),
                    to: m.to.clone(),
                    bytes: m.bytes,
                })
                .collect(),
            bytes: r.bytes,
            lower_bound_bytes: r.lower_bound_bytes,
            notes: r.notes.clone(),
            reaches_band: r.reaches_band,
            average_utilization_pct: r.average_utilization_pct,
            eta_seconds: eta.as_secs_f64(),
        }
    }
}

/// Runs `rebalance plan`: the master's plan, with the ETA `keelctl sim
/// --from-master` predicts for it (the same function).
pub async fn plan(master: &Master, json: bool) -> Result<(), Error> {
    let live = sim::live::fetch(master).await?;
    let eta = sim::live::predict(&live, None)?.p.eta;
    if json {
        output::print_json(&PlanJson::new(&live.plan, eta))
    } else {
        output::print_stdout(&render_plan(&live.plan, eta))
    }
}

/// The human view of a plan.
pub fn render_plan(r: &RebalancePlanResponse, eta: Duration) -> String {
    let mut out = String::new();
    if r.moves.is_empty() {
        out.push_str("nothing to move\n");
    } else {
        let mut t = Table::new(&[
            ("CHUNK", Align::Left),
            ("FROM", Align::Left),
            ("TO", Align::Left),
            ("BYTES", Align::Right),
        ]);
        for m in &r.moves {
            t.row(vec![
                m.chunk.clone(),
                m.from.clone(),
                m.to.clone(),
                output::size(m.bytes),
            ]);
        }
        out.push_str(&t.render());
        out.push_str(&format!(
            "\n{}, {} in all (no plan can move less than {}); band reached: {}\n",
            output::count(r.moves.len() as u64, "move"),
            output::size(r.bytes),
            output::size(r.lower_bound_bytes),
            output::yes_no(r.reaches_band),
        ));
        out.push_str(&format!(
            "ETA {} at the servers' migration bandwidth (keelctl sim --from-master for the timeline)\n",
            output::age(eta)
        ));
    }
    for n in &r.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
