//! `rebalance check` (who is outside the band) and `rebalance plan` (the
//! moves the balancer would make). Both change nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_proto::v1::{
    PlannedMove, RebalanceCheckRequest, RebalanceCheckResponse, RebalancePlanResponse, ServerLoad,
};
use serde::Serialize;

use super::load;
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
    /// Client reads per second.
    pub reads_per_sec: f64,
    /// Bytes per second those reads served.
    pub read_bytes_per_sec: f64,
}

impl From<&ServerLoad> for LoadJson {
    fn from(l: &ServerLoad) -> Self {
        LoadJson {
            server: l.server.clone(),
            utilization_pct: l.utilization_pct,
            used_bytes: l.used_bytes,
            capacity_bytes: l.capacity_bytes,
            reads_per_sec: l.reads_per_sec,
            read_bytes_per_sec: l.read_bytes_per_sec,
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
    /// Mean client reads/s of live servers.
    pub average_reads_per_sec: f64,
    /// Half-width of the load band, percent of the mean (0: off).
    pub load_threshold_pct: f64,
    /// Above the load band, hottest first.
    pub hot: Vec<LoadJson>,
    /// Below the load band, coldest first.
    pub cold: Vec<LoadJson>,
    /// No server outside the load band.
    pub load_balanced: bool,
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
            average_reads_per_sec: r.average_reads_per_sec,
            load_threshold_pct: r.load_threshold_pct,
            hot: loads(&r.hot),
            cold: loads(&r.cold),
            load_balanced: r.load_balanced,
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

/// The human view of a check: the capacity band, a table, the capacity
/// verdict, then the load band and the load verdict when the master reports
/// read load.
pub fn render_check(r: &RebalanceCheckResponse) -> String {
    let (avg, th) = (r.average_utilization_pct, r.threshold_pct);
    let mut out = format!(
        "average utilization {}, threshold ±{th:.1} points: band {:.1}% to {:.1}%\n\n",
        output::pct(avg).trim_start(),
        (avg - th).max(0.0),
        avg + th,
    );
    let t = check_table(r, load::shown(r));
    if !t.is_empty() {
        out.push_str(&t.render());
        out.push('\n');
    }
    out.push_str(&verdict(r));
    out.push('\n');
    if load::shown(r) {
        out.push_str(&load::band(r.average_reads_per_sec, r.load_threshold_pct));
        out.push('\n');
        if let Some(v) = load::verdict(r) {
            out.push_str(&v);
            out.push('\n');
        }
    }
    out
}

/// Every live server (or, from older masters that leave `servers` empty,
/// the outliers) against the band, and against the load band `with_load`.
fn check_table(r: &RebalanceCheckResponse, with_load: bool) -> Table {
    let mut columns = vec![
        ("SERVER", Align::Left),
        ("CAPACITY", Align::Right),
        ("USED", Align::Right),
        ("UTILIZATION", Align::Left),
        ("STATUS", Align::Left),
    ];
    if with_load {
        columns.extend([("READS", Align::Right), ("LOAD", Align::Left)]);
    }
    let mut t = Table::new(&columns);
    for l in check_rows(r) {
        let mut row = vec![
            l.server.clone(),
            output::size(l.capacity_bytes),
            output::size(l.used_bytes),
            output::utilization(l.utilization_pct),
            band_status(r, &l.server).into(),
        ];
        if with_load {
            row.extend([
                output::per_sec(l.reads_per_sec),
                load::mark(r, &l.server).into(),
            ]);
        }
        t.row(row);
    }
    t
}

/// The servers a check lists: all of them, or each outlier once.
fn check_rows(r: &RebalanceCheckResponse) -> Vec<&ServerLoad> {
    if !r.servers.is_empty() {
        return r.servers.iter().collect();
    }
    let mut all: Vec<&ServerLoad> = Vec::new();
    for l in r
        .overloaded
        .iter()
        .chain(&r.underloaded)
        .chain(&r.hot)
        .chain(&r.cold)
    {
        if !all.iter().any(|a| a.server == l.server) {
            all.push(l);
        }
    }
    all
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
    /// Why it is planned: `capacity` or `load`.
    pub reason: String,
}

/// Moves and bytes planned for one reason.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct ReasonJson {
    /// How many moves.
    pub moves: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// `capacity` or `load`: why `m` is planned. A master that predates the
/// reason leaves it empty, and such a master plans by capacity alone.
pub fn reason(m: &PlannedMove) -> &str {
    match m.reason.as_str() {
        "" => "capacity",
        r => r,
    }
}

/// Moves and bytes by reason, in name order.
pub fn by_reason(r: &RebalancePlanResponse) -> BTreeMap<String, ReasonJson> {
    let mut out: BTreeMap<String, ReasonJson> = BTreeMap::new();
    for m in &r.moves {
        let e = out.entry(reason(m).to_owned()).or_default();
        e.moves += 1;
        e.bytes = e.bytes.saturating_add(m.bytes);
    }
    out
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
    /// Whether every server's reads/s end inside the load band (true when
    /// load balancing is off).
    pub reaches_load_band: bool,
    /// Half-width of the load band, percent of the mean reads/s (0: off).
    pub load_threshold_pct: f64,
    /// Moves and bytes by reason (`capacity`, `load`).
    pub by_reason: BTreeMap<String, ReasonJson>,
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
                    reason: reason(m).to_owned(),
                })
                .collect(),
            bytes: r.bytes,
            lower_bound_bytes: r.lower_bound_bytes,
            notes: r.notes.clone(),
            reaches_band: r.reaches_band,
            average_utilization_pct: r.average_utilization_pct,
            reaches_load_band: r.reaches_load_band,
            load_threshold_pct: r.load_threshold_pct,
            by_reason: by_reason(r),
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

/// The human view of a plan: each move with its reason, the totals, the
/// split by reason, whether both bands are reached, the ETA and the notes.
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
            ("REASON", Align::Left),
        ]);
        for m in &r.moves {
            t.row(vec![
                m.chunk.clone(),
                m.from.clone(),
                m.to.clone(),
                output::size(m.bytes),
                reason(m).to_owned(),
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
        out.push_str(&reasons_line(r));
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

/// `by reason: 3 for capacity (192.0 MiB), 1 for load (64.0 MiB); load band
/// reached: yes`, or that load balancing is off.
fn reasons_line(r: &RebalancePlanResponse) -> String {
    let parts: Vec<String> = by_reason(r)
        .iter()
        .map(|(why, n)| format!("{} for {why} ({})", n.moves, output::size(n.bytes)))
        .collect();
    let band = match load::on(r.load_threshold_pct) {
        true => format!(
            "load band (±{}% of the mean reads/s) reached: {}",
            r.load_threshold_pct,
            output::yes_no(r.reaches_load_band)
        ),
        false => "load balancing off".to_owned(),
    };
    format!("by reason: {}; {band}\n", parts.join(", "))
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
