//! `keelctl sim --from-master` and the ETA of `keelctl rebalance plan`: the
//! master's own plan (`RebalancePlan`, the planner `rebalance run` queues
//! from) and its servers (`ListServers`, with each chunk server's reported
//! migration rate), timed by the real queue in simulated time. One
//! function, [`predict`], serves both commands.
//!
//! Only the planned chunks are modelled: a move's admission looks at its
//! chunk, its two servers and their used bytes, all of which the two answers
//! give; the master has already checked the rest when it planned.
//!
//! Read load is known per server only: `ListServers` gives each server's
//! reads/s and the master's own verdict on it (`ServerInfo.load`), but not
//! what each replica contributes (the per-chunk heat stays inside the
//! master). So the load now is the master's (its mean leaves out servers
//! that take no data, as its load band does), the reads/s after the moves
//! are not modelled, and whether the load band is reached is the master's
//! verdict on its plan (`RebalancePlan.reaches_load_band`).

use keel_balancer::predict::{
    DEFAULT_MOVE_OVERHEAD, Execution, LoadEffect, PredictError, Prediction, load_effect,
};
use keel_balancer::queue::QueueConfig;
use keel_balancer::traffic::{load_position, mean_reads_per_sec, sane_rate};
use keel_balancer::{ClusterView, LoadPosition, Plan, PlannedMove, ReadRate};
use keel_proto::v1::{
    ListServersRequest, ListServersResponse, RebalancePlanRequest, RebalancePlanResponse,
    ServerInfo, ServerState,
};

use crate::client::Master;
use crate::error::Error;

/// The master's plan and servers.
#[derive(Debug, Clone)]
pub struct Live {
    /// `RebalancePlan`.
    pub plan: RebalancePlanResponse,
    /// `ListServers`.
    pub servers: ListServersResponse,
}

/// Asks the master for its plan and its servers.
pub async fn fetch(master: &Master) -> Result<Live, Error> {
    let plan = master
        .call(
            "rebalance plan",
            master
                .client
                .clone()
                .rebalance_plan(RebalancePlanRequest {}),
        )
        .await?;
    let servers = master
        .call(
            "list servers",
            master.client.clone().list_servers(ListServersRequest {}),
        )
        .await?;
    Ok(Live { plan, servers })
}

/// The cluster, plan and execution parameters the two answers describe.
pub fn model(live: &Live, overhead: Option<std::time::Duration>) -> (ClusterView, Plan, Execution) {
    let mut view = ClusterView::with_capacity(live.plan.moves.len(), 0, live.plan.moves.len());
    let mut bandwidth = Vec::new();
    for s in &live.servers.servers {
        let alive = s.state == ServerState::Alive as i32
            || s.state == ServerState::Draining as i32
            || s.state == ServerState::Drained as i32;
        let rack = (!s.rack.is_empty()).then(|| s.rack.clone());
        let i = view.add_server(s.id.clone(), rack, s.capacity_bytes, alive);
        view.servers[i.0 as usize].reads =
            ReadRate::new(s.reads_per_sec, s.read_bytes_per_sec).sanitized();
        bandwidth.push(s.migrate_bandwidth_bytes_per_second);
    }
    let mut moves = Vec::with_capacity(live.plan.moves.len());
    let mut notes = live.plan.notes.clone();
    let mut seen = std::collections::HashSet::new();
    for m in &live.plan.moves {
        if !seen.insert(m.chunk.as_str()) {
            notes.push(format!(
                "{} is planned twice; the queue takes one move per chunk",
                m.chunk
            ));
            continue;
        }
        let (Some(from), Some(to)) = (view.server_by_id(&m.from), view.server_by_id(&m.to)) else {
            notes.push(format!(
                "move of {} names a server the master no longer lists; left out",
                m.chunk
            ));
            continue;
        };
        let chunk = view.add_chunk(m.chunk.clone(), m.bytes, 0, 1, &[from]);
        moves.push(PlannedMove {
            chunk,
            from,
            to,
            bytes: m.bytes,
            reason: if m.reason == "load" {
                keel_balancer::MoveReason::Load
            } else {
                keel_balancer::MoveReason::Capacity
            },
        });
    }
    // Used bytes as the master counts them, not just the planned chunks:
    // the floor gates read them.
    for (v, s) in view.servers.iter_mut().zip(&live.servers.servers) {
        v.used = s.used_bytes;
    }
    let plan = Plan {
        bytes: moves.iter().map(|m| m.bytes).sum(),
        moves,
        lower_bound_bytes: live.plan.lower_bound_bytes,
        band_reached: live.plan.reaches_band,
        average_utilization_pct: live.plan.average_utilization_pct,
        notes,
        load_band_reached: live.plan.load_threshold_pct <= 0.0 || live.plan.reaches_load_band,
    };
    (view, plan, execution(&live.plan, bandwidth, overhead))
}

