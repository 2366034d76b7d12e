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
//! The steps themselves are one pure, synchronous state machine per
//! operation in [`steps`] (a move or copy, a trim, the delete of a damaged
//! copy, a verification): each reads and records the metadata and says
//! which RPC to send next. [`Mover`] drives them with real RPCs; the
//! deterministic simulation (`sim/`) drives the very same machines through
//! its simulated network, so the order checked by its seeds is this one.
//!
//! # Layout
//! - [`clients`]: cached channels to chunk servers.
//! - [`steps`]: each operation's steps without their I/O.
//! - `confirm`: the replicas a delete relies on, asked right before it.
//! - `rpc`: a step's request as a real RPC, with its deadline.

pub mod clients;

mod confirm;
mod rpc;
pub mod steps;

pub use confirm::{CONFIRM_WITHIN, ConfirmStep, Confirmation};
pub use steps::SMALL_RPC_TIMEOUT;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use keel_proto::v1::{DeleteChunkRequest, SetDrainRequest};
use tracing::{Instrument, debug, info, info_span, warn};

pub use clients::Clients;

use crate::convert;
use crate::meta::{
    Deletion, MoveTicket, Reject, ServerAddr, SharedMeta, Stamp, Verify, VerifyOutcome, lock,
};
use crate::metrics::Metrics;
use steps::{DamagedSteps, MoveStep, MoveSteps, Reply, Request, TrimStep, TrimSteps, VerifySteps};

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
        let mut steps = MoveSteps::new(t.clone(), self.settings.copy_min_rate);
        let mut step = self.move_step(&mut steps);
        // The decision term: the source's delete is sent under it or not at all.
        if let Some(term) = steps.term() {
            info!(chunk = %t.chunk, from = %t.from.id, to = %t.to.id, bytes = t.size, kind = t.kind.name(), term, "copy started");
        }
        let done = loop {
            match step {
                MoveStep::Send(req) => {
                    let reply = self.call(&req).await;
                    let confirmed =
                        steps.answered(&mut lock(&self.meta), reply.clone(), Instant::now());
                    confirmation_heard(&t.chunk, &req, &reply, confirmed);
                }
                MoveStep::Recorded { existing } => {
                    if existing {
                        debug!(chunk = %t.chunk, to = %t.to.id, "target already holds a matching copy");
                    }
                    self.metrics.move_done(t.size);
                }
                MoveStep::Done(Ok(done)) => break done,
                MoveStep::Done(Err(e)) => {
                    if let MoveError::Failed { error, retry: true } = &e {
                        warn!(chunk = %t.chunk, to = %t.to.id, error = %error, "copy failed; the queue retries it");
                    }
                    return Err(e);
                }
            }
            step = self.move_step(&mut steps);
        };
        if let Some(note) = &done.note {
            let why = note
                .strip_prefix("source replica not released: ")
                .unwrap_or(note);
            warn!(chunk = %t.chunk, from = %t.from.id, why = %why, "source replica not released");
        }
        if !t.kind.deletes_source() {
            self.metrics.repairs_done.fetch_add(1, Ordering::Relaxed);
        }
        let secs = started.elapsed().as_secs_f64();
        self.metrics.copy_timed(t.kind, t.size, secs);
        info!(chunk = %t.chunk, from = %t.from.id, to = %t.to.id, bytes = t.size, secs, kind = t.kind.name(), source_deleted = done.source_deleted, "copy done");
        Ok(done)
    }

    /// The term this master leads under now (`None`: it does not lead).
    fn leading(&self) -> Option<u64> {
        self.leadership().term_if_leading()
    }

    /// A move's next step, the metadata locked for the step only.
    fn move_step(&self, steps: &mut MoveSteps) -> MoveStep {
        let leading = self.leading();
        steps.next(&mut lock(&self.meta), leading, Instant::now())
    }

    /// Asks the reported server to verify its replica and records what it
    /// found.
    pub async fn verify(&self, v: Verify) {
        let steps = VerifySteps::new(v, self.settings.copy_min_rate);
        let req = steps.next(&lock(&self.meta));
        let reply = self.call(&req).await;
        let outcome = steps.answered(&mut lock(&self.meta), reply);
        let (chunk, server) = (&steps.target().chunk, &steps.target().server.id);
        match &outcome {
            VerifyOutcome::Failed(e) => {
                warn!(chunk, server, error = %e, "could not verify a replica reported corrupt; it stays unconfirmed and is asked again")
            }
            o => info!(chunk, server, outcome = ?o, "reported replica verified"),
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
    /// replicas remain and that this master still leads under that term
    /// (the steps: [`TrimSteps`]).
    pub async fn trim(&self, d: Deletion, term: u64) {
        let _busy = BusyGuard {
            meta: Arc::clone(&self.meta),
            chunk: d.chunk.clone(),
        };
        let chunk = d.chunk.clone();
        let mut steps = TrimSteps::new(d, term);
        loop {
            let leading = self.leading();
            let step = steps.next(&mut lock(&self.meta), leading, Instant::now());
            match step {
                TrimStep::Send(req) => {
                    let reply = self.call(&req).await;
                    let confirmed =
                        steps.answered(&mut lock(&self.meta), reply.clone(), Instant::now());
                    confirmation_heard(&chunk, &req, &reply, confirmed);
                }
                TrimStep::Trimmed(s) => {
                    info!(chunk = %chunk, server = %s.id, "excess replica trimmed")
                }
                TrimStep::Failed(s, e) => {
                    warn!(chunk = %chunk, server = %s.id, error = %e, "could not trim excess replica; it counts again once its server reports it")
                }
                TrimStep::Stopped(s, why) => {
                    info!(chunk = %chunk, server = %s.id, why = %why, "trim stopped")
                }
                TrimStep::Deposed => {
                    info!(chunk = %chunk, term, "trim stopped: decided under a term this master no longer leads under")
                }
                TrimStep::Done => return,
            }
        }
    }

    /// Deletes a copy verified corrupt (once its chunk is back at its
    /// factor) or one whose size or CRC32C disagree with the chunk's (once
    /// the chunk is whole elsewhere), decided under term `term`. The delete
    /// names that copy's identity: a whole copy made since on the same
    /// server stays.
    pub async fn delete_damaged(&self, chunk: &str, server: &ServerAddr, term: u64) {
        let mut steps = DamagedSteps::new(chunk, server, term);
        let leading = self.leading();
        let sent = steps.next(&mut lock(&self.meta), leading);
        let result = match sent {
            Ok(req) => {
                let reply = self.call(&req).await;
                steps.answered(&mut lock(&self.meta), reply)
            }
            Err(why) => Err(why),
        };
        let replica = steps.replica();
        match result {
            Ok(()) => {
                info!(chunk, server = %server.id, replica, "damaged or mismatched copy deleted")
            }
            Err(e) => {
                warn!(chunk, server = %server.id, replica, error = %e, "could not delete a damaged or mismatched copy; tried again later")
            }
        }
    }
}

/// Logs a `StatChunk` of a replica a delete relies on that did not confirm
/// it (`confirmed`: what the steps made of the reply, `None` for any other
/// request).
fn confirmation_heard(chunk: &str, req: &Request, reply: &Reply, confirmed: Option<bool>) {
    if confirmed != Some(false) {
        return;
    }
    let server = &req.server.id;
    match reply.held() {
        Ok(_) => info!(
            chunk,
            server, "a replica a delete relied on is not the one counted"
        ),
        Err(e) => {
            info!(chunk, server, error = %e, "a replica a delete relied on could not be confirmed")
        }
    }
}
