//! The move queue: one queue for every copy of a replica — repairs, drains,
//! an operator's moves and the balancer's — that turns queued copies into
//! started ones without ever head-of-line blocking.
//!
//! Copies are named by ids ([`CopyJob`]), never by indices into a view, so
//! nothing needs renumbering when the cluster changes. Every pass of
//! [`MoveQueue::next_ready`] considers every pending copy, the most urgent
//! class first ([`CopyClass`]: repairs, drains, operator moves, balance
//! moves), oldest first within a class (balance moves in rounds over their
//! sources, so that limited slots spread over every source's bandwidth),
//! and starts each one that passes the
//! one admission rule ([`crate::admission`], asked through [`Admits`]) and
//! gets a slot from the queue's [`SlotTable`], the one slot table. A repair
//! or drain that waits for a slot reserves its servers: no later class takes
//! a slot on them in that pass. A copy that can never run as named (its chunk
//! left the source, reached the target, a server went away) is dropped as
//! obsolete, for its planner to plan afresh; one that can run later (the
//! chunk is busy, the target is at its floor) waits with the reason recorded.
//! A failing copy is retried with exponential backoff and dropped after
//! `move_retries` retries: one retry policy for every class.

mod inspect;
mod state;
mod status;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use crate::admission::{Admits, Admitted};
use crate::error::QueueError;
pub use crate::ids::MoveId;
use crate::ids::{CopyClass, CopyJob};
use crate::model::ClusterView;
use crate::plan::PlannedMove;
use crate::slots::SlotTable;
use state::{Entry, Gates};
pub use status::{FinishedMove, MoveState, MoveStatus, Outcome, QueueStatus, Totals, WaitReason};

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

/// Limits of the queue (the master's flags of the same names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueueConfig {
    /// Moves running at once, cluster-wide; [`crate::slots::AUTO`] (the
    /// default) leaves the per-server limit alone to bind.
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
    /// The master's defaults: `auto` moves (the per-server limit binds), 4
    /// per server, 3 retries, 10 % floor. Two per server left a server's
    /// slots waiting on busy partners: 1.3–1.5 × the time bound in the
    /// predictor from 16 servers on; four reach 1.01–1.03 ×
    /// (`tests/fast_defaults.rs`).
    fn default() -> Self {
        Self {
            max_concurrent_moves: crate::slots::AUTO,
            max_moves_per_server: 4,
            move_retries: 3,
            min_free_pct: 10.0,
            history_limit: HISTORY_LIMIT,
        }
    }
}

impl QueueConfig {
    /// The cluster-wide cap in force with `live` servers (see
    /// [`crate::slots::effective_cap`]).
    pub fn effective_max_concurrent(&self, live: usize) -> usize {
        crate::slots::effective_cap(self.max_concurrent_moves, live, self.max_moves_per_server)
    }

    /// Whether the cluster-wide cap is `auto`.
    pub fn is_auto(&self) -> bool {
        self.max_concurrent_moves == crate::slots::AUTO
    }
}

/// A move [`MoveQueue::next_ready`] says to start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartMove {
    /// Report its end with this id.
    pub id: MoveId,
    /// What to copy.
    pub copy: CopyJob,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
    /// The slot it holds (until [`MoveQueue::on_done`] or
    /// [`MoveQueue::on_failed`]).
    pub slot: Admitted,
}

/// What [`MoveQueue::on_failed`] did with a failed move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Back in the queue; it may start again from `not_before` on.
    Retry {
        /// Earliest time of the next attempt.
        not_before: Duration,
    },
    /// Out of retries: dropped, counted as failed.
    Dropped,
}

/// Pending and running copies, with lifetime totals and recent history.
#[derive(Debug, Clone, Default)]
pub struct MoveQueue {
    /// The limits.
    config: QueueConfig,
    /// Id of the next copy queued.
    next_id: u64,
    /// Copies waiting to start, by id (oldest first).
    pending: BTreeMap<MoveId, Entry>,
    /// Copies started and not yet reported back.
    running: BTreeMap<MoveId, Entry>,
    /// Which copy holds each chunk, pending or running.
    by_chunk: HashMap<String, MoveId>,
    /// The last `history_limit` finished copies, oldest first.
    history: VecDeque<FinishedMove>,
    /// Lifetime counts.
    totals: Totals,
    /// Whether starting new copies is paused.
    paused: bool,
    /// Chunks whose balance or operator move was dropped as failed, and when.
    failed_at: BTreeMap<String, Duration>,
    /// The one slot table.
    slots: SlotTable,
}

