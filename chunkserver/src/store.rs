//! The chunks this server holds: an in-memory index over the data dir, exact
//! capacity accounting, reservations for writes and copies in flight, read
//! counters, and the change log heartbeats report from.
//!
//! `used` is always the sum of the sizes of committed chunks; `reserved` the
//! sum of the sizes declared by writes and copies still in flight. A new
//! transfer is admitted only if `used + reserved + size <= capacity`, so
//! concurrent writers can never overcommit the disk.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use keel_proto::chunk_id::ChunkId;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::chunk_file::{
    AppendError, ChunkMeta, FinishError, INODE_REPLICA_BIT, TempChunk, open_chunk,
};
use crate::datadir::DataDir;
use crate::error::{Error, Purpose};
use crate::report::ChangeLog;

mod removal;

pub use removal::DeleteRunning;

/// A committed chunk as the index knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Size, checksum and replication from the chunk's header.
    pub meta: ChunkMeta,
    /// Client reads started since this process started.
    pub reads: u64,
    /// The replica's identity, kept in its file (see `chunk_file`).
    pub replica: u64,
    /// Marked suspect (under verification, or its verification never
    /// ended); the mark is kept in `suspect/` across restarts.
    pub suspect: bool,
}

/// Totals of the store at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Bytes counted as 100 %.
    pub capacity: u64,
    /// Sum of the sizes of committed chunks.
    pub used: u64,
    /// Bytes held for transfers in flight.
    pub reserved: u64,
    /// Committed chunks.
    pub chunks: u64,
    /// Writes and copies in flight.
    pub in_flight: u64,
}

/// Orders this server's reports against its commits and deletes: `seq`
/// grows with every change within one `incarnation` (one process run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Fixed for the life of the process; grows from one run to the next.
    pub incarnation: u64,
    /// The change-log sequence.
    pub seq: u64,
}

/// What [`Store::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Size and CRC32C match the header.
    Whole(ChunkMeta),
    /// Damaged: moved out of `chunks/` into `damaged/` and out of the index.
    Corrupt(String),
    /// The file is gone: dropped from the index.
    Missing,
}

/// What a heartbeat reports: all chunks, or those changed since the last ack.
#[derive(Debug, Clone)]
pub struct Report {
    /// Change-log sequence the report covers; pass it to [`Store::ack`].
    pub seq: u64,
    /// The same sequence with this process's incarnation, for the master.
    pub stamp: Stamp,
    /// Chunks held (all of them for a full report, the changed ones otherwise).
    pub chunks: Vec<(String, Entry)>,
    /// Ids gone since the last ack (empty for a full report).
    pub removed: Vec<String>,
    /// Chunks with a delete running when the report was taken.
    pub deleting: Vec<String>,
    /// Totals when the report was taken.
    pub totals: Totals,
}

#[derive(Debug, Default)]
struct State {
    chunks: HashMap<String, Entry>,
    in_flight: HashSet<String>,
    /// Deletes running (admitted, not ended), by chunk id.
    deleting: HashMap<String, usize>,
    /// Identities of the copies this run moved to `damaged/`.
    damaged: HashMap<String, u64>,
    used: u64,
    reserved: u64,
    log: ChangeLog,
}

/// The chunk store of one server.
#[derive(Debug)]
pub struct Store {
    dir: DataDir,
    capacity: u64,
    state: Mutex<State>,
    /// Woken after every commit and delete, so a heartbeat goes out soon.
    changed: watch::Sender<u64>,
    /// Makes temp file names unique within this process (tmp/ is ours alone).
    tmp_seq: AtomicU64,
    /// This process run, for [`Stamp`]s.
    incarnation: u64,
    /// The drain mark (`DRAINING` in the data dir), mirrored in memory.
    draining: AtomicBool,
    /// The last replica identity handed out (see [`Store::next_replica`]).
    last_replica: AtomicU64,
    /// Client read rates; a chunk leaves it when it leaves the index.
    pub heat: Arc<crate::heat::Heat>,
}

