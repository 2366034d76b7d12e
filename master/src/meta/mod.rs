//! The master's metadata: servers, chunks and where their whole replicas are.
//!
//! Everything here is learned from heartbeats (there is no metadata file) and
//! is plain data behind one mutex: no I/O, time passed in as `now`. Callers
//! hold the lock briefly and do RPCs outside it.
//!
//! # Layout
//! - [`chunk`]: one chunk's compact record.
//! - [`server`]: one chunk server's record.
//! - `heartbeat`: full reports and deltas.
//! - `alloc`: placement of new chunks and the memory of recent allocations.
//! - `moves`: the gates of a move and the bookkeeping of running ones.
//! - `upkeep`: liveness, trimming of excess replicas, repair candidates.
//! - `view`: read-only answers (locate, list, balancer views).

pub mod chunk;
pub mod server;

mod alloc;
mod heartbeat;
mod moves;
mod upkeep;
mod view;

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_ops;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use alloc::{AllocRequest, Allocation, PENDING_TTL};
pub use chunk::{ChunkMeta, Replica, ServerNo};
pub use heartbeat::{Heartbeat, HeartbeatOutcome, ReplicaReport};
pub use moves::{MoveKind, MoveTicket, Reject, ServerAddr};
pub use server::{Excluded, ServerEntry};
pub use upkeep::{CorruptionOutcome, Deletion, Liveness, Repair};
pub use view::{Location, ReplicaLocation, ServerStatus};

/// The metadata as every component shares it. Hold the lock briefly and
/// never across an `.await`.
pub type SharedMeta = Arc<Mutex<Meta>>;

/// Locks the metadata. Poisoning would only follow a bug (nothing in here
/// panics on input); the master keeps serving rather than failing every later
/// request, and the next full reports correct the counts.
pub fn lock(meta: &Mutex<Meta>) -> MutexGuard<'_, Meta> {
    meta.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Settings the metadata needs from the master's flags.
#[derive(Debug, Clone)]
pub struct MetaSettings {
    /// Replication factor for chunks whose replicas carry none (`--replication`).
    pub default_replication: u32,
    /// A server silent this long is dead (`--heartbeat-timeout`).
    pub heartbeat_timeout: Duration,
    /// Dead this long, a server's replicas stop counting (`--re-replicate-after`).
    pub re_replicate_after: Duration,
    /// Share of capacity that must stay free (`--min-free-pct`).
    pub min_free_pct: f64,
}

impl Default for MetaSettings {
    fn default() -> Self {
        MetaSettings {
            default_replication: 3,
            heartbeat_timeout: Duration::from_secs(10),
            re_replicate_after: Duration::from_secs(300),
            min_free_pct: 10.0,
        }
    }
}

/// A chunk that is moving, being copied or being deleted right now.
#[derive(Debug, Clone, Copy)]
struct Busy {
    /// Server receiving a copy and the bytes it will gain.
    incoming: Option<(ServerNo, u64)>,
}

/// Servers, chunks and replicas. See the module docs.
#[derive(Debug, Default)]
pub struct Meta {
    settings: MetaSettings,
    /// Interned servers; a [`ServerNo`] indexes this table and never changes.
    servers: Vec<ServerEntry>,
    /// Server id → its number.
    server_nos: HashMap<Box<str>, ServerNo>,
    /// Every chunk with at least one whole replica.
    chunks: HashMap<Box<str>, ChunkMeta>,
    /// Recent allocations not yet seen in heartbeats.
    pending: HashMap<Box<str>, alloc::Pending>,
    /// Chunks with a move, copy or delete in flight.
    busy: HashMap<Box<str>, Busy>,
    /// Chunks that may hold more whole live replicas than their factor.
    trim_candidates: HashSet<Box<str>>,
    /// Chunks that may hold fewer whole replicas than their factor.
    repair_candidates: HashSet<Box<str>>,
    /// Why a repair candidate could not be repaired last time (logged once).
    repair_blocked: HashMap<Box<str>, String>,
    /// Set when a server came back: its replicas may now be excess.
    rescan_for_trim: bool,
}

