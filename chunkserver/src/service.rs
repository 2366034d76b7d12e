//! The `keel.v1.ChunkServer` gRPC service: converts requests, calls the
//! domain modules, maps errors through `From<Error> for Status`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use keel_proto::auth::Role;
use keel_proto::chunk_id::ChunkId;
use keel_proto::move_id;
use keel_proto::v1::chunk_server_server::ChunkServer;
use keel_proto::v1::{
    CopyChunkRequest, CopyChunkResponse, DeleteChunkRequest, DeleteChunkResponse, ReadChunkRequest,
    ServerStatusRequest, ServerStatusResponse, SetDrainRequest, SetDrainResponse, StatChunkRequest,
    StatChunkResponse, VerifyChunkRequest, VerifyChunkResponse, WriteChunkRequest,
    WriteChunkResponse,
};
use tonic::{Request, Response, Status, Streaming};
use tracing::{Span, info, instrument, warn};

use crate::blocking::blocking;
use crate::error::Error;
use crate::node::Node;
use crate::read::{ReadJob, ReadStream};
use crate::{convert, fence, transfer, write};

/// The gRPC face of a [`Node`].
pub struct ChunkService {
    node: Arc<Node>,
}

impl ChunkService {
    /// Serves `node`.
    pub fn new(node: Arc<Node>) -> Self {
        ChunkService { node }
    }
}

/// Logs a failed request once, at the level its code deserves, and converts it.
fn reply<T>(r: Result<T, Error>) -> Result<Response<T>, Status> {
    match r {
        Ok(v) => Ok(Response::new(v)),
        Err(e) => {
            let code = e.code();
            match code {
                tonic::Code::Internal | tonic::Code::DataLoss | tonic::Code::Unavailable => {
                    warn!(?code, error = %e, "request failed");
                }
                _ => info!(?code, error = %e, "request refused"),
            }
            Err(e.into())
        }
    }
}

// Span fields hold request strings before they are validated: they are
// logged escaped (`escape_debug`), so a newline in an id cannot forge a
// log line; valid ids look the same either way.
#[tonic::async_trait]
impl ChunkServer for ChunkService {
    #[instrument(skip_all, fields(chunk))]
    async fn write_chunk(
        &self,
        request: Request<Streaming<WriteChunkRequest>>,
    ) -> Result<Response<WriteChunkResponse>, Status> {
        let auth = request.metadata().get("authorization").cloned();
        let auth = auth.as_ref().map(|v| v.as_bytes());
        let r = write::write_chunk(&self.node, auth, request.into_inner()).await;
        if let Ok(w) = &r {
            Span::current().record("chunk", w.chunk.as_str());
        }
        reply(r)
    }

    type ReadChunkStream = ReadStream;

    #[instrument(skip_all, fields(chunk = %request.get_ref().chunk.escape_debug(), migration = request.get_ref().migration, move_id))]
    async fn read_chunk(
        &self,
        request: Request<ReadChunkRequest>,
    ) -> Result<Response<ReadStream>, Status> {
        note_move(&request);
        // An open server admits everyone as the cluster.
        let cluster = request.extensions().get::<Role>() != Some(&Role::Client);
        let peer = request.remote_addr();
        reply(self.open_read(request.into_inner(), cluster, peer).await)
    }

    #[instrument(skip_all, fields(chunk = %request.get_ref().chunk.escape_debug(), from = %request.get_ref().source_id.escape_debug(), move_id))]
    async fn copy_chunk(
        &self,
        request: Request<CopyChunkRequest>,
    ) -> Result<Response<CopyChunkResponse>, Status> {
        let id = note_move(&request);
        let req = request.into_inner();
        let r = async {
            fence::admit(&self.node.fence, req.term, "a copy").await?;
            transfer::copy_chunk(&self.node, req).await
        };
        // The read from the source runs in this task: it carries the id on.
        match id {
            Some(id) => reply(move_id::scope(id, r).await),
            None => reply(r.await),
        }
    }

    #[instrument(skip_all, fields(chunk = %request.get_ref().chunk.escape_debug(), move_id))]
    async fn delete_chunk(
        &self,
        request: Request<DeleteChunkRequest>,
    ) -> Result<Response<DeleteChunkResponse>, Status> {
        note_move(&request);
        let r = async {
            let req = request.into_inner();
            let id = ChunkId::new(req.chunk)?;
            // Reported as running from here to its end, so a master whose
            // call timed out learns when the replica stops being in doubt.
            let running = self.node.store.begin_delete(&id);
            let entered = fence::enter(&self.node.fence, req.term, "a delete").await?;
            let store = Arc::clone(&self.node.store);
            let runtime = tokio::runtime::Handle::current();
            let replica = req.replica_id;
            let (freed, stamp) = blocking("deleting chunk", move || {
                let _running = running;
                if let Some(hold) = crate::test_hooks::delete_hold() {
                    std::thread::sleep(hold);
                }
                // Held by the delete itself until the replica is out of the
                // index (a caller hanging up drops the handler, not this), so
                // a newer leader's term is recorded only after (see `fence`).
                let (freed, stamp, trash) = {
                    let _entered = entered;
                    store.delete_replica(&id, replica)?
                };
                if let Some(trash) = trash {
                    // Off the answer's path (see `Store::delete`), and
                    // scheduled here rather than by the handler: a caller
                    // that hangs up mid-delete drops the handler, never this.
                    runtime.spawn_blocking(move || {
                        if let Err(e) = std::fs::remove_file(&trash) {
                            warn!(path = %trash.display(), error = %e, "could not remove a deleted chunk's file");
                        }
                    });
                }
                Ok((freed, stamp))
            })
            .await?;
            info!(freed, "chunk deleted");
            Ok(DeleteChunkResponse {
                freed_bytes: freed,
                stamp: Some(convert::stamp(stamp)),
            })
        };
        reply(r.await)
    }

