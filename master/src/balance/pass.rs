//! One planning pass on the whole cluster: the metadata lends the view it
//! keeps up to date (under the lock, in time proportional to the servers and
//! the chunks changed since the last pass), the queue's moves and busy chunks
//! are found in it by id there, the planner runs outside every lock, and its
//! moves come back named by ids, so the view can go.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use keel_balancer::traffic::{load_slack, stands_out};
use keel_balancer::{
    ClusterView, CopyClass, CopyJob, InFlight, MoveReason, MoveRef, PlannedMove, Policy, ReadRate,
    ServerIdx, load, plan,
};

use super::dwell::Held;
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
    /// Each of `moves`' chunk's client rate on its source when planned (its
    /// heat; zero when not among the source's hottest), in the same order.
    pub rates: Vec<ReadRate>,
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
    /// Servers whose hot chunks this pass does not move for load, and why
    /// (a background pass's [`super::LoadGate`]; empty for an operator's).
    pub held: Held,
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
            held: Held::default(),
        }
    }
}

/// Plans on the view. CPU-bound: run it off the async workers (the view,
/// dropped at the end, may free copied segments).
pub fn plan_pass(mut input: PassInput, policy: &Policy) -> PassPlan {
    let spread = forget_noise(&mut input.view, policy.load_threshold_pct);
    for id in input.held.servers.keys() {
        if let Some(s) = input.view.server_by_id(id) {
            for (c, _) in input.view.heat.on(s) {
                input.in_flight.hold_from_load(c);
            }
        }
    }
    let view = &input.view;
    let mut p = plan(view, policy, &input.in_flight);
    p.notes.extend(input.held.notes);
    p.notes.extend(spread.into_iter().map(|id| {
        format!("{id} is hot but none of its chunks stands out: its reads are spread evenly, and moving chunks for load would not cool it")
    }));
    let listed = p.moves.iter().take(MAX_LISTED);
    let moves: Vec<CopyJob> = listed.clone().map(|m| named(view, m)).collect();
    let reasons = listed.clone().map(|m| m.reason).collect();
    let rates = listed
        .clone()
        .map(|m| view.heat.get(m.from, m.chunk))
        .collect();
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
        rates,
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

/// Drops from `view`'s heat every replica whose rate does not stand out
/// from its server's average chunk ([`stands_out`]): it is the noise of
/// readers spread evenly, and moving it would cool nothing. Such a replica
/// reads as cold, like one the server did not list. One scan of the chunks.
/// Returns the servers hot against the band of `threshold_pct` that listed
/// replicas but are left with none.
pub fn forget_noise(view: &mut ClusterView, threshold_pct: f64) -> Vec<String> {
    if view.heat.is_empty() {
        return Vec::new();
    }
    let mut held = vec![0u64; view.servers.len()];
    for i in 0..view.chunks.len() {
        for s in view.chunks.replicas(i) {
            if let Some(n) = held.get_mut(s.0 as usize) {
                *n += 1;
            }
        }
    }
    let tau = keel_proto::READ_RATE_TIME_CONSTANT.as_secs_f64();
    let noise: Vec<_> = view
        .heat
        .iter()
        .filter(|&(s, _, r)| {
            let i = s.0 as usize;
            let reads = view.servers.get(i).map_or(0.0, |s| s.reads.reads_per_sec);
            let chunk_mean = reads / held.get(i).copied().unwrap_or(0).max(1) as f64;
            !stands_out(r.reads_per_sec, chunk_mean, tau)
        })
        .map(|(s, c, _)| (s, c))
        .collect();
    for &(s, c) in &noise {
        view.heat.remove(s, c);
    }
    let emptied: BTreeSet<ServerIdx> = noise
        .iter()
        .map(|&(s, _)| s)
        .filter(|&s| view.heat.on(s).next().is_none())
        .collect();
    load::check(view, 0.0, threshold_pct)
        .hot
        .into_iter()
        .map(|s| s.server)
        .filter(|id| view.server_by_id(id).is_some_and(|s| emptied.contains(&s)))
        .collect()
}

/// The top of the load band over `view`, reads/s (the bound
/// [`keel_balancer::traffic::load_position`] calls hot above).
pub fn load_band_high(view: &ClusterView, threshold_pct: f64) -> f64 {
    let mean = load::average_reads_per_sec(view);
    mean + load_slack(mean, threshold_pct)
}

/// A planned move by the ids of its chunk and servers.
pub fn named(view: &ClusterView, m: &PlannedMove) -> CopyJob {
    let server = |s: ServerIdx| view.server(s).id.as_str();
    let mv = MoveRef::new(view.chunk(m.chunk).id(), server(m.from), server(m.to));
    CopyJob::new(mv, m.bytes, CopyClass::Balance)
}
