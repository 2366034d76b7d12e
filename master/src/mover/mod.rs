//! The safe move protocol, reusable by every caller that moves data
//! (`RebalanceExecute`, the maintenance loop, the background balancer).
//!
//! A move of chunk `c` from `s` to `t`: the gates pass and `c` turns busy →
//! `CopyChunk` on `t` (it pulls from `s`, checks size and CRC32C, fsyncs) →
//! the master records `c` on `t` → only if the master itself now sees at least
//! `replication` whole replicas on live servers without `s`, `DeleteChunk` on
//! `s` → the removal is recorded. A failed copy is retried with backoff and
//! leaves `s` untouched; a failed delete leaves an excess replica that
//! trimming removes later. A crash at any point leaves a whole replica.
//!
//! # Layout
//! - [`clients`]: cached channels to chunk servers.
//! - [`slots`]: the concurrency limits.
//! - `copy`: one copy with retries and its deadline.

pub mod clients;
pub mod slots;

mod copy;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use keel_proto::v1::{DeleteChunkRequest, SetDrainRequest, VerifyChunkRequest, VerifyVerdict};
use tracing::{info, warn};

pub use clients::Clients;
pub use slots::{SlotGuard, Slots};

use crate::convert;
use crate::meta::{
    Deletion, MoveKind, MoveTicket, Reject, ServerAddr, SharedMeta, Stamp, Verify, VerifyOutcome,
    lock,
};
use crate::metrics::Metrics;

/// Deadline of a `DeleteChunk` or `StatChunk`.
pub const SMALL_RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// A move as an operator or the planner names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Move {
    /// Chunk id.
    pub chunk: String,
    /// Source server id.
    pub from: String,
    /// Target server id.
    pub to: String,
}

/// A completed move or copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveDone {
    /// Bytes copied (the chunk's size).
    pub bytes: u64,
    /// Whether the source replica was deleted.
    pub source_deleted: bool,
    /// Why the source replica was kept, when it was (a move still counts as done).
    pub note: Option<String>,
}

/// Why a move did not complete.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MoveError {
    /// Refused by the gates; nothing happened.
    #[error("{0}")]
    Rejected(#[from] Reject),
    /// The copy failed after its retries; the source replica is intact.
    #[error("{error} (after {attempts} attempts)")]
    Failed {
        /// Attempts made.
        attempts: u32,
        /// The last error.
        error: String,
    },
}

/// Tunables of the mover.
#[derive(Debug, Clone)]
pub struct MoverSettings {
    /// Retries of a failing copy (`--move-retries`).
    pub retries: u32,
    /// Slowest copy rate planned for, bytes per second (`--copy-min-rate`).
    pub copy_min_rate: u64,
    /// Delay before the first retry; doubles up to `backoff_max`.
    pub backoff_first: Duration,
    /// Longest delay between retries.
    pub backoff_max: Duration,
}

