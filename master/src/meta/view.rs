//! Read-only answers: where a chunk is, how loaded each server is, and the
//! snapshots the balancer crate works on.

use std::time::Instant;

use keel_balancer::ClusterView;
use serde::Serialize;

use keel_balancer::traffic::{LoadPosition, load_position};

use super::{CopyClass, Job, Meta, ServerNo, ServerState};
use crate::error::Error;

/// One replica in a [`Location`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLocation {
    /// Server id.
    pub id: String,
    /// Its gRPC address.
    pub address: String,
    /// Whether the server is alive.
    pub alive: bool,
}

/// Where a chunk's whole replicas are, live servers first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Chunk id.
    pub chunk: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC32C.
    pub crc32c: u32,
    /// Replication factor.
    pub replication: u32,
    /// Replicas in the order readers should try them: live first (see
    /// [`Meta::locate_by_load`]).
    pub replicas: Vec<ReplicaLocation>,
}

/// One server's state for `ListServers`, and the dashboard's server row
/// (its JSON names are the dashboard's: `capacity_bytes`, `used_bytes`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerStatus {
    /// Server id.
    pub id: String,
    /// gRPC address.
    pub address: String,
    /// Rack label, empty when unset.
    pub rack: String,
    /// Alive, dead, draining or drained (serialized as the word).
    pub state: ServerState,
    /// Bytes counted as 100 %.
    #[serde(rename = "capacity_bytes")]
    pub capacity: u64,
    /// Bytes of the whole replicas it holds.
    #[serde(rename = "used_bytes")]
    pub used: u64,
    /// `100 * used / capacity`.
    pub utilization_pct: f64,
    /// Whole replicas it holds.
    pub chunks: u64,
    /// Milliseconds since its last heartbeat.
    pub last_heartbeat_ms: u64,
    /// Whether it is alive (left out of JSON: `state` already says so).
    #[serde(skip)]
    pub alive: bool,
    /// Client read bytes per second (0 while dead).
    pub read_bytes_per_sec: f64,
    /// Client reads per second (0 while dead).
    pub reads_per_sec: f64,
    /// p99 of client read service time, milliseconds (0: no samples).
    pub read_p99_ms: f64,
    /// `hot`, `cold` or `inside` the load band (see
    /// [`keel_balancer::traffic::load_position`]); `inside` for servers
    /// out of balancing (dead, draining) and when load balancing is off.
    pub load: &'static str,
}

/// The word operators read for a load position.
pub fn load_word(p: LoadPosition) -> &'static str {
    match p {
        LoadPosition::Hot => "hot",
        LoadPosition::Cold => "cold",
        LoadPosition::Inside => "inside",
    }
}

/// A repair or drain copy running now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningCopy {
    /// Chunk id.
    pub chunk: String,
    /// Repair or drain.
    pub kind: CopyClass,
    /// Source server id.
    pub from: String,
    /// Target server id.
    pub to: String,
    /// The chunk's size.
    pub bytes: u64,
}

impl Meta {
    /// Where `chunk` is, holders in id order after the live ones.
    pub fn locate(&self, chunk: &str) -> Result<Location, Error> {
        // A step this wide puts every live holder in one load step.
        self.locate_for(chunk, "", f64::MAX)
    }

    /// Where `chunk` is, holders in the order a reader in `rack` (may be
    /// empty) should try them: live first, least loaded in steps of the
    /// load band (see [`super::load_step`]), the reader's rack, then id
    /// (see [`super::order_replicas`]).
    pub fn locate_by_load(&self, chunk: &str, rack: &str) -> Result<Location, Error> {
        let pct = self.settings.load_threshold_pct;
        let step = super::load_step(self.mean_reads_per_sec(), pct);
        self.locate_for(chunk, rack, step)
    }

