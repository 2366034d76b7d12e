//! `/api/status`: what the dashboard shows, built from one look at the
//! balancer, the metadata and the history (pure: every input passed in).

use std::collections::BTreeMap;

use keel_balancer::queue::{MoveState, Outcome};
use serde::Serialize;

pub use super::stuck::Stuck;
use super::stuck::stuck;
use crate::balance::{BalanceStatus, MoveLimits};
use crate::history::Summary as HistorySummary;
use crate::meta::{self, CopyClass, ServerState, ServerStatus};

/// Pending and running moves listed; the counts cover them all.
pub const LISTED_MOVES: usize = 200;
/// Rates are measured over the moves done in this many last milliseconds.
pub const RATE_WINDOW_MS: u64 = 30_000;

/// Everything [`build`] reads.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The balancer's status (queue, redundancy, average).
    pub balance: BalanceStatus,
    /// Every server known.
    pub servers: Vec<ServerStatus>,
    /// `--threshold-pct`.
    pub threshold_pct: f64,
    /// `--load-threshold-pct` (0: load balancing off).
    pub load_threshold_pct: f64,
    /// `--min-free-pct`.
    pub min_free_pct: f64,
    /// `--stuck-after`, in milliseconds.
    pub stuck_after_ms: u64,
    /// The queue's own stuck verdict (the `keel_queue_stuck` gauge).
    pub stuck: bool,
    /// Whether this master leads.
    pub leader: bool,
    /// Whether the dashboard needs a token (shows a log-out button).
    pub auth: bool,
    /// Wall clock, Unix milliseconds.
    pub now_ms: u64,
    /// Moves done and their bytes within [`RATE_WINDOW_MS`], and when the
    /// last rebalance's first kept move started.
    pub recent: (u64, u64, Option<u64>),
    /// The last rebalance: id, moves kept, finished.
    pub history: HistorySummary,
}

/// The whole answer.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// Wall clock, Unix milliseconds.
    pub now_ms: u64,
    /// Whether this master leads (a standby starts no moves).
    pub leader: bool,
    /// Whether a token guards the dashboard.
    pub auth: bool,
    /// `--threshold-pct`, `--load-threshold-pct`, `--min-free-pct` and
    /// `--stuck-after`.
    pub policy: Policy,
    /// Capacity-weighted average utilization of live servers.
    pub average_utilization_pct: f64,
    /// The band: `average ± threshold`.
    pub band_low_pct: f64,
    /// Upper edge of the band.
    pub band_high_pct: f64,
    /// No live server outside the band.
    pub balanced: bool,
    /// Background passes have not started yet.
    pub safe_mode: bool,
    /// Every server, by id.
    pub servers: Vec<Server>,
    /// The queue.
    pub queue: Queue,
    /// Throughput and ETA.
    pub rates: Rates,
    /// Chunks short of replicas and the copies restoring them.
    pub redundancy: Redundancy,
    /// Whether the queue is stuck, and the likely cause.
    pub stuck: Stuck,
    /// The last rebalance in brief.
    pub history: HistorySummary,
}

/// The balancer's flags.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Policy {
    /// Band half-width in percentage points.
    pub threshold_pct: f64,
    /// Load band half-width, percent of the mean client reads/s of live
    /// servers (0: load balancing off). Each server's own reads and its
    /// place against this band come with the server (`reads_per_sec`,
    /// `load`).
    pub load_threshold_pct: f64,
    /// Free-space floor in percent of capacity.
    pub min_free_pct: f64,
    /// Pending this long with nothing finished counts as stuck.
    pub stuck_after_ms: u64,
    /// The queue's slot limits in force (`--max-concurrent-moves`, whether
    /// it is `auto`, `--max-moves-per-server`), as the queue reports them.
    #[serde(flatten)]
    pub limits: MoveLimits,
}

