//! Helpers for the fault suite (`t70_*` … `t79_*`): a seeded random source
//! and the seed list, polling that keeps the last reason a condition failed,
//! the recovery invariant of a cluster (every chunk at its factor on exactly
//! the servers the master names, bytes intact, no temp files), and a
//! snapshot of everything a refused request must leave alone.
//!
//! # Layout
//! - [`raw`]: a gRPC call that sends any bytes to any method.
//! - [`relay`]: a TCP relay in front of a daemon that can hold its replies
//!   back or stall one process's connections (a partition).
//! - [`net`]: a cluster with a relay in front of every daemon.

pub mod net;
pub mod raw;
pub mod relay;

pub use net::Net;
pub use raw::{Shape, raw_call};
pub use relay::{Relay, Traffic};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use keel_proto::v1::{
    DeleteChunkRequest, Move, RebalanceExecuteRequest, RebalanceExecuteResponse,
    RebalanceStatusRequest,
};

use keel_proto::v1::chunk_server_client::ChunkServerClient;
use keel_proto::v1::master_client::MasterClient;
use keel_proto::v1::{ListServersRequest, LocateChunkRequest, ServerStatusRequest};
use tonic::transport::Channel;

use crate::master::{self, ServerRow};
use crate::{Cluster, chunks, cs};

/// A channel with Nagle off: small requests go out at once instead of
/// waiting up to 40 ms for an ACK, which tests issuing thousands of RPCs feel.
pub async fn quick_channel(url: &str) -> Result<Channel> {
    Ok(Channel::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect()
        .await?)
}

/// A master client on a [`quick_channel`], with Keel's message limits.
pub async fn quick_master(url: &str) -> Result<MasterClient<Channel>> {
    Ok(MasterClient::new(quick_channel(url).await?)
        .max_decoding_message_size(keel_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(keel_proto::MAX_MESSAGE_BYTES))
}

/// A chunk-server client on a [`quick_channel`], with Keel's message limits.
pub async fn quick_chunkserver(url: &str) -> Result<ChunkServerClient<Channel>> {
    Ok(ChunkServerClient::new(quick_channel(url).await?)
        .max_decoding_message_size(keel_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(keel_proto::MAX_MESSAGE_BYTES))
}

/// Picks fault schedules: the balancer's seeded SplitMix64, with half-open
/// ranges (`lo..hi`) as the trials use them.
#[derive(Debug, Clone)]
pub struct Rng(keel_balancer::sim::Rng);

impl Rng {
    /// A generator whose whole sequence follows from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(keel_balancer::sim::Rng::new(seed))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A number in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.range(0, den) < num
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len() as u64) as usize]
    }
}

/// Seeds of the trials to run: `KEEL_FAULT_SEED=S` replays trial `S` alone;
/// otherwise seeds `1..=N` with `N` from `KEEL_FAULT_TRIALS` or `default`.
pub fn trial_seeds(default: u64) -> Vec<u64> {
    if let Ok(s) = std::env::var("KEEL_FAULT_SEED") {
        let seed = s.trim().parse().expect("KEEL_FAULT_SEED is a number");
        return vec![seed];
    }
    let n = std::env::var("KEEL_FAULT_TRIALS")
        .ok()
        .map(|s| s.trim().parse().expect("KEEL_FAULT_TRIALS is a number"))
        .unwrap_or(default);
    (1..=n).collect()
}

/// Polls `check` every `every` until it returns `Ok` or `timeout` passes;
/// the error carries the last reason it gave.
pub async fn converge<F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let why = match check().await {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        if Instant::now() >= deadline {
            bail!("{what}: not reached within {timeout:?}; last: {why}");
        }
        tokio::time::sleep(every).await;
    }
}

/// A chunk a test wrote and must find again, whole.
#[derive(Debug, Clone)]
pub struct Known {
    /// Chunk id.
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC32C of its bytes.
    pub crc32c: u32,
    /// Replication factor it was written with.
    pub replication: u32,
}

impl Known {
    /// Describes `data` written as `id` with `replication`.
    pub fn of(id: &str, data: &[u8], replication: u32) -> Self {
        Known {
            id: id.to_owned(),
            size: data.len() as u64,
            crc32c: crc32c::crc32c(data),
            replication,
        }
    }
}

