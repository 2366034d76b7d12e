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
//! Read load is modelled per server only: `ListServers` gives each
//! server's reads/s, but not what each replica contributes (the per-chunk
//! heat stays inside the master), so the reads/s after the moves are shown
//! as they are now, and whether the load band is reached is the master's
//! own verdict (`RebalancePlan.reaches_load_band`).

use keel_balancer::predict::{
    DEFAULT_MOVE_OVERHEAD, Execution, LoadEffect, PredictError, Prediction, load_effect,
};
use keel_balancer::queue::QueueConfig;
use keel_balancer::{ClusterView, Plan, PlannedMove, ReadRate};
use keel_proto::v1::{
    ListServersRequest, ListServersResponse, RebalancePlanRequest, RebalancePlanResponse,
    ServerState,
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
            ReadRate::new(sane_rate(s.reads_per_sec), sane_rate(s.read_bytes_per_sec));
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

/// A reported rate as the model takes it: finite and not negative.
fn sane_rate(r: f64) -> f64 {
    if r.is_finite() { r.max(0.0) } else { 0.0 }
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
    load.reaches_load_band = plan.load_band_reached;
    Ok(Predicted {
        view,
        exec,
        p,
        load,
    })
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
    /// Read load per server (unchanged by the moves: see the module doc).
    pub load: LoadEffect,
}

/// A prediction that could not be made, as a sentence.
pub fn sim_error(e: PredictError) -> Error {
    Error::Usage(format!("cannot predict the rebalance: {e}"))
}

#[cfg(test)]
mod tests {
    use keel_proto::v1::{PlannedMove as PbMove, ServerInfo};

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
}
