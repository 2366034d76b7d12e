//! The move queue: a plain state machine that turns planned moves into
//! started moves without ever head-of-line blocking.
//!
//! Every pass of [`MoveQueue::next_ready`] considers every pending move, in
//! the order they were queued, and starts each one whose gates pass:
//! placement (both servers alive, the source still holds the chunk, the
//! target does not, racks stay diverse), target space (the free-space floor,
//! counting moves already running into that target), then a slot under both
//! concurrency limits. A move that cannot start is skipped with the reason
//! recorded and revisited next pass; a move whose chunk left its source is
//! dropped as obsolete; a failing move is retried with exponential backoff
//! and dropped after `move_retries` retries.
//!
//! Moves name chunks and servers by index, and the queue also keeps their ids
//! from the view they were queued with. A pass drops, as obsolete, a move
//! whose indices now name other chunks or servers, so it never starts the
//! wrong move; a caller whose views renumber chunks calls
//! [`MoveQueue::rebase`] with each new view before using it.

mod inspect;
mod rebase;
mod state;
mod status;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::error::QueueError;
use crate::model::{ChunkIdx, ClusterView};
use crate::plan::PlannedMove;
use state::{Entry, Gates};
pub use status::{
    FinishedMove, MoveNames, MoveState, MoveStatus, Outcome, QueueStatus, Totals, WaitReason,
};

/// First retry delay after a failure.
pub const RETRY_BASE: Duration = Duration::from_secs(1);
/// Longest retry delay; the delay doubles per failure up to this.
pub const RETRY_CAP: Duration = Duration::from_secs(60);
/// Finished moves kept for operators by default.
pub const HISTORY_LIMIT: usize = 1000;
/// How long a chunk whose move was dropped as failed is left out of plans
/// (see [`MoveQueue::busy`]), so that one bad chunk is not planned again at
/// every pass.
pub const FAILED_CHUNK_COOLDOWN: Duration = Duration::from_secs(600);

/// Delay before retry number `retries` (1 for the first retry).
pub fn backoff(retries: u32) -> Duration {
    let doublings = retries.saturating_sub(1).min(16);
    (RETRY_BASE * (1u32 << doublings)).min(RETRY_CAP)
}

/// Identifies a move for the lifetime of its queue; ids grow with time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MoveId(pub u64);

/// Limits of the queue (the master's flags of the same names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueConfig {
    /// Moves running at once, cluster-wide.
    pub max_concurrent_moves: usize,
    /// Moves running at once per server, as source or target.
    pub max_moves_per_server: usize,
    /// Retries after the first failure; then the move is dropped.
    pub move_retries: u32,
    /// A move may not leave its target with less free space than this
    /// percentage of its capacity.
    pub min_free_pct: f64,
    /// Finished moves kept in [`MoveQueue::history`].
    pub history_limit: usize,
}

impl Default for QueueConfig {
    /// The master's defaults: 4 moves, 2 per server, 3 retries, 10 % floor.
    fn default() -> Self {
        Self {
            max_concurrent_moves: 4,
            max_moves_per_server: 2,
            move_retries: 3,
            min_free_pct: 10.0,
            history_limit: HISTORY_LIMIT,
        }
    }
}

/// A move [`MoveQueue::next_ready`] says to start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartMove {
    /// Report its end with this id.
    pub id: MoveId,
    /// What to move.
    pub mv: PlannedMove,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
}

/// What [`MoveQueue::on_failed`] did with a failed move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Back in the queue; it may start again from `not_before` on.
    Retry {
        /// Earliest time of the next attempt.
        not_before: Duration,
    },
    /// Out of retries (or started by the caller itself): dropped, counted as failed.
    Dropped,
}

/// Pending and running moves, with lifetime totals and recent history.
#[derive(Debug, Clone, Default)]
pub struct MoveQueue {
    /// The limits.
    config: QueueConfig,
    /// Id of the next move queued.
    next_id: u64,
    /// Moves waiting to start, oldest first.
    pending: BTreeMap<MoveId, Entry>,
    /// Moves started and not yet reported back.
    running: BTreeMap<MoveId, Entry>,
    /// Which move holds each chunk, pending or running.
    by_chunk: BTreeMap<ChunkIdx, MoveId>,
    /// The last `history_limit` finished moves, oldest first.
    history: VecDeque<FinishedMove>,
    /// Lifetime counts.
    totals: Totals,
    /// Whether starting new moves is paused.
    paused: bool,
    /// Recently failed chunks by id: their index and when their move was dropped.
    failed_at: BTreeMap<String, (ChunkIdx, Duration)>,
}

