//! Read-only views of the queue for operators and the planner, and pausing.

use std::time::Duration;

use super::status::{FinishedMove, MoveState, QueueStatus, Totals};
use super::{FAILED_CHUNK_COOLDOWN, MoveQueue};
use crate::admission::ViewAdmits;
use crate::ids::CopyJob;
use crate::ids::MoveId;
use crate::model::ClusterView;
use crate::plan::InFlight;

impl MoveQueue {
    /// Stops starting balance moves; running ones carry on, and repairs,
    /// drains and operator moves still start.
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// Starts moves again from the next pass.
    pub fn resume(&mut self) {
        self.paused = false;
    }

    /// Whether starting moves is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Whether nothing is pending or running.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.running.is_empty()
    }

    /// Number of moves waiting to start.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Number of moves running.
    pub fn running_len(&self) -> usize {
        self.running.len()
    }

    /// The earliest time after `now` at which a move backing off may start
    /// again, if any waits so.
    pub fn next_retry_at(&self, now: Duration) -> Option<Duration> {
        self.pending
            .values()
            .map(|e| e.not_before)
            .filter(|&t| t > now)
            .min()
    }

    /// Running copies, oldest first.
    pub fn running(&self) -> impl Iterator<Item = (MoveId, &CopyJob)> + '_ {
        self.running.iter().map(|(&id, e)| (id, &e.copy))
    }

    /// Pending copies with their ids, oldest first, without building a
    /// status record for each.
    pub fn pending(&self) -> impl Iterator<Item = (MoveId, &CopyJob)> + '_ {
        self.pending.iter().map(|(&id, e)| (id, &e.copy))
    }

    /// Every pending and running copy.
    pub fn copies(&self) -> impl Iterator<Item = (MoveId, &CopyJob)> + '_ {
        self.pending().chain(self.running())
    }

    /// Chunk ids of every pending and running copy.
    pub fn chunk_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.copies().map(|(_, c)| c.chunk())
    }

    /// The copy queued or running for `chunk`, if any.
    pub fn of_chunk(&self, chunk: &str) -> Option<(MoveId, &CopyJob)> {
        let id = *self.by_chunk.get(chunk)?;
        let e = self.pending.get(&id).or_else(|| self.running.get(&id))?;
        Some((id, &e.copy))
    }

    /// Chunks whose balance or operator move was dropped as failed less
    /// than [`FAILED_CHUNK_COOLDOWN`] ago: the planner leaves them alone.
    pub fn cooling(&self, now: Duration) -> impl Iterator<Item = &str> + '_ {
        self.failed_at
            .iter()
            .filter(move |(_, at)| now.saturating_sub(**at) < FAILED_CHUNK_COOLDOWN)
            .map(|(c, _)| c.as_str())
    }

    /// How long the oldest pending move has waited at `now`.
    pub fn oldest_pending_age(&self, now: Duration) -> Option<Duration> {
        self.pending
            .values()
            .map(|e| now.saturating_sub(e.enqueued_at))
            .max()
    }

    /// What the planner must leave alone at `now`, in `view`'s indices:
    /// every pending and running copy (a move is projected as done; a copy
    /// that keeps its source only holds its chunk), and chunks whose move
    /// was dropped as failed less than [`FAILED_CHUNK_COOLDOWN`] ago. Ids
    /// `view` lacks are skipped.
    pub fn busy(&self, now: Duration, view: &ClusterView) -> InFlight {
        let ids = ViewAdmits::new(view);
        let mut set = InFlight::new();
        for (_, copy) in self.copies() {
            match ids.planned(copy) {
                Some(mv) if copy.class.deletes_source() => set.add_move(mv),
                Some(mv) => set.add_chunk(mv.chunk),
                None => {}
            }
        }
        for chunk in self.cooling(now).filter_map(|c| ids.chunk(c)) {
            set.add_chunk(chunk);
        }
        set
    }

    /// Lifetime counts.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Recently finished moves, oldest first.
    pub fn history(&self) -> impl DoubleEndedIterator<Item = &FinishedMove> + '_ {
        self.history.iter()
    }

    /// Counts, ages and per-move details at time `now`.
    pub fn status(&self, now: Duration) -> QueueStatus {
        let pending = self
            .pending
            .iter()
            .map(|(&id, e)| e.status(id, MoveState::Pending, now, self.paused));
        let running = self
            .running
            .iter()
            .map(|(&id, e)| e.status(id, MoveState::Running, now, self.paused));
        QueueStatus {
            paused: self.paused,
            pending: self.pending.len(),
            running: self.running.len(),
            done: self.totals.done,
            failed: self.totals.failed,
            bytes_moved: self.totals.bytes_moved,
            oldest_pending_age: self.oldest_pending_age(now),
            moves: pending.chain(running).collect(),
        }
    }
}
