//! What a plan does to read load: each server's reads/s before and after
//! the plan (a moved replica takes its reported rate along, as
//! [`ClusterView::apply`] does), where each lies against the load band, and
//! the moves by reason. Replicas missing from the view's heat are cold, so
//! a view without heat shows the load unchanged.

use std::collections::BTreeMap;

use crate::load::average_reads_per_sec;
use crate::model::ClusterView;
use crate::plan::{MoveReason, Plan};
use crate::traffic::{LoadPosition, load_position};

/// One server's read load around a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerReads {
    /// Server id.
    pub id: String,
    /// Whether it is alive (dead servers are outside every band).
    pub alive: bool,
    /// Reads/s now.
    pub before: f64,
    /// Reads/s once the plan has run.
    pub after: f64,
    /// Its place in the load band now.
    pub position_before: LoadPosition,
    /// And after.
    pub position_after: LoadPosition,
}

/// The load side of a prediction.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadEffect {
    /// Load band half-width, percent of the mean; 0: off.
    pub load_threshold_pct: f64,
    /// Mean reads/s of the live servers (the plan does not change it).
    pub mean_reads_per_sec: f64,
    /// Every server, in view order.
    pub servers: Vec<ServerReads>,
    /// Moves planned for capacity.
    pub capacity_moves: usize,
    /// Moves planned for load.
    pub load_moves: usize,
    /// Bytes of the moves planned for load.
    pub load_bytes: u64,
    /// Why each planned chunk moves, by chunk id.
    pub reasons: BTreeMap<String, MoveReason>,
    /// Whether every live server ends inside the load band.
    pub reaches_load_band: bool,
}

/// The load effect of `plan`, made on `view`, against the load band of
/// `load_threshold_pct`.
pub fn load_effect(view: &ClusterView, plan: &Plan, load_threshold_pct: f64) -> LoadEffect {
    let mean = average_reads_per_sec(view);
    let before: Vec<f64> = view.servers.iter().map(|s| s.reads.reads_per_sec).collect();
    let mut after = before.clone();
    let mut reasons = BTreeMap::new();
    for m in &plan.moves {
        let Some(chunk) = view.get_chunk(m.chunk) else {
            continue;
        };
        reasons.insert(chunk.id().to_owned(), m.reason);
        let (from, to) = (m.from.0 as usize, m.to.0 as usize);
        if from < after.len() && to < after.len() && chunk.is_on(m.from) {
            let rate = view.heat.get(m.from, m.chunk).reads_per_sec;
            after[from] = (after[from] - rate).max(0.0);
            after[to] += rate;
        }
    }
    let at = |r: f64| load_position(r, mean, load_threshold_pct);
    let servers: Vec<ServerReads> = view
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| ServerReads {
            id: s.id.clone(),
            alive: s.alive,
            before: before[i],
            after: after[i],
            position_before: at(before[i]),
            position_after: at(after[i]),
        })
        .collect();
    let for_load = plan.moves.iter().filter(|m| m.reason == MoveReason::Load);
    LoadEffect {
        load_threshold_pct,
        mean_reads_per_sec: mean,
        reaches_load_band: servers
            .iter()
            .all(|s| !s.alive || s.position_after == LoadPosition::Inside),
        servers,
        capacity_moves: plan.moves.len() - for_load.clone().count(),
        load_moves: for_load.clone().count(),
        load_bytes: for_load.map(|m| m.bytes).sum(),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{InFlight, Policy};
    use crate::traffic::ReadRate;

    #[test]
    fn a_hot_server_cools_by_the_rates_of_what_it_gives() {
        let mut v = ClusterView::new();
        let a = v.add_server("a", None, 1000, true);
        let b = v.add_server("b", None, 1000, true);
        let h1 = v.add_chunk("h1", 100, 0, 1, &[a]);
        let h2 = v.add_chunk("h2", 100, 0, 1, &[a]);
        v.add_chunk("a-cold", 300, 0, 1, &[a]);
        v.add_chunk("b-cold", 500, 0, 1, &[b]);
        v.heat.set(a, h1, ReadRate::new(20.0, 2000.0));
        v.heat.set(a, h2, ReadRate::new(20.0, 2000.0));
        v.servers[0].reads = ReadRate::new(50.0, 0.0);
        v.servers[1].reads = ReadRate::new(10.0, 0.0);
        let plan = crate::plan(&v, &Policy::default(), &InFlight::new());
        let e = load_effect(&v, &plan, 25.0);
        assert_eq!(e.mean_reads_per_sec, 30.0);
        assert_eq!(e.servers[0].position_before, LoadPosition::Hot);
        assert_eq!(e.servers[1].position_before, LoadPosition::Cold);
        // One of the two hot chunks moves: 30 and 30.
        assert_eq!((e.servers[0].after, e.servers[1].after), (30.0, 30.0));
        assert_eq!((e.load_moves, e.capacity_moves, e.load_bytes), (1, 0, 100));
        assert!(e.reaches_load_band);
        assert_eq!(e.reasons.get("h1"), Some(&MoveReason::Load));
    }
}
