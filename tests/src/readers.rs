//! Skewed readers: real gRPC clients that read a ranked set of chunks with a
//! Zipf-like popularity ([`crate::zipf`]), the way a reader that follows the
//! master's advice does, and record every read by the server that served it.
//!
//! A read asks the master where the chunk is (`LocateChunk`) and keeps the
//! answer for `cache_ttl` only, so a new order from the master (a moved
//! chunk, a less loaded replica first) is followed within that time. It reads
//! from the FIRST replica listed and falls back to the next on an error; a
//! NOT_FOUND (the chunk moved) asks the master again at once; a server over
//! its `--max-reads` budget (RESOURCE_EXHAUSTED) is a refusal: the next
//! replica is tried, and when none served the read the reader backs off a
//! little and tries again. Each read is checked against length and CRC32C.
//!
//! Every reader owns one channel per address, so a read's latency is the
//! server's answer, not a handshake. The recorded latency runs from the
//! read's start to its last byte, refusals and back-offs included, but
//! without the time spent asking the master: it is the chunk servers' share
//! of what the client waited, keyed by the one that served it.
//!
//! Readers are paced: each waits 0.5–1.5 periods (`1 / ops_per_sec`)
//! between reads, catching up when a read ran long, so the offered load is
//! fixed and a slow server queues rather than slowing its clients down.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use keel_proto::v1::chunk_server_client::ChunkServerClient;
use keel_proto::v1::master_client::MasterClient;
use keel_proto::v1::{LocateChunkRequest, ReadChunkRequest};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::faults::{Rng, quick_master};
use crate::load::{Chunk, Percentiles, lock};
use crate::zipf::Zipf;

/// Attempts of one read (locates and rounds over the replicas) before it
/// counts as failed.
const ATTEMPTS: u32 = 40;
/// Back-off after a round in which no replica served the read (but for a
/// chunk that moved, which is asked of the master again at once), times the
/// attempt number.
const BUSY_BACKOFF: Duration = Duration::from_millis(5);
/// Longest one `ReadChunk` may take before it counts as an error.
const RPC_DEADLINE: Duration = Duration::from_secs(20);

/// Which part of a run a read belongs to; the driver sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// The same readers on an evenly spread copy of the chunks.
    Baseline = 0,
    /// Before the rebalance.
    Before = 1,
    /// While the rebalance runs.
    During = 2,
    /// After it finished.
    After = 3,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Baseline,
            1 => Phase::Before,
            2 => Phase::During,
            _ => Phase::After,
        }
    }
}

/// How the readers behave.
#[derive(Debug, Clone)]
pub struct ReaderOpts {
    /// Concurrent readers, each a task with channels of its own.
    pub readers: usize,
    /// Reads per second of each reader on average (0: back to back).
    pub ops_per_sec: f64,
    /// Zipf exponent over the ranked chunks.
    pub exponent: f64,
    /// Zipf–Mandelbrot offset (see [`Zipf`]).
    pub offset: f64,
    /// Seed of every reader's choices.
    pub seed: u64,
    /// How long a `LocateChunk` answer is used.
    pub cache_ttl: Duration,
}

impl Default for ReaderOpts {
    fn default() -> Self {
        ReaderOpts {
            readers: 8,
            ops_per_sec: 10.0,
            exponent: 1.1,
            offset: 5.0,
            seed: 1,
            cache_ttl: Duration::from_millis(1500),
        }
    }
}

/// One read that returned the right bytes.
#[derive(Debug, Clone)]
pub struct Read {
    /// When it started.
    pub at: Instant,
    /// The phase it started in.
    pub phase: Phase,
    /// Id of the server that served it.
    pub server: String,
    /// Its chunk.
    pub chunk: Arc<str>,
    /// Start to last byte, without the time spent asking the master.
    pub latency: Duration,
    /// Bytes read.
    pub bytes: u64,
    /// Refusals (RESOURCE_EXHAUSTED) on the way.
    pub refused: u32,
}

/// The chunks being read, most popular first, and their popularity.
struct ReadSet {
    chunks: Vec<Arc<Chunk>>,
    zipf: Zipf,
}

/// State every reader shares.
struct Shared {
    master: String,
    opts: ReaderOpts,
    set: RwLock<Arc<ReadSet>>,
    phase: AtomicU8,
    stop: AtomicBool,
    reads: Mutex<Vec<Read>>,
    failures: Mutex<Vec<String>>,
    refusals: AtomicU64,
}