    fn locate_for(&self, chunk: &str, rack: &str, step: f64) -> Result<Location, Error> {
        let c = self.chunks.get(chunk).ok_or_else(|| Error::ChunkNotFound {
            chunk: chunk.to_owned(),
        })?;
        let holders: Vec<super::Holder> = c
            .servers()
            .map(|no| {
                let s = self.server(no);
                super::Holder {
                    replica: ReplicaLocation {
                        id: s.id.to_string(),
                        address: s.address.clone(),
                        alive: s.alive,
                    },
                    reads_per_sec: self.reads_of(no).rate.reads_per_sec,
                    rack: s.rack.clone(),
                }
            })
            .collect();
        Ok(Location {
            chunk: chunk.to_owned(),
            size: c.size,
            crc32c: c.crc32c,
            replication: c.replication,
            replicas: super::order_replicas(holders, rack, step),
        })
    }

    /// Chunks with a move, copy or delete in flight (the balancer's planner
    /// leaves them alone).
    pub fn busy_chunks(&self) -> impl Iterator<Item = &str> + '_ {
        self.busy.keys().map(AsRef::as_ref)
    }

    /// Ids of the servers marked alive.
    pub fn live_server_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.servers.iter().filter(|s| s.alive).map(|s| &*s.id)
    }

    /// Every known server, sorted by id, each placed against the load band
    /// (`--load-threshold-pct`) around the mean reads/s of the live servers.
    pub fn list_servers(&self, now: Instant) -> Vec<ServerStatus> {
        let mean = self.mean_reads_per_sec();
        let pct = self.settings.load_threshold_pct;
        // Only servers counted in the mean are placed against it.
        let place = |s: &super::ServerEntry, reads: f64| match s.takes_data() {
            true => load_position(reads, mean, pct),
            false => LoadPosition::Inside,
        };
        let mut out: Vec<ServerStatus> = self
            .servers
            .iter()
            .enumerate()
            .map(|(no, s)| (s, self.reads_of(no as ServerNo)))
            .map(|(s, r)| ServerStatus {
                id: s.id.to_string(),
                address: s.address.clone(),
                rack: s.rack.clone(),
                capacity: s.capacity,
                used: s.used,
                utilization_pct: s.utilization_pct(),
                chunks: s.replicas,
                alive: s.alive,
                state: s.state(),
                last_heartbeat_ms: now.saturating_duration_since(s.last_heartbeat).as_millis()
                    as u64,
                read_bytes_per_sec: r.rate.bytes_per_sec,
                reads_per_sec: r.rate.reads_per_sec,
                read_p99_ms: r.p99_ms,
                load: load_word(place(s, r.rate.reads_per_sec)),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Repair and drain copies running now, by chunk id.
    pub fn running_copies(&self) -> Vec<RunningCopy> {
        let mut out: Vec<RunningCopy> = self
            .busy
            .iter()
            .filter_map(|(id, b)| match b.job {
                Job::Copy { kind, from, to } if kind != CopyClass::Balance => Some(RunningCopy {
                    chunk: id.to_string(),
                    kind,
                    from: self.server(from).id.to_string(),
                    to: self.server(to).id.to_string(),
                    bytes: self.chunks.get(id).map_or(0, |c| c.size),
                }),
                _ => None,
            })
            .collect();
        out.sort_by(|a, b| a.chunk.cmp(&b.chunk));
        out
    }

    /// Servers only (no chunks), with `used` filled in: enough for
    /// utilization maths, cheap at any chunk count. A draining server
    /// counts as out of the cluster: the balancer neither fills nor empties
    /// it (its drain does).
    pub fn load_view(&self) -> ClusterView {
        let mut v = ClusterView::new();
        for s in &self.servers {
            let rack = s.has_rack().then(|| s.rack.clone());
            let idx = v.add_server(s.id.to_string(), rack, s.capacity, s.takes_data());
            v.servers[idx.0 as usize].used = s.used;
            v.servers[idx.0 as usize].reads = self.reads_of(idx.0).rate;
        }
        v
    }
}
