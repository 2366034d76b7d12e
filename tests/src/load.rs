//! Client load for tests and benchmarks: N clients that read and write
//! chunks the way real clients do while something else (a rebalance) runs
//! underneath, and the bookkeeping to judge them afterwards.
//!
//! A write goes the way `keelctl put` sends one: `AllocateChunk` on the
//! master, then `WriteChunk` to every returned replica in parallel. It is
//! acknowledged only when every replica answered OK with the right size and
//! CRC32C, and only then joins the shared set of expected chunks.
//!
//! A read goes the way a client with a location cache reads: from the
//! replicas it remembers (from the master, or from its own write), then the
//! next one, then the master again when none serves the chunk — a moved
//! chunk answers NOT_FOUND on its old server. Every read is checked against
//! length, CRC32C and bytes. Each client keeps one channel per address, so a
//! read's latency is the read's, not a TCP and HTTP/2 handshake.
//!
//! [`Watch`] polls `RebalanceStatus`, so a caller can tell which samples were
//! taken while moves were running.
//!
//! # Layout
//! - `client`: one client's loop, its reads and writes.
//! - `verify`: reading every acknowledged chunk back at the end.
//! - [`watch`]: polling the move queue, and the spans moves ran in.

mod client;
mod verify;
pub mod watch;

pub(crate) use client::chunkserver;
pub use verify::Verified;
pub use watch::{Poll, Watch, idle_spans, moving_spans, within};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::{StreamExt, stream};
use keel_proto::v1::LocateChunkRequest;
use keel_proto::v1::master_client::MasterClient;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::chunks::pattern;
use crate::faults::quick_master;

/// Chunks checked at once by [`Load::verify_all`] and [`preload`].
const PARALLEL: usize = 8;

/// A chunk the clients may read, and what it must hold.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// Chunk id.
    pub id: String,
    /// Length in bytes.
    pub len: usize,
    /// CRC32C of its bytes.
    pub crc32c: u32,
    /// Its bytes are `chunks::pattern(seed, len)`.
    pub seed: u64,
    /// Replication factor it was written with.
    pub replication: u32,
    /// Addresses its replicas were written to; a client that has not asked
    /// the master yet starts there, as the writer of a chunk would.
    pub written_to: Vec<String>,
}

impl Chunk {
    /// A chunk of `len` pattern bytes from `seed`, not yet written anywhere.
    pub fn new(id: &str, seed: u64, len: usize, replication: u32) -> Chunk {
        Chunk {
            id: id.to_owned(),
            len,
            crc32c: crc32c::crc32c(&pattern(seed, len)),
            seed,
            replication,
            written_to: vec![],
        }
    }

    /// Checks `data` against length, CRC32C and bytes.
    pub fn check(&self, data: &[u8]) -> Result<(), String> {
        if data.len() != self.len || crc32c::crc32c(data) != self.crc32c {
            return Err(format!(
                "{}: got {} bytes with CRC32C {:#010x}, want {} bytes with {:#010x}",
                self.id,
                data.len(),
                crc32c::crc32c(data),
                self.len,
                self.crc32c
            ));
        }
        if data != pattern(self.seed, self.len) {
            return Err(format!("{}: right length and CRC32C, wrong bytes", self.id));
        }
        Ok(())
    }
}

/// Writes every chunk straight to the chunk servers listed with it (no
/// master involved), a few at a time: a test's or benchmark's starting layout.
pub async fn preload(layout: Vec<(Chunk, Vec<String>)>) -> Result<Vec<Chunk>> {
    let writes = layout.into_iter().map(|(chunk, urls)| async move {
        let data = pattern(chunk.seed, chunk.len);
        for url in &urls {
            crate::chunks::write(url, &chunk.id, &data, chunk.replication)
                .await
                .map_err(|s| anyhow::anyhow!("preloading {} on {url}: {s}", chunk.id))?;
        }
        anyhow::Ok(chunk)
    });
    let done: Vec<Result<Chunk>> = stream::iter(writes)
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    done.into_iter().collect()
}

/// How the clients behave.
#[derive(Debug, Clone)]
pub struct LoadOpts {
    /// Concurrent clients, each a task of its own.
    pub clients: usize,
    /// One operation in this many is a write of a new chunk (0: reads only).
    pub write_one_in: u64,
    /// Smallest and largest size of a new chunk, in bytes.
    pub sizes: (usize, usize),
    /// Replication asked for new chunks (0: the master's default).
    pub replication: u32,
    /// Operations per second of each client on average, with gaps of
    /// 0.5–1.5 times the mean between them (0: back to back).
    pub ops_per_sec: f64,
    /// Seed of the clients' choices and of new chunks' bytes.
    pub seed: u64,
    /// Prefix of new chunk ids: `PREFIX-CLIENT-N`.
    pub prefix: String,
}

impl Default for LoadOpts {
    fn default() -> Self {
        LoadOpts {
            clients: 8,
            write_one_in: 8,
            sizes: (64 << 10, 1 << 20),
            replication: 0,
            ops_per_sec: 0.0,
            seed: 1,
            prefix: "load".into(),
        }
    }
}

/// One successful read.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When the read started.
    pub at: Instant,
    /// The whole client read: every replica tried and every locate.
    pub latency: Duration,
    /// Bytes read.
    pub bytes: u64,
    /// Whether the client had to ask the master again.
    pub relocated: bool,
}