impl Store {
    /// Opens (creating if needed) the data dir and rebuilds the index from it.
    /// Blocking: call it from a blocking context.
    pub fn open(root: &Path, server_id: &str, capacity: Option<u64>) -> Result<Arc<Self>, Error> {
        let dir = DataDir::open(root, server_id)?;
        let capacity = match capacity {
            Some(c) => c,
            None => dir.fs_size()?,
        };
        let suspects = dir.suspects()?;
        let chunks: HashMap<String, Entry> = dir
            .scan()?
            .into_iter()
            .map(|(id, (meta, replica))| {
                let suspect = suspects.get(&id) == Some(&replica);
                let entry = Entry {
                    meta,
                    reads: 0,
                    replica,
                    suspect,
                };
                (id, entry)
            })
            .collect();
        for (id, replica) in &suspects {
            if chunks.get(id).is_none_or(|e| e.replica != *replica) {
                // The replica it meant is gone: nothing is left to doubt.
                dir.clear_suspect(id)
                    .map_err(|e| Error::io(format!("clearing the suspect mark of {id}"), e))?;
            }
        }
        let suspect = chunks.values().filter(|e| e.suspect).count();
        if suspect > 0 {
            warn!(
                suspect,
                "replicas marked suspect by an unfinished verification; reported as such until a master verifies them"
            );
        }
        let last_replica = chunks
            .values()
            .map(|e| e.replica)
            .filter(|r| r & INODE_REPLICA_BIT == 0)
            .max()
            .unwrap_or(0);
        let used = chunks.values().map(|e| e.meta.size).sum();
        info!(chunks = chunks.len(), used, capacity, dir = %root.display(), "store opened");
        if used > capacity {
            warn!(
                used,
                capacity,
                "the chunks held exceed --capacity; no new chunk fits until some are removed"
            );
        }
        let draining = dir.is_draining();
        if draining {
            info!("drain mark set: the master moves every chunk off this server");
        }
        let incarnation = dir.next_incarnation(new_incarnation())?;
        Ok(Arc::new(Store {
            dir,
            capacity,
            incarnation,
            draining: AtomicBool::new(draining),
            last_replica: AtomicU64::new(last_replica),
            state: Mutex::new(State {
                chunks,
                used,
                ..State::default()
            }),
            changed: watch::Sender::new(0),
            tmp_seq: AtomicU64::new(0),
            heat: Arc::default(),
        }))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes after every commit and delete. Each heartbeat loop (one per
    /// master) holds its own receiver, so every one of them is woken.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn note_change(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// The stamp a report built now would carry.
    pub fn stamp(&self) -> Stamp {
        let seq = self.state().log.seq();
        self.stamp_at(seq)
    }

    fn stamp_at(&self, seq: u64) -> Stamp {
        Stamp {
            incarnation: self.incarnation,
            seq,
        }
    }

    /// A replica identity never handed out before on this data dir: the
    /// clock in nanoseconds, or one more than the last when the clock is
    /// behind (the largest one found at start-up seeds it). Below
    /// [`INODE_REPLICA_BIT`], so never equal to an inode-named file's.
    pub fn next_replica(&self) -> u64 {
        let now = new_incarnation() & !INODE_REPLICA_BIT;
        let next = |last: u64| Some(now.max(last + 1) & !INODE_REPLICA_BIT);
        let prev = self
            .last_replica
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, next)
            .unwrap_or_else(|last| last);
        now.max(prev + 1) & !INODE_REPLICA_BIT
    }

    /// Whether the drain mark is set.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Sets or clears the drain mark durably. Blocking.
    pub fn set_draining(&self, draining: bool) -> Result<(), Error> {
        self.dir.set_draining(draining)?;
        if self.draining.swap(draining, Ordering::Relaxed) != draining {
            info!(draining, "drain mark changed");
            self.note_change();
        }
        Ok(())
    }

    /// Drops `id` from the index (its file is gone or was moved aside) so
    /// the next heartbeat reports it removed. Returns whether it was indexed.
    fn forget(&self, id: &str) -> bool {
        let known = {
            let mut st = self.state();
            match st.chunks.remove(id) {
                Some(e) => {
                    st.used -= e.meta.size;
                    st.log.touch(id);
                    self.heat.forget(id);
                    true
                }
                None => false,
            }
        };
        if known {
            self.note_change();
        }
        known
    }

    /// Forgets every indexed chunk whose file is gone (removed by hand, a
    /// lost disk). Returns how many. Blocking; stats every file.
    pub fn forget_missing(&self) -> usize {
        let ids: Vec<String> = self.state().chunks.keys().cloned().collect();
        let mut gone = 0;
        for id in ids {
            let path = self.dir.chunk_path(&id);
            if matches!(std::fs::symlink_metadata(&path), Err(e) if e.kind() == io::ErrorKind::NotFound)
                && self.forget(&id)
            {
                warn!(chunk = %id, "chunk file is missing; dropped from the index");
                gone += 1;
            }
        }
        gone
    }

    /// Claims `id` for a transfer of `size` bytes (0 when not yet known).
    pub fn reserve(
        self: &Arc<Self>,
        id: &ChunkId,
        size: u64,
        purpose: Purpose,
    ) -> Result<Reservation, Error> {
        let mut st = self.state();
        let key = id.as_str();
        if st.chunks.contains_key(key) {
            return Err(Error::AlreadyExists { id: key.into() });
        }
        if st.in_flight.contains(key) {
            return Err(Error::InFlight {
                id: key.into(),
                attempt: purpose,
            });
        }
        self.check_room(&st, key, size)?;
        st.in_flight.insert(key.to_owned());
        st.reserved += size;
        Ok(Reservation {
            store: Arc::clone(self),
            id: id.clone(),
            bytes: size,
            done: false,
        })
    }

    fn check_room(&self, st: &State, id: &str, size: u64) -> Result<(), Error> {
        let need = st.used.saturating_add(st.reserved).saturating_add(size);
        if need > self.capacity {
            return Err(Error::NoSpace {
                id: id.into(),
                size,
                used: st.used,
                reserved: st.reserved,
                capacity: self.capacity,
            });
        }
        Ok(())
    }

    /// Creates the temp file a reserved chunk is written to. Blocking.
    /// The file gets a new replica identity.
    pub fn create_temp(&self, res: &Reservation, meta: ChunkMeta) -> Result<TempChunk, Error> {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.tmp.join(format!("{}.{n}.tmp", res.id));
        TempChunk::create(path, meta, self.next_replica())
            .map_err(|e| Error::io(format!("creating temp file for chunk {}", res.id), e))
    }

    /// Makes a fully written chunk durable and visible. Blocking.
    pub fn commit(&self, mut res: Reservation, temp: TempChunk) -> Result<ChunkMeta, Error> {
        let id = res.id.to_string();
        let declared = temp.meta();
        let replica = temp.replica();
        let meta = temp
            .commit(&self.dir.chunk_path(&id))
            .map_err(|e| finish_error(&id, declared, e))?;
        {
            let mut st = self.state();
            st.in_flight.remove(&id);
            st.reserved -= res.bytes;
            st.used += meta.size;
            st.log.touch(&id);
            let entry = Entry {
                meta,
                reads: 0,
                replica,
                suspect: false,
            };
            st.chunks.insert(id, entry);
        }
        res.done = true;
        self.note_change();
        Ok(meta)
    }

    /// Opens a chunk for reading, positioned at its first data byte. Counts a
    /// read when `count` is set. Blocking.
    pub fn open_read(&self, id: &ChunkId, count: bool) -> Result<(File, ChunkMeta), Error> {
        let key = id.as_str();
        let known = self.entry(key)?.meta;
        let (file, meta) = match open_chunk(&self.dir.chunk_path(key)) {
            Ok(opened) => opened,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Indexed but gone (removed by hand): stop offering it.
                if self.forget(key) {
                    warn!(chunk = key, "chunk file is missing; dropped from the index");
                }
                return Err(Error::NotFound { id: key.into() });
            }
            Err(e) => return Err(Error::io(format!("opening chunk {key}"), e)),
        };
        let meta = meta.map_err(|detail| Error::Corrupt {
            id: key.into(),
            detail,
        })?;
        if meta != known {
            return Err(Error::Corrupt {
                id: key.into(),
                detail: format!("header changed on disk: indexed {known:?}, found {meta:?}"),
            });
        }
        if count {
            let mut st = self.state();
            if let Some(e) = st.chunks.get_mut(key) {
                e.reads += 1;
                st.log.touch(key);
            }
        }
        Ok((file, meta))
    }