/// One server: the metadata's own status, plus what the dashboard derives
/// from the band and the floor.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    /// Id, address, rack, state, capacity, used, utilization, chunks and
    /// last heartbeat, as `ListServers` reports them.
    #[serde(flatten)]
    pub status: ServerStatus,
    /// Capacity minus used.
    pub free_bytes: u64,
    /// Free bytes no move may go below.
    pub floor_bytes: u64,
    /// `over`, `under` or `within` the band (`none` when not counted).
    pub band: &'static str,
}

/// The queue's counts and its first [`LISTED_MOVES`] moves.
#[derive(Debug, Clone, Serialize)]
pub struct Queue {
    /// Starting moves is paused.
    pub paused: bool,
    /// Waiting to start.
    pub pending: usize,
    /// Copying now.
    pub running: usize,
    /// Done since start.
    pub done: u64,
    /// Dropped after their retries, since start.
    pub failed: u64,
    /// Bytes moved since start.
    pub bytes_moved: u64,
    /// Bytes of the moves pending or running.
    pub bytes_remaining: u64,
    /// Age of the oldest pending move.
    pub oldest_pending_age_ms: u64,
    /// Pending moves by why they wait.
    pub reasons: BTreeMap<String, usize>,
    /// Running moves, then pending ones, oldest first.
    pub moves: Vec<QueuedMove>,
    /// The latest moves dropped after their retries, newest first
    /// (`state` is `failed`, `age_ms` the time since).
    pub recent_failures: Vec<QueuedMove>,
}

/// One pending or running move.
#[derive(Debug, Clone, Serialize)]
pub struct QueuedMove {
    /// Chunk id.
    pub chunk: String,
    /// Source server.
    pub from: String,
    /// Target server.
    pub to: String,
    /// The chunk's size.
    pub bytes: u64,
    /// `balance`, `operator`, `repair` or `drain`.
    pub kind: &'static str,
    /// `pending`, `running` or `failed`.
    pub state: &'static str,
    /// Failed attempts so far.
    pub retries: u32,
    /// Why it waits (pending only).
    pub waiting: String,
    /// The last failure.
    pub last_error: String,
    /// Time since it was queued.
    pub age_ms: u64,
}

/// Throughput over the last [`RATE_WINDOW_MS`] and what it predicts.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rates {
    /// Bytes of done moves per second.
    pub bytes_per_sec: f64,
    /// Done moves per second.
    pub moves_per_sec: f64,
    /// `bytes_remaining / bytes_per_sec`, when both are above zero.
    pub eta_secs: Option<f64>,
}

/// Chunks short of replicas, and repairs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Redundancy {
    /// The metadata's counts; its waiting copies include those queued.
    #[serde(flatten)]
    pub counts: meta::Redundancy,
    /// Repair copies running.
    pub repairs_running: u64,
    /// Drain copies running.
    pub drains_running: u64,
    /// Repair and drain copies completed since start.
    pub repairs_done: u64,
}

/// Builds the answer.
pub fn build(mut i: Inputs) -> Status {
    let avg = i.balance.average_utilization_pct;
    let (low, high) = (avg - i.threshold_pct, avg + i.threshold_pct);
    let servers = std::mem::take(&mut i.servers)
        .into_iter()
        .map(|s| server(s, low, high, i.min_free_pct))
        .collect();
    let queue = queue(&i.balance);
    let stuck = stuck(i.stuck, &i.balance.queue, LISTED_MOVES);
    let rates = rates(&i, queue.bytes_remaining);
    let b = &i.balance;
    let running_of = |k: CopyClass| b.copies.iter().filter(|c| c.kind == k).count() as u64;
    let pending_of = |k: CopyClass| {
        b.queue
            .moves
            .iter()
            .filter(|m| m.state == MoveState::Pending && m.copy.class == k)
            .count() as u64
    };
    let r = b.redundancy;
    Status {
        now_ms: i.now_ms,
        leader: i.leader,
        auth: i.auth,
        policy: Policy {
            threshold_pct: i.threshold_pct,
            load_threshold_pct: i.load_threshold_pct,
            min_free_pct: i.min_free_pct,
            stuck_after_ms: i.stuck_after_ms,
            limits: i.balance.limits,
        },
        average_utilization_pct: avg,
        band_low_pct: low.max(0.0),
        band_high_pct: high.min(100.0),
        balanced: b.balanced,
        safe_mode: b.safe_mode,
        servers,
        redundancy: Redundancy {
            counts: meta::Redundancy {
                repairs_waiting: r.repairs_waiting + pending_of(CopyClass::Repair),
                drains_waiting: r.drains_waiting + pending_of(CopyClass::Drain),
                ..r
            },
            repairs_running: running_of(CopyClass::Repair),
            drains_running: running_of(CopyClass::Drain),
            repairs_done: b.repairs_done,
        },
        queue,
        rates,
        stuck,
        history: i.history,
    }
}