impl MoveQueue {
    /// An empty queue with these limits.
    pub fn new(config: QueueConfig) -> Self {
        Self {
            config,
            slots: SlotTable::new(config.max_concurrent_moves, config.max_moves_per_server),
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
        self.slots
            .set_limits(config.max_concurrent_moves, config.max_moves_per_server);
    }

    /// The slot table, read-only.
    pub fn slots(&self) -> &SlotTable {
        &self.slots
    }

    /// Queues `copy`. Refused if it names one server twice, or if its chunk
    /// already has a copy queued or running.
    pub fn enqueue(&mut self, copy: CopyJob, now: Duration) -> Result<MoveId, QueueError> {
        if copy.mv.from == copy.mv.to {
            return Err(QueueError::SameServer {
                chunk: copy.mv.chunk,
                server: copy.mv.from,
            });
        }
        if let Some(&existing) = self.by_chunk.get(&copy.mv.chunk) {
            return Err(QueueError::ChunkBusy {
                chunk: copy.mv.chunk,
                existing,
            });
        }
        let id = MoveId(self.next_id);
        self.next_id += 1;
        self.by_chunk.insert(copy.mv.chunk.clone(), id);
        self.pending.insert(id, Entry::new(copy, now));
        Ok(id)
    }

    /// Queues a balance move planned on `view` by index (what the planner
    /// returns), named by the ids `view` gives its indices.
    pub fn enqueue_planned(
        &mut self,
        mv: PlannedMove,
        now: Duration,
        view: &ClusterView,
    ) -> Result<MoveId, QueueError> {
        let copy = view
            .job_of(&mv, CopyClass::Balance)
            .ok_or(QueueError::NotInView { mv })?;
        self.enqueue(copy, now)
    }

    /// Queues `copy` ahead of a less urgent copy of the same chunk: one
    /// still pending is cancelled for it. A running one keeps the chunk
    /// (`ChunkBusy`), as does a pending one at least as urgent.
    pub fn enqueue_over(&mut self, copy: CopyJob, now: Duration) -> Result<MoveId, QueueError> {
        if let Some(&existing) = self.by_chunk.get(&copy.mv.chunk)
            && self
                .pending
                .get(&existing)
                .is_some_and(|e| e.copy.class > copy.class)
        {
            self.cancel(existing, now)?;
        }
        self.enqueue(copy, now)
    }

    /// One pass over every pending copy: returns those to start now (they
    /// hold a slot and count as running from here on), records why the
    /// others wait, and drops those that can no longer run as named.
    pub fn next_ready(&mut self, now: Duration, cluster: &impl Admits) -> Vec<StartMove> {
        // Pausing holds the balancer's own moves; repairs, drains and an
        // operator's explicit moves go on.
        let paused = self.paused;
        let mut order: Vec<(CopyClass, MoveId)> = Vec::with_capacity(self.pending.len());
        for (&id, e) in &mut self.pending {
            if paused && e.copy.class == CopyClass::Balance {
                e.wait = Some(WaitReason::Paused);
            } else {
                order.push((e.copy.class, id));
            }
        }
        order.sort_unstable();
        let order = self.by_source_rounds(order);
        let mut gates = Gates::new(self.config.min_free_pct, cluster, &mut self.slots);
        let mut obsolete = Vec::new();
        let mut starts = Vec::new();
        for (_, id) in order {
            let Some(entry) = self.pending.get_mut(&id) else {
                continue;
            };
            match gates.admit(entry, now) {
                Ok(Some(slot)) => starts.push((id, slot)),
                Ok(None) => obsolete.push(id),
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
            .filter_map(|(id, slot)| self.start(id, slot, now))
            .collect()
    }

    /// `order` (by class, then oldest first) with each class's copies in
    /// their own order: repairs by rank (the chunks with the fewest whole
    /// replicas first), and balance moves in rounds over their sources: each
    /// source's oldest, then each one's second, and so on. A plan lists a
    /// source's moves together, so in plan order the cluster-wide slots would
    /// all go to the first sources while the others, and their bandwidth, sat
    /// idle.
    fn by_source_rounds(&self, order: Vec<(CopyClass, MoveId)>) -> Vec<(CopyClass, MoveId)> {
        let mut seen: HashMap<&str, u32> = HashMap::new();
        let mut keyed: Vec<(CopyClass, u32, MoveId)> = order
            .into_iter()
            .map(|(class, id)| {
                let round = match (class, self.pending.get(&id)) {
                    (CopyClass::Balance, Some(e)) => {
                        let n = seen.entry(e.copy.mv.from.as_str()).or_default();
                        *n += 1;
                        *n
                    }
                    (_, Some(e)) => e.copy.rank,
                    (_, None) => 0,
                };
                (class, round, id)
            })
            .collect();
        keyed.sort_unstable();
        keyed
            .into_iter()
            .map(|(class, _, id)| (class, id))
            .collect()
    }

    /// Moves pending copy `id` to running with `slot`.
    fn start(&mut self, id: MoveId, slot: Admitted, now: Duration) -> Option<StartMove> {
        let mut entry = self.pending.remove(&id)?;
        entry.started_at = Some(now);
        entry.wait = None;
        entry.slot = Some(slot);
        let start = StartMove {
            id,
            copy: entry.copy.clone(),
            attempt: entry.retries + 1,
            slot,
        };
        self.running.insert(id, entry);
        Some(start)
    }

    /// A running copy finished: counted as done, its bytes as moved.
    pub fn on_done(&mut self, id: MoveId, now: Duration) -> Result<(), QueueError> {
        let entry = self.take_running(id)?;
        self.totals.bytes_moved += entry.copy.bytes;
        self.finish(id, entry, Outcome::Done, now);
        Ok(())
    }

    /// A running copy failed with `error`: queued again after a backoff, or
    /// dropped with the error kept once its retries are used up.
    pub fn on_failed(
        &mut self,
        id: MoveId,
        error: impl Into<String>,
        now: Duration,
    ) -> Result<AfterFailure, QueueError> {
        self.failed(id, error.into(), true, now)
    }

    /// A running copy failed in a way another attempt would repeat (the
    /// target refused it for good): dropped now, its retries unused.
    pub fn on_failed_for_good(
        &mut self,
        id: MoveId,
        error: impl Into<String>,
        now: Duration,
    ) -> Result<AfterFailure, QueueError> {
        self.failed(id, error.into(), false, now)
    }

    fn failed(
        &mut self,
        id: MoveId,
        error: String,
        retry: bool,
        now: Duration,
    ) -> Result<AfterFailure, QueueError> {
        let mut entry = self.take_running(id)?;
        entry.started_at = None;
        if !retry || entry.retries >= self.config.move_retries {
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

    /// Removes a pending copy (e.g. to plan its chunk afresh).
    pub fn cancel(&mut self, id: MoveId, now: Duration) -> Result<(), QueueError> {
        let entry = self.pending.remove(&id).ok_or(QueueError::UnknownMove {
            id,
            state: "pending",
        })?;
        self.finish(id, entry, Outcome::Cancelled, now);
        Ok(())
    }

    /// Takes a running copy out and gives its slot back.
    fn take_running(&mut self, id: MoveId) -> Result<Entry, QueueError> {
        let mut entry = self.running.remove(&id).ok_or(QueueError::UnknownMove {
            id,
            state: "running",
        })?;
        if let Some(slot) = entry.slot.take() {
            self.slots.release(slot.from, slot.to);
        }
        Ok(entry)
    }

    /// Frees the chunk, counts the outcome and keeps it in the history.
    fn finish(&mut self, id: MoveId, entry: Entry, outcome: Outcome, now: Duration) {
        self.by_chunk.remove(&entry.copy.mv.chunk);
        if let Outcome::Failed { .. } = outcome
            && !entry.copy.class.is_urgent()
        {
            self.failed_at
                .retain(|_, at| now.saturating_sub(*at) < FAILED_CHUNK_COOLDOWN);
            self.failed_at.insert(entry.copy.mv.chunk.clone(), now);
        }
        self.totals.count(&outcome);
        self.history.push_back(FinishedMove {
            id,
            copy: entry.copy,
            outcome,
            retries: entry.retries,
            at: now,
        });
        while self.history.len() > self.config.history_limit {
            self.history.pop_front();
        }
    }
}
