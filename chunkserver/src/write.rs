//! `WriteChunk`: a client streams a new chunk in.
//!
//! The header claims the id and reserves its space; the bytes go to a temp
//! file with a running CRC32C; only a chunk whose size and checksum match the
//! header is fsynced and renamed into place. Any failure, including the client
//! going away or sending nothing for `--stream-idle-timeout`, drops the temp
//! file and the reservation and frees the id. At most `--max-transfers` writes
//! and copies run at once; more are refused with RESOURCE_EXHAUSTED. A write
//! without the cluster token must present the master's write capability
//! ([`crate::write_gate`]); a refused one writes nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_proto::chunk_id::ChunkId;
use keel_proto::v1::{WriteChunkRequest, WriteChunkResponse};
use tonic::{Code, Streaming};
use tracing::info;

use crate::blocking::blocking;
use crate::chunk_file::ChunkMeta;
use crate::error::{Error, Purpose};
use crate::node::Node;
use crate::sink::Sink;

/// Receives one chunk and commits it. `authorization` is the caller's
/// token header: without the cluster token the first message must carry a
/// valid write capability, checked before anything is reserved.
pub async fn write_chunk(
    node: &Node,
    authorization: Option<&[u8]>,
    mut stream: Streaming<WriteChunkRequest>,
) -> Result<WriteChunkResponse, Error> {
    let idle = node.transfers.idle_timeout;
    // Bounds what writes withholding their first message can pin: each may
    // hold a nearly whole message in the decoder's buffer.
    let waiting = node.transfers.await_header()?;
    let first = next(&mut stream, None, idle, 0)
        .await?
        .ok_or_else(|| missing_header("the stream was empty"))?;
    drop(waiting);
    let header = first
        .header
        .ok_or_else(|| missing_header("the first message carries no header"))?;
    let id = ChunkId::new(header.chunk.clone())?;
    keel_proto::check_replication(header.replication)
        .map_err(|why| Error::InvalidRequest(format!("chunk {id}: {why}")))?;
    node.write_gate
        .admit(authorization, &header, first.capability.as_ref())?;
    let meta = ChunkMeta {
        size: header.size,
        crc32c: header.crc32c,
        replication: header.replication,
    };
    let _slot = node.transfers.admit(&id, Purpose::Write)?;
    let res = node.store.reserve(&id, meta.size, Purpose::Write)?;
    let store = Arc::clone(&node.store);
    let (res, temp) = blocking("creating temp file", move || {
        let temp = store.create_temp(&res, meta)?;
        Ok((res, temp))
    })
    .await?;
    let mut sink = Sink::new(temp, id.clone());
    let mut received = first.data.len() as u64;
    let mut last_frame = Instant::now();
    crate::traffic::Traffic::add(&node.traffic.written, first.data.len());
    if !first.data.is_empty() {
        sink.write(first.data).await?;
    }
    while let Some(msg) = next(&mut stream, Some(&id), idle, received).await? {
        last_frame = Instant::now();
        if msg.header.is_some() {
            return Err(Error::InvalidRequest(format!(
                "chunk {id}: a header may only come in the first message"
            )));
        }
        if !msg.data.is_empty() {
            received += msg.data.len() as u64;
            crate::traffic::Traffic::add(&node.traffic.written, msg.data.len());
            sink.write(msg.data).await?;
        }
    }
    let temp = sink.finish().await?;
    let store = Arc::clone(&node.store);
    let meta = blocking("committing chunk", move || store.commit(res, temp)).await?;
    node.latency.record(last_frame.elapsed());
    info!(chunk = %id, size = meta.size, crc32c = meta.crc32c, "chunk written");
    Ok(WriteChunkResponse {
        chunk: id.to_string(),
        size: meta.size,
        crc32c: meta.crc32c,
    })
}

/// The client's next message, waiting at most `idle` for it.
async fn next(
    stream: &mut Streaming<WriteChunkRequest>,
    id: Option<&ChunkId>,
    idle: Duration,
    received: u64,
) -> Result<Option<WriteChunkRequest>, Error> {
    let name = || id.map_or_else(|| "(before its header)".to_owned(), ToString::to_string);
    let msg = tokio::time::timeout(idle, stream.message())
        .await
        .map_err(|_| Error::StreamIdle {
            id: name(),
            secs: idle.as_secs_f64(),
            received,
        })?;
    msg.map_err(|s| Error::ClientAborted {
        id: name(),
        detail: s.message().to_owned(),
        code: match s.code() {
            Code::Ok | Code::Unknown => Code::Cancelled,
            other => other,
        },
    })
}

fn missing_header(why: &str) -> Error {
    Error::InvalidRequest(format!(
        "missing header: {why}; the first WriteChunk message must carry the chunk header"
    ))
}