    /// A chunk's index entry.
    pub fn entry(&self, id: &str) -> Result<Entry, Error> {
        self.state()
            .chunks
            .get(id)
            .copied()
            .ok_or_else(|| Error::NotFound { id: id.into() })
    }

    /// Current totals.
    pub fn totals(&self) -> Totals {
        let st = self.state();
        self.totals_of(&st)
    }

    fn totals_of(&self, st: &State) -> Totals {
        Totals {
            capacity: self.capacity,
            used: st.used,
            reserved: st.reserved,
            chunks: st.chunks.len() as u64,
            in_flight: st.in_flight.len() as u64,
        }
    }

    /// Builds a heartbeat report: every chunk when `full`, else the changes
    /// since the last [`Store::ack`].
    pub fn report(&self, full: bool) -> Report {
        self.report_for(0, full)
    }

    /// [`Store::report`] for master `consumer` (its place in `--master`):
    /// deltas are the changes since that master's last [`Store::ack_for`].
    pub fn report_for(&self, consumer: usize, full: bool) -> Report {
        let st = self.state();
        let mut chunks = Vec::new();
        let mut removed = Vec::new();
        if full {
            chunks.extend(st.chunks.iter().map(|(id, e)| (id.clone(), *e)));
        } else {
            for id in st.log.dirty_for(consumer) {
                match st.chunks.get(id) {
                    Some(e) => chunks.push((id.to_owned(), *e)),
                    None => removed.push(id.to_owned()),
                }
            }
        }
        Report {
            seq: st.log.seq(),
            stamp: self.stamp_at(st.log.seq()),
            chunks,
            removed,
            deleting: st.deleting.keys().cloned().collect(),
            totals: self.totals_of(&st),
        }
    }

