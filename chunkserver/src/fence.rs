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
//!
//! A delete holds the fence while it runs ([`enter`]), and a higher term is
//! recorded only once no delete of a lower term is running. A new leader
//! learns this server's replicas from heartbeats whose answers carry its
//! term: a report built after that answer was recorded can no longer list
//! a replica that a deposed master's delete, still running when the report
//! was built, is about to remove, so the new leader never trims the other
//! copy believing this one stays.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedRwLockReadGuard, RwLock};
use tracing::info;

use crate::blocking::blocking;
use crate::chunk_file::sync_dir;
use crate::error::Error;

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
    /// Shared by each running delete, taken whole to record a higher term.
    deletes: Arc<RwLock<()>>,
}

/// A running delete's hold on the fence: no higher term is recorded until
/// it is dropped.
#[derive(Debug)]
pub struct Entered {
    _hold: OwnedRwLockReadGuard<()>,
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
            deletes: Arc::new(RwLock::new(())),
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
/// threads) only when `term` is higher than any seen, and then only once
/// every running delete has ended.
pub async fn admit(fence: &Arc<Fence>, term: u64, what: &'static str) -> Result<(), Error> {
    if term <= fence.highest() {
        return fence.admit(term, what);
    }
    let _no_deletes = fence.deletes.write().await;
    let fence = Arc::clone(fence);
    blocking("recording a master term", move || fence.admit(term, what)).await
}

/// Admits a delete of `term` and holds the fence until the returned guard
/// is dropped: a higher term waits for it (see the module docs).
pub async fn enter(fence: &Arc<Fence>, term: u64, what: &'static str) -> Result<Entered, Error> {
    loop {
        let hold = Arc::clone(&fence.deletes).read_owned().await;
        if term <= fence.highest() {
            fence.admit(term, what)?;
            return Ok(Entered { _hold: hold });
        }
        // A newer term: record it with the fence free, then enter under it.
        drop(hold);
        admit(fence, term, what).await?;
    }
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

    #[tokio::test]
    async fn a_newer_term_waits_for_a_running_delete_of_an_older_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = Arc::new(Fence::open(dir.path()).expect("open"));
        admit(&f, 4, "a heartbeat answer").await.expect("term 4");
        let delete = enter(&f, 4, "a delete").await.expect("a delete of term 4");
        let raise = tokio::spawn({
            let f = Arc::clone(&f);
            async move { admit(&f, 5, "a heartbeat answer").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(
            !raise.is_finished(),
            "term 5 recorded while a delete of 4 runs"
        );
        assert_eq!(f.highest(), 4);
        // Another delete of the old term queues behind the waiting term.
        let late = tokio::spawn({
            let f = Arc::clone(&f);
            async move { enter(&f, 4, "a delete").await.map(drop) }
        });
        drop(delete);
        raise.await.expect("join").expect("term 5");
        assert_eq!(f.highest(), 5);
        let e = late.await.expect("join").expect_err("term 4 is now fenced");
        assert!(e.to_string().contains("term 4"), "{e}");
        // A delete carrying a newer term records it and runs.
        let newer = enter(&f, 6, "a delete").await.expect("term 6");
        assert_eq!(f.highest(), 6);
        drop(newer);
    }

    #[test]
    fn a_damaged_term_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(TERM_FILE), "seven").expect("write");
        let e = Fence::open(dir.path()).expect_err("garbage");
        assert!(e.to_string().contains("not a master term"), "{e}");
    }
}
