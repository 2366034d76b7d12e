//! The safe move protocol, reusable by every caller that moves data
//! (`RebalanceExecute`, the maintenance loop, the background balancer).
//!
//! A move of chunk `c` from `s` to `t`: the gates pass and `c` turns busy;
//! the term this master leads under is the move's decision term →
//! `CopyChunk` on `t` (it pulls from `s`, checks size and CRC32C, fsyncs,
//! and answers the new replica's identity) → the master records `c` on `t`
//! → only if the master itself now sees at least `replication` whole
//! replicas on live servers without `s`, none suspect, `DeleteChunk` on `s`
//! naming the replica it recorded there, under the decision term → the
//! removal is recorded. A failed copy leaves `s` untouched and is retried by
//! the move queue, which also holds the copy's slot; a failed delete leaves
//! the replica in doubt (counted by nothing and accepted as no copy until
//! its server, no longer deleting it, reports it) and an excess replica
//! that trimming removes later. A crash at any point leaves a whole replica.
//!
//! Every destructive step names exactly what it destroys, under the term
//! that decided it: a delete carries the replica's identity (the chunk
//! server removes only that file, so a delete meant for a damaged or stale
//! copy never removes a newer whole one) and the decision's term (a master
//! deposed and elected again since does not send it; a chunk server that
//! saw a newer term refuses it). Trims and deletes of damaged or mismatched
//! copies are decided by the maintenance pass under its term.
//!
//! # Layout
//! - [`clients`]: cached channels to chunk servers.
//! - `copy`: one copy and its deadline.
//! - `confirm`: the replicas a delete relies on, asked right before it.

pub mod clients;

mod confirm;

pub use confirm::{CONFIRM_WITHIN, ConfirmStep, Confirmation};
mod copy;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use keel_proto::v1::{DeleteChunkRequest, SetDrainRequest, VerifyChunkRequest, VerifyVerdict};
use tracing::{Instrument, info, info_span, warn};

pub use clients::Clients;

use crate::convert;
use crate::meta::{
    Deletion, MoveTicket, Reject, ServerAddr, SharedMeta, Stamp, Verify, VerifyOutcome, lock,
};
use crate::metrics::Metrics;

/// Deadline of a `DeleteChunk` or `StatChunk`.
pub const SMALL_RPC_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// The copy failed; the source replica is intact.
    #[error("{error}")]
    Failed {
        /// What went wrong.
        error: String,
        /// Whether another attempt may succeed.
        retry: bool,
    },
}

/// Tunables of the mover.
#[derive(Debug, Clone)]
pub struct MoverSettings {
    /// Slowest copy rate planned for, bytes per second (`--copy-min-rate`).
    pub copy_min_rate: u64,
}

impl Default for MoverSettings {
    fn default() -> Self {
        MoverSettings {
            copy_min_rate: 1 << 20,
        }
    }
}

