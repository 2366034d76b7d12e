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
//! - `factors`: the factor of a chunk first seen in a heartbeat (never above
//!   what the master allocated, or `--replication` for chunks it did not).
//! - `moves`: the gates of a move and the bookkeeping of running ones.
//! - `liveness`: servers marked dead when silent; `trims`: excess replicas
//!   to delete; `repairs`: repair and drain copies, and damaged copies to delete.
//! - `reads`: each server's read load and hottest replicas, and the order
//!   `LocateChunk` lists holders in.
//! - `view`: read-only answers (locate, list, the servers-only load view).
//! - `store`: the chunk table in numbered slots, and the balancer's view
//!   of it kept up to date as it changes (lent to a pass in O(servers)).
//! - `snapshot`: the balancer's view for a pass, and a full copy in id
//!   order for tests and tools.

pub mod chunk;
pub mod server;

mod alloc;
mod explain;
mod factors;
mod heartbeat;
mod limits;
mod liveness;
mod moves;
mod paged;
mod reads;
mod redundancy;
mod repairs;
mod snapshot;
mod staying;
mod store;
mod trims;
mod upkeep;
mod view;

#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_faults;
#[cfg(test)]
mod tests_ops;
#[cfg(test)]
mod tests_reads;
#[cfg(test)]
mod tests_redundancy;
#[cfg(test)]
mod tests_sim;

use std::collections::{HashMap, HashSet};

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

pub use alloc::{AllocRequest, Allocation, PENDING_TTL};
pub use chunk::{ChunkRecord, Replica, ServerNo};
pub use explain::{ChunkJobInfo, Explanation, ReplicaInfo};
pub use heartbeat::{Heartbeat, HeartbeatOutcome, ReplicaReport};
pub use liveness::Liveness;
pub use moves::{CopyClass, Job, MoveTicket, Reject, ServerAddr};
pub use paged::PagedStart;
pub use reads::{
    Holder, MAX_HOT_CHUNKS, ReadReport, ServerReads, load_step, order_replicas, tie_hash,
};
pub use redundancy::{FULL_SCAN_EVERY, Redundancy, Verify, VerifyOutcome};
pub use repairs::{QueuedCopies, Repair, RepairPlan};
pub use server::{Excluded, ServerEntry, ServerState, Stamp};
pub use snapshot::{ViewSnapshot, find_sorted};
pub use staying::{Held, Staying};
pub use trims::Deletion;
pub use upkeep::{UpkeepLimits, UpkeepPlan};
pub use view::{Location, ReplicaLocation, RunningCopy, ServerStatus};

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
    /// Load band half-width, percent of the mean reads/s
    /// (`--load-threshold-pct`; 0: bytes only): where `list_servers` places
    /// each server, and the step `LocateChunk` compares holders in.
    pub load_threshold_pct: f64,
}

impl Default for MetaSettings {
    fn default() -> Self {
        MetaSettings {
            default_replication: 3,
            heartbeat_timeout: Duration::from_secs(10),
            re_replicate_after: Duration::from_secs(300),
            min_free_pct: 10.0,
            load_threshold_pct: keel_balancer::traffic::DEFAULT_LOAD_THRESHOLD_PCT,
        }
    }
}

/// What recording a reported replica did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upsert {
    /// A new whole replica.
    Added,
    /// Already recorded; its read count was refreshed.
    Refreshed,
    /// Not whole (corrupt, or disagreeing with the chunk's facts).
    Excluded,
}

/// A chunk that is moving, being copied or being deleted right now.
#[derive(Debug, Clone, Copy)]
struct Busy {
    /// Server receiving a copy and the bytes it will gain.
    incoming: Option<(ServerNo, u64)>,
    /// What runs, for operators.
    job: Job,
}

/// What the master remembers of a chunk whose last whole replica is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LostChunk {
    /// Size in bytes.
    pub size: u64,
    /// CRC32C.
    pub crc32c: u32,
    /// Its factor.
    pub replication: u32,
}