/// The queue's limits as the master reports them (its defaults from a
/// master that predates the fields).
fn execution(
    p: &RebalancePlanResponse,
    bandwidth: Vec<u64>,
    overhead: Option<std::time::Duration>,
) -> Execution {
    let d = QueueConfig::default();
    let or = |v: u32, default: usize| if v == 0 { default } else { v as usize };
    Execution {
        queue: QueueConfig {
            max_concurrent_moves: if p.max_concurrent_moves_auto {
                keel_balancer::slots::AUTO
            } else {
                or(p.max_concurrent_moves, d.max_concurrent_moves)
            },
            max_moves_per_server: or(p.max_moves_per_server, d.max_moves_per_server),
            min_free_pct: if p.max_concurrent_moves == 0 {
                d.min_free_pct
            } else {
                p.min_free_pct
            },
            ..d
        },
        bandwidth,
        move_overhead: overhead.unwrap_or(DEFAULT_MOVE_OVERHEAD),
        ..Execution::default()
    }
}

/// How the master's plan would run: the one ETA both `keelctl sim
/// --from-master` and `keelctl rebalance plan` show.
pub fn predict(live: &Live, overhead: Option<std::time::Duration>) -> Result<Predicted, Error> {
    let (view, plan, exec) = model(live, overhead);
    let p = keel_balancer::predict::predict_plan(&view, &plan, &exec).map_err(sim_error)?;
    let mut load = load_effect(&view, &plan, live.plan.load_threshold_pct.max(0.0));
    masters_load(
        &mut load,
        &live.servers.servers,
        live.plan.load_threshold_pct,
    );
    load.reaches_load_band = plan.load_band_reached;
    Ok(Predicted {
        view,
        exec,
        p,
        load,
    })
}

/// Puts the master's view of the load now into `load`: the mean over the
/// servers that take data (`alive`; draining ones serve reads but are
/// outside the band) and each server's place as the master reports it
/// (computed against that mean from a master that predates the field).
/// Reads/s after the moves stay as now: the caller marks them unknown.
fn masters_load(load: &mut LoadEffect, servers: &[ServerInfo], pct: f64) {
    let takes_data = |s: &ServerInfo| s.state == ServerState::Alive as i32;
    load.mean_reads_per_sec = mean_reads_per_sec(
        servers
            .iter()
            .filter(|s| takes_data(s))
            .map(|s| s.reads_per_sec),
    );
    for (r, s) in load.servers.iter_mut().zip(servers) {
        let pos = LoadPosition::parse(&s.load).unwrap_or_else(|| {
            load_position(sane_rate(s.reads_per_sec), load.mean_reads_per_sec, pct)
        });
        r.position_before = pos;
        r.position_after = pos;
    }
}

/// A prediction with what it was made from.
#[derive(Debug)]
pub struct Predicted {
    /// The cluster before the moves.
    pub view: ClusterView,
    /// Limits, bandwidths and overhead used.
    pub exec: Execution,
    /// The prediction.
    pub p: Prediction,
    /// Read load per server now, as the master sees it (after the moves:
    /// unknown, see the module doc).
    pub load: LoadEffect,
}

/// A prediction that could not be made, as a sentence.
pub fn sim_error(e: PredictError) -> Error {
    Error::Usage(format!("cannot predict the rebalance: {e}"))
}

#[cfg(test)]
mod tests {
    use keel_proto::v1::PlannedMove as PbMove;

    use super::*;

    fn server(id: &str, used: u64, rate: u64) -> ServerInfo {
        ServerInfo {
            id: id.into(),
            capacity_bytes: 1 << 30,
            used_bytes: used,
            state: ServerState::Alive as i32,
            migrate_bandwidth_bytes_per_second: rate,
            ..ServerInfo::default()
        }
    }

