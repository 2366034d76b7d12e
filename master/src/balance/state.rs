//! The move queue as the master keeps it: one [`MoveQueue`] of copies named
//! by ids — the balancer's moves, an operator's moves, repairs and drains —
//! judged directly against the metadata ([`Meta`] answers the admission
//! rule), with no view to build or rebase. A copy the queue starts is
//! marked begun in the metadata under the same lock, so the queue's gate and
//! the master's last check are one decision. Time comes in as `now`, the
//! time since the master started.

use std::time::Duration;

use keel_balancer::queue::{AfterFailure, MoveId, MoveQueue, QueueConfig, QueueStatus};
use keel_balancer::{Admits, CopyClass, CopyJob, QueueError, Refusal};

use crate::meta::{Meta, MoveTicket, QueuedCopies};

/// A queued copy to start now; the metadata already counts it as begun.
#[derive(Debug, Clone, PartialEq)]
pub struct Start {
    /// Report its end with this id.
    pub id: MoveId,
    /// What to copy, from the metadata.
    pub ticket: MoveTicket,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
}

/// What [`QueueState::enqueue`] did with a batch of planned moves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// Moves added.
    pub moves: u32,
    /// Their bytes.
    pub bytes: u64,
    /// Moves left out: their chunk left the source, reached the target, or
    /// already has a move, since the plan was made.
    pub stale: u32,
}

impl std::ops::AddAssign for Enqueued {
    fn add_assign(&mut self, other: Enqueued) {
        self.moves += other.moves;
        self.bytes += other.bytes;
        self.stale += other.stale;
    }
}

/// What the planner must leave alone, by id (indices differ per view).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InFlightNames {
    /// Pending and running moves: the planner counts them as done.
    pub moves: Vec<CopyJob>,
    /// Chunks whose move recently failed for good.
    pub chunks: Vec<String>,
}

/// The move queue and the ids behind it.
#[derive(Debug)]
pub struct QueueState {
    queue: MoveQueue,
    /// This master stepped down and has not led since: nothing is queued
    /// for operators and failed copies are not retried.
    standing_by: bool,
    /// Counts step-downs and new terms: work planned under one generation
    /// is queued only while it lasts.
    generation: u64,
}

impl QueueState {
    /// An empty queue with these limits.
    pub fn new(config: QueueConfig) -> Self {
        QueueState {
            queue: MoveQueue::new(config),
            standing_by: false,
            generation: 0,
        }
    }

    /// Whether this master stepped down and has not led since.
    pub fn standing_by(&self) -> bool {
        self.standing_by
    }

    /// Records a step-down (`true`) or a new term (`false`); either starts
    /// a new generation.
    pub fn set_standing_by(&mut self, standing_by: bool) {
        self.standing_by = standing_by;
        self.generation += 1;
    }

    /// The generation now: see [`QueueState::admits_work_of`].
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether work planned in `generation` may be queued: this master
    /// leads, and has not stepped down (and perhaps won again) since the
    /// work was planned. A pass planned under one term queues nothing
    /// under the next.
    pub fn admits_work_of(&self, generation: u64) -> bool {
        !self.standing_by && self.generation == generation
    }

    /// Cancels every pending copy (running ones stay until they end);
    /// returns how many were cancelled.
    pub fn clear_pending(&mut self, now: Duration) -> usize {
        let ids: Vec<MoveId> = self.queue.pending().map(|(id, _)| id).collect();
        for &id in &ids {
            let _ = self.queue.cancel(id, now);
        }
        ids.len()
    }

    /// The repair and drain copies queued or running, as the maintenance
    /// pass plans around them (`Meta::plan_repairs`).
    pub fn urgent_copies(&self) -> QueuedCopies {
        let mut out = QueuedCopies::default();
        let pending = self.queue.pending().map(|(_, c)| (c, true));
        let running = self.queue.running().map(|(_, c)| (c, false));
        for (c, pending) in pending.chain(running).filter(|(c, _)| c.class.is_urgent()) {
            out.chunks.insert(c.mv.chunk.clone());
            match c.class {
                CopyClass::Drain => out.drains += 1,
                _ => out.repairs += 1,
            }
            *out.outgoing.entry(c.mv.from.clone()).or_default() += 1;
            // A running copy's bytes are already committed in the metadata.
            if pending {
                *out.incoming.entry(c.mv.to.clone()).or_default() += c.bytes;
            }
        }
        out
    }

    /// The queue itself, read-only.
    pub fn queue(&self) -> &MoveQueue {
        &self.queue
    }

    /// Stops starting moves.
    pub fn pause(&mut self) {
        self.queue.pause();
    }

    /// Starts moves again from the next tick.
    pub fn resume(&mut self) {
        self.queue.resume();
    }

    /// Moves pending or running.
    pub fn len(&self) -> usize {
        self.queue.pending_len() + self.queue.running_len()
    }