/// Running readers. Dropping them aborts them; [`Readers::stop`] lets each
/// finish its read.
pub struct Readers {
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Readers {
    /// Starts `opts.readers` readers of `ranked` (most popular first)
    /// through the master at `master`, in `phase`.
    pub fn start(
        master: &str,
        opts: ReaderOpts,
        ranked: Vec<Chunk>,
        phase: Phase,
    ) -> Result<Readers> {
        let set = read_set(ranked, &opts)?;
        let shared = Arc::new(Shared {
            master: master.to_owned(),
            opts,
            set: RwLock::new(Arc::new(set)),
            phase: AtomicU8::new(phase as u8),
            stop: AtomicBool::new(false),
            reads: Mutex::new(vec![]),
            failures: Mutex::new(vec![]),
            refusals: AtomicU64::new(0),
        });
        let tasks = (0..shared.opts.readers)
            .map(|no| tokio::spawn(run(Arc::clone(&shared), no)))
            .collect();
        Ok(Readers { shared, tasks })
    }

    /// Reads `ranked` from now on, with the same skew.
    pub fn switch_to(&self, ranked: Vec<Chunk>) -> Result<()> {
        let set = read_set(ranked, &self.shared.opts)?;
        *self.shared.set.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
        Ok(())
    }

    /// Marks the reads that start from now on as `phase`.
    pub fn set_phase(&self, phase: Phase) {
        self.shared.phase.store(phase as u8, Ordering::Relaxed);
    }

    /// Every successful read so far.
    pub fn reads(&self) -> Vec<Read> {
        lock(&self.shared.reads).clone()
    }

    /// Reads that failed, with why.
    pub fn failures(&self) -> Vec<String> {
        lock(&self.shared.failures).clone()
    }

    /// Refusals (RESOURCE_EXHAUSTED) so far, over all reads.
    pub fn refusals(&self) -> u64 {
        self.shared.refusals.load(Ordering::Relaxed)
    }

    /// Tells every reader to stop and waits for each to finish its read.
    pub async fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.tasks.drain(..) {
            if let Err(e) = t.await {
                lock(&self.shared.failures).push(format!("a reader panicked: {e}"));
            }
        }
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn read_set(ranked: Vec<Chunk>, opts: &ReaderOpts) -> Result<ReadSet> {
    let Some(zipf) = Zipf::new(ranked.len(), opts.exponent, opts.offset) else {
        bail!(
            "no chunks to read, or a bad skew (exponent {}, offset {})",
            opts.exponent,
            opts.offset
        );
    };
    Ok(ReadSet {
        chunks: ranked.into_iter().map(Arc::new).collect(),
        zipf,
    })
}

/// What one server served in a stretch of reads.
#[derive(Debug, Clone, Default)]
pub struct Served {
    /// Reads it served.
    pub reads: u64,
    /// Bytes it sent.
    pub bytes: u64,
    /// Their latency.
    pub latency: Percentiles,
}

/// The reads `keep` selects, by the server that served them.
pub fn by_server<'a>(
    reads: impl IntoIterator<Item = &'a Read>,
    keep: impl Fn(&Read) -> bool,
) -> BTreeMap<String, Served> {
    let mut latencies: BTreeMap<String, (u64, u64, Vec<Duration>)> = BTreeMap::new();
    for r in reads.into_iter().filter(|r| keep(r)) {
        let e = latencies.entry(r.server.clone()).or_default();
        e.0 += 1;
        e.1 += r.bytes;
        e.2.push(r.latency);
    }
    latencies
        .into_iter()
        .map(|(s, (reads, bytes, l))| {
            let latency = Percentiles::of(l);
            (
                s,
                Served {
                    reads,
                    bytes,
                    latency,
                },
            )
        })
        .collect()
}

/// One reader's loop: paced reads until the stop flag is set.
async fn run(shared: Arc<Shared>, no: usize) {
    let master = match quick_master(&shared.master).await {
        Ok(m) => m,
        Err(e) => {
            let why = format!("reader {no}: cannot reach the master: {e:#}");
            return lock(&shared.failures).push(why);
        }
    };
    let seed = shared.opts.seed.wrapping_mul(1000).wrapping_add(no as u64);
    let mut r = Reader {
        shared: Arc::clone(&shared),
        rng: Rng::new(seed),
        master,
        servers: HashMap::new(),
        located: HashMap::new(),
    };
    let period = (shared.opts.ops_per_sec > 0.0)
        .then(|| Duration::from_secs_f64(1.0 / shared.opts.ops_per_sec));
    let mut next = tokio::time::Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(p) = period {
            // Uneven gaps, so readers started together do not read in lockstep.
            next += p.mul_f64(0.5 + r.rng.range(0, 1000) as f64 / 1000.0);
            tokio::time::sleep_until(next).await;
            next = next.max(tokio::time::Instant::now());
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
        }
        r.step().await;
    }
}

/// A replica as the master listed it: (server id, address).
type Replica = (String, String);

/// One reader: its channels, its location cache, its random choices.
struct Reader {
    shared: Arc<Shared>,
    rng: Rng,
    master: MasterClient<Channel>,
    /// One channel per chunk-server address, opened on first use.
    servers: HashMap<String, ChunkServerClient<Channel>>,
    /// Live replicas per chunk, in the master's order, and when asked.
    located: HashMap<Arc<str>, (Instant, Vec<Replica>)>,
}