impl Meta {
    /// Empty metadata.
    pub fn new(settings: MetaSettings) -> Self {
        Meta {
            settings,
            ..Meta::default()
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &MetaSettings {
        &self.settings
    }

    /// Number of a server by id.
    pub fn server_no(&self, id: &str) -> Option<ServerNo> {
        self.server_nos.get(id).copied()
    }

    /// The server with number `no`.
    pub fn server(&self, no: ServerNo) -> &ServerEntry {
        &self.servers[no as usize]
    }

    /// A server by id.
    pub fn server_by_id(&self, id: &str) -> Option<&ServerEntry> {
        self.server_no(id).map(|n| self.server(n))
    }

    /// A chunk by id.
    pub fn chunk(&self, id: &str) -> Option<&ChunkMeta> {
        self.chunks.get(id)
    }

    /// Number of chunks with at least one whole replica.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Whether `id` has a move, copy or delete in flight.
    pub fn is_busy(&self, id: &str) -> bool {
        self.busy.contains_key(id)
    }

    /// Whole replicas of `c` on live servers.
    fn live_replicas(&self, c: &ChunkMeta) -> usize {
        c.servers().filter(|s| self.server(*s).alive).count()
    }

    /// Records a whole replica of `chunk` on `no` (verified: same size and
    /// CRC32C as the chunk, or the first one seen). Returns `false` and marks
    /// it excluded when it disagrees with the chunk's known facts.
    fn add_replica(&mut self, no: ServerNo, r: &ReplicaReport) -> bool {
        let replication = match r.replication {
            0 => self.settings.default_replication,
            n => n,
        };
        let server = &mut self.servers[no as usize];
        if server.excluded.get(r.chunk.as_str()) == Some(&Excluded::Corrupt) {
            return false;
        }
        if let Some(c) = self.chunks.get_mut(r.chunk.as_str()) {
            if !c.matches(r.size, r.crc32c) {
                tracing::error!(
                    chunk = %r.chunk, server = %server.id, size = r.size, crc32c = r.crc32c,
                    known_size = c.size, known_crc32c = c.crc32c,
                    "replica disagrees with the chunk's size or checksum; not counted as whole"
                );
                if c.remove(no) {
                    server.used -= c.size;
                    server.replicas -= 1;
                }
                server
                    .excluded
                    .insert(r.chunk.as_str().into(), Excluded::Mismatch);
                return false;
            }
            if !c.upsert(no, r.reads) {
                return true;
            }
        } else {
            let mut c = ChunkMeta::new(r.size, r.crc32c, replication);
            c.upsert(no, r.reads);
            self.chunks.insert(r.chunk.as_str().into(), c);
        }
        server.used += r.size;
        server.replicas += 1;
        server.excluded.remove(r.chunk.as_str());
        self.settle_pending(&r.chunk, no);
        if let Some(c) = self.chunks.get(r.chunk.as_str())
            && self.live_replicas(c) > c.replication as usize
        {
            self.trim_candidates.insert(r.chunk.as_str().into());
        }
        true
    }

    /// Forgets `chunk` on `no`, whole or excluded. Drops the chunk when no
    /// whole replica is left. Returns true when something was recorded.
    fn remove_replica(&mut self, no: ServerNo, chunk: &str) -> bool {
        let server = &mut self.servers[no as usize];
        if server.excluded.remove(chunk).is_some() {
            return true;
        }
        let Some(c) = self.chunks.get_mut(chunk) else {
            return false;
        };
        if !c.remove(no) {
            return false;
        }
        server.used -= c.size;
        server.replicas -= 1;
        if c.replicas.is_empty() {
            self.chunks.remove(chunk);
        }
        true
    }

    /// Checks every internal invariant; tests call it after each change.
    pub fn check(&self) -> Result<(), String> {
        let mut used = vec![0u64; self.servers.len()];
        let mut count = vec![0u64; self.servers.len()];
        for (id, c) in &self.chunks {
            if c.replicas.is_empty() {
                return Err(format!("chunk {id} has no replica but is kept"));
            }
            let mut seen = HashSet::new();
            for s in c.servers() {
                if !seen.insert(s) {
                    return Err(format!("chunk {id} lists server {s} twice"));
                }
                used[s as usize] += c.size;
                count[s as usize] += 1;
                if self.servers[s as usize].excluded.contains_key(id.as_ref()) {
                    return Err(format!("chunk {id} is both whole and excluded on {s}"));
                }
            }
        }
        for (i, s) in self.servers.iter().enumerate() {
            if s.used != used[i] || s.replicas != count[i] {
                return Err(format!(
                    "server {}: recorded {} bytes in {} replicas, chunks say {} in {}",
                    s.id, s.used, s.replicas, used[i], count[i]
                ));
            }
            if self.server_nos.get(&s.id) != Some(&(i as ServerNo)) {
                return Err(format!("server {} is not interned at {i}", s.id));
            }
            if s.alive == s.dead_since.is_some() {
                return Err(format!(
                    "server {} alive={} but dead_since disagrees",
                    s.id, s.alive
                ));
            }
        }
        Ok(())
    }
}
