//! Taking replicas out of service: verification and quarantine, the
//! suspect marks kept in `suspect/`, deletes that remove only the replica
//! they name, and the deletes still running (reported so a master whose call
//! timed out knows when the replica stops being in doubt).

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use keel_proto::chunk_id::ChunkId;
use tracing::warn;

use super::{Stamp, Store, Verdict};
use crate::chunk_file::{open_chunk, sync_dir};
use crate::error::Error;

impl Store {
    /// Rereads chunk `id` and checks its header, length and CRC32C. A damaged
    /// chunk is moved to `damaged/` (kept for inspection until the master
    /// deletes it) and a missing one forgotten; either way the next heartbeat
    /// reports it gone. Blocking.
    pub fn verify(&self, id: &ChunkId) -> Result<Verdict, Error> {
        let key = id.as_str();
        let known = self.entry(key)?.meta;
        let path = self.dir.chunk_path(key);
        let (mut file, meta) = match open_chunk(&path) {
            Ok(opened) => opened,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget(key);
                self.clear_suspect(key)?;
                warn!(chunk = key, "chunk file is missing; dropped from the index");
                return Ok(Verdict::Missing);
            }
            Err(e) => return Err(Error::io(format!("opening chunk {key}"), e)),
        };
        let problem = match meta {
            Err(why) => Some(why),
            Ok(m) if m != known => Some(format!(
                "header changed on disk: indexed {known:?}, found {m:?}"
            )),
            Ok(m) => match crc_of(&mut file) {
                Ok(crc) if crc == m.crc32c => None,
                Ok(crc) => Some(format!(
                    "CRC32C of the bytes is {crc:#010x}, the header says {:#010x}",
                    m.crc32c
                )),
                Err(e) => Some(format!("reading the bytes failed: {e}")),
            },
        };
        match problem {
            None => {
                self.clear_suspect(key)?;
                Ok(Verdict::Whole(known))
            }
            Some(why) => {
                self.quarantine(key)?;
                warn!(
                    chunk = key,
                    why, "chunk failed verification; moved to damaged/"
                );
                Ok(Verdict::Corrupt(why))
            }
        }
    }

    /// Moves a damaged chunk out of `chunks/` and out of the index; the
    /// damaged copy keeps its identity.
    fn quarantine(&self, id: &str) -> Result<(), Error> {
        let replica = self.entry(id)?.replica;
        self.dir
            .quarantine(id)
            .map_err(|e| Error::io(format!("moving damaged chunk {id} aside"), e))?;
        self.state().damaged.insert(id.to_owned(), replica);
        self.forget(id);
        // Out of the index, it counts for nothing: the mark has done its work.
        self.clear_suspect(id)
    }

    /// Marks the replica of `id` suspect, durably, before it is verified:
    /// a crash or a failover meanwhile leaves it reported suspect, so no
    /// master counts it until one has it verified. Returns its identity.
    /// Blocking.
    /// The mark is written even when the index already says suspect: `doubt`
    /// marks the index first, and only this write makes the mark last.
    pub fn mark_suspect(&self, id: &ChunkId) -> Result<u64, Error> {
        let key = id.as_str();
        let e = self.entry(key)?;
        self.dir
            .mark_suspect(key, e.replica)
            .map_err(|err| Error::io(format!("marking chunk {key} suspect"), err))?;
        self.set_suspect(key, e.replica, true);
        Ok(e.replica)
    }

    /// Marks the replica of `id` suspect in the index at once, without
    /// waiting for the disk: from this call on, `StatChunk` and heartbeats
    /// report it suspect, so no delete is confirmed against a copy a read has
    /// just found rotten while its durable mark (`mark_suspect`) is written.
    pub fn doubt(&self, id: &ChunkId) {
        let key = id.as_str();
        if let Ok(e) = self.entry(key) {
            self.set_suspect(key, e.replica, true);
        }
    }

    /// Clears the suspect mark of `id`, on disk and in the index. Blocking.
    fn clear_suspect(&self, key: &str) -> Result<(), Error> {
        self.dir
            .clear_suspect(key)
            .map_err(|e| Error::io(format!("clearing the suspect mark of chunk {key}"), e))?;
        let held = self.state().chunks.get(key).map(|e| e.replica);
        if let Some(replica) = held {
            self.set_suspect(key, replica, false);
        }
        Ok(())
    }

    fn set_suspect(&self, key: &str, replica: u64, suspect: bool) {
        let changed = {
            let mut st = self.state();
            match st.chunks.get_mut(key) {
                Some(e) if e.replica == replica && e.suspect != suspect => {
                    e.suspect = suspect;
                    st.log.touch(key);
                    true
                }
                _ => false,
            }
        };
        if changed {
            self.note_change();
        }
    }

    /// [`Store::delete_replica`] of whatever replica is held, whole and
    /// damaged (a delete that names none).
    pub fn delete(&self, id: &ChunkId) -> Result<(u64, Stamp, Option<PathBuf>), Error> {
        self.delete_replica(id, 0)
    }

    /// The identity of the damaged copy of `key`, if there is one.
    fn damaged_replica(&self, key: &str) -> Result<Option<u64>, Error> {
        if let Some(&r) = self.state().damaged.get(key) {
            return Ok(Some(r));
        }
        self.dir
            .damaged_replica(key)
            .map_err(|e| Error::io(format!("reading damaged chunk {key}"), e))
    }

    /// Removes the replica `replica` of a chunk (0: whatever is held, whole
    /// and damaged) and returns the bytes freed, the stamp right after
    /// the removal, and the file's new name under `tmp/`, which the caller
    /// unlinks once it has answered. A read already streaming keeps its open
    /// file and finishes. A copy moved to `damaged/` by [`Store::verify`]
    /// keeps its identity: a delete naming it removes only it, and one
    /// naming another replica leaves it. A replica other than the one named
    /// stays ([`Error::OtherReplica`]). Blocking.
    ///
    /// The chunk leaves `chunks/` by a rename, made durable by the fsync of
    /// `chunks/`: unlinking a large file whose pages are cached (a chunk just
    /// copied here) takes the kernel a long time (about 0.2 s for 256 MiB on
    /// a busy two-core machine), and a move waits for its source's delete.
    /// A name left in `tmp/` by a crash is swept at the next start.
    pub fn delete_replica(
        &self,
        id: &ChunkId,
        replica: u64,
    ) -> Result<(u64, Stamp, Option<PathBuf>), Error> {
        let key = id.as_str();
        let damaged_meant = replica == 0 || self.damaged_replica(key)? == Some(replica);
        let damaged = damaged_meant
            && self
                .dir
                .remove_damaged(key)
                .map_err(|e| Error::io(format!("deleting damaged chunk {key}"), e))?;
        if damaged {
            self.state().damaged.remove(key);
        }
        let whole = self.entry(key).ok();
        if !whole.is_some_and(|e| replica == 0 || e.replica == replica) {
            return match (damaged, whole) {
                (true, _) => Ok((0, self.stamp(), None)),
                (false, Some(e)) => Err(Error::OtherReplica {
                    id: key.into(),
                    meant: replica,
                    held: e.replica,
                }),
                (false, None) => Err(Error::NotFound { id: key.into() }),
            };
        }
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let trash = self.dir.tmp.join(format!("{key}.{n}.deleted.tmp"));
        match std::fs::rename(self.dir.chunk_path(key), &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.forget(key);
                return Err(Error::NotFound { id: key.into() });
            }
            Err(e) => return Err(Error::io(format!("deleting chunk {key}"), e)),
        }
        // The file is gone: the index follows whatever the fsync says.
        if let Err(e) = self.dir.clear_suspect(key) {
            warn!(chunk = key, error = %e, "could not clear the suspect mark of a deleted chunk");
        }
        let (freed, seq) = {
            let mut st = self.state();
            let freed = st.chunks.remove(key).map_or(0, |e| e.meta.size);
            st.used -= freed;
            self.heat.forget(key);
            st.log.touch(key);
            (freed, st.log.seq())
        };
        self.note_change();
        if let Err(e) = sync_dir(&self.dir.chunks) {
            // The chunk is gone from the index either way; its bytes go now.
            let _ = std::fs::remove_file(&trash);
            return Err(Error::io(format!("deleting chunk {key}"), e));
        }
        Ok((freed, self.stamp_at(seq), Some(trash)))
    }

    /// Counts a delete of `id` as running until the guard is dropped:
    /// reports and stats built meanwhile say so.
    pub fn begin_delete(self: &Arc<Self>, id: &ChunkId) -> DeleteRunning {
        *self.state().deleting.entry(id.to_string()).or_default() += 1;
        DeleteRunning {
            store: Arc::clone(self),
            id: id.to_string(),
        }
    }

    /// Whether a delete of `id` is running.
    pub fn is_deleting(&self, id: &str) -> bool {
        self.state().deleting.contains_key(id)
    }
}

/// A delete counted as running (see [`Store::begin_delete`]).
#[derive(Debug)]
pub struct DeleteRunning {
    store: Arc<Store>,
    id: String,
}

impl Drop for DeleteRunning {
    fn drop(&mut self) {
        let mut st = self.store.state();
        if let Some(n) = st.deleting.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                st.deleting.remove(&self.id);
            }
        }
    }
}

/// CRC32C of the rest of `file`.
fn crc_of(file: &mut File) -> io::Result<u32> {
    use std::io::Read;
    let mut buf = vec![0u8; keel_proto::FRAME_BYTES];
    let mut crc = 0u32;
    loop {
        match file.read(&mut buf)? {
            0 => return Ok(crc),
            n => crc = crc32c::crc32c_append(crc, &buf[..n]),
        }
    }
}
