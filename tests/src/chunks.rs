//! Writing and reading chunks straight against chunk servers, for tests.

use anyhow::{Result, bail};
use keel_proto::v1::{ChunkHeader, ReadChunkRequest, WriteChunkRequest, WriteChunkResponse};
use tokio_stream::StreamExt;

use crate::chunkserver_client;

/// Deterministic pseudo-random bytes (xorshift), so tests need no rand crate.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Writes `data` as chunk `id` to the chunk server at `url`.
pub async fn write(
    url: &str,
    id: &str,
    data: &[u8],
    replication: u32,
) -> Result<WriteChunkResponse, tonic::Status> {
    let mut c = chunkserver_client(url)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let header = ChunkHeader {
        chunk: id.to_owned(),
        size: data.len() as u64,
        crc32c: crc32c::crc32c(data),
        replication,
    };
    let mut msgs = vec![WriteChunkRequest {
        header: Some(header),
        data: Default::default(),
        capability: None,
    }];
    msgs.extend(
        data.chunks(keel_proto::FRAME_BYTES)
            .map(|d| WriteChunkRequest {
                header: None,
                data: d.to_vec().into(),
                capability: None,
            }),
    );
    c.write_chunk(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

/// Reads chunk `id` whole from the chunk server at `url`.
pub async fn read(url: &str, id: &str) -> Result<Vec<u8>> {
    let mut c = chunkserver_client(url).await?;
    let mut stream = c
        .read_chunk(ReadChunkRequest {
            chunk: id.to_owned(),
            migration: false,
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    let mut header = None;
    while let Some(msg) = stream.next().await {
        let msg = msg?;
        if let Some(h) = msg.header {
            header = Some(h);
        }
        out.extend_from_slice(&msg.data);
    }
    let Some(h) = header else {
        bail!("read of {id} carried no header")
    };
    if h.size != out.len() as u64 || h.crc32c != crc32c::crc32c(&out) {
        bail!("read of {id} does not match its header");
    }
    Ok(out)
}

/// Flips one bit in the middle of a file, as a failing disk would.
pub fn rot(path: &std::path::Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len / 2))?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b)?;
    f.seek(SeekFrom::Start(len / 2))?;
    f.write_all(&[b[0] ^ 0x20])?;
    f.sync_all()?;
    Ok(())
}
