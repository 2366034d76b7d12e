//! The last rebalance, move by move, for the dashboard's replay.
//!
//! A rebalance starts with the first copy the queue starts while the last
//! rebalance is over, and lasts until the queue is idle again. For it the master keeps every
//! server's bytes at its start and, in a bounded ring, how each attempt
//! ended: chunk, source, target, bytes, start and end time, outcome. Replaying
//! the ring onto the start gives the bars as each move landed. When the ring
//! is full, the oldest move is folded into the start, so start plus moves
//! always add up to the servers as they are.
//!
//! Fed from `balance::drive` under the queue's lock: [`History::tick`] where
//! the queue starts copies (when it opens a rebalance no copy is in flight,
//! so the servers' bytes are exact), [`History::record`] at the one place
//! where queued copies end, so records are in end order.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use keel_balancer::queue::AfterFailure;
use serde::Serialize;

use crate::meta::{MoveTicket, ServerStatus};
use crate::mover::{MoveDone, MoveError};

/// Moves kept of the last rebalance; older ones are folded into its start.
pub const HISTORY_MOVES: usize = 4096;

/// One server as the rebalance found it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerStart {
    /// Server id.
    pub id: String,
    /// Rack label, empty when unset.
    pub rack: String,
    /// Bytes counted as 100 %.
    pub capacity_bytes: u64,
    /// Bytes held before the first kept move.
    pub used_bytes: u64,
}

/// How one attempt of a copy ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveOutcome {
    /// Copied (and the source dropped, for a move).
    Done,
    /// Failed; the queue tries it again.
    Retrying,
    /// Failed for good: dropped from the queue.
    Failed,
}

/// One ended attempt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MoveRecord {
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
    /// Start of the attempt, Unix milliseconds.
    pub started_ms: u64,
    /// End of the attempt, Unix milliseconds.
    pub ended_ms: u64,
    /// How it ended.
    pub outcome: MoveOutcome,
    /// Whether the source replica was dropped (a done move; repairs keep it).
    pub source_deleted: bool,
    /// Why it failed, empty when done.
    pub error: String,
}

/// The last rebalance.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rebalance {
    /// Counts rebalances since the master started (0: none yet).
    pub id: u64,
    /// Whether the queue went idle after its last move.
    pub finished: bool,
    /// Moves folded into `start` because the ring was full.
    pub folded: u64,
    /// The servers before the first kept move.
    pub start: Vec<ServerStart>,
    /// Ended attempts, oldest first.
    pub moves: VecDeque<MoveRecord>,
}

/// The last rebalance in brief, so the dashboard knows when to fetch it again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Rebalances since start (0: none yet).
    pub id: u64,
    /// Attempts kept.
    pub moves: usize,
    /// Whether the queue went idle after it.
    pub finished: bool,
}

/// The bounded history; shared by the balancer (writes) and the dashboard
/// (reads).
#[derive(Debug)]
pub struct History {
    limit: usize,
    last: Mutex<Rebalance>,
}

impl Default for History {
    fn default() -> Self {
        History::new(HISTORY_MOVES)
    }
}

impl History {
    /// Keeps up to `limit` moves (at least one).
    pub fn new(limit: usize) -> Self {
        History {
            limit: limit.max(1),
            last: Mutex::new(Rebalance {
                finished: true,
                ..Rebalance::default()
            }),
        }
    }

    fn last(&self) -> MutexGuard<'_, Rebalance> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the last rebalance.
    pub fn snapshot(&self) -> Rebalance {
        self.last().clone()
    }

    /// The last rebalance in brief.
    pub fn summary(&self) -> Summary {
        let last = self.last();
        Summary {
            id: last.id,
            moves: last.moves.len(),
            finished: last.finished,
        }
    }

    /// Moves done since `since_ms` (Unix ms): count and bytes, and when the
    /// rebalance's first kept attempt started.
    pub fn done_since(&self, since_ms: u64) -> (u64, u64, Option<u64>) {
        let last = self.last();
        let first = last.moves.front().map(|m| m.started_ms);
        let (n, bytes) = last
            .moves
            .iter()
            .filter(|m| m.outcome == MoveOutcome::Done && m.ended_ms >= since_ms)
            .fold((0, 0), |(n, b), m| (n + 1, b + m.bytes));
        (n, bytes, first)
    }

    /// After a pass of the queue: an `idle` queue ends the rebalance (moves
    /// may leave it without running, as obsolete); copies `starting` while
    /// the last one is over open a new one from `servers`.
    pub fn tick(&self, idle: bool, starting: bool, servers: impl FnOnce() -> Vec<ServerStatus>) {
        let mut last = self.last();
        if idle {
            last.finished = true;
        }
        if !starting || !last.finished {
            return;
        }
        let start = servers()
            .into_iter()
            .map(|s| ServerStart {
                id: s.id,
                rack: s.rack,
                capacity_bytes: s.capacity,
                used_bytes: s.used,
            })
            .collect();
        *last = Rebalance {
            id: last.id + 1,
            start,
            ..Rebalance::default()
        };
    }

    /// Records the end of one attempt of `ticket`, which started at `began`,
    /// as the queue took it (`after`); `idle` says the queue is now empty.
    pub fn record(
        &self,
        ticket: &MoveTicket,
        result: &Result<MoveDone, MoveError>,
        after: Option<AfterFailure>,
        began: SystemTime,
        idle: bool,
    ) {
        let rec = MoveRecord {
            chunk: ticket.chunk.clone(),
            from: ticket.from.id.to_string(),
            to: ticket.to.id.to_string(),
            bytes: ticket.size,
            kind: ticket.kind.name(),
            started_ms: unix_ms(began),
            ended_ms: unix_ms(SystemTime::now()),
            outcome: match after {
                None if result.is_ok() => MoveOutcome::Done,
                Some(AfterFailure::Retry { .. }) => MoveOutcome::Retrying,
                _ => MoveOutcome::Failed,
            },
            source_deleted: result.as_ref().is_ok_and(|d| d.source_deleted),
            error: result
                .as_ref()
                .err()
                .map(ToString::to_string)
                .unwrap_or_default(),
        };
        self.push(rec, idle);
    }

    /// Appends `rec`; see [`History::record`].
    pub fn push(&self, rec: MoveRecord, idle: bool) {
        let mut last = self.last();
        last.moves.push_back(rec);
        while last.moves.len() > self.limit {
            if let Some(old) = last.moves.pop_front() {
                apply(&mut last.start, &old, true);
                last.folded += 1;
            }
        }
        last.finished = idle;
    }
}

/// Applies a done move to `servers` (`forward`), or takes it back.
pub fn apply(servers: &mut [ServerStart], m: &MoveRecord, forward: bool) {
    if m.outcome != MoveOutcome::Done {
        return;
    }
    for s in servers.iter_mut() {
        let delta_in = s.id == m.to;
        let delta_out = s.id == m.from && m.source_deleted;
        let (add, sub) = match (forward, delta_in, delta_out) {
            (true, true, _) | (false, _, true) => (m.bytes, 0),
            (true, _, true) | (false, true, _) => (0, m.bytes),
            _ => (0, 0),
        };
        s.used_bytes = s.used_bytes.saturating_add(add).saturating_sub(sub);
    }
}

/// Milliseconds since the Unix epoch (0 for a clock before it).
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