/// Servers whose data dir holds a committed file of `chunk`.
pub fn holders_on_disk(cluster: &Cluster, chunk: &str) -> Vec<String> {
    cluster
        .chunkservers
        .keys()
        .filter(|id| {
            cs::chunk_files(&cluster.data_dir(id))
                .iter()
                .any(|f| f == chunk)
        })
        .cloned()
        .collect()
}

/// The recovery invariant, checked once: every chunk server is alive in the
/// master's view; no data dir holds a temp file; every chunk in `known` is
/// located with its size and checksum on exactly `replication` live servers,
/// and exactly those servers hold its file on disk.
pub async fn placement_ok(cluster: &Cluster, known: &[Known]) -> Result<(), String> {
    placement_ok_at(cluster, &cluster.master_url(), known).await
}

/// [`placement_ok`] as the master at `master_url` sees it (one of several).
pub async fn placement_ok_at(
    cluster: &Cluster,
    master_url: &str,
    known: &[Known],
) -> Result<(), String> {
    let mut m = quick_master(master_url)
        .await
        .map_err(|e| format!("connecting to the master: {e:#}"))?;
    let servers = m
        .list_servers(ListServersRequest {})
        .await
        .map_err(|s| format!("ListServers: {s}"))?
        .into_inner()
        .servers;
    for id in cluster.chunkservers.keys() {
        if !servers.iter().any(|s| &s.id == id && s.state == 1) {
            return Err(format!("{id} is not alive in the master's view"));
        }
    }
    for id in cluster.chunkservers.keys() {
        let temp = cs::temp_files(&cluster.data_dir(id));
        if !temp.is_empty() {
            return Err(format!("{id} has temp files {temp:?}"));
        }
    }
    for k in known {
        let req = LocateChunkRequest {
            chunk: k.id.clone(),
            rack: Default::default(),
        };
        let loc = m
            .locate_chunk(req)
            .await
            .map_err(|s| format!("LocateChunk {}: {:?} {}", k.id, s.code(), s.message()))?
            .into_inner();
        if (loc.size, loc.crc32c, loc.replication) != (k.size, k.crc32c, k.replication) {
            return Err(format!("{} located as {loc:?}, want {k:?}", k.id));
        }
        let mut named: Vec<String> = loc
            .replicas
            .iter()
            .filter(|r| r.alive)
            .map(|r| r.id.clone())
            .collect();
        named.sort();
        if named.len() != loc.replicas.len() || named.len() != k.replication as usize {
            return Err(format!(
                "{} has replicas {:?}, want {} live",
                k.id, loc.replicas, k.replication
            ));
        }
        let on_disk = holders_on_disk(cluster, &k.id);
        if on_disk != named {
            return Err(format!(
                "{}: master names {named:?}, files on {on_disk:?}",
                k.id
            ));
        }
    }
    Ok(())
}

/// Reads every replica of every chunk in `known` from the servers that hold
/// its file. Returns the bytes of chunks with no intact replica anywhere
/// (lost), and a description of each bad replica.
pub async fn verify_bytes(cluster: &Cluster, known: &[Known]) -> (u64, Vec<String>) {
    let mut lost = 0;
    let mut bad = vec![];
    for k in known {
        let mut intact = 0;
        for s in holders_on_disk(cluster, &k.id) {
            match chunks::read(&cluster.chunkservers[&s].url(), &k.id).await {
                Ok(d) if d.len() as u64 == k.size && crc32c::crc32c(&d) == k.crc32c => intact += 1,
                Ok(d) => bad.push(format!(
                    "{} on {s}: {} bytes with another checksum",
                    k.id,
                    d.len()
                )),
                Err(e) => bad.push(format!("{} on {s}: {e:#}", k.id)),
            }
        }
        if intact == 0 {
            lost += k.size;
            bad.push(format!("{}: no intact replica on any server", k.id));
        }
    }
    (lost, bad)
}

