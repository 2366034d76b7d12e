//! One maintenance pass's plan, decided under the metadata lock: what to
//! trim, verify, delete as damaged and copy. The master's maintenance loop
//! and the protocol simulation both plan through [`Meta::plan_upkeep`], so
//! the simulation checks the pass the master runs, not a copy of it.

use std::time::Instant;

use super::{
    Deletion, FULL_SCAN_EVERY, Meta, QueuedCopies, Redundancy, Repair, ServerAddr, Verify,
};

/// What one maintenance pass starts, in a fixed order (hash order inside
/// the metadata never reaches the steps).
#[derive(Debug)]
pub struct UpkeepPlan {
    /// Excess replicas to delete, by chunk id.
    pub trims: Vec<Deletion>,
    /// Replicas reported corrupt, to verify, by chunk and server.
    pub verifies: Vec<Verify>,
    /// Damaged or mismatched copies to delete, by chunk and server.
    pub damaged: Vec<(String, ServerAddr)>,
    /// Repair and drain copies to queue, most urgent first.
    pub copies: Vec<Repair>,
    /// The redundancy counts after planning.
    pub counts: Redundancy,
}

/// Limits and state one pass plans with.
#[derive(Debug)]
pub struct UpkeepLimits {
    /// Most chunks trimmed per pass.
    pub trims: usize,
    /// Most repair (and drain) copies in the queue at once.
    pub repairs: usize,
}

impl Meta {
    /// Plans one maintenance pass at `now`: a full redundancy scan when
    /// `last_scan` is `FULL_SCAN_EVERY` old (or never ran), trims only when
    /// `settled` (the leader has heard from every live server since it won)
    /// says so for the live servers, repairs around the copies `queued`.
    pub fn plan_upkeep(
        &mut self,
        now: Instant,
        last_scan: &mut Option<Instant>,
        settled: impl FnOnce(Vec<&str>) -> bool,
        queued: &QueuedCopies,
        limits: &UpkeepLimits,
    ) -> UpkeepPlan {
        if last_scan.is_none_or(|t| now.duration_since(t) >= FULL_SCAN_EVERY) {
            self.scan_redundancy();
            *last_scan = Some(now);
        }
        let mut trims = if settled(self.live_server_ids().collect()) {
            self.plan_trims(limits.trims)
        } else {
            Vec::new()
        };
        trims.sort_by(|a, b| a.chunk.cmp(&b.chunk));
        let repairs = self.plan_repairs(now, limits.repairs, queued);
        let mut verifies = self.verifications_due();
        verifies.sort_by(|a, b| (&a.chunk, a.server.no).cmp(&(&b.chunk, b.server.no)));
        let mut damaged = repairs.damaged;
        damaged.sort_by(|a, b| (&a.0, a.1.no).cmp(&(&b.0, b.1.no)));
        UpkeepPlan {
            trims,
            verifies,
            damaged,
            copies: repairs.copies,
            counts: self.redundancy(),
        }
    }
}
