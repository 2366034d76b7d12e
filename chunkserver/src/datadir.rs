//! The data directory: its layout, its owner, and what it holds at start-up.
//!
//! ```text
//! <data-dir>/LOCK        flock'ed while a chunk server uses the directory
//! <data-dir>/SERVER_ID   the --id that created it
//! <data-dir>/chunks/<id> committed chunks (header + bytes)
//! <data-dir>/tmp/        writes and copies in flight, swept at start-up
//! <data-dir>/damaged/<id> chunks that failed verification, until the master deletes them
//! <data-dir>/suspect/<id> replicas reported corrupt and not yet verified whole
//!                        (holds the replica's identity): kept across restarts
//!                        and failovers so no master counts them meanwhile
//! <data-dir>/DRAINING    present while the server is marked for drain
//! <data-dir>/INCARNATION the last process run's number (see `next_incarnation`)
//! ```

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};
use tracing::{info, warn};

use crate::chunk_file::{ChunkMeta, inode_replica, open_replica, sync_dir};
use crate::error::Error;

/// File naming the server that owns the directory.
const ID_FILE: &str = "SERVER_ID";

/// Present while the server is marked for drain.
const DRAIN_FILE: &str = "DRAINING";

/// The last run's number, so the next one is larger whatever the clock says.
const INCARNATION_FILE: &str = "INCARNATION";

/// An opened, locked data directory.
#[derive(Debug)]
pub struct DataDir {
    /// `<data-dir>`.
    pub root: PathBuf,
    /// `<data-dir>/chunks`.
    pub chunks: PathBuf,
    /// `<data-dir>/tmp`.
    pub tmp: PathBuf,
    /// `<data-dir>/damaged`.
    pub damaged: PathBuf,
    /// `<data-dir>/suspect`.
    pub suspect: PathBuf,
    /// Held open so the flock lasts as long as the process uses the directory.
    _lock: File,
}

impl DataDir {
    /// Creates the layout if missing, locks it, checks the owner id and sweeps `tmp/`.
    pub fn open(root: &Path, server_id: &str) -> Result<Self, Error> {
        let chunks = root.join("chunks");
        let tmp = root.join("tmp");
        let damaged = root.join("damaged");
        let suspect = root.join("suspect");
        for d in [root, &chunks, &tmp, &damaged, &suspect] {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
        }
        let lock = lock(root)?;
        check_owner(root, server_id)?;
        let dir = DataDir {
            root: root.to_path_buf(),
            chunks,
            tmp,
            damaged,
            suspect,
            _lock: lock,
        };
        dir.sweep_tmp()?;
        Ok(dir)
    }

    /// Path of chunk `id` (already validated).
    pub fn chunk_path(&self, id: &str) -> PathBuf {
        self.chunks.join(id)
    }

    /// Whether the drain mark is set.
    pub fn is_draining(&self) -> bool {
        self.root.join(DRAIN_FILE).exists()
    }

