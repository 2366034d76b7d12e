//! `VerifyChunk`: re-reads a replica whole and checks its CRC32C, at a
//! bounded cost however often the master asks.
//!
//! 1. At most [`MAX_VERIFIES`] verifications read at once; more wait their
//!    turn (the master's call carries its own deadline).
//! 2. A replica found whole in the last [`FRESH`] is answered from that
//!    verdict without reading it again, unless a read of it has failed
//!    since ([`Verifier::forget`], called by every failed read) or it is
//!    marked suspect: a storm of reports about a healthy chunk costs one
//!    read, not one per report.
//! 3. A replica about to be read is first marked suspect on disk
//!    ([`Store::mark_suspect`]): should this server or the master stop
//!    before the verdict, the replica stays suspect for the next leader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use keel_proto::chunk_id::ChunkId;
use tokio::sync::Semaphore;

use crate::blocking::blocking;
use crate::chunk_file::ChunkMeta;
use crate::error::Error;
use crate::store::{Store, Verdict};

/// Verifications reading at once: each reads a whole chunk, so a few keep
/// the disk busy without starving client reads.
pub const MAX_VERIFIES: usize = 2;

/// How long a whole verdict stands without a failed read.
pub const FRESH: Duration = Duration::from_secs(300);

/// Recent verdicts and the verification slots.
pub struct Verifier {
    /// One permit per verification reading.
    slots: Semaphore,
    /// Chunks found whole: when, with which header, and which replica.
    whole: Mutex<HashMap<String, (Instant, ChunkMeta, u64)>>,
    /// Whole chunk reads done, for tests and `/metrics`.
    reads: std::sync::atomic::AtomicU64,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            slots: Semaphore::new(MAX_VERIFIES),
            whole: Mutex::default(),
            reads: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl Verifier {
    /// Verifies `id` in `store`, reading it only when no fresh verdict
    /// stands. Returns the identity of the replica the verdict is about.
    pub async fn verify(&self, store: &Arc<Store>, id: &ChunkId) -> Result<(u64, Verdict), Error> {
        if let Some(v) = self.fresh(store, id) {
            return Ok(v);
        }
        let _slot =
            self.slots.acquire().await.map_err(|_| {
                Error::io("verifying chunk", std::io::Error::other("verifier closed"))
            })?;
        // A verification that held the slot may have just answered.
        if let Some(v) = self.fresh(store, id) {
            return Ok(v);
        }
        let (store, id2) = (Arc::clone(store), id.clone());
        let (replica, verdict) = blocking("verifying chunk", move || {
            let replica = store.mark_suspect(&id2)?;
            if let Some(hold) = crate::test_hooks::verify_hold() {
                std::thread::sleep(hold);
            }
            Ok((replica, store.verify(&id2)?))
        })
        .await?;
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut whole = self.whole.lock().unwrap_or_else(PoisonError::into_inner);
        match &verdict {
            Verdict::Whole(m) => {
                whole.insert(id.to_string(), (Instant::now(), *m, replica));
            }
            _ => {
                whole.remove(id.as_str());
            }
        }
        let now = Instant::now();
        whole.retain(|_, (at, _, _)| now.saturating_duration_since(*at) < FRESH);
        Ok((replica, verdict))
    }

    /// A read of `id` failed: its next verification reads it again.
    pub fn forget(&self, id: &ChunkId) {
        self.whole
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id.as_str());
    }

    /// Whole-chunk reads done by verifications.
    pub fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The standing verdict of `id`, if it is fresh and the store still
    /// holds the same replica, with the same header, not marked suspect.
    fn fresh(&self, store: &Store, id: &ChunkId) -> Option<(u64, Verdict)> {
        let whole = self.whole.lock().unwrap_or_else(PoisonError::into_inner);
        let (at, meta, replica) = whole.get(id.as_str())?;
        let current = store.entry(id.as_str()).ok()?;
        let same = current.meta == *meta && current.replica == *replica && !current.suspect;
        (at.elapsed() < FRESH && same).then_some((*replica, Verdict::Whole(*meta)))
    }
}