/// Runs moves, copies and deletes against chunk servers.
#[derive(Debug, Clone)]
pub struct Mover {
    meta: SharedMeta,
    clients: Arc<Clients>,
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
        metrics: Arc<Metrics>,
        settings: MoverSettings,
    ) -> Self {
        Mover {
            meta,
            clients,
            metrics,
            settings,
        }
    }

    /// The metadata it records into.
    pub fn meta(&self) -> &SharedMeta {
        &self.meta
    }

    /// The counters it feeds.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether TLS is set up towards chunk servers (see [`Clients::tls`]).
    pub fn tls(&self) -> bool {
        self.clients.tls()
    }

    /// Whether this master leads (several masters: see [`crate::ha`]).
    pub fn leadership(&self) -> &crate::ha::Leadership {
        self.clients.leadership()
    }

    /// Runs one attempt of a copy the queue started (the metadata already
    /// counts it as begun; its busy mark ends here, however this ends):
    /// copy, record, and for a move delete the source only when enough
    /// other whole replicas exist.
    pub async fn run(&self, t: &MoveTicket) -> Result<MoveDone, MoveError> {
        let id = keel_proto::move_id::new_id();
        let span = info_span!("move", id = %id, chunk = %t.chunk, from = %t.from.id, to = %t.to.id);
        keel_proto::move_id::scope(id, self.run_attempt(t).instrument(span)).await
    }

    async fn run_attempt(&self, t: &MoveTicket) -> Result<MoveDone, MoveError> {
        let _busy = BusyGuard {
            meta: Arc::clone(&self.meta),
            chunk: t.chunk.clone(),
        };
        let _running = Running::new(&self.metrics);
        let started = Instant::now();
        // The decision term: the source's delete is sent under it or not at all.
        let Some(term) = self.leadership().term_if_leading() else {
            return Err(MoveError::Failed {
                error: "this master is not the leader (any more); the copy is left to the leader"
                    .into(),
                retry: false,
            });
        };
        info!(chunk = %t.chunk, from = %t.from.id, to = %t.to.id, bytes = t.size, kind = t.kind.name(), term, "copy started");
        let (stamp, replica) = self.copy(t, term).await?;
        lock(&self.meta).record_copy_of(t, stamp, replica);
        self.metrics.move_done(t.size);
        let mut done = MoveDone {
            bytes: t.size,
            source_deleted: false,
            note: None,
        };
        if t.kind.deletes_source() {
            match self.release_source(t, term).await {
                Ok(()) => done.source_deleted = true,
                Err(note) => {
                    warn!(chunk = %t.chunk, from = %t.from.id, why = %note, "source replica not released");
                    done.note = Some(format!("source replica not released: {note}"));
                }
            }
        } else {
            self.metrics.repairs_done.fetch_add(1, Ordering::Relaxed);
        }
        let secs = started.elapsed().as_secs_f64();
        self.metrics.copy_timed(t.kind, t.size, secs);
        info!(chunk = %t.chunk, from = %t.from.id, to = %t.to.id, bytes = t.size, secs, kind = t.kind.name(), source_deleted = done.source_deleted, "copy done");
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
            VerifyVerdict::Corrupt => VerifyOutcome::Corrupt {
                detail: resp.detail,
                replica: resp.replica_id,
            },
            VerifyVerdict::Missing => VerifyOutcome::Missing,
            VerifyVerdict::Unspecified => {
                VerifyOutcome::Failed("the server gave no verdict".into())
            }
        };
        (outcome, stamp)
    }

    /// Deletes the source replica when the master sees enough others. A
    /// failed delete leaves the replica in doubt (see [`Meta::doubt_replica`]).
    ///
    /// [`Meta::doubt_replica`]: crate::meta::Meta::doubt_replica
    async fn release_source(&self, t: &MoveTicket, term: u64) -> Result<(), String> {
        lock(&self.meta).source_deletable(&t.chunk, t.from.no)?;
        self.confirm_staying(&t.chunk, t.from.no).await?;
        let replica = {
            let m = lock(&self.meta);
            m.source_deletable(&t.chunk, t.from.no)?;
            m.replica_id(&t.chunk, t.from.no)
        };
        if !self.clients.leads_at(term) {
            return Err(format!(
                "the move was decided under term {term}, and this master no longer leads under it"
            ));
        }
        match self.delete(&t.chunk, &t.from, replica, term).await {
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

    /// `DeleteChunk` of replica `replica` on `server`, decided under term
    /// `term`; a replica already gone counts as deleted. Returns the
    /// server's stamp right after the delete, when it sent one.
    pub async fn delete(
        &self,
        chunk: &str,
        server: &ServerAddr,
        replica: u64,
        term: u64,
    ) -> Result<Option<Stamp>, tonic::Status> {
        let mut c = self.clients.client(&server.address)?;
        let req = self.clients.fenced_at(
            DeleteChunkRequest {
                chunk: chunk.to_owned(),
                term,
                replica_id: replica,
            },
            SMALL_RPC_TIMEOUT,
            term,
        )?;
        match tokio::time::timeout(SMALL_RPC_TIMEOUT, c.delete_chunk(req)).await {
            Ok(Ok(r)) => Ok(convert::stamp(r.into_inner().stamp)),
            Ok(Err(s)) if s.code() == tonic::Code::NotFound => Ok(None),
            Ok(Err(s)) => Err(s),
            Err(_) => Err(tonic::Status::deadline_exceeded("delete timed out")),
        }
    }

    /// Deletes excess replicas planned by [`crate::meta::Meta::plan_trims`]
    /// under term `term`, re-checking before each that enough whole
    /// replicas remain and that this master still leads under that term.
    pub async fn trim(&self, d: Deletion, term: u64) {
        let _busy = BusyGuard {
            meta: Arc::clone(&self.meta),
            chunk: d.chunk.clone(),
        };
        for s in &d.servers {
            // The view is up to a heartbeat old: the replicas that stay are
            // asked first, and the view checked again after.
            let deletable = lock(&self.meta).source_deletable(&d.chunk, s.no);
            let confirmed = match deletable {
                Ok(()) => self.confirm_staying(&d.chunk, s.no).await,
                Err(why) => Err(why),
            };
            let replica = {
                let mut m = lock(&self.meta);
                if let Err(why) = confirmed.and_then(|()| m.source_deletable(&d.chunk, s.no)) {
                    info!(chunk = %d.chunk, server = %s.id, why = %why, "trim stopped");
                    m.trim_stopped(&d.chunk);
                    return;
                }
                m.replica_id(&d.chunk, s.no)
            };
            if !self.clients.leads_at(term) {
                info!(chunk = %d.chunk, term, "trim stopped: decided under a term this master no longer leads under");
                // Reconsidered should this master lead again: nothing else
                // makes an excess replica a trim candidate once more.
                lock(&self.meta).trim_stopped(&d.chunk);
                return;
            }
            match self.delete(&d.chunk, s, replica, term).await {
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

    /// Deletes a copy verified corrupt (once its chunk is back at its
    /// factor) or one whose size or CRC32C disagree with the chunk's (once
    /// the chunk is whole elsewhere), decided under term `term`. The delete
    /// names that copy's identity: a whole copy made since on the same
    /// server stays.
    pub async fn delete_damaged(&self, chunk: &str, server: &ServerAddr, term: u64) {
        let replica = lock(&self.meta).damaged_replica(chunk, server.no);
        match self.delete(chunk, server, replica, term).await {
            Ok(_) => {
                lock(&self.meta).forget_excluded(chunk, server.no);
                info!(chunk, server = %server.id, replica, "damaged or mismatched copy deleted");
            }
            Err(e) => {
                lock(&self.meta).damaged_delete_failed(chunk, server.no);
                warn!(chunk, server = %server.id, replica, error = %e.message(), "could not delete a damaged or mismatched copy; tried again later")
            }
        }
    }
}
