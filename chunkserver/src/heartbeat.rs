//! Heartbeats to the master.
//!
//! The first heartbeat, any heartbeat after the master asks for it, and one
//! every [`FULL_REPORT_EVERY`] carry every chunk; the others carry only what
//! changed since the last acknowledged heartbeat (see [`crate::report`]). A
//! commit or delete sends one soon, coalesced over [`COALESCE`]. While the
//! master is away the loop keeps retrying quietly: one warning when it goes,
//! one info line when it is back.
//!
//! A full report above [`PAGE_REPLICAS`] replicas or [`PAGE_BYTES`] is sent
//! in pages (same `report_id`, `page` 0, 1, …, `last_page` on the last), so a
//! server with millions of chunks stays under every message limit. The master
//! applies the pages as one report when the last arrives; if it answers a
//! page with `send_full_report` (it lost track, e.g. a page went missing) the
//! report starts over with a new id.
//!
//! Every heartbeat, full or delta, carries this server's client read load
//! (`ReadLoad`: decayed reads/s and bytes/s, and the read p99 of the recent
//! window) and its [`HOT_CHUNKS`] hottest replicas by reads/s, hottest
//! first, each list replacing the one before ([`crate::heat`]). A paged
//! report carries them on every page: they are small, and each page then
//! stands alone.
//!
//! With several masters (`--master a,b,c`) one such loop runs per master,
//! each with its own acknowledgements ([`Store::report_for`]), so a slow or
//! absent master never delays the others. Every answer carries the term of
//! the leader as that master knows it; the highest is kept by the
//! [`Fence`].

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use keel_proto::v1::{ChunkReplica, HeartbeatRequest, HotChunk, ReadLoad};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::convert;
use crate::fence::{self, Fence};
use crate::heat::HOT_CHUNKS;
use crate::latency::ClientLatency;
use crate::peer::{MasterLink, error_chain};
use crate::store::{Report, Store};

/// A full chunk report at least this often, whatever the master says.
pub const FULL_REPORT_EVERY: Duration = Duration::from_secs(300);

/// After a commit or delete, wait this long for more before heartbeating.
pub const COALESCE: Duration = Duration::from_millis(100);

/// Most replicas in one page of a full report.
pub const PAGE_REPLICAS: usize = 100_000;

/// Most (estimated) encoded bytes of replicas in one page: far below the
/// 64 MiB message limit, small enough to decode without a memory spike.
pub const PAGE_BYTES: usize = 8 << 20;

/// Protobuf bytes of one replica beyond its id (tags, lengths, varints).
const REPLICA_OVERHEAD: usize = 40;

/// Extra time the master gets to answer the last page of a paged report,
/// per [`PAGE_REPLICAS`] replicas in the whole report: it applies them all
/// then.
const LAST_PAGE_TIME_PER_PAGE: Duration = Duration::from_secs(1);

/// Who this server is, as heartbeats tell the master.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `--id`.
    pub id: String,
    /// Address others use to reach this server.
    pub address: String,
    /// `--rack`, empty when unset.
    pub rack: String,
}

/// The heartbeat loop of one server.
pub struct Heartbeat {
    /// What is reported.
    pub store: Arc<Store>,
    /// Lazily connected master client.
    pub client: MasterLink,
    /// Who we are.
    pub identity: Identity,
    /// `--heartbeat-interval`.
    pub interval: Duration,
    /// Whether the last heartbeat reached the master.
    pub reachable: Arc<AtomicBool>,
    /// This master's place in `--master`: whose acknowledgements these are.
    pub consumer: usize,
    /// The master's URL, for logs.
    pub master: String,
    /// Where the terms in the answers go.
    pub fence: Arc<Fence>,
    /// Wakes this loop after a commit or delete ([`Store::subscribe`]).
    pub changes: tokio::sync::watch::Receiver<u64>,
    /// The migration bucket, whose current rate every heartbeat reports.
    pub throttle: Arc<crate::throttle::Throttle>,
    /// Client service times, whose read p99 every heartbeat reports.
    pub latency: Arc<ClientLatency>,
}

