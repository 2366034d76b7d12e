//! A step's [`Request`] as a real RPC: the channel, the fencing of the
//! requests that change data, the deadline, and the answer read back into
//! a [`Reply`] for the steps to judge.

use keel_proto::v1::chunk_server_client::ChunkServerClient;
use keel_proto::v1::{CopyChunkRequest, StatChunkRequest, VerifyChunkRequest, VerifyVerdict};
use tonic::transport::Channel;

use super::Mover;
use super::steps::{Reply, Request, Rpc, StatReply};
use crate::convert;
use crate::meta::{ServerAddr, VerifyOutcome};

impl Mover {
    /// Sends `req` and waits for its answer until its deadline.
    pub(super) async fn call(&self, req: &Request) -> Reply {
        if let Rpc::Delete {
            chunk,
            replica,
            term,
        } = &req.rpc
        {
            // `delete` fences, times out and takes NOT_FOUND as done itself.
            return match self.delete(chunk, &req.server, *replica, *term).await {
                Ok(stamp) => Reply::Deleted(stamp),
                Err(s) => refused(s),
            };
        }
        let c = match self.clients.client(&req.server.address) {
            Ok(c) => c,
            Err(s) => return Reply::NotSent(s.message().to_owned()),
        };
        match &req.rpc {
            Rpc::Copy {
                chunk,
                source,
                size,
                crc32c,
                term,
            } => {
                self.copy_chunk(c, req, chunk, source, (*size, *crc32c), *term)
                    .await
            }
            Rpc::Stat { chunk } => self.stat_chunk(c, req, chunk).await,
            Rpc::Verify { chunk } => self.verify_chunk(c, req, chunk).await,
            Rpc::Delete { .. } => Reply::NotSent("a delete goes through Mover::delete".into()),
        }
    }

    async fn copy_chunk(
        &self,
        mut c: ChunkServerClient<Channel>,
        req: &Request,
        chunk: &str,
        source: &ServerAddr,
        (size, crc32c): (u64, u32),
        term: u64,
    ) -> Reply {
        let msg = CopyChunkRequest {
            chunk: chunk.to_owned(),
            source_id: source.id.clone(),
            source_address: source.address.clone(),
            expected_size: size,
            expected_crc32c: crc32c,
            term: 0,
        };
        let msg = match self.clients.fenced_at(msg, req.timeout, term) {
            Ok(m) => m,
            Err(s) => return Reply::NotSent(s.message().to_owned()),
        };
        match tokio::time::timeout(req.timeout, c.copy_chunk(msg)).await {
            Err(_) => Reply::TimedOut,
            Ok(Err(s)) => refused(s),
            Ok(Ok(r)) => {
                let r = r.into_inner();
                Reply::Copied {
                    size: r.size,
                    crc32c: r.crc32c,
                    stamp: convert::stamp(r.stamp),
                    replica: r.replica_id,
                }
            }
        }
    }

    async fn stat_chunk(
        &self,
        mut c: ChunkServerClient<Channel>,
        req: &Request,
        chunk: &str,
    ) -> Reply {
        let msg = self.clients.request(
            StatChunkRequest {
                chunk: chunk.to_owned(),
            },
            req.timeout,
        );
        match tokio::time::timeout(req.timeout, c.stat_chunk(msg)).await {
            Err(_) => Reply::TimedOut,
            Ok(Err(s)) => refused(s),
            Ok(Ok(r)) => {
                let r = r.into_inner();
                Reply::Stat(StatReply {
                    header: r.header.map(|h| (h.size, h.crc32c)),
                    replica: r.replica_id,
                    deleting: r.deleting,
                    suspect: r.suspect,
                    stamp: convert::stamp(r.stamp),
                })
            }
        }
    }

    async fn verify_chunk(
        &self,
        mut c: ChunkServerClient<Channel>,
        req: &Request,
        chunk: &str,
    ) -> Reply {
        let msg = self.clients.request(
            VerifyChunkRequest {
                chunk: chunk.to_owned(),
            },
            req.timeout,
        );
        let r = match tokio::time::timeout(req.timeout, c.verify_chunk(msg)).await {
            Err(_) => return Reply::TimedOut,
            Ok(Err(s)) => return refused(s),
            Ok(Ok(r)) => r.into_inner(),
        };
        let outcome = match r.verdict() {
            VerifyVerdict::Whole => VerifyOutcome::Whole,
            VerifyVerdict::Corrupt => VerifyOutcome::Corrupt {
                detail: r.detail,
                replica: r.replica_id,
            },
            VerifyVerdict::Missing => VerifyOutcome::Missing,
            VerifyVerdict::Unspecified => {
                VerifyOutcome::Failed("the server gave no verdict".into())
            }
        };
        Reply::Verified(outcome, convert::stamp(r.stamp))
    }
}

/// An error answer.
fn refused(s: tonic::Status) -> Reply {
    Reply::Refused {
        code: s.code(),
        message: s.message().to_owned(),
    }
}
