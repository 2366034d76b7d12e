//! Paged full reports: a chunk server with millions of chunks sends its full
//! report as pages (`report_id`, `page` 0, 1, …, `last_page`), and the master
//! applies them as one report.
//!
//! Pages are kept here, outside the metadata, until the last one arrives;
//! only then does the server's chunk set get replaced, in one step. Until
//! then every page counts as a heartbeat for liveness only. A page that does
//! not follow the one before (a page lost, a restart mid-report) drops what
//! was kept and asks the server for a full report again: a partial report
//! never makes the master forget a replica. Kept pages are bounded in count
//! per report ([`MAX_REPORT_REPLICAS`]), in age ([`PARTIAL_TTL`]) and by the
//! number of servers the master accepts.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use keel_proto::v1 as pb;
use tracing::{info, warn};

use crate::meta::{Heartbeat, ReplicaReport};

/// Largest paged report kept (replicas over all its pages): far above any
/// real server, low enough that a hostile sender cannot exhaust memory.
pub const MAX_REPORT_REPLICAS: usize = 50_000_000;

/// A partial report whose next page has not come for this long is dropped
/// (the server died or restarted mid-report; it starts a new one anyway).
pub const PARTIAL_TTL: Duration = Duration::from_secs(120);

/// Where a heartbeat stands in a paged report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Page {
    /// 0 for a one-message report (or a delta).
    pub report_id: u64,
    /// Page number, from 0.
    pub page: u32,
    /// Whether this is the report's last page.
    pub last: bool,
}

impl Page {
    /// The paging fields of a heartbeat request.
    pub fn of(req: &pb::HeartbeatRequest) -> Self {
        Page {
            report_id: req.report_id,
            page: req.page,
            last: req.last_page,
        }
    }
}

/// What to do with a heartbeat after paging.
#[derive(Debug)]
pub enum Step {
    /// Apply it: a delta, a one-message report, or a whole paged report.
    Apply(Heartbeat),
    /// A page was kept; record liveness only.
    Kept(Heartbeat),
    /// The page broke its report, which was dropped; record liveness and
    /// ask for a full report again.
    Broken(Heartbeat),
}

/// One report being received.
#[derive(Debug)]
struct Partial {
    /// Its id.
    report_id: u64,
    /// The page expected next.
    next_page: u32,
    /// Replicas of the pages so far.
    chunks: Vec<ReplicaReport>,
    /// When the last page came.
    updated: Instant,
    /// Entries of the pages so far refused one by one.
    refused: u64,
}

/// Paged reports being received, by server id.
#[derive(Debug, Default)]
pub struct Reports {
    /// Reports being received.
    partial: Mutex<HashMap<Box<str>, Partial>>,
    /// Entries the last full report of each server listed but the master
    /// refused: the server still counts them in every delta's
    /// `chunk_count`, so they are taken off it to keep deltas adding up.
    refused_held: Mutex<HashMap<Box<str>, u64>>,
}