impl Heartbeat {
    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut want_full = true;
        let mut last_full: Option<Instant> = None;
        let mut was_up: Option<bool> = None;
        loop {
            let full = want_full || last_full.is_none_or(|t| t.elapsed() >= FULL_REPORT_EVERY);
            // Read before the report is built: every delete of an older
            // term ended before this one was recorded (see `fence`).
            let term = self.fence.highest();
            let report = self.store.report_for(self.consumer, full);
            let seq = report.seq;
            let up = match self.send(full, report, term).await {
                Ok(send_full) => {
                    self.store.ack_for(self.consumer, seq);
                    want_full = send_full;
                    if full {
                        last_full = Some(Instant::now());
                    }
                    true
                }
                Err(e) => {
                    want_full = full;
                    let error = describe(&e);
                    debug!(master = %self.master, error, "heartbeat failed");
                    if was_up != Some(false) {
                        warn!(
                            master = %self.master,
                            error,
                            "master unreachable; retrying every heartbeat interval"
                        );
                    }
                    false
                }
            };
            if up && was_up != Some(true) {
                info!(master = %self.master, "master reachable; heartbeats flowing");
            }
            was_up = Some(up);
            self.reachable.store(up, Ordering::Relaxed);
            if !self.wait(up, &shutdown).await {
                return;
            }
        }
    }

    /// Sleeps until the next heartbeat is due; false on shutdown.
    async fn wait(&mut self, up: bool, shutdown: &CancellationToken) -> bool {
        let interval = self.interval;
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(interval) => true,
            r = self.changes.changed(), if up => {
                if r.is_err() {
                    // The store is gone: shutting down.
                    return false;
                }
                tokio::select! {
                    () = shutdown.cancelled() => false,
                    () = tokio::time::sleep(COALESCE) => true,
                }
            }
        }
    }

    /// Sends one heartbeat (a paged report when it is too big); returns
    /// whether the master wants a full report next.
    async fn send(&mut self, full: bool, report: Report, term: u64) -> Result<bool, tonic::Status> {
        let req = self.request(full, report, term);
        let pages = page_bounds(&req.chunks);
        if !full || pages.len() <= 1 {
            return self.call(req, self.timeout()).await;
        }
        self.send_pages(req, pages).await
    }

    /// Sends a full report in `pages`; stops early when the master drops it.
    async fn send_pages(
        &mut self,
        mut whole: HeartbeatRequest,
        pages: Vec<Range<usize>>,
    ) -> Result<bool, tonic::Status> {
        let total = whole.chunks.len();
        let mut rest = std::mem::take(&mut whole.chunks).into_iter();
        whole.report_id = new_report_id();
        let n = pages.len();
        debug!(
            chunks = total,
            pages = n,
            report = whole.report_id,
            "sending a paged full report"
        );
        for (i, range) in pages.into_iter().enumerate() {
            let last = i + 1 == n;
            let mut req = whole.clone();
            req.chunks = rest.by_ref().take(range.len()).collect();
            req.page = u32::try_from(i).unwrap_or(u32::MAX);
            req.last_page = last;
            let timeout = if last {
                self.timeout() + LAST_PAGE_TIME_PER_PAGE * u32::try_from(n).unwrap_or(u32::MAX)
            } else {
                self.timeout()
            };
            let send_full = self.call(req, timeout).await?;
            if last || send_full {
                if send_full && !last {
                    info!(
                        page = i,
                        pages = n,
                        "the master dropped a paged report; sending it again"
                    );
                }
                return Ok(send_full);
            }
        }
        Ok(true)
    }

    fn timeout(&self) -> Duration {
        self.interval
            .clamp(Duration::from_secs(2), Duration::from_secs(10))
    }

    async fn call(
        &mut self,
        req: HeartbeatRequest,
        timeout: Duration,
    ) -> Result<bool, tonic::Status> {
        let mut req = tonic::Request::new(req);
        req.set_timeout(timeout);
        let resp = self.client.heartbeat(req).await?.into_inner();
        for r in &resp.refused {
            warn!(chunk = %r.chunk.escape_debug(), reason = %r.reason.escape_debug(), "the master refused this chunk in a heartbeat");
        }
        // A lower term is a deposed master's: nothing to record. Failing to
        // record a higher one only delays fencing until a request carries it.
        match fence::admit(&self.fence, resp.term, "a heartbeat answer").await {
            Ok(()) | Err(crate::error::Error::Fenced { .. }) => {}
            Err(e) => warn!(error = %e, "could not record the leader's term"),
        }
        Ok(resp.send_full_report)
    }

    fn request(&self, full: bool, report: Report, term: u64) -> HeartbeatRequest {
        let chunks = report
            .chunks
            .into_iter()
            .map(|(chunk, e)| convert::replica(chunk, e))
            .collect();
        let (load, hot_chunks) = read_load(&self.store, &self.latency, Instant::now());
        HeartbeatRequest {
            id: self.identity.id.clone(),
            address: self.identity.address.clone(),
            rack: self.identity.rack.clone(),
            capacity_bytes: report.totals.capacity,
            used_bytes: report.totals.used,
            full_report: full,
            chunks,
            removed: report.removed,
            chunk_count: report.totals.chunks,
            stamp: Some(convert::stamp(report.stamp)),
            draining: self.store.is_draining(),
            report_id: 0,
            page: 0,
            last_page: false,
            migrate_bandwidth_bytes_per_second: self.throttle.bytes_per_sec(),
            term,
            deleting: report.deleting,
            hot_chunks,
            load: Some(load),
        }
    }
}

