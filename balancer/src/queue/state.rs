//! One queued copy's state, and the gates a pending copy must pass to start.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use super::status::{MoveState, MoveStatus, WaitReason};
use crate::admission::{Admits, Admitted, Refusal};
use crate::ids::MoveId;
use crate::ids::{CopyClass, CopyJob};
use crate::slots::SlotTable;

/// A pending or running copy.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// What to copy.
    pub copy: CopyJob,
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
    /// The slot it holds while running.
    pub slot: Option<Admitted>,
}

impl Entry {
    pub fn new(copy: CopyJob, now: Duration) -> Self {
        Self {
            copy,
            enqueued_at: now,
            started_at: None,
            retries: 0,
            last_error: None,
            not_before: now,
            wait: None,
            slot: None,
        }
    }

    /// What operators see of this copy at `now`.
    pub fn status(&self, id: MoveId, state: MoveState, now: Duration, paused: bool) -> MoveStatus {
        let waiting = match state {
            MoveState::Running => None,
            MoveState::Pending if paused && self.copy.class == CopyClass::Balance => {
                Some(WaitReason::Paused)
            }
            MoveState::Pending if now < self.not_before => Some(WaitReason::Retrying(
                self.last_error.clone().unwrap_or_default(),
            )),
            MoveState::Pending => self.wait.clone(),
        };
        MoveStatus {
            id,
            copy: self.copy.clone(),
            state,
            retries: self.retries,
            last_error: self.last_error.clone(),
            waiting,
            age: now.saturating_sub(self.enqueued_at),
            running_for: self.started_at.map(|t| now.saturating_sub(t)),
        }
    }
}

/// What one pass has handed out so far: bytes promised to targets and the
/// servers reserved by urgent copies waiting for a slot.
pub(super) struct Gates<'a, A> {
    min_free_pct: f64,
    cluster: &'a A,
    slots: &'a mut SlotTable,
    /// Bytes of the copies started in this pass, by target id: the cluster
    /// state does not count them yet.
    incoming: HashMap<String, u64>,
    /// Servers an urgent copy waits on for a slot.
    reserved: BTreeSet<u32>,
}

impl<'a, A: Admits> Gates<'a, A> {
    pub fn new(min_free_pct: f64, cluster: &'a A, slots: &'a mut SlotTable) -> Self {
        Gates {
            min_free_pct,
            cluster,
            slots,
            incoming: HashMap::new(),
            reserved: BTreeSet::new(),
        }
    }

    /// `Ok(Some(slot))`: start it (the slot is taken). `Ok(None)`: it can
    /// never run as named. `Err`: why it waits.
    pub fn admit(&mut self, entry: &Entry, now: Duration) -> Result<Option<Admitted>, WaitReason> {
        let copy = &entry.copy;
        let urgent = copy.class.is_urgent();
        let extra = self.incoming.get(&copy.mv.to).copied().unwrap_or(0);
        let slot = match self.cluster.check(copy, extra, self.min_free_pct) {
            Ok(slot) => slot,
            Err(Refusal::Busy) => return Err(WaitReason::ChunkBusy),
            // A repair or drain target chosen earlier filled up: its planner
            // picks another one.
            Err(Refusal::BelowFloor) if !urgent => return Err(WaitReason::TargetAtFloor),
            Err(_) => return Ok(None),
        };
        if now < entry.not_before {
            return Err(WaitReason::Retrying(
                entry.last_error.clone().unwrap_or_default(),
            ));
        }
        let reserved =
            !urgent && (self.reserved.contains(&slot.from) || self.reserved.contains(&slot.to));
        if reserved || !self.slots.take(slot.from, slot.to) {
            if urgent {
                self.reserved.extend([slot.from, slot.to]);
            }
            return Err(WaitReason::NoSlot);
        }
        *self.incoming.entry(copy.mv.to.clone()).or_default() += copy.bytes;
        Ok(Some(slot))
    }
}
