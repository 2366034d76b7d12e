//! `CopyChunk`: this server (the target) pulls a chunk from a peer.
//!
//! The id is claimed and its space reserved before any byte moves; the source
//! streams with `migration: true`, so it draws from its own bucket, and every
//! frame received here draws from this server's bucket too. The bytes land in
//! a temp file and become a chunk only after size and CRC32C match both the
//! source's header and what the master expected. At most a few frames are in
//! memory at once. A source that sends nothing for `--stream-idle-timeout`
//! ends the copy with DEADLINE_EXCEEDED and everything it held released; a
//! copy beyond `--max-transfers` is refused with RESOURCE_EXHAUSTED.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_proto::chunk_id::ChunkId;
use keel_proto::frames::{Frame, ResponseReader};
use keel_proto::v1::{ChunkHeader, CopyChunkRequest, CopyChunkResponse, ReadChunkRequest};
use tonic::{Code, Status};
use tracing::info;

use crate::blocking::blocking;
use crate::chunk_file::ChunkMeta;
use crate::config::normalize_url;
use crate::error::{Error, Purpose};
use crate::node::Node;
use crate::peer::connect_peer_channel;
use crate::sink::Sink;

/// The peer a copy pulls from.
struct Source {
    /// Server id, for messages.
    id: String,
    /// gRPC URL.
    address: String,
    /// How long it may stay silent (`--stream-idle-timeout`).
    idle: Duration,
}

/// Pulls the requested chunk from its source and commits it here.
pub async fn copy_chunk(node: &Node, req: CopyChunkRequest) -> Result<CopyChunkResponse, Error> {
    let id = ChunkId::new(req.chunk)?;
    if req.source_address.trim().is_empty() {
        return Err(Error::InvalidRequest(format!(
            "copy of chunk {id}: source_address is required"
        )));
    }
    if !req.source_id.is_empty() {
        keel_proto::chunk_id::validate(&req.source_id).map_err(|e| {
            Error::InvalidRequest(format!(
                "copy of chunk {id}: source_id {:?} is not a server id: {}",
                req.source_id,
                e.to_string().replacen("chunk id", "id", 1)
            ))
        })?;
    }
    // Under TLS a bare address is https:// and http:// is refused, before
    // anything is sent to the source.
    let address = normalize_url(&req.source_address, node.token.tls().is_some())
        .map_err(|e| Error::InvalidRequest(format!("copy of chunk {id}: source_address {e}")))?;
    if let Err(e) = address.parse::<tonic::codegen::http::Uri>() {
        return Err(Error::InvalidRequest(format!(
            "copy of chunk {id}: source_address {:?} is not a URL: {e}",
            req.source_address
        )));
    }
    let src = Source {
        id: if req.source_id.is_empty() {
            address.clone()
        } else {
            req.source_id
        },
        address,
        idle: node.transfers.idle_timeout,
    };
    let _slot = node.transfers.admit(&id, Purpose::Copy)?;
    let mut res = node.store.reserve(&id, req.expected_size, Purpose::Copy)?;
    let started = Instant::now();
    // Bounded like every later wait on the source: a source that accepts the
    // connection but never answers must not hold the reservation forever.
    let mut stream = tokio::time::timeout(src.idle, open(node, &src, &id))
        .await
        .map_err(|_| Error::SourceUnavailable {
            source_id: src.id.clone(),
            address: src.address.clone(),
            detail: format!(
                "no answer within {} s (--stream-idle-timeout)",
                src.idle.as_secs_f64()
            ),
        })??;
    let header = first_header(&mut stream, &src, &id).await?;
    check_expected(&header, req.expected_size, req.expected_crc32c, &src, &id)?;
    keel_proto::check_replication(header.replication).map_err(|why| {
        Error::InvalidRequest(format!("copy of chunk {id} from {}: {why}", src.id))
    })?;
    res.resize(header.size)?;
    let meta = ChunkMeta {
        size: header.size,
        crc32c: header.crc32c,
        replication: header.replication,
    };
    let store = Arc::clone(&node.store);
    let (res, temp) = blocking("creating temp file", move || {
        let temp = store.create_temp(&res, meta)?;
        Ok((res, temp))
    })
    .await?;
    let mut sink = Sink::new(temp, id.clone());
    let mut received = 0u64;
    let streamed = async {
        while let Some(data) = next_frame(&mut stream, &src, &id, received).await? {
            let len = data.len();
            received += len as u64;
            node.throttle.consume(len).await;
            crate::traffic::Traffic::add(&node.traffic.migrated_in, len);
            // The frame as the slices it arrived in: nothing gathers them.
            sink.write_slices(data.data)
                .await
                .map_err(|e| damaged(e, &src, &id, meta.size))?;
        }
        Ok::<(), Error>(())
    }
    .await;
    if let Err(e) = streamed {
        // A failed copy answers only once its temp file is gone.
        sink.abandon().await;
        return Err(e);
    }
    let temp = sink
        .finish()
        .await
        .map_err(|e| damaged(e, &src, &id, meta.size))?;
    let replica = temp.replica();
    let transfer_secs = started.elapsed().as_secs_f64();
    let store = Arc::clone(&node.store);
    let meta = blocking("committing chunk", move || store.commit(res, temp))
        .await
        .map_err(|e| damaged(e, &src, &id, meta.size))?;
    let commit_secs = started.elapsed().as_secs_f64() - transfer_secs;
    let mib_per_s = meta.size as f64 / (1 << 20) as f64 / transfer_secs.max(1e-9);
    info!(
        chunk = %id, from = %src.id, bytes = meta.size, transfer_secs, commit_secs, mib_per_s,
        "chunk copied"
    );
    Ok(CopyChunkResponse {
        chunk: id.to_string(),
        size: meta.size,
        crc32c: meta.crc32c,
        replication: meta.replication,
        stamp: Some(crate::convert::stamp(node.store.stamp())),
        replica_id: replica,
    })
}