impl MoveQueue {
    /// An empty queue with these limits.
    pub fn new(config: QueueConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// The limits.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Changes the limits; they apply from the next pass on.
    pub fn set_config(&mut self, config: QueueConfig) {
        self.config = config;
    }

    /// Queues a move planned on `view`. Refused if its chunk already has a
    /// move queued or running, if it names one server twice, or if it does
    /// not fit `view`.
    pub fn enqueue(
        &mut self,
        mv: PlannedMove,
        now: Duration,
        view: &ClusterView,
    ) -> Result<MoveId, QueueError> {
        let (id, names) = self.admit(&mv, view)?;
        self.pending.insert(id, Entry::new(mv, names, now, false));
        Ok(id)
    }

    /// Records a move the caller started itself (an operator's explicit
    /// move): it holds a slot until [`MoveQueue::on_done`] or
    /// [`MoveQueue::on_failed`], and is not retried by the queue.
    pub fn on_started(
        &mut self,
        mv: PlannedMove,
        now: Duration,
        view: &ClusterView,
    ) -> Result<MoveId, QueueError> {
        let (id, names) = self.admit(&mv, view)?;
        let mut entry = Entry::new(mv, names, now, true);
        entry.started_at = Some(now);
        self.running.insert(id, entry);
        Ok(id)
    }

    /// Checks that `mv` may join the queue and reserves an id for it.
    fn admit(
        &mut self,
        mv: &PlannedMove,
        view: &ClusterView,
    ) -> Result<(MoveId, MoveNames), QueueError> {
        let names = MoveNames::of(view, mv).ok_or(QueueError::NotInView { mv: *mv })?;
        if mv.from == mv.to {
            return Err(QueueError::SameServer {
                chunk: mv.chunk,
                server: mv.from,
            });
        }
        if let Some(&existing) = self.by_chunk.get(&mv.chunk) {
            return Err(QueueError::ChunkBusy {
                chunk: mv.chunk,
                existing,
            });
        }
        let id = MoveId(self.next_id);
        self.next_id += 1;
        self.by_chunk.insert(mv.chunk, id);
        Ok((id, names))
    }

    /// One pass over every pending move: returns those to start now (they
    /// count as running from here on), records why the others wait, and
    /// drops those made obsolete by the view.
    pub fn next_ready(&mut self, now: Duration, view: &ClusterView) -> Vec<StartMove> {
        if self.paused {
            self.pending
                .values_mut()
                .for_each(|e| e.wait = Some(WaitReason::Paused));
            return Vec::new();
        }
        let mut gates = Gates::new(&self.config, view, self.running.values());
        let mut obsolete = Vec::new();
        let mut starts = Vec::new();
        for (&id, entry) in &mut self.pending {
            match gates.admit(entry, now) {
                Ok(true) => starts.push(id),
                Ok(false) => obsolete.push(id),
                Err(reason) => entry.wait = Some(reason),
            }
        }
        for id in obsolete {
            if let Some(entry) = self.pending.remove(&id) {
                self.finish(id, entry, Outcome::Obsolete, now);
            }
        }
        starts
            .into_iter()
            .filter_map(|id| self.start(id, now))
            .collect()
    }

    /// Moves pending move `id` to running.
    fn start(&mut self, id: MoveId, now: Duration) -> Option<StartMove> {
        let mut entry = self.pending.remove(&id)?;
        entry.started_at = Some(now);
        entry.wait = None;
        let start = StartMove {
            id,
            mv: entry.mv,
            attempt: entry.retries + 1,
        };
        self.running.insert(id, entry);
        Some(start)
    }

    /// A running move finished: counted as done, its bytes as moved.
    pub fn on_done(&mut self, id: MoveId, now: Duration) -> Result<(), QueueError> {
        let entry = self.take_running(id)?;
        self.totals.bytes_moved += entry.mv.bytes;
        self.finish(id, entry, Outcome::Done, now);
        Ok(())
    }

    /// A running move failed with `error`: queued again after a backoff, or
    /// dropped with the error kept once its retries are used up.
    pub fn on_failed(
        &mut self,
        id: MoveId,
        error: impl Into<String>,
        now: Duration,
    ) -> Result<AfterFailure, QueueError> {
        let mut entry = self.take_running(id)?;
        let error = error.into();
        entry.started_at = None;
        if entry.external || entry.retries >= self.config.move_retries {
            entry.last_error = Some(error.clone());
            self.finish(id, entry, Outcome::Failed { error }, now);
            return Ok(AfterFailure::Dropped);
        }
        entry.retries += 1;
        entry.not_before = now.saturating_add(backoff(entry.retries));
        entry.wait = Some(WaitReason::Retrying(error.clone()));
        entry.last_error = Some(error);
        let not_before = entry.not_before;
        self.pending.insert(id, entry);
        Ok(AfterFailure::Retry { not_before })
    }

    /// Removes a pending move (e.g. to plan its chunk afresh).
    pub fn cancel(&mut self, id: MoveId, now: Duration) -> Result<(), QueueError> {
        let entry = self.pending.remove(&id).ok_or(QueueError::UnknownMove {
            id,
            state: "pending",
        })?;
        self.finish(id, entry, Outcome::Cancelled, now);
        Ok(())
    }

    fn take_running(&mut self, id: MoveId) -> Result<Entry, QueueError> {
        self.running.remove(&id).ok_or(QueueError::UnknownMove {
            id,
            state: "running",
        })
    }

    /// Frees the chunk, counts the outcome and keeps it in the history.
    fn finish(&mut self, id: MoveId, entry: Entry, outcome: Outcome, now: Duration) {
        self.by_chunk.remove(&entry.mv.chunk);
        if let Outcome::Failed { .. } = outcome {
            self.failed_at
                .retain(|_, (_, at)| now.saturating_sub(*at) < FAILED_CHUNK_COOLDOWN);
            self.failed_at
                .insert(entry.names.chunk.clone(), (entry.mv.chunk, now));
        }
        self.totals.count(&outcome);
        self.history.push_back(FinishedMove {
            id,
            mv: entry.mv,
            names: entry.names,
            outcome,
            retries: entry.retries,
            at: now,
        });
        while self.history.len() > self.config.history_limit {
            self.history.pop_front();
        }
    }
}
