//! Paged full reports: a chunk server with millions of chunks sends its full
//! report as pages (`report_id`, `page` 0, 1, …, `last_page`), and the master
//! applies them as one report.
//!
//! Each page is recorded as it arrives, under the metadata lock for that page
//! only (see `meta::paged`): pages only add replicas. The server's replicas
//! that the report did not list are forgotten only when the last page has
//! arrived after all the others. A page that does not follow the one before
//! (a page lost, a restart mid-report) drops the report and asks the server
//! for a full report again: a partial report never makes the master forget a
//! replica. Every page also counts as a heartbeat for liveness. What a report
//! in progress keeps (the ids it listed, to find what it left out and to
//! ignore a chunk listed twice) is bounded by [`MAX_REPORT_REPLICAS`], by
//! [`PARTIAL_TTL`] and by the number of servers the master accepts.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use keel_proto::v1 as pb;
use tracing::{info, warn};

use crate::meta::{Heartbeat, Meta, PagedStart, lock};

/// Largest paged report accepted (replicas over all its pages): far above
/// any real server, low enough that a hostile sender cannot exhaust memory.
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

/// One report being received.
#[derive(Debug)]
struct Partial {
    /// Its id.
    report_id: u64,
    /// The page expected next.
    next_page: u32,
    /// Every chunk id its pages listed.
    reported: HashSet<Box<str>>,
    /// What the server held when it began.
    start: PagedStart,
    /// Entries of the pages so far refused one by one.
    refused: u64,
    /// When the last page came.
    updated: Instant,
}

/// Paged reports being received, and what earlier reports refused.
#[derive(Debug, Default)]
pub struct Reports {
    /// Reports being received, by server id.
    partial: Mutex<HashMap<Box<str>, Partial>>,
    /// Entries the last full report of each server listed but the master
    /// refused: the server still counts them in every delta's
    /// `chunk_count`, so they are taken off it to keep deltas adding up.
    refused_held: Mutex<HashMap<Box<str>, u64>>,
}

/// What applying one heartbeat (or one page of a report) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// The server should send a full report next.
    pub send_full_report: bool,
    /// The report arrived after a newer one of its server was applied and
    /// was ignored but as a sign of life: it tells nothing of what the
    /// server holds now, so it must not count towards a leader's settling.
    pub stale: bool,
}

impl Reports {
    /// Applies one validated heartbeat, with its paging fields and the
    /// number of its listed entries refused one by one; returns whether the
    /// server should send a full report next.
    pub fn apply(
        &self,
        meta: &Mutex<Meta>,
        hb: Heartbeat,
        page: Page,
        refused: u64,
        now: Instant,
    ) -> bool {
        self.apply_report(meta, hb, page, refused, now)
            .send_full_report
    }

