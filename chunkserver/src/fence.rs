//! Fencing of deposed masters: the highest master term this server has
//! seen, kept in `<data-dir>/TERM` so a restart cannot forget it.
//!
//! With several masters (`keel-master --etcd`), the leader's term is its
//! leader key's etcd create revision, which grows with every new leader. It
//! arrives in every `CopyChunk`, `DeleteChunk` and `SetDrain` and in the
//! answers to heartbeats. A request carrying a lower term than the highest
//! seen comes from a master that lost the leadership without noticing yet
//! (frozen, or cut off from etcd): it is refused with FAILED_PRECONDITION
//! before it changes anything. Term 0 is a master without etcd, accepted
//! while no higher term was seen.
//!
//! A higher term is written to disk (temp → fsync → rename → dir fsync)
//! before the request that carries it is acted on.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tracing::info;

use crate::chunk_file::sync_dir;
use crate::error::Error;
use crate::node::blocking;

/// File holding the highest term seen, in decimal.
pub const TERM_FILE: &str = "TERM";

/// The highest master term seen, on disk and in memory.
#[derive(Debug)]
pub struct Fence {
    /// `<data-dir>/TERM`.
    path: PathBuf,
    /// The data dir, fsynced after the rename.
    root: PathBuf,
    /// The highest term seen; held while a higher one is written.
    highest: Mutex<u64>,
}

impl Fence {
    /// Reads `<root>/TERM` (0 when missing). Blocking.
    pub fn open(root: &Path) -> Result<Self, Error> {
        let path = root.join(TERM_FILE);
        let highest = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<u64>().map_err(|e| {
                Error::Config(format!(
                    "{} holds {:?}, not a master term: {e}; it is written by this server only",
                    path.display(),
                    s.trim()
                ))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        if highest > 0 {
            info!(term = highest, "highest master term seen so far");
        }
        Ok(Fence {
            path,
            root: root.to_path_buf(),
            highest: Mutex::new(highest),
        })
    }

    /// The highest term seen.
    pub fn highest(&self) -> u64 {
        *self.highest.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a request of `term`: refuses a term below the highest seen,
    /// records (durably) a higher one. Blocking when the term is new.
    pub fn admit(&self, term: u64, what: &'static str) -> Result<(), Error> {
        let mut highest = self.highest.lock().unwrap_or_else(PoisonError::into_inner);
        if term < *highest {
            return Err(Error::Fenced {
                what,
                term,
                highest: *highest,
            });
        }
        if term > *highest {
            self.write(term)?;
            info!(term, previous = *highest, "a newer master term seen");
            *highest = term;
        }
        Ok(())
    }

    fn write(&self, term: u64) -> Result<(), Error> {
        let tmp = self.root.join(format!("{TERM_FILE}.tmp"));
        let ctx = || format!("writing {}", self.path.display());
        let mut f = File::create(&tmp).map_err(|e| Error::io(ctx(), e))?;
        f.write_all(format!("{term}\n").as_bytes())
            .and_then(|()| f.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .and_then(|()| sync_dir(&self.root))
            .map_err(|e| Error::io(ctx(), e))
    }
}

/// [`Fence::admit`] from async code: the disk is touched (off the async
/// threads) only when `term` is higher than any seen.
pub async fn admit(fence: &Arc<Fence>, term: u64, what: &'static str) -> Result<(), Error> {
    if term <= fence.highest() {
        return fence.admit(term, what);
    }
    let fence = Arc::clone(fence);
    blocking("recording a master term", move || fence.admit(term, what)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_terms_are_refused_and_the_highest_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = Fence::open(dir.path()).expect("open");
        assert_eq!(f.highest(), 0);
        f.admit(0, "a delete")
            .expect("term 0 while nothing higher was seen");
        f.admit(7, "a delete").expect("a newer term");
        f.admit(7, "a copy").expect("the same term");
        let e = f.admit(3, "a delete").expect_err("an older term");
        assert_eq!(e.code(), tonic::Code::FailedPrecondition);
        assert!(e.to_string().contains("term 3"), "{e}");
        assert!(f.admit(0, "a copy").is_err());
        drop(f);
        let again = Fence::open(dir.path()).expect("reopen");
        assert_eq!(again.highest(), 7);
        assert!(again.admit(6, "a delete").is_err());
    }

    #[test]
    fn a_damaged_term_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(TERM_FILE), "seven").expect("write");
        let e = Fence::open(dir.path()).expect_err("garbage");
        assert!(e.to_string().contains("not a master term"), "{e}");
    }
}