/// This server's client read load at `now` and its hottest replicas,
/// hottest first, as a heartbeat carries them.
pub fn read_load(
    store: &Store,
    latency: &ClientLatency,
    now: Instant,
) -> (ReadLoad, Vec<HotChunk>) {
    let rate = store.heat.server(now);
    let load = ReadLoad {
        read_bytes_per_sec: rate.bytes_per_sec,
        reads_per_sec: rate.reads_per_sec,
        read_p99_ms: latency.read_p99(now).map_or(0.0, |d| d.as_secs_f64() * 1e3),
    };
    let hot = store
        .heat
        .hottest(now, HOT_CHUNKS)
        .into_iter()
        .filter(|(_, r)| r.reads_per_sec > 0.0)
        .map(|(chunk, r)| HotChunk {
            chunk,
            read_bytes_per_sec: r.bytes_per_sec,
            reads_per_sec: r.reads_per_sec,
        })
        .collect();
    (load, hot)
}

/// Splits `chunks` into pages of at most [`PAGE_REPLICAS`] replicas and
/// about [`PAGE_BYTES`]; always at least one (possibly empty) page.
pub fn page_bounds(chunks: &[ChunkReplica]) -> Vec<Range<usize>> {
    let mut pages = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, c) in chunks.iter().enumerate() {
        let size = c.chunk.len() + REPLICA_OVERHEAD;
        if i > start && (i - start >= PAGE_REPLICAS || bytes + size > PAGE_BYTES) {
            pages.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    pages.push(start..chunks.len());
    pages
}

/// A report id unique to this process and moment; never 0 (a one-message report).
fn new_report_id() -> u64 {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ SEQ.fetch_add(1, Ordering::Relaxed).rotate_left(48)) | 1
}

/// A status and its transport causes on one line, e.g.
/// `Unavailable: tcp connect error: Connection refused (os error 111)`.
fn describe(s: &tonic::Status) -> String {
    let mut out = format!("{:?}: {}", s.code(), s.message());
    if let Some(src) = std::error::Error::source(s) {
        let chain = error_chain(src);
        if !out.contains(&chain) {
            out.push_str(": ");
            out.push_str(&chain);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replicas(n: usize, id_len: usize) -> Vec<ChunkReplica> {
        (0..n)
            .map(|i| ChunkReplica {
                chunk: format!("{i:0id_len$}"),
                ..ChunkReplica::default()
            })
            .collect()
    }

    #[test]
    fn the_read_load_and_the_hottest_replicas_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), "cs1", Some(1 << 20)).expect("open");
        let latency = ClientLatency::off();
        let now = Instant::now();
        // Nothing read yet: a zero load, no hot replica.
        let (load, hot) = read_load(&store, &latency, now);
        assert_eq!(load, ReadLoad::default());
        assert!(hot.is_empty());

        for i in 0..100 {
            let chunk = format!("c{i:03}");
            for _ in 0..=i {
                let mut r = store.heat.start(&chunk, now);
                r.sent(1000);
            }
            latency.record_read(Duration::from_millis(if i == 99 { 80 } else { 2 }));
        }
        let (load, hot) = read_load(&store, &latency, now);
        let tau = crate::heat::TIME_CONSTANT.as_secs_f64();
        let reads: f64 = (1..=100).map(f64::from).sum();
        // Within 1 %: the guards count their bytes, and decay, at their own now.
        assert!(
            (load.reads_per_sec / (reads / tau) - 1.0).abs() < 0.01,
            "{load:?}"
        );
        assert!(load.read_bytes_per_sec > 999.0 * load.reads_per_sec);
        // 1 of 100 samples slow: the p99 is the fast time (rounded up).
        assert!((2.0..2.2).contains(&load.read_p99_ms), "{load:?}");
        assert_eq!(hot.len(), HOT_CHUNKS);
        assert_eq!(hot[0].chunk, "c099");
        assert_eq!(hot[HOT_CHUNKS - 1].chunk, "c036");
        assert!((hot[0].reads_per_sec / (100.0 / tau) - 1.0).abs() < 0.01);
        assert!(
            hot.windows(2)
                .all(|w| w[0].reads_per_sec > w[1].reads_per_sec)
        );
    }

    #[test]
    fn small_reports_are_one_page() {
        assert_eq!(page_bounds(&[]), vec![0..0]);
        assert_eq!(page_bounds(&replicas(10, 8)), vec![0..10]);
        assert_eq!(page_bounds(&replicas(PAGE_REPLICAS, 8)).len(), 1);
    }

    #[test]
    fn pages_cover_everything_within_both_limits() {
        let chunks = replicas(2 * PAGE_REPLICAS + 7, 8);
        let pages = page_bounds(&chunks);
        assert_eq!(
            pages,
            vec![
                0..PAGE_REPLICAS,
                PAGE_REPLICAS..2 * PAGE_REPLICAS,
                2 * PAGE_REPLICAS..chunks.len()
            ]
        );
        // Long ids: the byte limit cuts first.
        let long = replicas(60_000, 128);
        let pages = page_bounds(&long);
        assert!(pages.len() > 1, "{pages:?}");
        for p in &pages {
            let bytes: usize = long[p.clone()]
                .iter()
                .map(|c| c.chunk.len() + REPLICA_OVERHEAD)
                .sum();
            assert!(bytes <= PAGE_BYTES, "{bytes}");
        }
        assert_eq!(
            pages.iter().map(ExactSizeIterator::len).sum::<usize>(),
            long.len()
        );
    }
}
