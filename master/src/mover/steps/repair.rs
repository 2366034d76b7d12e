//! The two single-RPC steps of upkeep: the delete of a damaged or
//! mismatched copy (`Mover::delete_damaged`), and the verification of a
//! replica reported corrupt (`Mover::verify`).

use tonic::Code;

use super::{Reply, Request, Rpc, SMALL_RPC_TIMEOUT, copy_deadline};
use crate::meta::{Meta, ServerAddr, Verify, VerifyOutcome};

/// The delete of a copy verified corrupt (once its chunk is back at its
/// factor) or one whose size or CRC32C disagree with the chunk's (once the
/// chunk is whole elsewhere), decided under a term. The delete names that
/// copy's identity: a whole copy made since on the same server stays.
#[derive(Debug, Clone)]
pub struct DamagedSteps {
    /// Chunk id.
    chunk: String,
    /// The server holding the copy.
    server: ServerAddr,
    /// The decision term.
    term: u64,
    /// The identity of the copy to delete, once taken from the view.
    replica: u64,
}

impl DamagedSteps {
    /// The delete of the damaged copy of `chunk` on `server`, decided
    /// under `term`.
    pub fn new(chunk: &str, server: &ServerAddr, term: u64) -> Self {
        DamagedSteps {
            chunk: chunk.to_owned(),
            server: server.clone(),
            term,
            replica: 0,
        }
    }

    /// The identity of the copy deleted (0 before the first step).
    pub fn replica(&self) -> u64 {
        self.replica
    }

    /// The delete to send, with `leading` the term this master leads under
    /// now; or, when it no longer leads under the decision term, why not
    /// (recorded as a failed delete: tried again later).
    pub fn next(&mut self, meta: &mut Meta, leading: Option<u64>) -> Result<Request, String> {
        self.replica = meta.damaged_replica(&self.chunk, self.server.no);
        if leading != Some(self.term) {
            meta.damaged_delete_failed(&self.chunk, self.server.no);
            return Err(match leading {
                Some(now) => format!(
                    "decided under term {}, but this master now leads under term {now}; \
                     the change is left to a new decision",
                    self.term
                ),
                None => {
                    "this master is not the leader (any more); the change is left to the leader"
                        .into()
                }
            });
        }
        Ok(Request {
            server: self.server.clone(),
            rpc: Rpc::Delete {
                chunk: self.chunk.clone(),
                replica: self.replica,
                term: self.term,
            },
            timeout: SMALL_RPC_TIMEOUT,
        })
    }

    /// The delete's reply: recorded, and why it failed when it did.
    pub fn answered(&mut self, meta: &mut Meta, reply: Reply) -> Result<(), String> {
        let (chunk, no) = (&self.chunk, self.server.no);
        match reply {
            Reply::Deleted(_)
            | Reply::Refused {
                code: Code::NotFound,
                ..
            } => {
                meta.forget_excluded(chunk, no);
                Ok(())
            }
            other => {
                meta.damaged_delete_failed(chunk, no);
                Err(other
                    .failure("delete timed out")
                    .unwrap_or_else(|| "an answer that is no DeleteChunk's".into()))
            }
        }
    }
}

/// The verification of a replica reported corrupt: its server rereads it
/// (within a copy's deadline for the chunk's size) and the verdict is
/// recorded.
#[derive(Debug, Clone)]
pub struct VerifySteps {
    /// What to verify.
    v: Verify,
    /// Slowest reread rate planned for.
    min_rate: u64,
}

impl VerifySteps {
    /// A verification of `v`, planning for rereads no slower than
    /// `min_rate` bytes/s.
    pub fn new(v: Verify, min_rate: u64) -> Self {
        VerifySteps { v, min_rate }
    }

    /// What is verified.
    pub fn target(&self) -> &Verify {
        &self.v
    }

    /// The `VerifyChunk` to send.
    pub fn next(&self, meta: &Meta) -> Request {
        let size = meta.chunk(&self.v.chunk).map_or(0, |c| c.size);
        Request {
            server: self.v.server.clone(),
            rpc: Rpc::Verify {
                chunk: self.v.chunk.clone(),
            },
            timeout: copy_deadline(size, self.min_rate),
        }
    }

    /// Its reply: what the server found, recorded. A server that no longer
    /// lists the replica found it gone, like a missing file; one that could
    /// not be asked leaves it unconfirmed, to be asked again.
    pub fn answered(&self, meta: &mut Meta, reply: Reply) -> VerifyOutcome {
        let (outcome, at) = match reply {
            Reply::Verified(o, at) => (o, at),
            Reply::Refused {
                code: Code::NotFound,
                ..
            } => (VerifyOutcome::Missing, None),
            other => {
                let why = other.failure("verification timed out");
                let why = why.unwrap_or_else(|| "an answer that is no VerifyChunk's".into());
                (VerifyOutcome::Failed(why), None)
            }
        };
        meta.verified(&self.v.chunk, self.v.server.no, &outcome, at);
        outcome
    }
}