impl Reader {
    /// Draws a chunk and reads it.
    async fn step(&mut self) {
        let set = Arc::clone(&self.shared.set.read().unwrap_or_else(|e| e.into_inner()));
        let chunk = Arc::clone(&set.chunks[set.zipf.sample(&mut self.rng)]);
        let phase = Phase::from_u8(self.shared.phase.load(Ordering::Relaxed));
        match self.read(&chunk, phase).await {
            Ok(read) => lock(&self.shared.reads).push(read),
            Err(e) => lock(&self.shared.failures).push(e),
        }
    }

    /// Reads `chunk` whole from the first replica that serves it.
    async fn read(&mut self, chunk: &Chunk, phase: Phase) -> Result<Read, String> {
        let (at, id) = (Instant::now(), chunk.id.as_str());
        let (mut asking, mut refused, mut last) = (Duration::ZERO, 0u32, String::new());
        for attempt in 0..ATTEMPTS {
            let t = Instant::now();
            let replicas = self.replicas(id).await;
            asking += t.elapsed();
            let replicas = match replicas {
                Ok(r) if r.is_empty() => {
                    last = "the master lists no live replica".into();
                    self.located.remove(id);
                    tokio::time::sleep(BUSY_BACKOFF * attempt).await;
                    continue;
                }
                Ok(r) => r,
                Err(e) => {
                    last = e;
                    tokio::time::sleep(BUSY_BACKOFF * attempt).await;
                    continue;
                }
            };
            let mut moved = false;
            for (server, addr) in &replicas {
                match self.read_from(addr, id).await {
                    Ok(data) => {
                        if data.len() != chunk.len || crc32c::crc32c(&data) != chunk.crc32c {
                            return Err(format!("{id} from {server}: wrong length or CRC32C"));
                        }
                        return Ok(Read {
                            at,
                            phase,
                            server: server.clone(),
                            chunk: Arc::from(id),
                            latency: at.elapsed().saturating_sub(asking),
                            bytes: data.len() as u64,
                            refused,
                        });
                    }
                    Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                        refused += 1;
                        self.shared.refusals.fetch_add(1, Ordering::Relaxed);
                        last = format!("{server}: {}", s.message());
                    }
                    Err(s) => {
                        last = format!("{server}: {s}");
                        if s.code() == tonic::Code::NotFound {
                            // Moved: ask the master again before anything else.
                            self.located.remove(id);
                            moved = true;
                            break;
                        }
                    }
                }
            }
            if !moved {
                tokio::time::sleep(BUSY_BACKOFF * (attempt + 1)).await;
            }
        }
        Err(format!(
            "{id}: not read after {ATTEMPTS} attempts; last: {last}"
        ))
    }

    /// Live replicas of `id`: remembered, or asked of the master when the
    /// answer is older than the cache's lifetime or was dropped.
    async fn replicas(&mut self, id: &str) -> Result<Vec<Replica>, String> {
        let ttl = self.shared.opts.cache_ttl;
        if let Some((when, r)) = self.located.get(id)
            && when.elapsed() < ttl
        {
            return Ok(r.clone());
        }
        let req = LocateChunkRequest {
            chunk: id.to_owned(),
            rack: String::new(),
        };
        let loc = self
            .master
            .locate_chunk(req)
            .await
            .map_err(|s| format!("locate {id}: {s}"))?
            .into_inner();
        let live: Vec<Replica> = loc
            .replicas
            .into_iter()
            .filter(|r| r.alive)
            .map(|r| (r.id, r.address))
            .collect();
        self.located
            .insert(Arc::from(id), (Instant::now(), live.clone()));
        Ok(live)
    }

    /// Reads `id` whole from the server at `addr`, checked against the
    /// header it sent.
    async fn read_from(&mut self, addr: &str, id: &str) -> Result<Vec<u8>, tonic::Status> {
        let mut cs = self.server(addr).await?;
        let req = ReadChunkRequest {
            chunk: id.to_owned(),
            migration: false,
        };
        let read = async move {
            let mut stream = cs.read_chunk(req).await?.into_inner();
            let (mut header, mut data) = (None, Vec::new());
            while let Some(msg) = stream.next().await {
                let msg = msg?;
                header = header.or(msg.header);
                data.extend_from_slice(&msg.data);
            }
            match header {
                Some(h) if h.size == data.len() as u64 && h.crc32c == crc32c::crc32c(&data) => {
                    Ok(data)
                }
                _ => Err(tonic::Status::data_loss(
                    "the stream does not match its header",
                )),
            }
        };
        tokio::time::timeout(RPC_DEADLINE, read)
            .await
            .map_err(|_| {
                tonic::Status::deadline_exceeded(format!("no answer in {RPC_DEADLINE:?}"))
            })?
    }

    /// The reader's channel to `addr`, connecting on first use.
    async fn server(&mut self, addr: &str) -> Result<ChunkServerClient<Channel>, tonic::Status> {
        if let Some(c) = self.servers.get(addr) {
            return Ok(c.clone());
        }
        let c = crate::load::chunkserver(addr)
            .await
            .map_err(|e| tonic::Status::unavailable(format!("connect {addr}: {e}")))?;
        self.servers.insert(addr.to_owned(), c.clone());
        Ok(c)
    }
}