    /// [`Reports::apply`], also saying whether the report was ignored as
    /// late.
    pub fn apply_report(
        &self,
        meta: &Mutex<Meta>,
        mut hb: Heartbeat,
        page: Page,
        refused: u64,
        now: Instant,
    ) -> Applied {
        let mut partial = self.partial.lock().unwrap_or_else(PoisonError::into_inner);
        partial.retain(|_, p| now.saturating_duration_since(p.updated) < PARTIAL_TTL);
        if !hb.full_report || page.report_id == 0 {
            if hb.full_report {
                partial.remove(hb.id.as_str());
                self.remember_refused(&hb.id, refused);
            } else {
                let earlier = self.held().get(hb.id.as_str()).copied().unwrap_or(0);
                hb.chunk_count = hb.chunk_count.saturating_sub(earlier);
            }
            drop(partial);
            let out = lock(meta).apply_heartbeat(hb, now);
            return Applied {
                send_full_report: out.send_full_report,
                stale: out.stale,
            };
        }
        // A page of a dead run's report must neither add its replicas nor,
        // on its last page, forget the ones the live run holds. The live
        // run's own partial report, if any, is left alone.
        if lock(meta).from_older_run(&hb) {
            info!(server = %hb.id, report = page.report_id, page = page.page, "page of a report from an earlier run of the server ignored");
            return Applied {
                send_full_report: false,
                stale: true,
            };
        }
        let id: Box<str> = hb.id.as_str().into();
        if page.page == 0 {
            let chunks = std::mem::take(&mut hb.chunks);
            let start = lock(meta).begin_paged_report(&hb, now);
            hb.chunks = chunks;
            partial.insert(
                id.clone(),
                Partial {
                    report_id: page.report_id,
                    next_page: 0,
                    reported: HashSet::new(),
                    start,
                    refused: 0,
                    updated: now,
                },
            );
        }
        let follows = |p: &Partial| p.report_id == page.report_id && p.next_page == page.page;
        let Some(p) = partial.get_mut(&id).filter(|p| follows(p)) else {
            let expected = partial.remove(&id).map(|p| (p.report_id, p.next_page));
            warn!(server = %hb.id, report = page.report_id, page = page.page, ?expected, "report page out of order; dropping the partial report and asking for a full report");
            return full(broken(meta, hb, now));
        };
        if p.reported.len() + hb.chunks.len() > MAX_REPORT_REPLICAS {
            partial.remove(&id);
            warn!(server = %hb.id, max = MAX_REPORT_REPLICAS, "paged report too large; dropped");
            return full(broken(meta, hb, now));
        }
        hb.chunks.retain(|c| {
            let first = p.reported.insert(c.chunk.as_str().into());
            if !first {
                warn!(server = %hb.id, chunk = %c.chunk, "chunk listed twice in one report; the repeat is ignored");
            }
            first
        });
        lock(meta).add_report_page(&hb, now);
        // Liveness counts from when the page is recorded, not received: a
        // big page must not make its own server look silent.
        hb.chunks = Vec::new();
        lock(meta).apply_report_page(&hb, Instant::now());
        p.next_page += 1;
        p.updated = now;
        p.refused += refused;
        if !page.last {
            return full(false);
        }
        let Some(p) = partial.remove(&id) else {
            return full(true);
        };
        drop(partial);
        let (pages, chunks) = (p.next_page, p.reported.len());
        // This page's own refusals are already off its `chunk_count`.
        let chunk_count = hb.chunk_count.saturating_sub(p.refused - refused);
        self.remember_refused(&hb.id, p.refused);
        let doubts_left = {
            let mut m = lock(meta);
            m.finish_paged_report(&hb.id, p.start, &p.reported, chunk_count);
            m.settle_doubts_of(&hb.id, &hb.deleting)
        };
        drop(p.reported);
        lock(meta).apply_report_page(&hb, Instant::now());
        info!(server = %hb.id, pages, chunks, "paged full report applied");
        // A delete that failed still runs there: another full report after it.
        full(doubts_left)
    }

    fn held(&self) -> MutexGuard<'_, HashMap<Box<str>, u64>> {
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
}

/// A page's answer: whether to ask for a full report (pages are never late).
fn full(send_full_report: bool) -> Applied {
    Applied {
        send_full_report,
        stale: false,
    }
}

