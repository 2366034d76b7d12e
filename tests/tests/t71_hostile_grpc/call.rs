//! One hostile request, typed or raw, and how to send it.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt as _;

use keel_proto::v1::{
    AllocateChunkRequest, AllocateChunkResponse, ChunkHeader, CopyChunkRequest, DeleteChunkRequest,
    HeartbeatRequest, LocateChunkRequest, Move, ReadChunkRequest, RebalanceExecuteRequest,
    RebalanceExecuteResponse, ReportCorruptionRequest, StatChunkRequest, WriteChunkRequest,
};
use keel_tests::cs;
use keel_tests::faults::{
    Shape, quick_chunkserver as chunkserver_client, quick_master as master_client, raw_call,
};
use tonic::Status;

/// Where the requests go.
pub struct Env {
    /// Master gRPC URL.
    pub master: String,
    /// Master HTTP address (`/metrics`), a peer that does not speak gRPC.
    pub master_http: String,
    /// Chunk server URLs by id.
    pub cs: BTreeMap<String, String>,
}

impl Env {
    /// URL of chunk server `id`.
    pub fn cs(&self, id: &str) -> String {
        self.cs
            .get(id)
            .cloned()
            .unwrap_or_else(|| panic!("no chunk server {id}"))
    }
}

/// Which daemon a raw call goes to.
#[derive(Debug, Clone, Copy)]
pub enum Daemon {
    /// The master.
    Master,
    /// Chunk server `cs1`.
    ChunkServer,
}

/// A request of the corpus.
#[derive(Debug, Clone)]
pub enum Call {
    /// `Master/Heartbeat`.
    Heartbeat(HeartbeatRequest),
    /// `Master/LocateChunk`.
    Locate(String),
    /// `Master/AllocateChunk`.
    Allocate(AllocateChunkRequest),
    /// `Master/RebalanceExecute`.
    Execute(Vec<Move>),
    /// `Master/ReportCorruption`.
    Corruption(ReportCorruptionRequest),
    /// `ChunkServer/WriteChunk` on `on`: an optional header, then frames.
    Write {
        on: &'static str,
        header: Option<ChunkHeader>,
        frames: Vec<Vec<u8>>,
    },
    /// `ChunkServer/WriteChunk` on `cs1` that the client abandons after
    /// sending the header and `sent` bytes of the declared size.
    WriteCut { header: ChunkHeader, sent: usize },
    /// `ChunkServer/ReadChunk` on `cs1`.
    Read(ReadChunkRequest),
    /// `ChunkServer/CopyChunk` on `on`.
    Copy {
        on: &'static str,
        req: CopyChunkRequest,
    },
    /// `ChunkServer/DeleteChunk` on `cs1`.
    Delete(String),
    /// `ChunkServer/StatChunk` on `cs1`.
    Stat(String),
    /// Any bytes to any method.
    Raw {
        to: Daemon,
        path: &'static str,
        shape: Shape,
        messages: Vec<Vec<u8>>,
    },
    /// One message above `keel_proto::MAX_MESSAGE_BYTES` to any method
    /// (after a valid header message for `WriteChunk`), built when sent.
    Oversized {
        to: Daemon,
        path: &'static str,
        shape: Shape,
    },
}

/// What an accepted call answered (for the rows that expect an answer).
#[derive(Debug)]
pub enum Reply {
    /// A reply the row does not look into.
    Plain,
    /// `Heartbeat`.
    Heartbeat(keel_proto::v1::HeartbeatResponse),
    /// `RebalanceExecute`.
    Execute(RebalanceExecuteResponse),
    /// `AllocateChunk`.
    Allocate(AllocateChunkResponse),
}

fn unavailable(e: anyhow::Error) -> Status {
    Status::unavailable(format!("test client: {e:#}"))
}