/// Latency percentiles of a set of samples (nearest rank).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    /// Samples counted.
    pub count: usize,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Percentiles {
    /// Percentiles of `latencies`; all zero when there are none.
    pub fn of(latencies: impl IntoIterator<Item = Duration>) -> Percentiles {
        let mut v: Vec<Duration> = latencies.into_iter().collect();
        v.sort_unstable();
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        match v.last() {
            None => Percentiles::default(),
            Some(&max) => Percentiles {
                count: v.len(),
                p50: rank(0.50),
                p99: rank(0.99),
                max,
            },
        }
    }
}

/// What the clients did so far.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Reads that returned the right bytes.
    pub reads: u64,
    /// Of those, reads that had to ask the master again.
    pub relocated: u64,
    /// Reads that failed, with why.
    pub failed_reads: Vec<String>,
    /// Acknowledged writes.
    pub writes: u64,
    /// Writes that were not acknowledged, with why.
    pub failed_writes: Vec<String>,
    /// Bytes read and verified.
    pub bytes_read: u64,
    /// Bytes acknowledged (once per chunk, not per replica).
    pub bytes_written: u64,
}

/// State every client shares.
pub(crate) struct Shared {
    master: String,
    opts: LoadOpts,
    stop: AtomicBool,
    /// Chunks a client may read: preloaded ones and acknowledged writes.
    chunks: RwLock<Vec<Arc<Chunk>>>,
    samples: Mutex<Vec<Sample>>,
    report: Mutex<Report>,
}

/// Running clients. Dropping it aborts them; [`Load::stop`] lets each finish
/// the operation it is in.
pub struct Load {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts `opts.clients` clients of the master at `master`, reading from
    /// `known` and from what they write themselves.
    pub fn start(master: &str, opts: LoadOpts, known: Vec<Chunk>) -> Load {
        let shared = Arc::new(Shared {
            master: master.to_owned(),
            opts,
            stop: AtomicBool::new(false),
            chunks: RwLock::new(known.into_iter().map(Arc::new).collect()),
            samples: Mutex::new(vec![]),
            report: Mutex::new(Report::default()),
        });
        let tasks = (0..shared.opts.clients)
            .map(|no| tokio::spawn(client::run(Arc::clone(&shared), no)))
            .collect();
        Load { shared, tasks }
    }

    /// Counters and failures so far.
    pub fn report(&self) -> Report {
        lock(&self.shared.report).clone()
    }

    /// Every successful read so far.
    pub fn samples(&self) -> Vec<Sample> {
        lock(&self.shared.samples).clone()
    }

    /// Latency percentiles of the successful reads `keep` selects, e.g. those
    /// that started inside a window.
    pub fn percentiles(&self, keep: impl Fn(&Sample) -> bool) -> Percentiles {
        let samples = lock(&self.shared.samples);
        Percentiles::of(samples.iter().filter(|s| keep(s)).map(|s| s.latency))
    }

    /// Every chunk the clients may read: preloaded and acknowledged.
    pub fn chunks(&self) -> Vec<Arc<Chunk>> {
        self.shared.chunks.read().expect("chunks lock").clone()
    }

    /// Tells every client to stop and waits until each has finished the
    /// operation it was in.
    pub async fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            if let Err(e) = t.await {
                lock(&self.shared.report)
                    .failed_reads
                    .push(format!("a client panicked: {e}"));
            }
        }
    }

    /// Reads every chunk back from every live replica the master lists,
    /// waiting up to `timeout` for the master to list each at its factor.
    pub async fn verify_all(&self, timeout: Duration) -> Result<Verified> {
        let master = quick_master(&self.shared.master).await?;
        let deadline = Instant::now() + timeout;
        let chunks = self.chunks();
        let checks = chunks
            .iter()
            .map(|c| verify::one(master.clone(), c, deadline));
        // `buffered` keeps the input order, so each result pairs with its chunk.
        let found: Vec<verify::Found> = stream::iter(checks).buffered(PARALLEL).collect().await;
        let mut v = Verified {
            chunks: chunks.len(),
            ..Verified::default()
        };
        for (c, f) in chunks.iter().zip(found.iter()) {
            v.add(c, f);
        }
        Ok(v)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Live replica addresses of `id`, as the master lists them.
pub(crate) async fn locate(m: &mut MasterClient<Channel>, id: &str) -> Result<Vec<String>, String> {
    let req = LocateChunkRequest {
        chunk: id.into(),
        rack: Default::default(),
    };
    let loc = m
        .locate_chunk(req)
        .await
        .map_err(|s| format!("locate: {s}"))?;
    let live = loc.into_inner().replicas.into_iter().filter(|r| r.alive);
    Ok(live.map(|r| r.address).collect())
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let ms = |n: u64| Duration::from_millis(n);
        assert_eq!(Percentiles::of([]), Percentiles::default());
        let p = Percentiles::of((1..=200).rev().map(ms));
        assert_eq!(
            (p.count, p.p50, p.p99, p.max),
            (200, ms(100), ms(198), ms(200))
        );
        let one = Percentiles::of([ms(7)]);
        assert_eq!((one.p50, one.p99, one.max), (ms(7), ms(7), ms(7)));
    }

    #[test]
    fn checks_length_crc_and_bytes() {
        let c = Chunk::new("c", 9, 1000, 1);
        let mut data = pattern(9, 1000);
        assert_eq!(c.check(&data), Ok(()));
        data.pop();
        assert!(c.check(&data).is_err());
        assert!(c.check(&pattern(10, 1000)).is_err());
    }
}