/// Servers per chunk, for the small per-chunk marks below.
type ServerMarks = HashMap<Box<str>, smallvec::SmallVec<[ServerNo; 2]>>;

/// Adds `no` to the marks of `chunk`.
fn mark(marks: &mut ServerMarks, chunk: &str, no: ServerNo) {
    let m = marks.entry(chunk.into()).or_default();
    if !m.contains(&no) {
        m.push(no);
    }
}

/// Servers, chunks and replicas. See the module docs.
#[derive(Debug, Default)]
pub struct Meta {
    settings: MetaSettings,
    /// Interned servers; a [`ServerNo`] indexes this table and never changes.
    servers: Vec<ServerEntry>,
    /// Server id → its number.
    server_nos: HashMap<Box<str>, ServerNo>,
    /// Every chunk with at least one whole replica, with the balancer's
    /// view of them.
    chunks: store::ChunkStore,
    /// Recent allocations not yet seen in heartbeats.
    pending: HashMap<Box<str>, alloc::Pending>,
    /// Factors of recent allocations: the ceiling of a newly seen chunk's.
    factors: factors::AllocatedFactors,
    /// Chunks with a move, copy or delete in flight.
    busy: HashMap<Box<str>, Busy>,
    /// Chunks that may hold more whole live replicas than their factor.
    trim_candidates: HashSet<Box<str>>,
    /// Servers whose copy of a chunk was verified corrupt, until the chunk
    /// is back at its factor: repairs place new replicas elsewhere first,
    /// and the damaged copies are deleted only then.
    corrupt_on: ServerMarks,
    /// Replicas reported corrupt and not yet verified by their server: they
    /// still serve reads but never count towards deleting another replica.
    suspect: ServerMarks,
    /// Verifications running now (chunk, server).
    verifying: HashSet<(Box<str>, ServerNo)>,
    /// Identities of the copies verified corrupt, until deleted.
    damaged_ids: HashMap<(Box<str>, ServerNo), u64>,
    /// Servers holding a copy whose size or CRC32C disagree with its
    /// chunk's (see [`Excluded::Mismatch`]), for the repair pass to delete.
    mismatched: ServerMarks,
    /// Deletes of damaged or mismatched copies running now.
    deleting_damaged: HashSet<(Box<str>, ServerNo)>,
    /// Replicas whose `DeleteChunk` failed or timed out: the delete may
    /// still run, so they count for nothing and are accepted as no copy
    /// until a full report built with no delete of them running.
    doubted: ServerMarks,
    /// Servers that reported a replica gone without the master deleting it,
    /// until the chunk is back at its factor (for `explain`).
    missing_on: ServerMarks,
    /// Chunks whose every whole replica is gone: reported, never dropped
    /// silently. Leaves when a server reports one again.
    lost: HashMap<Box<str>, LostChunk>,
    /// Redundancy as of the last maintenance pass.
    redundancy: Redundancy,
    /// Chunks first seen below their factor, and since when (set by the
    /// first repair pass that looks at them): their other replicas may still
    /// be on their way, as after a write without an allocation.
    young: HashMap<Box<str>, Option<std::time::Instant>>,
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
    pub fn chunk(&self, id: &str) -> Option<&ChunkRecord> {
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
    fn live_replicas(&self, c: &ChunkRecord) -> usize {
        c.servers().filter(|s| self.server(*s).alive).count()
    }

    /// Records a whole replica of `chunk` on `no` (verified: same size and
    /// CRC32C as the chunk, or the first one seen). A replica that disagrees
    /// with the chunk's known facts is marked excluded instead.
    fn add_replica(&mut self, no: ServerNo, r: &ReplicaReport) -> Upsert {
        let n = no as usize;
        let excluded = &self.servers[n].excluded;
        if !excluded.is_empty() && excluded.get(r.chunk.as_str()) == Some(&Excluded::Corrupt) {
            return Upsert::Excluded;
        }
        if r.suspect {
            self.mark_suspect(&r.chunk, no);
        }
        let mut over = false;
        match self.chunks.find(&r.chunk) {
            Some(slot) => {
                let c = self.chunks.slot_meta(slot);
                if !c.matches(r.size, r.crc32c) {
                    let (size, crc32c) = (c.size, c.crc32c);
                    self.exclude_mismatch(no, r, size, crc32c);
                    return Upsert::Excluded;
                }
                // An unchanged replica leaves the balancer's view alone.
                if c.replica_on(no).is_some_and(|rep| {
                    rep.reads == chunk::clamp_reads(r.reads) && rep.id == r.replica_id
                }) {
                    return Upsert::Refreshed;
                }
                let c = self.chunks.slot_meta_mut(slot);
                if !c.upsert(no, r.reads, r.replica_id) {
                    return Upsert::Refreshed;
                }
                let c = self.chunks.slot_meta(slot);
                if !self.young.is_empty() && c.replicas.len() >= c.replication as usize {
                    self.young.remove(r.chunk.as_str());
                }
                over = c.replicas.len() > c.replication as usize
                    && c.servers()
                        .filter(|&s| self.servers[s as usize].alive)
                        .count()
                        > c.replication as usize;
            }
            None => {
                // A lost chunk keeps its facts: a copy that disagrees with
                // them is a mismatched copy, never the chunk redefined (the
                // real chunk's copy, heard later, would be taken for the odd one).
                if let Some(l) = self.lost.get(r.chunk.as_str())
                    && (l.size, l.crc32c) != (r.size, r.crc32c)
                {
                    let (size, crc32c) = (l.size, l.crc32c);
                    self.exclude_mismatch(no, r, size, crc32c);
                    return Upsert::Excluded;
                }
                let policy = self.settings.default_replication;
                let replication = self.factors.adopt(&r.chunk, r.replication, policy);
                if replication < r.replication {
                    tracing::warn!(chunk = %r.chunk, server = %self.servers[n].id, reported = r.replication, replication, "a replica reports a factor the master did not allocate; kept at the master's");
                }
                let mut c = ChunkRecord::new(r.size, r.crc32c, replication);
                c.upsert(no, r.reads, r.replica_id);
                let slot = self.chunks.insert(&r.chunk, c);
                // First sight (a new write, or a view rebuilt after a master
                // restart): the repair pass checks its factor once writes settle.
                if replication > 1 {
                    self.chunks.add_candidate_slot(slot);
                    self.young.insert(r.chunk.as_str().into(), None);
                }
                if !self.lost.is_empty() && self.lost.remove(r.chunk.as_str()).is_some() {
                    tracing::info!(chunk = %r.chunk, server = %self.servers[n].id, "a replica of a lost chunk is back");
                }
            }
        }
        let server = &mut self.servers[n];
        server.used += r.size;
        server.replicas += 1;
        if !server.excluded.is_empty() {
            server.excluded.remove(r.chunk.as_str());
        }
        if !self.pending.is_empty() {
            self.settle_pending(&r.chunk, no);
        }
        if over {
            self.trim_candidates.insert(r.chunk.as_str().into());
        }
        // A replica learned on a draining server needs its drain copy: the
        // mark may have been followed before this replica was known (a
        // server's first report to a restarted master sets the mark, then
        // lists its chunks), and the drain counts only candidates.
        if self.servers[n].draining {
            self.chunks.add_candidate(&r.chunk);
        }
        Upsert::Added
    }

    /// `r` disagrees with the chunk's known size or CRC32C: it is not a whole
    /// replica. Forgets `no` as a holder and marks the copy excluded.
    fn exclude_mismatch(&mut self, no: ServerNo, r: &ReplicaReport, size: u64, crc32c: u32) {
        let server_id = self.servers[no as usize].id.clone();
        tracing::error!(
            chunk = %r.chunk, server = %server_id, size = r.size, crc32c = r.crc32c,
            known_size = size, known_crc32c = crc32c,
            "replica disagrees with the chunk's size or checksum; not counted as whole"
        );
        if let Some(c) = self.chunks.get_mut(r.chunk.as_str())
            && c.remove(no)
        {
            let server = &mut self.servers[no as usize];
            server.used -= c.size;
            server.replicas -= 1;
            if c.replicas.is_empty() {
                let lost = LostChunk {
                    size: c.size,
                    crc32c: c.crc32c,
                    replication: c.replication,
                };
                self.chunks.remove(r.chunk.as_str());
                tracing::error!(chunk = %r.chunk, last_server = %server_id, "chunk lost: its last replica disagrees with it");
                self.lost.insert(r.chunk.as_str().into(), lost);
            }
        }
        let replica = r.replica_id;
        self.servers[no as usize]
            .excluded
            .insert(r.chunk.as_str().into(), Excluded::Mismatch { replica });
        // Its next pass deletes the copy once the chunk is whole elsewhere.
        mark(&mut self.mismatched, &r.chunk, no);
        if self.chunks.contains_key(r.chunk.as_str()) {
            self.chunks.add_candidate(&r.chunk);
        }
    }

    /// Forgets `chunk` on `no`, whole or excluded. A chunk left with no
    /// whole replica is remembered as lost; one left with some is checked by
    /// the next repair pass. Returns true when something was recorded.
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
            let lost = LostChunk {
                size: c.size,
                crc32c: c.crc32c,
                replication: c.replication,
            };
            self.chunks.remove(chunk);
            tracing::error!(chunk, last_server = %self.servers[no as usize].id, "chunk lost: no whole replica is left anywhere");
            self.lost.insert(chunk.into(), lost);
        } else {
            self.chunks.add_candidate(chunk);
        }
        true
    }

    /// A replica of `chunk` on `no` went away without the master deleting
    /// it (a wiped disk, a vanished or damaged file).
    pub(super) fn lost_on(&mut self, no: ServerNo, chunk: &str) {
        mark(&mut self.missing_on, chunk, no);
    }

    /// Every chunk `no` holds becomes a repair candidate (it died, or is
    /// draining). One scan of the chunk table.
    fn queue_chunks_of(&mut self, no: ServerNo) {
        let slots: Vec<u32> = self
            .chunks
            .iter_slots()
            .filter(|(_, _, c)| c.holds(no))
            .map(|(n, _, _)| n)
            .collect();
        for n in slots {
            self.chunks.add_candidate_slot(n);
        }
    }

    /// Its server reports the replica of `chunk` on `no` suspect (its mark
    /// outlived a verification, a restart or a failover): it counts for no
    /// delete until verified, which the next pass asks for.
    fn mark_suspect(&mut self, chunk: &str, no: ServerNo) {
        if !self.is_suspect(chunk, no) {
            tracing::warn!(chunk, server = %self.servers[no as usize].id, "replica reported suspect by its server; verified before it counts");
            mark(&mut self.suspect, chunk, no);
        }
    }

    /// The identity of the replica of `chunk` on `no` (0: not known).
    pub fn replica_id(&self, chunk: &str, no: ServerNo) -> u64 {
        self.chunks
            .get(chunk)
            .and_then(|c| c.replica_on(no))
            .map_or(0, |r| r.id)
    }

    /// Whether the replica of `chunk` on `no` awaits verification.
    pub fn is_suspect(&self, chunk: &str, no: ServerNo) -> bool {
        !self.suspect.is_empty() && self.suspect.get(chunk).is_some_and(|s| s.contains(&no))
    }

    /// Chunks whose every whole replica is gone.
    pub fn lost_chunks(&self) -> &HashMap<Box<str>, LostChunk> {
        &self.lost
    }

    /// Checks every internal invariant; tests call it after each change.
    pub fn check(&self) -> Result<(), String> {
        let mut used = vec![0u64; self.servers.len()];
        let mut count = vec![0u64; self.servers.len()];
        for (id, c) in self.chunks.iter() {
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
                if self.servers[s as usize].excluded.contains_key(id) {
                    return Err(format!("chunk {id} is both whole and excluded on {s}"));
                }
            }
        }
        self.chunks.check()?;
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