fn server(s: ServerStatus, low: f64, high: f64, min_free_pct: f64) -> Server {
    let u = s.utilization_pct;
    let band = match s.state {
        ServerState::Alive if u > high => "over",
        ServerState::Alive if u < low => "under",
        ServerState::Alive => "within",
        _ => "none",
    };
    Server {
        free_bytes: s.capacity.saturating_sub(s.used),
        floor_bytes: keel_balancer::space::floor_bytes(s.capacity, min_free_pct),
        band,
        status: s,
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn queue(b: &BalanceStatus) -> Queue {
    let q = &b.queue;
    let mut reasons = BTreeMap::new();
    for m in q.moves.iter().filter(|m| m.state == MoveState::Pending) {
        let why = m
            .waiting
            .as_ref()
            .map_or_else(|| "its turn".into(), ToString::to_string);
        *reasons.entry(why).or_insert(0) += 1;
    }
    let running = q.moves.iter().filter(|m| m.state == MoveState::Running);
    let pending = q.moves.iter().filter(|m| m.state == MoveState::Pending);
    let moves = running
        .chain(pending)
        .take(LISTED_MOVES)
        .map(|m| QueuedMove {
            chunk: m.copy.mv.chunk.clone(),
            from: m.copy.mv.from.clone(),
            to: m.copy.mv.to.clone(),
            bytes: m.copy.bytes,
            kind: m.copy.class.name(),
            state: match m.state {
                MoveState::Pending => "pending",
                MoveState::Running => "running",
            },
            retries: m.retries,
            waiting: m
                .waiting
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            last_error: m.last_error.clone().unwrap_or_default(),
            age_ms: millis(m.age),
        })
        .collect();
    let recent_failures = b
        .recent_failures
        .iter()
        .map(|f| QueuedMove {
            chunk: f.copy.mv.chunk.clone(),
            from: f.copy.mv.from.clone(),
            to: f.copy.mv.to.clone(),
            bytes: f.copy.bytes,
            kind: f.copy.class.name(),
            state: "failed",
            retries: f.retries,
            waiting: String::new(),
            last_error: match &f.outcome {
                Outcome::Failed { error } => error.clone(),
                _ => String::new(),
            },
            age_ms: millis(b.now.saturating_sub(f.at)),
        })
        .collect();
    Queue {
        recent_failures,
        paused: q.paused,
        pending: q.pending,
        running: q.running,
        done: q.done,
        failed: q.failed,
        bytes_moved: q.bytes_moved,
        bytes_remaining: b.bytes_remaining,
        oldest_pending_age_ms: q.oldest_pending_age.map_or(0, millis),
        reasons,
        moves,
    }
}

fn rates(i: &Inputs, remaining: u64) -> Rates {
    let (n, bytes, first) = i.recent;
    // Over the window, or since the rebalance began when that is shorter.
    let since_first = first.map_or(RATE_WINDOW_MS, |f| i.now_ms.saturating_sub(f));
    let secs = since_first.clamp(1000, RATE_WINDOW_MS) as f64 / 1000.0;
    let bytes_per_sec = bytes as f64 / secs;
    let eta_secs = (bytes_per_sec > 0.0 && remaining > 0).then(|| remaining as f64 / bytes_per_sec);
    Rates {
        bytes_per_sec,
        moves_per_sec: n as f64 / secs,
        eta_secs,
    }
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
