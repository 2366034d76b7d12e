//! Paged full reports, applied page by page so the metadata lock is held for
//! one page at a time, never for a whole multi-million-chunk report.
//!
//! Pages only add: each records the replicas it lists (exactly as a full
//! report would). Only when the last page has arrived, after all the others,
//! are the server's replicas that the report did not list forgotten. A report
//! that breaks off (a page lost) therefore never makes the master forget a
//! replica; at worst it learned some true ones early.

use std::collections::HashSet;
use std::time::Instant;

use super::server::Stamp;
use super::{Excluded, Heartbeat, Meta, Upsert};

/// What a paged report being applied needs to know about its server.
#[derive(Debug, Clone, Copy, Default)]
pub struct PagedStart {
    /// Whether the server held anything (whole or not) when the report
    /// began; if not, nothing can be stale at its end.
    pub had_replicas: bool,
    /// When the server built the report (every page carries the same).
    pub stamp: Option<Stamp>,
}

impl Meta {
    /// The first page of a paged report: the server is alive; exclusions
    /// other than corruption are forgotten (the report re-establishes them).
    pub fn begin_paged_report(&mut self, hb: &Heartbeat, now: Instant) -> PagedStart {
        self.apply_report_page(hb, now);
        let Some(no) = self.server_no(&hb.id) else {
            return PagedStart::default();
        };
        let s = &mut self.servers[no as usize];
        let had_replicas = s.replicas > 0 || !s.excluded.is_empty();
        s.excluded.retain(|_, e| *e == Excluded::Corrupt);
        PagedStart {
            had_replicas,
            stamp: hb.stamp,
        }
    }

    /// Records the replicas of one page (each listed once per report),
    /// except those deleted since the report was built.
    pub fn add_report_page(&mut self, hb: &Heartbeat, now: Instant) {
        if let Some(no) = self.server_no(&hb.id) {
            // A replica being deleted counts for nothing (see `heartbeat`).
            let deleting: std::collections::HashSet<&str> =
                hb.deleting.iter().map(String::as_str).collect();
            for r in hb
                .chunks
                .iter()
                .filter(|r| !deleting.contains(r.chunk.as_str()))
            {
                if !self.outdated(no, &r.chunk, true, hb.stamp) {
                    let _: Upsert = self.add_replica(no, r);
                }
            }
        }
        self.apply_report_page(hb, now);
    }

    /// The last page has been recorded: forgets the server's replicas the
    /// report did not list, and takes the server's chunk set as known.
    pub fn finish_paged_report(
        &mut self,
        server: &str,
        start: PagedStart,
        reported: &HashSet<Box<str>>,
        chunk_count: u64,
    ) {
        let Some(no) = self.server_no(server) else {
            return;
        };
        let mut forgotten = 0usize;
        if start.had_replicas {
            forgotten = self
                .forget_unreported(no, |id| reported.contains(id), start.stamp)
                .0;
            let s = &mut self.servers[no as usize];
            s.excluded.retain(|id, _| reported.contains(id));
        }
        let s = &mut self.servers[no as usize];
        s.synced = true;
        let held = s.held();
        if held != chunk_count {
            tracing::warn!(
                server,
                held,
                chunk_count,
                "paged report disagrees with its own chunk count"
            );
        }
        if forgotten > 0 {
            tracing::warn!(
                server,
                forgotten,
                "full report lacks replicas the master had recorded; they count as lost and are re-created elsewhere"
            );
        }
    }
}