    /// Sets or clears the drain mark, durably (the directory is fsynced).
    pub fn set_draining(&self, draining: bool) -> Result<(), Error> {
        let path = self.root.join(DRAIN_FILE);
        let ctx = || format!("updating {}", path.display());
        let res = if draining {
            File::create(&path).and_then(|f| f.sync_all())
        } else {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                r => r,
            }
        };
        res.and_then(|()| sync_dir(&self.root))
            .map_err(|e| Error::io(ctx(), e))
    }

    /// The number of the run that starts now: `clock`, or one more than
    /// the last run's when the clock is behind it (stepped back, or reset
    /// on a board without a battery), kept durably before it is used. The
    /// master ignores reports of a run older than one it has applied, so a
    /// late report of a dead run can never pass for a live one.
    pub fn next_incarnation(&self, clock: u64) -> Result<u64, Error> {
        let path = self.root.join(INCARNATION_FILE);
        let last = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<u64>().map_err(|e| {
                Error::Config(format!(
                    "{} holds {:?}, not a run number: {e}; it is written by this server only",
                    path.display(),
                    s.trim()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        let next = clock.max(last.saturating_add(1));
        write_durably(&self.root, INCARNATION_FILE, &format!("{next}\n"))?;
        Ok(next)
    }

    /// Moves chunk `id` from `chunks/` to `damaged/`, durably.
    pub fn quarantine(&self, id: &str) -> std::io::Result<()> {
        std::fs::rename(self.chunk_path(id), self.damaged.join(id))?;
        sync_dir(&self.damaged)?;
        sync_dir(&self.chunks)
    }

    /// The identity of the damaged copy of `id`, if there is one (its
    /// header's, or its inode's when the header is unreadable).
    pub fn damaged_replica(&self, id: &str) -> std::io::Result<Option<u64>> {
        match open_replica(&self.damaged.join(id)) {
            Ok((_, Ok((_, replica)))) => Ok(Some(replica)),
            Ok((file, Err(_))) => inode_replica(&file).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Marks the replica `replica` of `id` suspect, durably.
    pub fn mark_suspect(&self, id: &str, replica: u64) -> std::io::Result<()> {
        let tmp = self.tmp.join(format!("{id}.suspect.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(format!("{replica}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.suspect.join(id))?;
        sync_dir(&self.suspect)
    }

    /// Clears the suspect mark of `id`, durably; false when there was none.
    pub fn clear_suspect(&self, id: &str) -> std::io::Result<bool> {
        match std::fs::remove_file(self.suspect.join(id)) {
            Ok(()) => sync_dir(&self.suspect).map(|()| true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The suspect marks kept: chunk id → the identity of the replica meant.
    /// A mark that cannot be read is logged and ignored.
    pub fn suspects(&self) -> Result<HashMap<String, u64>, Error> {
        let ctx = || format!("scanning {}", self.suspect.display());
        let mut found = HashMap::new();
        for entry in std::fs::read_dir(&self.suspect).map_err(|e| Error::io(ctx(), e))? {
            let path = entry.map_err(|e| Error::io(ctx(), e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let replica = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok());
            match (keel_proto::chunk_id::validate(name), replica) {
                (Ok(()), Some(r)) => {
                    found.insert(name.to_owned(), r);
                }
                _ => warn!(path = %path.display(), "ignoring an unreadable suspect mark"),
            }
        }
        Ok(found)
    }

    /// Removes a damaged copy of `id`; false when there is none.
    pub fn remove_damaged(&self, id: &str) -> std::io::Result<bool> {
        match std::fs::remove_file(self.damaged.join(id)) {
            Ok(()) => sync_dir(&self.damaged).map(|()| true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes everything left under `tmp/` by an earlier process.
    fn sweep_tmp(&self) -> Result<(), Error> {
        let ctx = || format!("sweeping {}", self.tmp.display());
        let mut removed = 0u64;
        for entry in std::fs::read_dir(&self.tmp).map_err(|e| Error::io(ctx(), e))? {
            let path = entry.map_err(|e| Error::io(ctx(), e))?.path();
            let res = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            res.map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.tmp).map_err(|e| Error::io(ctx(), e))?;
            info!(removed, dir = %self.tmp.display(), "swept leftover temp files");
        }
        Ok(())
    }

    /// Reads the header of every committed chunk. Files that are not valid
    /// chunks are logged and left alone for an operator to inspect.
    /// Each chunk comes with its replica identity.
    pub fn scan(&self) -> Result<HashMap<String, (ChunkMeta, u64)>, Error> {
        let ctx = || format!("scanning {}", self.chunks.display());
        let mut found = HashMap::new();
        for entry in std::fs::read_dir(&self.chunks).map_err(|e| Error::io(ctx(), e))? {
            let entry = entry.map_err(|e| Error::io(ctx(), e))?;
            let path = entry.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Err(e) = keel_proto::chunk_id::validate(name) {
                warn!(path = %path.display(), error = %e, "ignoring a file that is not a chunk");
                continue;
            }
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                warn!(path = %path.display(), "ignoring an entry that is not a regular file");
                continue;
            }
            match open_replica(&path) {
                Ok((_, Ok((m, r)))) => match keel_proto::check_replication(m.replication) {
                    Ok(()) => {
                        found.insert(name.to_owned(), (m, r));
                    }
                    Err(why) => {
                        warn!(path = %path.display(), why, "ignoring a chunk file with a bad header");
                    }
                },
                Ok((_, Err(why))) => {
                    warn!(path = %path.display(), why, "ignoring a damaged chunk file");
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "ignoring an unreadable chunk file");
                }
            }
        }
        Ok(found)
    }

    /// Size of the file system holding the directory, in bytes.
    pub fn fs_size(&self) -> Result<u64, Error> {
        let st = rustix::fs::statvfs(&self.root).map_err(|e| {
            Error::io(
                format!("statvfs {}", self.root.display()),
                std::io::Error::from(e),
            )
        })?;
        Ok(st.f_blocks.saturating_mul(st.f_frsize))
    }
}

fn lock(root: &Path) -> Result<File, Error> {
    let path = root.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    flock(&file, FlockOperation::NonBlockingLockExclusive).map_err(|_| {
        Error::Config(format!(
            "data dir {} is in use by another chunk server process",
            root.display()
        ))
    })?;
    Ok(file)
}

fn check_owner(root: &Path, server_id: &str) -> Result<(), Error> {
    let path = root.join(ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(stored) if stored.trim() == server_id => Ok(()),
        Ok(stored) => Err(Error::IdMismatch {
            dir: root.to_path_buf(),
            stored: stored.trim().to_owned(),
            given: server_id.to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_owner(root, server_id),
        Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
    }
}

/// Writes `SERVER_ID`.
fn write_owner(root: &Path, server_id: &str) -> Result<(), Error> {
    write_durably(root, ID_FILE, &format!("{server_id}\n"))?;
    info!(id = server_id, dir = %root.display(), "data dir initialised");
    Ok(())
}

/// Writes `<root>/<name>` with the same temp → fsync → rename → dir fsync
/// dance as chunks.
fn write_durably(root: &Path, name: &str, contents: &str) -> Result<(), Error> {
    let tmp = root.join(format!("{name}.tmp"));
    let ctx = || format!("writing {}", root.join(name).display());
    let mut f = File::create(&tmp).map_err(|e| Error::io(ctx(), e))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, root.join(name)))
        .and_then(|()| sync_dir(root))
        .map_err(|e| Error::io(ctx(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_id_is_kept_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("d");
        drop(DataDir::open(&root, "cs1").expect("first open"));
        drop(DataDir::open(&root, "cs1").expect("same id"));
        let err = DataDir::open(&root, "cs2").expect_err("other id");
        assert!(matches!(err, Error::IdMismatch { .. }), "{err}");
        assert!(err.to_string().contains("belongs to chunk server \"cs1\""));
    }

    #[test]
    fn runs_grow_even_when_the_clock_goes_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = DataDir::open(dir.path(), "cs1").expect("open");
        assert_eq!(d.next_incarnation(1_000).expect("first"), 1_000);
        assert_eq!(d.next_incarnation(5).expect("behind"), 1_001);
        drop(d);
        let d = DataDir::open(dir.path(), "cs1").expect("reopen");
        assert_eq!(d.next_incarnation(7).expect("kept"), 1_002);
        assert_eq!(d.next_incarnation(9_000).expect("ahead"), 9_000);
        std::fs::write(dir.path().join(INCARNATION_FILE), "soon").expect("write");
        let err = d.next_incarnation(1).expect_err("not a number");
        assert!(err.to_string().contains("not a run number"), "{err}");
    }

    #[test]
    fn a_second_process_is_refused_and_tmp_is_swept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = DataDir::open(dir.path(), "cs1").expect("open");
        assert!(DataDir::open(dir.path(), "cs1").is_err());
        std::fs::write(d.tmp.join("x.tmp"), b"partial").expect("write");
        drop(d);
        let d = DataDir::open(dir.path(), "cs1").expect("reopen");
        assert_eq!(std::fs::read_dir(&d.tmp).expect("ls").count(), 0);
        assert!(d.fs_size().expect("statvfs") > 0);
    }
}