    /// The master acknowledged the report built at `seq`.
    pub fn ack(&self, seq: u64) {
        self.ack_for(0, seq);
    }

    /// Reports go to `n` masters, each acknowledging on its own.
    pub fn set_consumers(&self, n: usize) {
        self.state().log.set_consumers(n);
    }

    /// Master `consumer` acknowledged the report built at `seq`.
    pub fn ack_for(&self, consumer: usize, seq: u64) {
        self.state().log.ack_for(consumer, seq);
    }
}

/// A chunk id claimed by a write or copy, with its space held. Dropping it
/// (on any failure) releases both.
#[derive(Debug)]
pub struct Reservation {
    store: Arc<Store>,
    id: ChunkId,
    bytes: u64,
    done: bool,
}

impl Reservation {
    /// The claimed id.
    pub fn id(&self) -> &ChunkId {
        &self.id
    }

    /// Changes the space held, once the real size is known.
    pub fn resize(&mut self, size: u64) -> Result<(), Error> {
        let mut st = self.store.state();
        st.reserved -= self.bytes;
        if let Err(e) = self.store.check_room(&st, self.id.as_str(), size) {
            st.reserved += self.bytes;
            return Err(e);
        }
        st.reserved += size;
        self.bytes = size;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done {
            let mut st = self.store.state();
            st.in_flight.remove(self.id.as_str());
            st.reserved -= self.bytes;
        }
    }
}

/// The clock in nanoseconds: a run's number unless the clock is behind the
/// last run's (see `DataDir::next_incarnation`, which keeps runs growing;
/// two runs on one data dir cannot overlap: it is locked). Also the seed of
/// replica identities.
fn new_incarnation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Appends bytes to a temp chunk, mapping failures to [`Error`]. Blocking.
pub fn append(temp: &mut TempChunk, id: &ChunkId, data: &[u8]) -> Result<(), Error> {
    temp.append(data).map_err(|e| match e {
        AppendError::TooMany { received } => Error::SizeMismatch {
            id: id.to_string(),
            declared: temp.meta().size,
            received,
            verb: "or more were",
        },
        AppendError::Io(e) => Error::io(format!("writing chunk {id}"), e),
    })
}

fn finish_error(id: &str, declared: ChunkMeta, e: FinishError) -> Error {
    match e {
        FinishError::TooFew { received } => Error::SizeMismatch {
            id: id.into(),
            declared: declared.size,
            received,
            verb: "were",
        },
        FinishError::Checksum { actual } => Error::ChecksumMismatch {
            id: id.into(),
            declared: declared.crc32c,
            actual,
        },
        FinishError::Io(e) => Error::io(format!("committing chunk {id}"), e),
    }
}