/// Connects to the source and opens its migration read. The frames are
/// read below tonic's decoder, as slices of what HTTP/2 received
/// ([`keel_proto::frames`]).
async fn open(node: &Node, src: &Source, id: &ChunkId) -> Result<ResponseReader, Error> {
    let mut channel = connect_peer_channel(&src.address, &node.token)
        .await
        .map_err(|detail| Error::SourceUnavailable {
            source_id: src.id.clone(),
            address: src.address.clone(),
            detail,
        })?;
    let req = ReadChunkRequest {
        chunk: id.to_string(),
        migration: true,
    };
    match keel_proto::frames::read_chunk(&mut channel, &req, crate::budgets::COPY_MESSAGE_BYTES)
        .await
    {
        Ok(reader) => Ok(reader),
        Err(s) if s.code() == Code::NotFound => Err(Error::SourceMissing {
            source_id: src.id.clone(),
            id: id.to_string(),
        }),
        Err(s) if s.code() == Code::Unavailable => Err(Error::SourceUnavailable {
            source_id: src.id.clone(),
            address: src.address.clone(),
            detail: s.message().to_owned(),
        }),
        Err(s) => Err(failed(&s, src, id, 0)),
    }
}

async fn first_header(
    stream: &mut ResponseReader,
    src: &Source,
    id: &ChunkId,
) -> Result<ChunkHeader, Error> {
    let protocol = |detail: &str| Error::CopyFailed {
        id: id.to_string(),
        source_id: src.id.clone(),
        received: 0,
        detail: detail.to_owned(),
        code: Code::Aborted,
    };
    let msg = receive(stream, src, id, 0)
        .await?
        .ok_or_else(|| protocol("the source ended the stream before sending a header"))?;
    let header = msg
        .header
        .ok_or_else(|| protocol("the source's first message carries no header"))?;
    if header.chunk != id.as_str() {
        return Err(protocol(&format!(
            "the source sent a header for chunk {:?}",
            header.chunk
        )));
    }
    if !msg.data.is_empty() {
        return Err(protocol("the source sent data in its header message"));
    }
    Ok(header)
}

fn check_expected(
    header: &ChunkHeader,
    size: u64,
    crc: u32,
    src: &Source,
    id: &ChunkId,
) -> Result<(), Error> {
    let size_ok = size == 0 || size == header.size;
    let crc_ok = crc == 0 || crc == header.crc32c;
    if size_ok && crc_ok {
        return Ok(());
    }
    Err(Error::SourceMismatch {
        source_id: src.id.clone(),
        id: id.to_string(),
        found: format!("{} bytes, crc32c {:#010x}", header.size, header.crc32c),
        expected: format!("{size} bytes, crc32c {crc:#010x} (0 = any)"),
    })
}

/// The next data frame, or `None` at the end of the stream.
async fn next_frame(
    stream: &mut ResponseReader,
    src: &Source,
    id: &ChunkId,
    received: u64,
) -> Result<Option<Frame>, Error> {
    loop {
        let Some(msg) = receive(stream, src, id, received).await? else {
            return Ok(None);
        };
        if msg.header.is_some() {
            return Err(Error::CopyFailed {
                id: id.to_string(),
                source_id: src.id.clone(),
                received,
                detail: "the source sent a second header".into(),
                code: Code::Aborted,
            });
        }
        if !msg.is_empty() {
            return Ok(Some(msg));
        }
    }
}

async fn receive(
    stream: &mut ResponseReader,
    src: &Source,
    id: &ChunkId,
    received: u64,
) -> Result<Option<Frame>, Error> {
    match tokio::time::timeout(src.idle, stream.message()).await {
        Ok(Ok(msg)) => Ok(msg),
        Ok(Err(s)) => Err(failed(&s, src, id, received)),
        Err(_) => Err(Error::CopyFailed {
            id: id.to_string(),
            source_id: src.id.clone(),
            received,
            detail: format!(
                "the source sent nothing for {} s (--stream-idle-timeout); the copy was \
                 abandoned and its space and id released",
                src.idle.as_secs_f64()
            ),
            code: Code::DeadlineExceeded,
        }),
    }
}

/// A copy that broke off with `status` from the source.
fn failed(status: &Status, src: &Source, id: &ChunkId, received: u64) -> Error {
    let code = match status.code() {
        Code::DataLoss => Code::DataLoss,
        Code::Unavailable
        | Code::Cancelled
        | Code::Unknown
        | Code::Internal
        | Code::DeadlineExceeded => Code::Unavailable,
        _ => Code::Aborted,
    };
    Error::CopyFailed {
        id: id.to_string(),
        source_id: src.id.clone(),
        received,
        detail: format!("source answered {:?}: {}", status.code(), status.message()),
        code,
    }
}

/// Bytes that arrived but do not add up to the announced chunk.
fn damaged(e: Error, src: &Source, id: &ChunkId, size: u64) -> Error {
    let received = match &e {
        Error::SizeMismatch { received, .. } => *received,
        Error::ChecksumMismatch { .. } => size,
        _ => return e,
    };
    Error::CopyFailed {
        id: id.to_string(),
        source_id: src.id.clone(),
        received,
        detail: format!("the bytes received do not match the source's header: {e}"),
        code: Code::DataLoss,
    }
}
