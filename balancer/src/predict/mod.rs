//! A timed prediction of a rebalance: the real planner and the real move
//! queue (with its one slot table) run in simulated time against a model of
//! the chunk servers' migration buckets, and report when every move would
//! end. Pure and deterministic like the rest of the crate: no clock is read,
//! the same input gives the same answer.
//!
//! What is modelled, and why it is enough:
//! - **Bandwidth.** Each server has one bucket for migration bytes in and out
//!   together; copies share buckets max-min fairly ([`fair_rates`]).
//! - **Slots.** The queue's own [`crate::queue::MoveQueue::next_ready`] decides what starts,
//!   at each move's end, exactly as the master's mover loop does (it wakes
//!   when a copy ends), so slot limits, floors and class order are the real
//!   ones.
//! - **Overhead.** Each move holds its slot a fixed time beyond its transfer
//!   (the copy and delete RPCs, fsyncs, the metadata record), moving no bytes.
//!
//! Not modelled: failures and retries, client traffic competing for disks,
//! writes landing during the rebalance, and the master's later passes.
//!
//! # Layout
//! - `mod.rs`: inputs and outputs, [`predict`] and [`predict_plan`].
//! - `flow.rs`: bandwidth sharing.
//! - `run.rs`: the event loop.
//! - `timeline.rs`: resampling the events into even steps.
//! - `load.rs`: what the plan does to read load ([`load_effect`]).

mod flow;
mod load;
mod run;
mod timeline;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::time::Duration;

use crate::model::ClusterView;
use crate::plan::{InFlight, Plan, Policy};
use crate::queue::QueueConfig;

pub use flow::fair_rates;
pub use load::{LoadEffect, ServerReads, load_effect};
pub use timeline::{TimelinePoint, nice_step};

/// Fixed time a move holds its slot beyond its transfer, by default: the
/// `CopyChunk` and `DeleteChunk` round trips, the target's fsyncs and the
/// master's records, as measured on a loopback cluster.
pub const DEFAULT_MOVE_OVERHEAD: Duration = Duration::from_millis(40);

/// Most moves queued at once by default (the master's `MAX_QUEUED`): a
/// longer plan is queued in parts as the queue drains.
pub const DEFAULT_QUEUE_WINDOW: usize = 10_000;

/// How the moves run: the master's queue limits and the chunk servers'
/// migration buckets.
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    /// Slots, retries and floor of the queue (the master's flags).
    pub queue: QueueConfig,
    /// Migration bandwidth of each server in bytes per second, by view
    /// position (the chunk server's `--migrate-bandwidth`; 0 = unlimited).
    /// Servers past the end use `default_bandwidth`.
    pub bandwidth: Vec<u64>,
    /// Bandwidth of servers `bandwidth` does not list.
    pub default_bandwidth: u64,
    /// Time a move holds its slot beyond its transfer.
    pub move_overhead: Duration,
    /// Most moves queued at once; the rest of a plan follows as it drains.
    pub queue_window: usize,
}

impl Default for Execution {
    /// The daemons' defaults: the master's queue limits and 64 MiB/s per
    /// chunk server.
    fn default() -> Self {
        Self {
            queue: QueueConfig::default(),
            bandwidth: Vec::new(),
            default_bandwidth: 64 << 20,
            move_overhead: DEFAULT_MOVE_OVERHEAD,
            queue_window: DEFAULT_QUEUE_WINDOW,
        }
    }
}

impl Execution {
    /// Bandwidth of the server at view position `s`.
    pub fn bandwidth_of(&self, s: usize) -> u64 {
        self.bandwidth
            .get(s)
            .copied()
            .unwrap_or(self.default_bandwidth)
    }
}

/// One move as it would run.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedMove {
    /// Chunk id.
    pub chunk: String,
    /// Source server id.
    pub from: String,
    /// Target server id.
    pub to: String,
    /// The chunk's size.
    pub bytes: u64,
    /// When it would start, from the start of the rebalance.
    pub start: Duration,
    /// When it would end (slot given back).
    pub end: Duration,
}