    #[instrument(skip_all, fields(chunk = %request.get_ref().chunk.escape_debug()))]
    async fn stat_chunk(
        &self,
        request: Request<StatChunkRequest>,
    ) -> Result<Response<StatChunkResponse>, Status> {
        let r = ChunkId::new(request.into_inner().chunk)
            .map_err(Error::from)
            .and_then(|id| {
                // Before the lookup: the replica was held at or after it.
                let stamp = self.node.store.stamp();
                let e = self.node.store.entry(id.as_str())?;
                let deleting = self.node.store.is_deleting(id.as_str());
                Ok(convert::stat(id.to_string(), &e, deleting, stamp))
            });
        reply(r)
    }

    #[instrument(level = "debug", skip_all)]
    async fn server_status(
        &self,
        _request: Request<ServerStatusRequest>,
    ) -> Result<Response<ServerStatusResponse>, Status> {
        let t = self.node.store.totals();
        let who = &self.node.identity;
        Ok(Response::new(ServerStatusResponse {
            id: who.id.clone(),
            address: who.address.clone(),
            rack: who.rack.clone(),
            capacity_bytes: t.capacity,
            used_bytes: t.used,
            reserved_bytes: t.reserved,
            chunk_count: t.chunks,
            in_flight: u32::try_from(t.in_flight).unwrap_or(u32::MAX),
            migrate_bandwidth: self.node.throttle.bytes_per_sec(),
            master_reachable: self
                .node
                .master_reachable
                .iter()
                .any(|r| r.load(Ordering::Relaxed)),
            draining: self.node.store.is_draining(),
        }))
    }

    #[instrument(skip_all, fields(chunk = %request.get_ref().chunk.escape_debug()))]
    async fn verify_chunk(
        &self,
        request: Request<VerifyChunkRequest>,
    ) -> Result<Response<VerifyChunkResponse>, Status> {
        let r = async {
            let id = ChunkId::new(request.into_inner().chunk)?;
            let (replica, verdict) = self.node.verifier.verify(&self.node.store, &id).await?;
            info!(chunk = %id, ?verdict, "chunk verified");
            let stamp = self.node.store.stamp();
            Ok(convert::verified(id.to_string(), replica, verdict, stamp))
        };
        reply(r.await)
    }

    #[instrument(skip_all, fields(draining = request.get_ref().draining))]
    async fn set_drain(
        &self,
        request: Request<SetDrainRequest>,
    ) -> Result<Response<SetDrainResponse>, Status> {
        let req = request.into_inner();
        let draining = req.draining;
        let r = async {
            fence::admit(&self.node.fence, req.term, "a drain mark").await?;
            let store = Arc::clone(&self.node.store);
            blocking("setting the drain mark", move || {
                store.set_draining(draining)
            })
            .await
            .map(|()| SetDrainResponse { draining })
        };
        reply(r.await)
    }
}

impl ChunkService {
    async fn open_read(
        &self,
        req: ReadChunkRequest,
        cluster: bool,
        peer: Option<std::net::SocketAddr>,
    ) -> Result<ReadStream, Error> {
        let started = std::time::Instant::now();
        let id = ChunkId::new(req.chunk)?;
        if req.migration && !cluster {
            return Err(Error::MigrationNeedsCluster { id: id.to_string() });
        }
        let slot = self.node.reads.admit(&id, req.migration, peer)?;
        let store = Arc::clone(&self.node.store);
        let id2 = id.clone();
        // Client reads are counted; a peer's migration read is not a use of the data.
        let count = !req.migration;
        let opened = blocking("opening chunk", move || store.open_read(&id2, count)).await;
        let (file, meta) = match opened {
            Ok(v) => v,
            Err(Error::Corrupt { id: c, detail }) => {
                self.node.verifier.forget(&id);
                self.node.reporter.corruption(&id, &detail);
                return Err(Error::Corrupt { id: c, detail });
            }
            Err(e) => return Err(e),
        };
        let throttle = req.migration.then(|| Arc::clone(&self.node.throttle));
        // Always sampled: the read p99 is reported whatever the bandwidth mode.
        let latency = count.then(|| (Arc::clone(&self.node.latency), started));
        let heat = count.then(|| {
            self.node
                .store
                .heat
                .start(id.as_str(), std::time::Instant::now())
        });
        Ok(ReadJob {
            id,
            file,
            meta,
            throttle,
            traffic: Arc::clone(&self.node.traffic),
            reporter: self.node.reporter.clone(),
            latency,
            heat,
            slot,
            idle: self.node.transfers.idle_timeout,
            verified: Arc::clone(&self.node.verifier),
            sent: 0,
        }
        .spawn())
    }
}

/// Puts the move id a request carries (from the master, or from the target
/// of a copy) into the current span, so this server's log lines of the move
/// share it; returns it.
fn note_move<T>(request: &Request<T>) -> Option<String> {
    let id = move_id::of_request(request)?;
    Span::current().record("move_id", tracing::field::display(&id));
    Some(id)
}
