//! `WriteChunk`: a client streams a new chunk in.
//!
//! The header claims the id and reserves its space; the bytes go to a temp
//! file with a running CRC32C; only a chunk whose size and checksum match the
//! header is fsynced and renamed into place. Any failure, including the client
//! going away, drops the temp file and the reservation.

use std::sync::Arc;

use keel_proto::chunk_id::ChunkId;
use keel_proto::v1::{WriteChunkRequest, WriteChunkResponse};
use tonic::{Code, Streaming};
use tracing::info;

use crate::chunk_file::ChunkMeta;
use crate::error::{Error, Purpose};
use crate::node::{Node, blocking};
use crate::sink::Sink;

/// Receives one chunk and commits it.
pub async fn write_chunk(
    node: &Node,
    mut stream: Streaming<WriteChunkRequest>,
) -> Result<WriteChunkResponse, Error> {
    let first = next(&mut stream, None)
        .await?
        .ok_or_else(|| missing_header("the stream was empty"))?;
    let header = first
        .header
        .ok_or_else(|| missing_header("the first message carries no header"))?;
    let id = ChunkId::new(header.chunk)?;
    keel_proto::check_replication(header.replication)
        .map_err(|why| Error::InvalidRequest(format!("chunk {id}: {why}")))?;
    let meta = ChunkMeta {
        size: header.size,
        crc32c: header.crc32c,
        replication: header.replication,
    };
    let res = node.store.reserve(&id, meta.size, Purpose::Write)?;
    let store = Arc::clone(&node.store);
    let (res, temp) = blocking("creating temp file", move || {
        let temp = store.create_temp(&res, meta)?;
        Ok((res, temp))
    })
    .await?;
    let mut sink = Sink::new(temp, id.clone());
    if !first.data.is_empty() {
        sink.write(first.data).await?;
    }
    while let Some(msg) = next(&mut stream, Some(&id)).await? {
        if msg.header.is_some() {
            return Err(Error::InvalidRequest(format!(
                "chunk {id}: a header may only come in the first message"
            )));
        }
        if !msg.data.is_empty() {
            sink.write(msg.data).await?;
        }
    }
    let temp = sink.finish().await?;
    let store = Arc::clone(&node.store);
    let meta = blocking("committing chunk", move || store.commit(res, temp)).await?;
    info!(chunk = %id, size = meta.size, crc32c = meta.crc32c, "chunk written");
    Ok(WriteChunkResponse {
        chunk: id.to_string(),
        size: meta.size,
        crc32c: meta.crc32c,
    })
}

async fn next(
    stream: &mut Streaming<WriteChunkRequest>,
    id: Option<&ChunkId>,
) -> Result<Option<WriteChunkRequest>, Error> {
    stream.message().await.map_err(|s| Error::ClientAborted {
        id: id.map_or_else(|| "(before its header)".to_owned(), ToString::to_string),
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
