//! One planning pass on the whole cluster: the metadata's snapshot becomes a
//! full [`ClusterView`] (outside every lock: at ten million chunks this is
//! the expensive part), the queue's moves and busy chunks are found in it by
//! id, and the planner's moves come back named by ids, so the view can go.

use std::collections::{BTreeSet, HashMap};

use keel_balancer::{ClusterView, InFlight, PlannedMove, Policy, ServerIdx, plan};

use super::state::{InFlightNames, NamedMove};
use crate::meta::{ViewSnapshot, find_sorted};
use crate::mover::Move;

/// What the planner makes of the cluster, by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassPlan {
    /// Moves in the order they should be queued.
    pub moves: Vec<NamedMove>,
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

/// Everything a pass needs, copied out under the locks.
#[derive(Debug, Clone)]
pub struct PassInput {
    /// The metadata's flat copy.
    pub snapshot: ViewSnapshot,
    /// The queue's moves and recently failed chunks.
    pub in_flight: InFlightNames,
    /// Chunks the metadata has a move, copy or delete running on.
    pub busy: Vec<String>,
}

/// Builds the view and plans. CPU-bound: run it off the async workers.
pub fn plan_pass(input: PassInput, policy: &Policy) -> PassPlan {
    let view = input.snapshot.into_view();
    let in_flight = in_flight(&view, &input.in_flight, &input.busy);
    let p = plan(&view, policy, &in_flight);
    let moves: Vec<NamedMove> = p.moves.iter().map(|m| named(&view, m)).collect();
    PassPlan {
        moves,
        bytes: p.bytes,
        lower_bound_bytes: p.lower_bound_bytes,
        reaches_band: p.band_reached,
        average_utilization_pct: p.average_utilization_pct,
        notes: p.notes,
        chunks: view.chunk_count(),
    }
}

/// The queue's moves and the busy chunks in the indices of `view`. Each id
/// is found by binary search (the view is in id order); ids the view lacks
/// are skipped.
fn in_flight(view: &ClusterView, names: &InFlightNames, busy: &[String]) -> InFlight {
    let servers: HashMap<&str, ServerIdx> = view
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| (s.id.as_str(), ServerIdx(i as u32)))
        .collect();
    let server = |id: &str| servers.get(id).copied();
    let mut set = InFlight::new();
    for m in &names.moves {
        let found = (
            find_sorted(view, &m.mv.chunk),
            server(&m.mv.from),
            server(&m.mv.to),
        );
        if let (Some(chunk), Some(from), Some(to)) = found {
            set.add_move(PlannedMove {
                chunk,
                from,
                to,
                bytes: m.bytes,
            });
        }
    }
    let others: BTreeSet<&str> = names
        .chunks
        .iter()
        .chain(busy)
        .map(String::as_str)
        .collect();
    for id in others {
        if let Some(chunk) = find_sorted(view, id) {
            set.add_chunk(chunk);
        }
    }
    set
}

fn named(view: &ClusterView, m: &PlannedMove) -> NamedMove {
    let server = |s: ServerIdx| view.server(s).id.clone();
    NamedMove {
        mv: Move {
            chunk: view.chunk(m.chunk).id().to_owned(),
            from: server(m.from),
            to: server(m.to),
        },
        bytes: m.bytes,
    }
}
