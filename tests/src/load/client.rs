//! One client: a loop of paced operations, reads that find a chunk the way
//! a client with a location cache does, and writes the way `keelctl put`
//! sends them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use keel_proto::v1::chunk_server_client::ChunkServerClient;
use keel_proto::v1::master_client::MasterClient;
use keel_proto::v1::{
    AllocateChunkRequest, ChunkHeader, ReadChunkRequest, WriteCapability, WriteChunkRequest,
};
use tonic::transport::{Channel, Endpoint};

use super::{Chunk, Sample, Shared, locate, lock};
use crate::chunks::pattern;
use crate::faults::{Rng, quick_master};

/// Times a client asks the master where a chunk is before the read fails.
const LOCATES: u32 = 10;
/// Pause before the third and later locates, times the attempt: the master
/// may not have recorded a finished move yet.
const RELOCATE_PAUSE: Duration = Duration::from_millis(50);
/// Longest one read or one replica write may take before it counts as failed.
const RPC_DEADLINE: Duration = Duration::from_secs(30);
/// HTTP/2 stream and connection windows and frame size of chunk-server
/// channels: the figures `keelctl` and the chunk servers use, so a 512 KiB
/// frame rarely waits for a window update (the defaults are 64 KiB windows
/// and 16 KiB frames).
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 8 << 20;
const H2_FRAME: u32 = 256 << 10;

/// One client's loop: paced operations until the stop flag is set.
pub(super) async fn run(shared: Arc<Shared>, no: usize) {
    let master = match quick_master(&shared.master).await {
        Ok(m) => m,
        Err(e) => {
            let why = format!("client {no}: cannot reach the master: {e:#}");
            return lock(&shared.report).failed_reads.push(why);
        }
    };
    let seed = shared.opts.seed.wrapping_mul(1000).wrapping_add(no as u64);
    let mut c = Client {
        no,
        shared: Arc::clone(&shared),
        rng: Rng::new(seed),
        master,
        servers: HashMap::new(),
        located: HashMap::new(),
        written: 0,
    };
    let period = (shared.opts.ops_per_sec > 0.0)
        .then(|| Duration::from_secs_f64(1.0 / shared.opts.ops_per_sec));
    let mut next = tokio::time::Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(p) = period {
            // Gaps of 0.5–1.5 periods, the first one too: clients started
            // together must not keep operating in lockstep, which would
            // queue their reads behind each other and measure that instead.
            next += p.mul_f64(0.5 + c.rng.range(0, 1000) as f64 / 1000.0);
            tokio::time::sleep_until(next).await;
            next = next.max(tokio::time::Instant::now());
            if shared.stop.load(Ordering::Relaxed) {
                break;
            }
        }
        c.step().await;
    }
}

/// A client: its channels, the locations it remembers, its random choices.
struct Client {
    no: usize,
    shared: Arc<Shared>,
    rng: Rng,
    master: MasterClient<Channel>,
    /// One channel per chunk-server address, opened on first use.
    servers: HashMap<String, ChunkServerClient<Channel>>,
    /// Live replica addresses per chunk, as last learned.
    located: HashMap<String, Vec<String>>,
    written: u64,
}

impl Client {
    /// One operation: a write now and then, otherwise a read of a random
    /// known chunk.
    async fn step(&mut self) {
        let one_in = self.shared.opts.write_one_in;
        let pick = {
            let all = self.shared.chunks.read().expect("chunks lock");
            (!all.is_empty()).then(|| Arc::clone(self.rng.pick(&all)))
        };
        match pick {
            Some(chunk) if one_in == 0 || self.rng.range(0, one_in) != 0 => {
                self.timed_read(&chunk).await;
            }
            None if one_in == 0 => tokio::time::sleep(Duration::from_millis(10)).await,
            _ => self.timed_write().await,
        }
    }

    async fn timed_read(&mut self, chunk: &Chunk) {
        let at = Instant::now();
        let got = self.read(chunk).await;
        let latency = at.elapsed();
        let checked = got.and_then(|(data, relocated)| {
            chunk.check(&data)?;
            Ok(relocated)
        });
        let mut r = lock(&self.shared.report);
        match checked {
            Ok(relocated) => {
                r.reads += 1;
                r.relocated += u64::from(relocated);
                r.bytes_read += chunk.len as u64;
                drop(r);
                lock(&self.shared.samples).push(Sample {
                    at,
                    latency,
                    bytes: chunk.len as u64,
                    relocated,
                });
            }
            Err(e) => r.failed_reads.push(e),
        }
    }

    /// Reads `chunk` whole: remembered replicas first, then the master again
    /// when none serves it. Returns the bytes and whether it located again.
    async fn read(&mut self, chunk: &Chunk) -> Result<(Vec<u8>, bool), String> {
        let id = chunk.id.as_str();
        if !self.located.contains_key(id) && !chunk.written_to.is_empty() {
            self.located.insert(id.to_owned(), chunk.written_to.clone());
        }
        let mut last = String::new();
        for attempt in 0..LOCATES {
            if attempt > 0 || !self.located.contains_key(id) {
                if attempt > 1 {
                    tokio::time::sleep(RELOCATE_PAUSE * attempt).await;
                }
                match locate(&mut self.master, id).await {
                    Ok(live) => self.located.insert(id.to_owned(), live),
                    Err(e) => {
                        last = e;
                        continue;
                    }
                };
            }
            let mut replicas = self.located.get(id).cloned().unwrap_or_default();
            if replicas.is_empty() {
                last = "the master lists no live replica".into();
            }
            // Start at a random replica, so reads spread over all of them.
            let first = self.rng.range(0, replicas.len() as u64) as usize;
            replicas.rotate_left(first);
            for addr in &replicas {
                match self.read_from(addr, id).await {
                    Ok(data) => return Ok((data, attempt > 0)),
                    Err(e) => last = format!("{addr}: {e}"),
                }
            }
        }
        Err(format!(
            "{id}: no replica served it after {LOCATES} locates; last: {last}"
        ))
    }