impl Reports {
    /// Takes one (validated) heartbeat with its paging fields and the
    /// number of its held entries refused one by one.
    pub fn accept(&self, hb: Heartbeat, page: Page, refused: u64, now: Instant) -> Step {
        match self.assemble(hb, page, refused, now) {
            Step::Apply(mut hb) if !hb.full_report => {
                let earlier = self.held().get(hb.id.as_str()).copied().unwrap_or(0);
                hb.chunk_count = hb.chunk_count.saturating_sub(earlier);
                Step::Apply(hb)
            }
            other => other,
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, u64>> {
        self.refused_held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records how many entries of a server's full report were refused.
    fn remember_refused(&self, server: &str, refused: u64) {
        if refused == 0 {
            self.held().remove(server);
        } else {
            self.held().insert(server.into(), refused);
        }
    }

    fn assemble(&self, mut hb: Heartbeat, page: Page, refused: u64, now: Instant) -> Step {
        let mut partial = self.partial.lock().unwrap_or_else(PoisonError::into_inner);
        partial.retain(|_, p| now.saturating_duration_since(p.updated) < PARTIAL_TTL);
        if !hb.full_report || page.report_id == 0 {
            if hb.full_report {
                partial.remove(hb.id.as_str());
                self.remember_refused(&hb.id, refused);
            }
            return Step::Apply(hb);
        }
        let follows = |p: &Partial| p.report_id == page.report_id && p.next_page == page.page;
        if page.page == 0 {
            partial.insert(
                hb.id.as_str().into(),
                Partial {
                    report_id: page.report_id,
                    next_page: 0,
                    chunks: Vec::new(),
                    updated: now,
                    refused: 0,
                },
            );
        } else if !partial.get(hb.id.as_str()).is_some_and(follows) {
            let expected = partial
                .remove(hb.id.as_str())
                .map(|p| (p.report_id, p.next_page));
            warn!(server = %hb.id, report = page.report_id, page = page.page, ?expected, "report page out of order; dropping the partial report and asking for a full report");
            hb.chunks = Vec::new();
            return Step::Broken(hb);
        }
        let Some(p) = partial.get_mut(hb.id.as_str()) else {
            return Step::Broken(hb);
        };
        if p.chunks.len() + hb.chunks.len() > MAX_REPORT_REPLICAS {
            partial.remove(hb.id.as_str());
            warn!(server = %hb.id, max = MAX_REPORT_REPLICAS, "paged report too large; dropped");
            hb.chunks = Vec::new();
            return Step::Broken(hb);
        }
        p.chunks.append(&mut hb.chunks);
        p.next_page += 1;
        p.updated = now;
        p.refused += refused;
        if !page.last {
            return Step::Kept(hb);
        }
        let Some(p) = partial.remove(hb.id.as_str()) else {
            return Step::Broken(hb);
        };
        drop(partial);
        let pages = p.next_page;
        // This page's own refusals are already off its `chunk_count`.
        hb.chunk_count = hb.chunk_count.saturating_sub(p.refused - refused);
        self.remember_refused(&hb.id, p.refused);
        hb.chunks = without_repeats(&hb.id, p.chunks);
        info!(server = %hb.id, pages, chunks = hb.chunks.len(), "paged full report complete");
        Step::Apply(hb)
    }
}

/// Drops every repeat of a chunk listed on an earlier page (each logged):
/// a full report must list each chunk once for its replacement to be exact.
fn without_repeats(server: &str, mut chunks: Vec<ReplicaReport>) -> Vec<ReplicaReport> {
    let mut seen: HashSet<&str> = HashSet::with_capacity(chunks.len());
    let keep: Vec<bool> = chunks
        .iter()
        .map(|c| seen.insert(c.chunk.as_str()))
        .collect();
    drop(seen);
    if keep.iter().all(|&k| k) {
        return chunks;
    }
    let mut i = 0;
    chunks.retain(|c| {
        let k = keep[i];
        i += 1;
        if !k {
            warn!(server, chunk = %c.chunk, "chunk listed on two pages of one report; the repeat is ignored");
        }
        k
    });
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hb(chunks: &[&str]) -> Heartbeat {
        Heartbeat {
            id: "cs1".into(),
            full_report: true,
            chunks: chunks
                .iter()
                .map(|c| ReplicaReport {
                    chunk: (*c).into(),
                    size: 1,
                    crc32c: 0,
                    replication: 1,
                    reads: 0,
                })
                .collect(),
            ..Heartbeat::default()
        }
    }

    fn page(report_id: u64, page: u32, last: bool) -> Page {
        Page {
            report_id,
            page,
            last,
        }
    }

    fn ids(step: &Step) -> Vec<&str> {
        match step {
            Step::Apply(h) => h.chunks.iter().map(|c| c.chunk.as_str()).collect(),
            other => panic!("not applied: {other:?}"),
        }
    }

    #[test]
    fn pages_in_order_make_one_report() {
        let r = Reports::default();
        let now = Instant::now();
        assert!(
            matches!(r.accept(hb(&["a", "b"]), page(7, 0, false), 0, now), Step::Kept(h) if h.chunks.is_empty())
        );
        assert!(matches!(
            r.accept(hb(&["c"]), page(7, 1, false), 0, now),
            Step::Kept(_)
        ));
        let done = r.accept(hb(&["d", "a"]), page(7, 2, true), 0, now);
        assert_eq!(ids(&done), ["a", "b", "c", "d"]);
        // One-message reports and deltas pass through.
        assert_eq!(ids(&r.accept(hb(&["x"]), Page::default(), 0, now)), ["x"]);
    }

    #[test]
    fn a_lost_page_drops_the_report_and_nothing_is_applied() {
        let r = Reports::default();
        let now = Instant::now();
        r.accept(hb(&["a"]), page(7, 0, false), 0, now);
        assert!(matches!(
            r.accept(hb(&["c"]), page(7, 2, true), 0, now),
            Step::Broken(_)
        ));
        // The next page of the broken report is refused too.
        assert!(matches!(
            r.accept(hb(&["d"]), page(7, 3, true), 0, now),
            Step::Broken(_)
        ));
        // Another report's page 1 does not continue this one.
        r.accept(hb(&["a"]), page(8, 0, false), 0, now);
        assert!(matches!(
            r.accept(hb(&["b"]), page(9, 1, true), 0, now),
            Step::Broken(_)
        ));
        // A new report starts cleanly.
        r.accept(hb(&["a"]), page(10, 0, false), 0, now);
        assert_eq!(
            ids(&r.accept(hb(&["b"]), page(10, 1, true), 0, now)),
            ["a", "b"]
        );
    }

    #[test]
    fn refused_entries_keep_deltas_adding_up() {
        let r = Reports::default();
        let now = Instant::now();
        // Four held: a, b and two bad ones, one per page. Every page carries
        // the total, less the page's own refusals.
        let mut full = hb(&["a"]);
        full.chunk_count = 3;
        r.accept(full, page(7, 0, false), 1, now);
        let mut last = hb(&["b"]);
        last.chunk_count = 3;
        let Step::Apply(whole) = r.accept(last, page(7, 1, true), 1, now) else {
            panic!("not applied");
        };
        assert_eq!(whole.chunk_count, 2);
        let mut delta = hb(&[]);
        delta.full_report = false;
        delta.chunk_count = 4;
        let Step::Apply(delta) = r.accept(delta, Page::default(), 0, now) else {
            panic!("not applied");
        };
        assert_eq!(delta.chunk_count, 2);
    }

    #[test]
    fn stale_partial_reports_expire() {
        let r = Reports::default();
        let now = Instant::now();
        r.accept(hb(&["a"]), page(7, 0, false), 0, now);
        let later = now + PARTIAL_TTL;
        assert!(matches!(
            r.accept(hb(&["b"]), page(7, 1, true), 0, later),
            Step::Broken(_)
        ));
    }
}
