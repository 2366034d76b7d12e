//! One queued move's state, and the gates a pending move must pass to start.

use std::collections::BTreeMap;
use std::time::Duration;

use super::status::{MoveNames, MoveState, MoveStatus, WaitReason};
use super::{MoveId, QueueConfig};
use crate::model::{ClusterView, ServerIdx};
use crate::placement::{check_move, fits_floor};
use crate::plan::PlannedMove;

/// A pending or running move.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// What to move.
    pub mv: PlannedMove,
    /// The ids behind `mv`'s indices.
    pub names: MoveNames,
    /// When it was queued.
    pub enqueued_at: Duration,
    /// When the current attempt started, while running.
    pub started_at: Option<Duration>,
    /// Failed attempts so far.
    pub retries: u32,
    /// The last failure, kept for operators.
    pub last_error: Option<String>,
    /// No attempt before this time (backoff).
    pub not_before: Duration,
    /// Why it did not start at the last pass.
    pub wait: Option<WaitReason>,
    /// Started by the caller, not by the queue: never retried here.
    pub external: bool,
}

impl Entry {
    pub fn new(mv: PlannedMove, names: MoveNames, now: Duration, external: bool) -> Self {
        Self {
            mv,
            names,
            enqueued_at: now,
            started_at: None,
            retries: 0,
            last_error: None,
            not_before: now,
            wait: None,
            external,
        }
    }

    /// What operators see of this move at `now`.
    pub fn status(&self, id: MoveId, state: MoveState, now: Duration, paused: bool) -> MoveStatus {
        let waiting = match state {
            MoveState::Running => None,
            MoveState::Pending if paused => Some(WaitReason::Paused),
            MoveState::Pending if now < self.not_before => Some(WaitReason::Retrying(
                self.last_error.clone().unwrap_or_default(),
            )),
            MoveState::Pending => self.wait.clone(),
        };
        MoveStatus {
            id,
            mv: self.mv,
            names: self.names.clone(),
            state,
            retries: self.retries,
            last_error: self.last_error.clone(),
            waiting: waiting.map(|w| w.to_string()),
            age: now.saturating_sub(self.enqueued_at),
            running_for: self.started_at.map(|t| now.saturating_sub(t)),
            external: self.external,
        }
    }
}

/// The slots and incoming bytes of one pass, updated as moves start.
pub(super) struct Gates<'a> {
    config: &'a QueueConfig,
    view: &'a ClusterView,
    /// Moves running cluster-wide.
    running: usize,
    /// Moves running per server, as source or target.
    per_server: BTreeMap<ServerIdx, usize>,
    /// Bytes of running moves not yet recorded on their target.
    incoming: BTreeMap<ServerIdx, u64>,
}

impl<'a> Gates<'a> {
    pub fn new(
        config: &'a QueueConfig,
        view: &'a ClusterView,
        running: impl Iterator<Item = &'a Entry>,
    ) -> Self {
        let mut gates = Self {
            config,
            view,
            running: 0,
            per_server: BTreeMap::new(),
            incoming: BTreeMap::new(),
        };
        for entry in running {
            let landed = view
                .get_chunk(entry.mv.chunk)
                .is_some_and(|c| c.is_on(entry.mv.to));
            gates.take_slot(&entry.mv, !landed);
        }
        gates
    }

    fn take_slot(&mut self, mv: &PlannedMove, incoming: bool) {
        self.running += 1;
        *self.per_server.entry(mv.from).or_default() += 1;
        *self.per_server.entry(mv.to).or_default() += 1;
        if incoming {
            *self.incoming.entry(mv.to).or_default() += mv.bytes;
        }
    }

    /// `Ok(true)`: start it (its slot is taken). `Ok(false)`: obsolete, the
    /// chunk is no longer on its source, or the indices name other things
    /// now. `Err`: why it waits.
    pub fn admit(&mut self, entry: &Entry, now: Duration) -> Result<bool, WaitReason> {
        let mv = &entry.mv;
        let on_source =
            entry.names.still_match(self.view, mv) && self.view.chunk(mv.chunk).is_on(mv.from);
        if !on_source {
            return Ok(false);
        }
        if now < entry.not_before {
            return Err(WaitReason::Retrying(
                entry.last_error.clone().unwrap_or_default(),
            ));
        }
        check_move(self.view, mv.chunk, mv.from, mv.to)
            .map_err(|_| WaitReason::NoValidPlacement)?;
        let target = self.view.server(mv.to);
        let incoming = self.incoming.get(&mv.to).copied().unwrap_or(0);
        if !fits_floor(
            target,
            target.used.saturating_add(incoming),
            mv.bytes,
            self.config.min_free_pct,
        ) {
            return Err(WaitReason::TargetAtFloor);
        }
        let busy =
            |s| self.per_server.get(&s).copied().unwrap_or(0) >= self.config.max_moves_per_server;
        if self.running >= self.config.max_concurrent_moves || busy(mv.from) || busy(mv.to) {
            return Err(WaitReason::NoSlot);
        }
        self.take_slot(mv, true);
        Ok(true)
    }
}