/// Starts `RebalanceExecute` of one move in the background; the answer
/// carries exactly one result.
pub fn execute_in_background(
    master_url: &str,
    chunk: &str,
    from: &str,
    to: &str,
) -> tokio::task::JoinHandle<Result<RebalanceExecuteResponse>> {
    let url = master_url.to_owned();
    let mv = Move {
        chunk: chunk.into(),
        from: from.into(),
        to: to.into(),
    };
    tokio::spawn(async move {
        let mut m = crate::master_client(&url).await?;
        let r = m
            .rebalance_execute(RebalanceExecuteRequest { moves: vec![mv] })
            .await?
            .into_inner();
        if r.results.len() != 1 {
            bail!("one move executed, {} results: {r:?}", r.results.len());
        }
        Ok(r)
    })
}

/// Deletes `chunk` from every chunk server holding its file.
pub async fn delete_everywhere(cluster: &Cluster, chunk: &str) -> Result<()> {
    delete_everywhere_at(cluster, chunk, 0).await
}

/// [`delete_everywhere`] under a master's `term` (several masters: the
/// chunk servers refuse terms below the highest they have seen).
pub async fn delete_everywhere_at(cluster: &Cluster, chunk: &str, term: u64) -> Result<()> {
    for s in holders_on_disk(cluster, chunk) {
        let mut c = quick_chunkserver(&cluster.chunkservers[&s].url()).await?;
        c.delete_chunk(DeleteChunkRequest {
            chunk: chunk.to_owned(),
            term,
            ..Default::default()
        })
        .await?;
    }
    Ok(())
}

/// Everything a refused request must leave as it was: the master's servers,
/// the location of the named chunks, the move queue's counters, each chunk
/// server's own status, and every file under every data dir.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// `ListServers` without heartbeat ages.
    pub servers: Vec<ServerRow>,
    /// `LocateChunk` of each named chunk.
    pub chunks: BTreeMap<String, master::Replicas>,
    /// `RebalanceStatus`: paused, pending, running, done, failed, bytes moved.
    pub queue: (bool, u64, u64, u64, u64, u64),
    /// `ServerStatus` of each chunk server.
    pub statuses: BTreeMap<String, keel_proto::v1::ServerStatusResponse>,
    /// Files under each data dir, relative to it.
    pub files: BTreeMap<String, Vec<String>>,
}

/// Takes a [`Snapshot`] of `cluster`, locating `chunks`.
pub async fn snapshot(cluster: &Cluster, chunks: &[&str]) -> Result<Snapshot> {
    let mut m = quick_master(&cluster.master_url()).await?;
    let r = m.list_servers(ListServersRequest {}).await?.into_inner();
    let servers = r.servers.into_iter().map(ServerRow::from).collect();
    let mut located = BTreeMap::new();
    for c in chunks {
        let req = LocateChunkRequest {
            chunk: (*c).to_owned(),
            rack: Default::default(),
        };
        let replicas = match m.locate_chunk(req).await {
            Ok(r) => Some(
                r.into_inner()
                    .replicas
                    .into_iter()
                    .map(|s| (s.id, s.alive))
                    .collect(),
            ),
            Err(s) if s.code() == tonic::Code::NotFound => None,
            Err(s) => return Err(s.into()),
        };
        located.insert((*c).to_owned(), replicas);
    }
    let q = m
        .rebalance_status(RebalanceStatusRequest {})
        .await?
        .into_inner();
    let mut statuses = BTreeMap::new();
    let mut files = BTreeMap::new();
    for (id, d) in &cluster.chunkservers {
        let mut c = quick_chunkserver(&d.url()).await?;
        let status = c.server_status(ServerStatusRequest {}).await?.into_inner();
        statuses.insert(id.clone(), status);
        let root = cluster.data_dir(id);
        let list = cs::files_under(&root)
            .iter()
            .filter_map(|p| p.strip_prefix(&root).ok().map(|p| p.display().to_string()))
            .collect();
        files.insert(id.clone(), list);
    }
    Ok(Snapshot {
        servers,
        chunks: located,
        queue: (
            q.paused,
            q.pending,
            q.running,
            q.done,
            q.failed,
            q.bytes_moved,
        ),
        statuses,
        files,
    })
}
