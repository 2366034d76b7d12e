//! One delete that relies on the replicas that stay: a move's source, or
//! one holder of a trim. In order: the master's view allows it
//! (`source_deletable`) → the replicas that stay are confirmed with their
//! servers ([`Confirmation`]) → the view still allows it, now naming the
//! replica to remove → this master still leads under the decision term →
//! `DeleteChunk` naming that replica and term → the removal is recorded,
//! or on any failure the replica is doubted (it may be gone all the same).

use std::time::Instant;

use tonic::Code;

use super::{Reply, Request, Rpc, SMALL_RPC_TIMEOUT};
use crate::meta::{Meta, ServerAddr};
use crate::mover::{ConfirmStep, Confirmation};

/// How a delete that relies on the replicas that stay ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// The replica was deleted (or already gone) and its removal recorded.
    Deleted,
    /// Not sent: the view or the replicas that stay do not allow it; why.
    Kept(String),
    /// Not sent: this master no longer leads under the decision term.
    Deposed,
    /// The delete failed or timed out: the replica is in doubt until its
    /// server reports it again; why.
    Failed(String),
}

/// What a [`Release`] wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ReleaseStep {
    /// Send this request and give its reply to [`Release::answered`].
    Send(Request),
    /// Ended.
    Done(Released),
}

/// Where a release is.
#[derive(Debug, Clone)]
enum Stage {
    /// Nothing asked yet.
    Begin,
    /// Asking the replicas that stay.
    Confirming(Confirmation),
    /// `DeleteChunk` sent.
    Deleting,
    /// Ended.
    Ended(Released),
}

/// The delete of the replica of `chunk` on `server`, decided under `term`.
#[derive(Debug, Clone)]
pub(super) struct Release {
    /// Chunk id.
    chunk: String,
    /// The holder whose replica goes.
    server: ServerAddr,
    /// The decision term: the delete is sent under it or not at all.
    term: u64,
    /// Where it is.
    stage: Stage,
}

impl Release {
    /// A release not begun.
    pub(super) fn new(chunk: &str, server: &ServerAddr, term: u64) -> Self {
        Release {
            chunk: chunk.to_owned(),
            server: server.clone(),
            term,
            stage: Stage::Begin,
        }
    }

    /// The next step at `now`, with `leading` the term this master leads
    /// under now (`None`: it does not lead).
    pub(super) fn next(&mut self, meta: &Meta, leading: Option<u64>, now: Instant) -> ReleaseStep {
        if let Stage::Begin = self.stage {
            self.stage = match self.begin(meta, now) {
                Ok(c) => Stage::Confirming(c),
                Err(why) => Stage::Ended(Released::Kept(why)),
            };
        }
        let step = match &self.stage {
            Stage::Confirming(c) => c.next(now),
            Stage::Ended(r) => return ReleaseStep::Done(r.clone()),
            Stage::Begin | Stage::Deleting => {
                return self.end(Released::Failed(
                    "asked for a step before the answer".into(),
                ));
            }
        };
        match step {
            ConfirmStep::Ask { server, timeout } => ReleaseStep::Send(Request {
                server,
                rpc: Rpc::Stat {
                    chunk: self.chunk.clone(),
                },
                timeout,
            }),
            ConfirmStep::Refused(why) => self.end(Released::Kept(why)),
            ConfirmStep::Confirmed => self.delete(meta, leading),
        }
    }

    /// The reply to the request last sent, taken at `now`. Returns, for a
    /// `StatChunk` of a replica that stays, whether it confirmed it.
    pub(super) fn answered(&mut self, meta: &mut Meta, reply: Reply, now: Instant) -> Option<bool> {
        match &mut self.stage {
            Stage::Confirming(c) => Some(c.answered(now, reply.held().ok())),
            Stage::Deleting => {
                let no = self.server.no;
                let ended = match reply {
                    Reply::Deleted(stamp) => {
                        meta.record_removal(&self.chunk, no, stamp);
                        Released::Deleted
                    }
                    Reply::Refused {
                        code: Code::NotFound,
                        ..
                    } => {
                        meta.record_removal(&self.chunk, no, None);
                        Released::Deleted
                    }
                    other => {
                        meta.doubt_replica(&self.chunk, no);
                        let why = other.failure("delete timed out");
                        Released::Failed(
                            why.unwrap_or_else(|| "an answer that is no DeleteChunk's".into()),
                        )
                    }
                };
                self.stage = Stage::Ended(ended);
                None
            }
            Stage::Begin | Stage::Ended(_) => None,
        }
    }

    /// The view allows the delete: the confirmation of the replicas that
    /// stay, or why not.
    fn begin(&self, meta: &Meta, now: Instant) -> Result<Confirmation, String> {
        meta.source_deletable(&self.chunk, self.server.no)?;
        let Some(staying) = meta.staying(&self.chunk, self.server.no) else {
            return Err(format!("chunk {} is no longer known", self.chunk));
        };
        Ok(Confirmation::new(staying, now))
    }

    /// Confirmed: the view is checked again (it may have changed while the
    /// holders answered), then the term, then the delete goes.
    fn delete(&mut self, meta: &Meta, leading: Option<u64>) -> ReleaseStep {
        if let Err(why) = meta.source_deletable(&self.chunk, self.server.no) {
            return self.end(Released::Kept(why));
        }
        let replica = meta.replica_id(&self.chunk, self.server.no);
        if leading != Some(self.term) {
            return self.end(Released::Deposed);
        }
        self.stage = Stage::Deleting;
        ReleaseStep::Send(Request {
            server: self.server.clone(),
            rpc: Rpc::Delete {
                chunk: self.chunk.clone(),
                replica,
                term: self.term,
            },
            timeout: SMALL_RPC_TIMEOUT,
        })
    }

    fn end(&mut self, r: Released) -> ReleaseStep {
        self.stage = Stage::Ended(r.clone());
        ReleaseStep::Done(r)
    }
}
