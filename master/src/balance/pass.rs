//! One planning pass on the whole cluster: the metadata lends the view it
//! keeps up to date (under the lock, in time proportional to the servers and
//! the chunks changed since the last pass), the queue's moves and busy chunks
//! are found in it by id there, the planner runs outside every lock, and its
//! moves come back named by ids, so the view can go.

use keel_balancer::{
    ClusterView, CopyClass, CopyJob, InFlight, MoveRef, PlannedMove, Policy, ServerIdx, plan,
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
    pub fn take(meta: &mut Meta, names: &InFlightNames) -> PassInput {
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
                    reason: keel_balancer::MoveReason::Capacity,
                });
            }
        }
        let others = names.chunks.iter().map(String::as_str);
        for id in others.chain(meta.busy_chunks()) {
            if let Some(chunk) = meta.balance_idx(id) {
                in_flight.add_chunk(chunk);
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
    let moves: Vec<CopyJob> = listed.map(|m| named(view, m)).collect();
    PassPlan {
        moves,
        planned: p.moves.len(),
        bytes: p.bytes,
        lower_bound_bytes: p.lower_bound_bytes,
        reaches_band: p.band_reached,
        average_utilization_pct: p.average_utilization_pct,
        notes: p.notes,
        chunks: input.chunks,
    }
}

/// A planned move by the ids of its chunk and servers.
pub fn named(view: &ClusterView, m: &PlannedMove) -> CopyJob {
    let server = |s: ServerIdx| view.server(s).id.as_str();
    let mv = MoveRef::new(view.chunk(m.chunk).id(), server(m.from), server(m.to));
    CopyJob::new(mv, m.bytes, CopyClass::Balance)
}
