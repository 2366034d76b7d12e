//! What the front door needs to bound a client's cost: how many servers and
//! pending allocations exist, and liveness for a page of a paged report.

use std::time::Instant;

use super::{Heartbeat, HeartbeatOutcome, Meta};

impl Meta {
    /// Distinct server ids known (servers are never forgotten).
    pub fn server_count(&self) -> usize {
        self.servers.len()
    }

    /// Allocations waiting for their chunk to show in a heartbeat.
    pub fn pending_allocations(&self) -> usize {
        self.pending.len()
    }

    /// Whether `chunk` has an allocation waiting (a new one replaces it).
    pub fn is_pending(&self, chunk: &str) -> bool {
        self.pending.contains_key(chunk)
    }

    /// A page of a paged full report that is not its last: records the
    /// server as alive (address, capacity, time) and leaves its chunk set
    /// alone until the whole report is in.
    pub fn apply_report_page(&mut self, hb: &Heartbeat, now: Instant) -> HeartbeatOutcome {
        let held = self
            .server_by_id(&hb.id)
            .map_or(0, super::ServerEntry::held);
        let liveness = Heartbeat {
            full_report: false,
            chunks: Vec::new(),
            removed: Vec::new(),
            chunk_count: held,
            ..hb.clone()
        };
        let mut out = self.apply_heartbeat(liveness, now);
        // Whether a full report is wanted is decided by the whole report.
        out.send_full_report = false;
        out
    }
}