impl Default for MoverSettings {
    fn default() -> Self {
        MoverSettings {
            retries: 3,
            copy_min_rate: 1 << 20,
            backoff_first: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// How many copy attempts one call makes, and who reports a failure.
#[derive(Debug, Clone, Copy)]
struct Attempts {
    /// Retries after the first failed copy.
    retries: u32,
    /// Count a failed move in the metrics and log it here.
    report_failure: bool,
}

/// Runs moves, copies and deletes against chunk servers.
#[derive(Debug, Clone)]
pub struct Mover {
    meta: SharedMeta,
    clients: Arc<Clients>,
    slots: Arc<Slots>,
    metrics: Arc<Metrics>,
    settings: MoverSettings,
}

/// Ends the busy mark of a chunk however its task ends.
struct BusyGuard {
    meta: SharedMeta,
    chunk: String,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        lock(&self.meta).end_busy(&self.chunk);
    }
}

/// Counts a running copy in the metrics.
struct Running(Arc<Metrics>);

impl Running {
    fn new(m: &Arc<Metrics>) -> Self {
        m.moves_running.fetch_add(1, Ordering::Relaxed);
        Running(Arc::clone(m))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.moves_running.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Mover {
    /// A mover over `meta`.
    pub fn new(
        meta: SharedMeta,
        clients: Arc<Clients>,
        slots: Arc<Slots>,
        metrics: Arc<Metrics>,
        settings: MoverSettings,
    ) -> Self {
        Mover {
            meta,
            clients,
            slots,
            metrics,
            settings,
        }
    }

    /// The metadata it records into.
    pub fn meta(&self) -> &SharedMeta {
        &self.meta
    }

    /// The concurrency limits it honours.
    pub fn slots(&self) -> &Arc<Slots> {
        &self.slots
    }

    /// The counters it feeds.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether this master leads (several masters: see [`crate::ha`]).
    pub fn leadership(&self) -> &crate::ha::Leadership {
        self.clients.leadership()
    }

    /// Moves `mv.chunk` from `mv.from` to `mv.to` through the safe protocol:
    /// waits for a slot, re-checks the gates, copies (with retries), records,
    /// and deletes the source only when enough other whole replicas exist.
    pub async fn execute(&self, mv: &Move) -> Result<MoveDone, MoveError> {
        self.execute_with(mv, self.own_retries()).await
    }

    /// Like [`Mover::execute`], but one copy attempt only, and a failure is
    /// neither counted nor logged here: for a caller that retries whole moves
    /// itself and counts a move as failed once it gives up (the balancer's
    /// queue, which backs off without holding a slot).
    pub async fn execute_once(&self, mv: &Move) -> Result<MoveDone, MoveError> {
        let once = Attempts {
            retries: 0,
            report_failure: false,
        };
        self.execute_with(mv, once).await
    }

    async fn execute_with(&self, mv: &Move, attempts: Attempts) -> Result<MoveDone, MoveError> {
        let t = lock(&self.meta).check_move(&mv.chunk, &mv.from, &mv.to, MoveKind::Move)?;
        let _slot = self.slots.acquire(t.from.no, t.to.no).await;
        let t = lock(&self.meta).begin_move(&mv.chunk, &mv.from, &mv.to, MoveKind::Move)?;
        let _busy = BusyGuard {
            meta: Arc::clone(&self.meta),
            chunk: t.chunk.clone(),
        };
        self.run(&t, attempts).await
    }

    /// Retries from `--move-retries`; failures counted and logged here.
    fn own_retries(&self) -> Attempts {
        Attempts {
            retries: self.settings.retries,
            report_failure: true,
        }
    }

    /// Runs a repair or drain copy planned by the metadata (the chunk is
    /// already busy); the source stays. Its slot comes ahead of ordinary
    /// moves'.
    pub async fn replicate(&self, t: MoveTicket) -> Result<MoveDone, MoveError> {
        let _busy = BusyGuard {
            meta: Arc::clone(&self.meta),
            chunk: t.chunk.clone(),
        };
        let _slot = self.slots.acquire_urgent(t.from.no, t.to.no).await;
        let done = self.run(&t, self.own_retries()).await?;
        self.metrics.repairs_done.fetch_add(1, Ordering::Relaxed);
        Ok(done)
    }

    /// Asks the reported server to verify its replica and records what it
    /// found.
    pub async fn verify(&self, v: Verify) {
        let outcome = self.ask_verify(&v).await;
        let (chunk, server) = (&v.chunk, &v.server.id);
        match &outcome.0 {
            VerifyOutcome::Failed(e) => {
                warn!(chunk, server, error = %e, "could not verify a replica reported corrupt; it stays unconfirmed and is asked again")
            }
            o => info!(chunk, server, outcome = ?o, "reported replica verified"),
        }
        lock(&self.meta).verified(chunk, v.server.no, &outcome.0, outcome.1);
    }

    async fn ask_verify(&self, v: &Verify) -> (VerifyOutcome, Option<Stamp>) {
        let mut c = match self.clients.client(&v.server.address) {
            Ok(c) => c,
            Err(s) => return (VerifyOutcome::Failed(s.message().to_owned()), None),
        };
        // A verification rereads the whole chunk: allow it the copy deadline.
        let size = lock(&self.meta).chunk(&v.chunk).map_or(0, |c| c.size);
        let deadline = copy::copy_deadline(size, self.settings.copy_min_rate);
        let req = self.clients.request(
            VerifyChunkRequest {
                chunk: v.chunk.clone(),
            },
            deadline,
        );
        let resp = match tokio::time::timeout(deadline, c.verify_chunk(req)).await {
            Ok(Ok(r)) => r.into_inner(),
            // The server no longer lists it: gone, like a missing file.
            Ok(Err(s)) if s.code() == tonic::Code::NotFound => {
                return (VerifyOutcome::Missing, None);
            }
            Ok(Err(s)) => return (VerifyOutcome::Failed(s.message().to_owned()), None),
            Err(_) => return (VerifyOutcome::Failed("verification timed out".into()), None),
        };
        let stamp = convert::stamp(resp.stamp);
        let outcome = match resp.verdict() {
            VerifyVerdict::Whole => VerifyOutcome::Whole,
            VerifyVerdict::Corrupt => VerifyOutcome::Corrupt(resp.detail),
            VerifyVerdict::Missing => VerifyOutcome::Missing,
            VerifyVerdict::Unspecified => {
                VerifyOutcome::Failed("the server gave no verdict".into())
            }
        };
        (outcome, stamp)
    }

    async fn run(&self, t: &MoveTicket, attempts: Attempts) -> Result<MoveDone, MoveError> {
        let _running = Running::new(&self.metrics);
        let started = Instant::now();
        info!(chunk = %t.chunk, from = %t.from.id, to = %t.to.id, bytes = t.size, kind = ?t.kind, "move started");
        let stamp = match self.copy_with_retries(t, attempts.retries).await {
            Ok(stamp) => stamp,
            Err(e) => {
                if attempts.report_failure {
                    self.metrics.move_failed();
                    warn!(chunk = %t.chunk, from = %t.from.id, to = %t.to.id, error = %e, "move failed; source replica untouched");
                }
                return Err(e);
            }
        };
        lock(&self.meta).record_copy(t, stamp);
        self.metrics.move_done(t.size);
        let mut done = MoveDone {
            bytes: t.size,
            source_deleted: false,
            note: None,
        };
        if t.kind == MoveKind::Move {
            match self.release_source(t).await {
                Ok(()) => done.source_deleted = true,
                Err(note) => {
                    warn!(chunk = %t.chunk, from = %t.from.id, why = %note, "source replica not released");
                    done.note = Some(format!("source replica not released: {note}"));
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        info!(chunk = %t.chunk, from = %t.from.id, to = %t.to.id, bytes = t.size, secs, source_deleted = done.source_deleted, "move done");
        Ok(done)
    }

    /// Deletes the source replica when the master sees enough others. A
    /// failed delete leaves the replica in doubt (see [`Meta::doubt_replica`]).
    ///
    /// [`Meta::doubt_replica`]: crate::meta::Meta::doubt_replica
    async fn release_source(&self, t: &MoveTicket) -> Result<(), String> {
        lock(&self.meta).source_deletable(&t.chunk, t.from.no)?;
        match self.delete(&t.chunk, &t.from).await {
            Ok(stamp) => {
                lock(&self.meta).record_removal(&t.chunk, t.from.no, stamp);
                Ok(())
            }
            Err(s) => {
                lock(&self.meta).doubt_replica(&t.chunk, t.from.no);
                Err(format!(
                    "delete on {} failed: {}; the replica counts again once {} reports it",
                    t.from.id,
                    s.message(),
                    t.from.id
                ))
            }
        }
    }

    /// Sets or clears the drain mark kept by `server`.
    pub async fn set_drain(
        &self,
        server: &ServerAddr,
        draining: bool,
    ) -> Result<(), tonic::Status> {
        let mut c = self.clients.client(&server.address)?;
        let req = self
            .clients
            .fenced(SetDrainRequest { draining, term: 0 }, SMALL_RPC_TIMEOUT)?;
        match tokio::time::timeout(SMALL_RPC_TIMEOUT, c.set_drain(req)).await {
            Ok(r) => r.map(|_| ()),
            Err(_) => Err(tonic::Status::deadline_exceeded(
                "setting the drain mark timed out",
            )),
        }
    }

    /// `DeleteChunk` on `server`; a chunk already gone counts as deleted.
    /// Returns the server's stamp right after the delete, when it sent one.
    pub async fn delete(
        &self,
        chunk: &str,
        server: &ServerAddr,
    ) -> Result<Option<Stamp>, tonic::Status> {
        let mut c = self.clients.client(&server.address)?;
        let req = self.clients.fenced(
            DeleteChunkRequest {
                chunk: chunk.to_owned(),
                term: 0,
            },
            SMALL_RPC_TIMEOUT,
        )?;
        match tokio::time::timeout(SMALL_RPC_TIMEOUT, c.delete_chunk(req)).await {
            Ok(Ok(r)) => Ok(convert::stamp(r.into_inner().stamp)),
            Ok(Err(s)) if s.code() == tonic::Code::NotFound => Ok(None),
            Ok(Err(s)) => Err(s),
            Err(_) => Err(tonic::Status::deadline_exceeded("delete timed out")),
        }
    }

    /// Deletes excess replicas planned by [`crate::meta::Meta::plan_trims`],
    /// re-checking before each that enough whole replicas remain.
    pub async fn trim(&self, d: Deletion) {
        let _busy = BusyGuard {
            meta: Arc::clone(&self.meta),
            chunk: d.chunk.clone(),
        };
        for s in &d.servers {
            if let Err(why) = lock(&self.meta).source_deletable(&d.chunk, s.no) {
                info!(chunk = %d.chunk, server = %s.id, why = %why, "trim stopped");
                return;
            }
            match self.delete(&d.chunk, s).await {
                Ok(stamp) => {
                    lock(&self.meta).record_removal(&d.chunk, s.no, stamp);
                    info!(chunk = %d.chunk, server = %s.id, "excess replica trimmed");
                }
                Err(e) => {
                    // It may be gone all the same: stop counting it until
                    // the server reports it, so no other copy is trimmed for it.
                    lock(&self.meta).doubt_replica(&d.chunk, s.no);
                    warn!(chunk = %d.chunk, server = %s.id, error = %e.message(), "could not trim excess replica; it counts again once its server reports it")
                }
            }
        }
    }

    /// Deletes a copy verified corrupt, once its chunk is back at its factor.
    pub async fn delete_damaged(&self, chunk: &str, server: &ServerAddr) {
        match self.delete(chunk, server).await {
            Ok(_) => {
                lock(&self.meta).forget_excluded(chunk, server.no);
                info!(chunk, server = %server.id, "corrupt copy deleted");
            }
            Err(e) => {
                warn!(chunk, server = %server.id, error = %e.message(), "could not delete corrupt copy")
            }
        }
    }
}