/// A page that broke its report: liveness only, and ask for a full report.
fn broken(meta: &Mutex<Meta>, mut hb: Heartbeat, now: Instant) -> bool {
    hb.chunks = Vec::new();
    lock(meta).apply_report_page(&hb, now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{MetaSettings, ReplicaReport};

    fn hb(chunks: &[&str], chunk_count: u64) -> Heartbeat {
        Heartbeat {
            id: "cs1".into(),
            address: "http://127.0.0.1:1".into(),
            capacity: 1 << 40,
            full_report: true,
            chunks: chunks
                .iter()
                .map(|c| ReplicaReport {
                    chunk: (*c).into(),
                    size: 1,
                    crc32c: 0,
                    replication: 1,
                    reads: 0,
                    ..ReplicaReport::default()
                })
                .collect(),
            chunk_count,
            ..Heartbeat::default()
        }
    }

    /// A full report of `chunks` from the server's run `incarnation`, at
    /// change `seq` of that run.
    fn stamped(incarnation: u64, seq: u64, chunks: &[&str]) -> Heartbeat {
        Heartbeat {
            stamp: Some(crate::meta::Stamp { incarnation, seq }),
            ..hb(chunks, chunks.len() as u64)
        }
    }

    fn empty_meta() -> Mutex<Meta> {
        Mutex::new(Meta::new(MetaSettings::default()))
    }

    fn page(report_id: u64, page: u32, last: bool) -> Page {
        Page {
            report_id,
            page,
            last,
        }
    }

    fn setup(held: &[&str]) -> (Reports, Mutex<Meta>, Instant) {
        let (r, m, now) = (Reports::default(), empty_meta(), Instant::now());
        assert!(!r.apply(&m, hb(held, held.len() as u64), Page::default(), 0, now));
        (r, m, now)
    }

    fn held(m: &Mutex<Meta>) -> Vec<String> {
        let m = lock(m);
        let mut ids: Vec<String> = ["a", "b", "c", "d", "x"]
            .into_iter()
            .filter(|c| m.chunk(c).is_some())
            .map(str::to_owned)
            .collect();
        ids.sort();
        assert_eq!(m.check(), Ok(()));
        ids
    }

    #[test]
    fn pages_in_order_make_one_report() {
        let (r, m, now) = setup(&["a", "x"]);
        assert!(!r.apply(&m, hb(&["a", "b"], 4), page(7, 0, false), 0, now));
        // Pages only add until the last one.
        assert_eq!(held(&m), ["a", "b", "x"]);
        assert!(!r.apply(&m, hb(&["c"], 4), page(7, 1, false), 0, now));
        assert!(!r.apply(&m, hb(&["d", "a"], 4), page(7, 2, true), 0, now));
        assert_eq!(held(&m), ["a", "b", "c", "d"]);
        assert_eq!(lock(&m).server_by_id("cs1").map(|s| s.replicas), Some(4));
    }

    #[test]
    fn a_lost_page_drops_the_report_and_forgets_nothing() {
        let (r, m, now) = setup(&["a", "x"]);
        r.apply(&m, hb(&["a"], 2), page(7, 0, false), 0, now);
        assert!(r.apply(&m, hb(&["c"], 2), page(7, 2, true), 0, now));
        assert_eq!(held(&m), ["a", "x"]);
        // The next page of the broken report is refused too.
        assert!(r.apply(&m, hb(&["d"], 2), page(7, 3, true), 0, now));
        // Another report's page 1 does not continue this one.
        r.apply(&m, hb(&["a"], 2), page(8, 0, false), 0, now);
        assert!(r.apply(&m, hb(&["b"], 2), page(9, 1, true), 0, now));
        assert_eq!(held(&m), ["a", "x"]);
        // A new report starts cleanly and replaces the set.
        r.apply(&m, hb(&["a"], 2), page(10, 0, false), 0, now);
        assert!(!r.apply(&m, hb(&["b"], 2), page(10, 1, true), 0, now));
        assert_eq!(held(&m), ["a", "b"]);
    }

    #[test]
    fn refused_entries_keep_deltas_adding_up() {
        let (r, m, now) = setup(&[]);
        // Four held: a, b and two bad ones, one per page. Every page carries
        // the total, less the page's own refusals.
        r.apply(&m, hb(&["a"], 3), page(7, 0, false), 1, now);
        assert!(!r.apply(&m, hb(&["b"], 3), page(7, 1, true), 1, now));
        let mut delta = hb(&[], 4);
        delta.full_report = false;
        assert!(!r.apply(&m, delta, Page::default(), 0, now));
    }

    #[test]
    fn stale_partial_reports_expire() {
        let (r, m, now) = setup(&[]);
        r.apply(&m, hb(&["a"], 2), page(7, 0, false), 0, now);
        assert!(r.apply(&m, hb(&["b"], 2), page(7, 1, true), 0, now + PARTIAL_TTL));
    }

    #[test]
    fn pages_of_an_earlier_runs_report_change_nothing() {
        let (r, m, now) = (Reports::default(), empty_meta(), Instant::now());
        assert!(
            !r.apply_report(&m, stamped(2, 1, &["a", "x"]), Page::default(), 0, now)
                .stale
        );
        // A dead run's paged report, arriving late: every page is stale.
        let first = r.apply_report(&m, stamped(1, 1, &["b"]), page(7, 0, false), 0, now);
        let last = r.apply_report(&m, stamped(1, 1, &["c"]), page(7, 1, true), 0, now);
        assert!(first.stale && last.stale);
        assert_eq!(held(&m), ["a", "x"], "nothing added, nothing forgotten");
    }

    #[test]
    fn a_report_overtaken_on_the_way_is_applied_as_stale() {
        let (r, m, now) = (Reports::default(), empty_meta(), Instant::now());
        let first = r.apply_report(&m, stamped(1, 5, &["a"]), Page::default(), 0, now);
        assert!(!first.stale);
        let late = r.apply_report(&m, stamped(1, 4, &["a", "b"]), Page::default(), 0, now);
        assert!(
            late.stale,
            "a report stamped before the applied one is late"
        );
        assert!(!late.send_full_report);
    }
}