    /// Whether nothing is pending or running.
    pub fn is_empty(&self) -> bool {
        self.queue.is_idle()
    }

    /// Counts and per-move details.
    pub fn status(&self, now: Duration) -> QueueStatus {
        self.queue.status(now)
    }

    /// One pass of the queue: the copies to start now, each marked begun
    /// in `meta` (busy, its bytes counted against the target) before the
    /// lock is let go. The others keep why they wait; copies that can no
    /// longer run as named are dropped for their planner to plan afresh.
    pub fn start_ready(&mut self, meta: &mut Meta, now: Duration) -> Vec<Start> {
        if self.queue.pending_len() == 0 {
            return Vec::new();
        }
        let starts = self.queue.next_ready(now, &*meta);
        let mut out = Vec::with_capacity(starts.len());
        for s in starts {
            let c = &s.copy;
            match meta.begin_move(c.chunk(), c.from(), c.to(), c.class) {
                Ok(ticket) => out.push(Start {
                    id: s.id,
                    ticket,
                    attempt: s.attempt,
                }),
                // The same rule under the same lock passed a moment ago, but
                // copies started in this pass now count: report it honestly.
                Err(r) => {
                    let _ = self.queue.on_failed(s.id, r.to_string(), now);
                }
            }
        }
        out
    }

    /// Queues planned balance moves that can still run, in order.
    pub fn enqueue(&mut self, meta: &Meta, moves: &[CopyJob], now: Duration) -> Enqueued {
        self.enqueue_each(meta, moves, now, |_| {})
    }

    /// [`QueueState::enqueue`], calling `queued` with the index in `moves`
    /// of each move actually queued (not those left out as stale).
    pub fn enqueue_each(
        &mut self,
        meta: &Meta,
        moves: &[CopyJob],
        now: Duration,
        mut queued: impl FnMut(usize),
    ) -> Enqueued {
        let mut out = Enqueued::default();
        let min_free = self.queue.config().min_free_pct;
        for (i, m) in moves.iter().enumerate() {
            let copy = CopyJob {
                class: CopyClass::Balance,
                ..m.clone()
            };
            // Left out when it could never run as named (its chunk moved
            // meanwhile); waiting for room or for the chunk is fine.
            let runnable = match Admits::check(meta, &copy, 0, min_free) {
                Ok(_) => true,
                Err(r) => matches!(r, Refusal::Busy | Refusal::BelowFloor),
            };
            match runnable.then(|| self.queue.enqueue(copy, now)) {
                Some(Ok(_)) => {
                    out.moves += 1;
                    out.bytes += m.bytes;
                    queued(i);
                }
                _ => out.stale += 1,
            }
        }
        out
    }

    /// Queues a repair, drain or operator copy ahead of a pending copy of
    /// the same chunk that is less urgent.
    pub fn enqueue_urgent(&mut self, copy: CopyJob, now: Duration) -> Result<MoveId, QueueError> {
        self.queue.enqueue_over(copy, now)
    }

    /// A started copy ended. `Err` carries the error; the answer says
    /// whether the queue retries it or dropped it.
    pub fn finish(
        &mut self,
        id: MoveId,
        result: Result<(), String>,
        now: Duration,
    ) -> Result<Option<AfterFailure>, QueueError> {
        match result {
            Ok(()) => self.queue.on_done(id, now).map(|()| None),
            Err(e) => self.queue.on_failed(id, e, now).map(Some),
        }
    }

    /// A started copy failed in a way another attempt would repeat: dropped.
    pub fn give_up(
        &mut self,
        id: MoveId,
        error: String,
        now: Duration,
    ) -> Result<Option<AfterFailure>, QueueError> {
        self.queue.on_failed_for_good(id, error, now).map(Some)
    }

    /// What the planner must leave alone now, by id: moves are projected
    /// as done; repairs and drains, and chunks cooling down after a failed
    /// move, only hold their chunk.
    pub fn in_flight(&self, now: Duration) -> InFlightNames {
        let mut out = InFlightNames::default();
        for (_, c) in self.queue.copies() {
            if c.class.deletes_source() {
                out.moves.push(c.clone());
            } else {
                out.chunks.push(c.mv.chunk.clone());
            }
        }
        out.chunks
            .extend(self.queue.cooling(now).map(str::to_owned));
        out
    }

    /// Servers a copy is queued or running into or out of, whatever its
    /// class.
    pub fn copying(&self) -> std::collections::BTreeSet<String> {
        self.queue
            .copies()
            .flat_map(|(_, c)| [c.mv.from.clone(), c.mv.to.clone()])
            .collect()
    }

    /// Whether copy `id` is still pending or running.
    pub fn holds(&self, id: MoveId) -> bool {
        self.queue.copies().any(|(i, _)| i == id)
    }

    /// Bytes of the moves pending or running.
    pub fn bytes_remaining(status: &QueueStatus) -> u64 {
        status.moves.iter().map(|m| m.copy.bytes).sum()
    }
}