    fn mv(chunk: &str, from: &str, to: &str) -> PbMove {
        PbMove {
            chunk: chunk.into(),
            from: from.into(),
            to: to.into(),
            bytes: 8 << 20,
            reason: "capacity".into(),
        }
    }

    #[test]
    fn the_masters_limits_and_rates_time_its_plan() {
        let live = Live {
            plan: RebalancePlanResponse {
                moves: vec![
                    mv("a", "cs1", "cs2"),
                    mv("b", "cs1", "cs3"),
                    mv("b", "cs1", "cs3"),
                ],
                bytes: 24 << 20,
                max_concurrent_moves: 1,
                max_moves_per_server: 1,
                min_free_pct: 5.0,
                ..RebalancePlanResponse::default()
            },
            servers: ListServersResponse {
                servers: vec![
                    server("cs1", 500 << 20, 4 << 20),
                    server("cs2", 0, 0),
                    server("cs3", 0, 2 << 20),
                ],
                ..ListServersResponse::default()
            },
        };
        let got = predict(&live, Some(std::time::Duration::ZERO)).expect("predicts");
        // One slot: 8 MiB at 4 MiB/s, then 8 MiB at 2 MiB/s (cs3's rate).
        assert_eq!(got.p.eta, std::time::Duration::from_secs(6));
        assert_eq!(got.p.moves.len(), 2);
        assert!(got.p.notes.iter().any(|n| n.contains("planned twice")));
        assert_eq!(got.view.servers[0].used, 500 << 20);
        assert_eq!(got.exec.queue.min_free_pct, 5.0);
    }

    #[test]
    fn the_load_now_is_the_masters_and_the_verdict_its_plans() {
        let rated = |id: &str, reads: f64, load: &str, state: ServerState| ServerInfo {
            reads_per_sec: reads,
            load: load.into(),
            state: state as i32,
            ..server(id, 0, 0)
        };
        let live = Live {
            plan: RebalancePlanResponse {
                moves: vec![mv("a", "cs1", "cs2")],
                load_threshold_pct: 25.0,
                reaches_load_band: true,
                ..RebalancePlanResponse::default()
            },
            servers: ListServersResponse {
                servers: vec![
                    rated("cs1", 90.0, "hot", ServerState::Alive),
                    rated("cs2", 30.0, "cold", ServerState::Alive),
                    // Serves reads but is outside the band: not in the mean.
                    rated("cs3", 900.0, "inside", ServerState::Draining),
                    rated("cs4", f64::INFINITY, "", ServerState::Alive),
                ],
                ..ListServersResponse::default()
            },
        };
        let got = predict(&live, Some(std::time::Duration::ZERO)).expect("predicts");
        assert_eq!(got.load.mean_reads_per_sec, 40.0);
        let pos: Vec<_> = got.load.servers.iter().map(|r| r.position_before).collect();
        use LoadPosition::*;
        assert_eq!(pos, [Hot, Cold, Inside, Cold]);
        assert!(got.load.reaches_load_band);
        // The JSON says who decided, and claims nothing it does not know.
        let j = crate::sim::render::json(&crate::sim::render::Input {
            source: "master".into(),
            view: &got.view,
            exec: &got.exec,
            p: &got.p,
            plan_time: std::time::Duration::ZERO,
            notes: vec![],
            load: &got.load,
            per_chunk_heat: false,
        });
        let v = serde_json::to_value(&j).expect("encodes");
        assert_eq!(v["load"]["load_band_verdict"], "master");
        assert_eq!(v["load"]["reaches_load_band"], true);
        assert_eq!(v["load"]["hot_before"], serde_json::json!(["cs1"]));
        assert!(v["load"]["hot_after"].is_null() && v["load"]["cold_after"].is_null());
        assert!(v["servers"][0]["reads_per_sec_after"].is_null());
        assert!(v["servers"][0]["load_after"].is_null());
        assert_eq!(v["servers"][0]["load_before"], "hot");
        let text = crate::sim::render::text(&j);
        assert!(
            text.contains("hot now cs1, cold now cs2, cs4; load band reached (the master's verdict on its plan): yes"),
            "{text}"
        );
    }
}
