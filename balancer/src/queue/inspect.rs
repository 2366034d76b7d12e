//! Read-only views of the queue for operators and the planner, and pausing.

use std::time::Duration;

use super::status::{FinishedMove, MoveNames, MoveState, QueueStatus, Totals};
use super::{FAILED_CHUNK_COOLDOWN, MoveId, MoveQueue};
use crate::plan::{InFlight, PlannedMove};

impl MoveQueue {
    /// Stops starting moves; running ones carry on.
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

    /// Running moves, oldest first.
    pub fn running(&self) -> impl Iterator<Item = (MoveId, &PlannedMove)> + '_ {
        self.running.iter().map(|(&id, e)| (id, &e.mv))
    }

    /// Pending moves with their ids, without building a status record for
    /// each (the mover consults the queue after every move).
    pub fn pending(&self) -> impl Iterator<Item = (MoveId, &PlannedMove, &MoveNames)> + '_ {
        self.pending.iter().map(|(&id, e)| (id, &e.mv, &e.names))
    }

    /// Chunk ids of every pending and running move.
    pub fn chunk_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.pending
            .values()
            .chain(self.running.values())
            .map(|e| e.names.chunk.as_str())
    }

    /// How long the oldest pending move has waited at `now`.
    pub fn oldest_pending_age(&self, now: Duration) -> Option<Duration> {
        self.pending
            .values()
            .map(|e| now.saturating_sub(e.enqueued_at))
            .max()
    }

    /// Every pending and running move, for the planner to leave alone.
    pub fn in_flight(&self) -> InFlight {
        let mut set = InFlight::new();
        self.pending
            .values()
            .chain(self.running.values())
            .for_each(|e| set.add_move(e.mv));
        set
    }

    /// What the planner must leave alone at `now`: every pending and
    /// running move (counted as done), and chunks whose move was dropped as
    /// failed less than [`FAILED_CHUNK_COOLDOWN`] ago.
    pub fn busy(&self, now: Duration) -> InFlight {
        let mut set = self.in_flight();
        self.failed_at
            .values()
            .filter(|(_, at)| now.saturating_sub(*at) < FAILED_CHUNK_COOLDOWN)
            .for_each(|&(chunk, _)| set.add_chunk(chunk));
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
