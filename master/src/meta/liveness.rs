//! Liveness: servers silent for longer than the heartbeat timeout are
//! marked dead, and their chunks become repair candidates.

use std::time::Instant;

use super::{Meta, ServerNo};

/// Servers whose liveness changed in a sweep.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Liveness {
    /// Ids marked dead by this sweep.
    pub died: Vec<String>,
}

impl Meta {
    /// Marks servers silent for longer than the heartbeat timeout as dead;
    /// their chunks are checked by the next repair pass (for the counts:
    /// copies wait for `--re-replicate-after`).
    pub fn sweep_liveness(&mut self, now: Instant) -> Liveness {
        let timeout = self.settings.heartbeat_timeout;
        let mut out = Liveness::default();
        let mut died = Vec::new();
        for (no, s) in self.servers.iter_mut().enumerate().filter(|(_, s)| s.alive) {
            let silent = now.saturating_duration_since(s.last_heartbeat);
            if silent > timeout {
                s.alive = false;
                s.dead_since = Some(now);
                tracing::warn!(server = %s.id, silent_ms = silent.as_millis() as u64, "server marked dead");
                out.died.push(s.id.to_string());
                died.push(no as ServerNo);
            }
        }
        for no in died {
            self.forget_reads(no);
            self.queue_chunks_of(no);
        }
        out
    }
}