    /// Reads `id` whole from one replica, checking it against its header.
    async fn read_from(&mut self, addr: &str, id: &str) -> Result<Vec<u8>, String> {
        let mut cs = self.server(addr).await?;
        let req = ReadChunkRequest {
            chunk: id.to_owned(),
            migration: false,
        };
        let read = async move {
            let mut stream = cs
                .read_chunk(req)
                .await
                .map_err(|s| s.to_string())?
                .into_inner();
            let (mut header, mut data) = (None, Vec::new());
            while let Some(msg) = stream.next().await {
                let msg = msg.map_err(|s| s.to_string())?;
                header = header.or(msg.header);
                data.extend_from_slice(&msg.data);
            }
            match header {
                Some(h) if h.size == data.len() as u64 && h.crc32c == crc32c::crc32c(&data) => {
                    Ok(data)
                }
                _ => Err("the stream does not match its header".to_owned()),
            }
        };
        tokio::time::timeout(RPC_DEADLINE, read)
            .await
            .map_err(|_| format!("no answer in {RPC_DEADLINE:?}"))?
    }

    /// The cached channel to `addr`, connecting on first use.
    async fn server(&mut self, addr: &str) -> Result<ChunkServerClient<Channel>, String> {
        if let Some(c) = self.servers.get(addr) {
            return Ok(c.clone());
        }
        let c = chunkserver(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        self.servers.insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    async fn timed_write(&mut self) {
        let outcome = self.write().await;
        let mut r = lock(&self.shared.report);
        match outcome {
            Ok(chunk) => {
                r.writes += 1;
                r.bytes_written += chunk.len as u64;
                drop(r);
                let mut all = self.shared.chunks.write().expect("chunks lock");
                all.push(Arc::new(chunk));
            }
            Err(e) => r.failed_writes.push(e),
        }
    }

    /// Writes a new chunk as `keelctl put` does; `Ok` once every replica
    /// acknowledged it.
    async fn write(&mut self) -> Result<Chunk, String> {
        let o = &self.shared.opts;
        let id = format!("{}-{}-{}", o.prefix, self.no, self.written);
        self.written += 1;
        let len = self.rng.range(o.sizes.0 as u64, o.sizes.1 as u64 + 1) as usize;
        let mut chunk = Chunk::new(&id, self.rng.next_u64(), len, o.replication);
        let req = AllocateChunkRequest {
            chunk: id.clone(),
            size: len as u64,
            replication: o.replication,
            on: vec![],
        };
        let alloc = self.master.allocate_chunk(req).await;
        let alloc = alloc
            .map_err(|s| format!("{id}: allocate: {s}"))?
            .into_inner();
        if alloc.servers.is_empty() {
            return Err(format!("{id}: the master placed it nowhere"));
        }
        chunk.replication = match alloc.replication {
            0 => alloc.servers.len() as u32,
            n => n,
        };
        let header = ChunkHeader {
            chunk: id.clone(),
            size: len as u64,
            crc32c: chunk.crc32c,
            replication: chunk.replication,
        };
        let data = pattern(chunk.seed, len);
        let mut writes = vec![];
        for s in &alloc.servers {
            let cs = self
                .server(&s.address)
                .await
                .map_err(|e| format!("{id}: {e}"))?;
            let cap = alloc.capability.clone();
            writes.push(write_replica(cs, header.clone(), cap, &data, &s.id));
        }
        for r in futures::future::join_all(writes).await {
            r.map_err(|e| format!("{id}: {e}"))?;
        }
        chunk.written_to = alloc.servers.into_iter().map(|s| s.address).collect();
        Ok(chunk)
    }
}

/// A chunk-server client on a channel set up as a real client's is.
pub(crate) async fn chunkserver(
    url: &str,
) -> Result<ChunkServerClient<Channel>, tonic::transport::Error> {
    let ch = Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(H2_FRAME)
        .connect()
        .await?;
    Ok(ChunkServerClient::new(ch)
        .max_decoding_message_size(keel_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(keel_proto::MAX_MESSAGE_BYTES))
}

/// Streams one replica and checks what the server says it stored.
async fn write_replica(
    mut cs: ChunkServerClient<Channel>,
    header: ChunkHeader,
    capability: Option<WriteCapability>,
    data: &[u8],
    server: &str,
) -> Result<(), String> {
    let (size, crc) = (header.size, header.crc32c);
    let first = WriteChunkRequest {
        header: Some(header),
        data: Default::default(),
        capability,
    };
    let frames = data
        .chunks(keel_proto::FRAME_BYTES)
        .map(|d| WriteChunkRequest {
            header: None,
            data: d.to_vec().into(),
            capability: None,
        });
    let msgs: Vec<WriteChunkRequest> = std::iter::once(first).chain(frames).collect();
    let call = cs.write_chunk(tokio_stream::iter(msgs));
    let resp = tokio::time::timeout(RPC_DEADLINE, call)
        .await
        .map_err(|_| format!("{server}: no answer in {RPC_DEADLINE:?}"))?
        .map_err(|s| format!("{server}: {s}"))?
        .into_inner();
    if (resp.size, resp.crc32c) != (size, crc) {
        return Err(format!(
            "{server} stored {} bytes with CRC32C {:#010x}",
            resp.size, resp.crc32c
        ));
    }
    Ok(())
}