/// One server's share of the rebalance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerFlow {
    /// Server id.
    pub id: String,
    /// Its migration bandwidth (0 = unlimited).
    pub bandwidth: u64,
    /// Bytes copied onto it.
    pub bytes_in: u64,
    /// Bytes copied off it.
    pub bytes_out: u64,
    /// Moves onto it.
    pub moves_in: u64,
    /// Moves off it.
    pub moves_out: u64,
}

/// A move the queue never started, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct NotStarted {
    /// Chunk id.
    pub chunk: String,
    /// Source server id.
    pub from: String,
    /// Target server id.
    pub to: String,
    /// The chunk's size.
    pub bytes: u64,
    /// The queue's reason, e.g. "target free space at floor".
    pub reason: String,
}

/// The prediction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prediction {
    /// Every move that would run, in start order.
    pub moves: Vec<TimedMove>,
    /// Bytes the moves that run transfer.
    pub bytes: u64,
    /// Bytes the plan holds (the moves that run and those that would not).
    pub planned_bytes: u64,
    /// Fewest bytes any plan must move to bring every server into the band.
    pub lower_bound_bytes: u64,
    /// Whether every live server ends inside the band, as the plan says.
    pub reaches_band: bool,
    /// The average utilization the band is centred on.
    pub average_utilization_pct: f64,
    /// The planner's notes.
    pub notes: Vec<String>,
    /// Every server, in view order.
    pub servers: Vec<ServerFlow>,
    /// When the last move would end.
    pub eta: Duration,
    /// The state after every event (a start or an end), in time order.
    pub points: Vec<TimelinePoint>,
    /// Planned moves the queue would not start (or dropped as obsolete).
    pub not_started: Vec<NotStarted>,
}

impl Prediction {
    /// The timeline in steps of `step` from 0 to the ETA (both included).
    pub fn timeline(&self, step: Duration) -> Vec<TimelinePoint> {
        timeline::resample(&self.points, step, self.eta)
    }
}

/// Why no prediction could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PredictError {
    /// A planned move does not fit the view (a caller mistake).
    #[error("planned move does not fit the cluster: {0}")]
    BadMove(String),
    /// The simulation did not end within its event budget.
    #[error("the simulation did not end after {0} events")]
    NoEnd(usize),
}

/// Plans `view` with the real planner under `policy` (nothing in flight) and
/// predicts how the plan would run.
pub fn predict(
    view: &ClusterView,
    policy: &Policy,
    exec: &Execution,
) -> Result<Prediction, PredictError> {
    let plan = crate::planner::plan(view, policy, &InFlight::new());
    predict_plan(view, &plan, exec)
}

/// Predicts how `plan`, made on `view` (by the master or by [`predict`]),
/// would run through the queue.
pub fn predict_plan(
    view: &ClusterView,
    plan: &Plan,
    exec: &Execution,
) -> Result<Prediction, PredictError> {
    let mut p = run::Sim::new(view.clone(), exec).run(plan)?;
    p.planned_bytes = plan.bytes;
    p.lower_bound_bytes = plan.lower_bound_bytes;
    p.reaches_band = plan.band_reached;
    p.average_utilization_pct = plan.average_utilization_pct;
    p.notes = plan.notes.clone();
    p.servers = flows(view, exec, &p.moves);
    Ok(p)
}

/// Per-server bytes and moves in and out.
fn flows(view: &ClusterView, exec: &Execution, moves: &[TimedMove]) -> Vec<ServerFlow> {
    let mut out: Vec<ServerFlow> = view
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| ServerFlow {
            id: s.id.clone(),
            bandwidth: exec.bandwidth_of(i),
            ..ServerFlow::default()
        })
        .collect();
    let at: HashMap<String, usize> = out
        .iter()
        .enumerate()
        .map(|(i, f)| (f.id.clone(), i))
        .collect();
    for m in moves {
        if let Some(&i) = at.get(&m.from) {
            out[i].bytes_out += m.bytes;
            out[i].moves_out += 1;
        }
        if let Some(&i) = at.get(&m.to) {
            out[i].bytes_in += m.bytes;
            out[i].moves_in += 1;
        }
    }
    out
}