impl Call {
    /// Sends the request and returns its answer or the status it ended with.
    pub async fn send(&self, env: &Env) -> Result<Reply, Status> {
        match self {
            Call::Heartbeat(r) => {
                let mut m = master_client(&env.master).await.map_err(unavailable)?;
                let r = m.heartbeat(r.clone()).await?;
                Ok(Reply::Heartbeat(r.into_inner()))
            }
            Call::Locate(chunk) => {
                let mut m = master_client(&env.master).await.map_err(unavailable)?;
                let req = LocateChunkRequest {
                    chunk: chunk.clone(),
                    rack: Default::default(),
                };
                m.locate_chunk(req).await.map(|_| Reply::Plain)
            }
            Call::Allocate(r) => {
                let mut m = master_client(&env.master).await.map_err(unavailable)?;
                let r = m.allocate_chunk(r.clone()).await?;
                Ok(Reply::Allocate(r.into_inner()))
            }
            Call::Execute(moves) => {
                let mut m = master_client(&env.master).await.map_err(unavailable)?;
                let req = RebalanceExecuteRequest {
                    moves: moves.clone(),
                };
                Ok(Reply::Execute(m.rebalance_execute(req).await?.into_inner()))
            }
            Call::Corruption(r) => {
                let mut m = master_client(&env.master).await.map_err(unavailable)?;
                m.report_corruption(r.clone()).await.map(|_| Reply::Plain)
            }
            Call::Write { on, header, frames } => {
                let r = cs::write_frames(&env.cs(on), header.clone(), frames.clone()).await;
                r.map(|_| Reply::Plain)
            }
            Call::WriteCut { header, sent } => write_cut(env, header, *sent).await,
            Call::Read(r) => {
                let raw = cs::read_raw(&env.cs("cs1"), &r.chunk, r.migration)
                    .await
                    .map_err(unavailable)?;
                raw.error.map_or(Ok(Reply::Plain), Err)
            }
            Call::Copy { on, req } => {
                let mut c = chunkserver_client(&env.cs(on)).await.map_err(unavailable)?;
                c.copy_chunk(req.clone()).await.map(|_| Reply::Plain)
            }
            Call::Delete(chunk) => {
                let mut c = chunkserver_client(&env.cs("cs1"))
                    .await
                    .map_err(unavailable)?;
                let req = DeleteChunkRequest {
                    chunk: chunk.clone(),
                    term: 0,
                    ..Default::default()
                };
                c.delete_chunk(req).await.map(|_| Reply::Plain)
            }
            Call::Stat(chunk) => {
                let mut c = chunkserver_client(&env.cs("cs1"))
                    .await
                    .map_err(unavailable)?;
                let req = StatChunkRequest {
                    chunk: chunk.clone(),
                };
                c.stat_chunk(req).await.map(|_| Reply::Plain)
            }
            Call::Raw {
                to,
                path,
                shape,
                messages,
            } => raw_call(&to.url(env), path, *shape, messages.clone())
                .await
                .map(|_| Reply::Plain),
            Call::Oversized { to, path, shape } => {
                let messages = crate::wire::oversized(*shape);
                raw_call(&to.url(env), path, *shape, messages)
                    .await
                    .map(|_| Reply::Plain)
            }
        }
    }
}

impl Daemon {
    fn url(self, env: &Env) -> String {
        match self {
            Daemon::Master => env.master.clone(),
            Daemon::ChunkServer => env.cs("cs1"),
        }
    }
}

/// Sends the header and `sent` bytes, then keeps the stream open without
/// finishing it and gives up after a moment, as a client that dies would.
async fn write_cut(env: &Env, header: &ChunkHeader, sent: usize) -> Result<Reply, Status> {
    let mut c = chunkserver_client(&env.cs("cs1"))
        .await
        .map_err(unavailable)?;
    let first = WriteChunkRequest {
        header: Some(header.clone()),
        data: Default::default(),
        capability: None,
    };
    let data = WriteChunkRequest {
        header: None,
        data: vec![0x5a; sent].into(),
        capability: None,
    };
    let msgs = futures::stream::iter([first, data]).chain(futures::stream::pending());
    match tokio::time::timeout(Duration::from_millis(300), c.write_chunk(msgs)).await {
        Ok(r) => r.map(|_| Reply::Plain),
        Err(_) => Err(Status::cancelled("the client abandoned the stream")),
    }
}
