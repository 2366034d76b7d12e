//! One planning pass on the whole cluster: the metadata lends the view it
//! keeps up to date (under the lock, in time proportional to the servers and
//! the chunks changed since the last pass), the queue's moves and busy chunks
//! are found in it by id there, the planner runs outside every lock, and its
//! moves come back named by ids, so the view can go.

use std::collections::{BTreeMap, HashMap};

use keel_balancer::traffic::LOAD_NOISE_FLOOR_READS_PER_SEC;
use keel_balancer::{
    ClusterView, CopyClass, CopyJob, InFlight, MoveReason, MoveRef, PlannedMove, Policy, ServerIdx,
    load, plan,
};

use super::state::InFlightNames;
use super::wire::MAX_LISTED;
use crate::meta::Meta;

/// What the planner makes of the cluster, by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassPlan {
    /// Moves in the order they should be queued, the first
    /// [`MAX_LISTED`] of them (naming more than anyone lists or queues
    /// would cost seconds at a million moves).
    pub moves: Vec<CopyJob>,
    /// Why each of `moves` is planned, in the same order.
    pub reasons: Vec<MoveReason>,
    /// Moves planned in all.
    pub planned: usize,
    /// Bytes of `moves`.
    pub bytes: u64,
    /// Fewest bytes any plan must move to bring every live server into the band.
    pub lower_bound_bytes: u64,
    /// Whether every live server is inside the band once the moves (and
    /// those already queued) are done.
    pub reaches_band: bool,
    /// Capacity-weighted average utilization of live servers.
    pub average_utilization_pct: f64,
    /// The planner's explanations.
    pub notes: Vec<String>,
    /// Chunks in the view.
    pub chunks: usize,
    /// Whether every live server's reads/s is inside the load band once
    /// the moves are done (true with load balancing off).
    pub reaches_load_band: bool,
    /// `--load-threshold-pct` the plan used.
    pub load_threshold_pct: f64,
    /// The top of the load band when planned, reads/s.
    pub load_band_high: f64,
    /// Reads/s of each source of a load move when planned, by server id.
    pub source_reads: BTreeMap<String, f64>,
}

/// Everything a pass needs, taken out under the locks.
#[derive(Debug, Clone)]
pub struct PassInput {
    /// The metadata's view, shared with it until either changes.
    pub view: ClusterView,
    /// The queue's moves, recently failed chunks and chunks the metadata has
    /// a move, copy or delete running on, in the view's indices.
    pub in_flight: InFlight,
    /// Chunks held (the view also has emptied slots).
    pub chunks: usize,
}

impl PassInput {
    /// Takes the view and finds `names` and the busy chunks in it. Call
    /// under the metadata lock; O(servers + moves in flight + chunks changed
    /// since the last pass).
    ///
    /// `cooling` names the chunks moved for load within `--load-cooldown`
    /// (true: that move is still queued or running); the planner does not
    /// move them for load again.
    pub fn take(
        meta: &mut Meta,
        names: &InFlightNames,
        cooling: &HashMap<Box<str>, bool>,
    ) -> PassInput {
        let view = meta.balance_view();
        let server = |id: &str| meta.server_no(id).map(ServerIdx);
        let mut in_flight = InFlight::new();
        for m in &names.moves {
            let found = (
                meta.balance_idx(&m.mv.chunk),
                server(&m.mv.from),
                server(&m.mv.to),
            );
            if let (Some(chunk), Some(from), Some(to)) = found {
                in_flight.add_move(PlannedMove {
                    chunk,
                    from,
                    to,
                    bytes: m.bytes,
                    reason: match cooling.get(m.mv.chunk.as_str()) {
                        Some(true) => MoveReason::Load,
                        _ => MoveReason::Capacity,
                    },
                });
            }
        }
        let others = names.chunks.iter().map(String::as_str);
        for id in others.chain(meta.busy_chunks()) {
            if let Some(chunk) = meta.balance_idx(id) {
                in_flight.add_chunk(chunk);
            }
        }
        for id in cooling.keys() {
            if let Some(chunk) = meta.balance_idx(id) {
                in_flight.add_cooling(chunk);
            }
        }
        PassInput {
            view,
            in_flight,
            chunks: meta.chunk_count(),
        }
    }
}

/// Plans on the view. CPU-bound: run it off the async workers (the view,
/// dropped at the end, may free copied segments).
pub fn plan_pass(input: PassInput, policy: &Policy) -> PassPlan {
    let view = &input.view;
    let p = plan(view, policy, &input.in_flight);
    let listed = p.moves.iter().take(MAX_LISTED);
    let moves: Vec<CopyJob> = listed.clone().map(|m| named(view, m)).collect();
    let reasons = listed.clone().map(|m| m.reason).collect();
    let source_reads = listed
        .filter(|m| m.reason == MoveReason::Load)
        .map(|m| {
            let s = view.server(m.from);
            (s.id.clone(), s.reads.reads_per_sec)
        })
        .collect();
    PassPlan {
        moves,
        reasons,
        planned: p.moves.len(),
        bytes: p.bytes,
        lower_bound_bytes: p.lower_bound_bytes,
        reaches_band: p.band_reached,
        average_utilization_pct: p.average_utilization_pct,
        notes: p.notes,
        chunks: input.chunks,
        reaches_load_band: p.load_band_reached,
        load_threshold_pct: policy.load_threshold_pct,
        load_band_high: load_band_high(view, policy.load_threshold_pct),
        source_reads,
    }
}

/// The top of the load band over `view`, reads/s (the bound
/// [`keel_balancer::traffic::load_position`] calls hot above).
pub fn load_band_high(view: &ClusterView, threshold_pct: f64) -> f64 {
    let mean = load::average_reads_per_sec(view);
    mean + (mean * threshold_pct / 100.0).max(LOAD_NOISE_FLOOR_READS_PER_SEC)
}

/// A planned move by the ids of its chunk and servers.
pub fn named(view: &ClusterView, m: &PlannedMove) -> CopyJob {
    let server = |s: ServerIdx| view.server(s).id.as_str();
    let mv = MoveRef::new(view.chunk(m.chunk).id(), server(m.from), server(m.to));
    CopyJob::new(mv, m.bytes, CopyClass::Balance)
}
