//! Talking to one chunk server directly: raw write streams (for bad input),
//! copies, reads that keep what arrived before an error, status, and a look
//! at what a data dir holds on disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use keel_proto::v1::{
    ChunkHeader, CopyChunkRequest, CopyChunkResponse, ReadChunkRequest, ServerStatusRequest,
    ServerStatusResponse, StatChunkRequest, StatChunkResponse, WriteChunkRequest,
    WriteChunkResponse,
};
use tokio_stream::StreamExt;
use tonic::Status;

use crate::chunkserver_client;

/// Asserts `r` failed with `code` and a message containing `needle`.
pub fn refused<T: std::fmt::Debug>(r: Result<T, Status>, code: tonic::Code, needle: &str) {
    let s = r.expect_err("request should be refused");
    assert_eq!(s.code(), code, "message: {}", s.message());
    assert!(
        s.message().contains(needle),
        "{:?} does not contain {needle:?}",
        s.message()
    );
}

/// A header describing `data` correctly.
pub fn header(id: &str, data: &[u8], replication: u32) -> ChunkHeader {
    ChunkHeader {
        chunk: id.to_owned(),
        size: data.len() as u64,
        crc32c: crc32c::crc32c(data),
        replication,
    }
}

/// Sends a write stream exactly as given: an optional header message, then
/// one message per frame.
pub async fn write_frames(
    url: &str,
    header: Option<ChunkHeader>,
    frames: Vec<Vec<u8>>,
) -> Result<WriteChunkResponse, Status> {
    let mut c = chunkserver_client(url)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let mut msgs: Vec<WriteChunkRequest> = header
        .map(|h| WriteChunkRequest {
            header: Some(h),
            data: Default::default(),
            capability: None,
        })
        .into_iter()
        .collect();
    msgs.extend(frames.into_iter().map(|data| WriteChunkRequest {
        header: None,
        data: data.into(),
        capability: None,
    }));
    c.write_chunk(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

/// Asks the server at `url` to copy `id` from `source_url`.
pub async fn copy(
    url: &str,
    id: &str,
    source_id: &str,
    source_url: &str,
    expected: Option<(u64, u32)>,
) -> Result<CopyChunkResponse, Status> {
    let mut c = chunkserver_client(url)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let (expected_size, expected_crc32c) = expected.unwrap_or((0, 0));
    c.copy_chunk(CopyChunkRequest {
        chunk: id.to_owned(),
        source_id: source_id.to_owned(),
        source_address: source_url.to_owned(),
        expected_size,
        expected_crc32c,
        term: 0,
    })
    .await
    .map(|r| r.into_inner())
}

/// `StatChunk`.
pub async fn stat(url: &str, id: &str) -> Result<StatChunkResponse, Status> {
    let mut c = chunkserver_client(url)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    c.stat_chunk(StatChunkRequest {
        chunk: id.to_owned(),
    })
    .await
    .map(|r| r.into_inner())
}

/// `ServerStatus`.
pub async fn status(url: &str) -> Result<ServerStatusResponse> {
    let mut c = chunkserver_client(url).await?;
    Ok(c.server_status(ServerStatusRequest {}).await?.into_inner())
}

/// What a read delivered: the header, every data byte received, and the
/// status that ended the stream (`None` when it ended cleanly).
pub struct RawRead {
    /// Header message, if one arrived.
    pub header: Option<ChunkHeader>,
    /// Data bytes received.
    pub data: Vec<u8>,
    /// Error that ended the stream or refused the call.
    pub error: Option<Status>,
}

/// Reads `id`, keeping whatever arrived before an error.
pub async fn read_raw(url: &str, id: &str, migration: bool) -> Result<RawRead> {
    let mut c = chunkserver_client(url).await?;
    let mut out = RawRead {
        header: None,
        data: Default::default(),
        error: None,
    };
    let req = ReadChunkRequest {
        chunk: id.to_owned(),
        migration,
    };
    let mut stream = match c.read_chunk(req).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            out.error = Some(s);
            return Ok(out);
        }
    };
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(m) => {
                if m.header.is_some() {
                    out.header = m.header;
                }
                out.data.extend_from_slice(&m.data);
            }
            Err(s) => {
                out.error = Some(s);
                break;
            }
        }
    }
    Ok(out)
}

/// Every regular file under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Files under `<data-dir>/tmp` (writes and copies in flight or left behind).
pub fn temp_files(data_dir: &Path) -> Vec<PathBuf> {
    files_under(&data_dir.join("tmp"))
}

/// Names of the committed chunk files under `<data-dir>/chunks`, sorted.
pub fn chunk_files(data_dir: &Path) -> Vec<String> {
    files_under(&data_dir.join("chunks"))
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .collect()
}

/// A master address where nothing listens, so a chunk server started for a
/// test never registers with some other master running on this machine.
pub const NO_MASTER: &str = "http://127.0.0.1:1";

/// Flags for a chunk server that runs without a master.
pub fn no_master(bandwidth: Option<&str>, capacity: &str) -> crate::CsOpts {
    crate::CsOpts {
        capacity: capacity.into(),
        bandwidth: bandwidth.map(str::to_owned),
        with_master: false,
        extra: vec!["--master".into(), NO_MASTER.into()],
        ..crate::CsOpts::default()
    }
}

/// Timeout for one RPC in tests that must not hang.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// Waits until a temp file under `data_dir` holds more than `min` bytes: a
/// write or copy into that server is streaming.
pub async fn wait_temp_bytes(data_dir: &Path, min: u64) -> Result<()> {
    crate::wait_until(
        &format!("a temp file of more than {min} bytes"),
        Duration::from_secs(10),
        || {
            let dir = data_dir.to_path_buf();
            async move {
                temp_files(&dir)
                    .first()
                    .and_then(|p| std::fs::metadata(p).ok())
                    .is_some_and(|m| m.len() > min)
            }
        },
    )
    .await
}

/// Waits until the server at `url` has no temp file, nothing in flight and
/// nothing reserved: an abandoned or refused transfer left no trace.
pub async fn wait_cleaned_up(url: &str, data_dir: &Path, what: &str) -> Result<()> {
    crate::wait_until(what, Duration::from_secs(10), || {
        let (url, dir) = (url.to_owned(), data_dir.to_path_buf());
        async move {
            temp_files(&dir).is_empty()
                && status(&url)
                    .await
                    .is_ok_and(|s| s.in_flight == 0 && s.reserved_bytes == 0)
        }
    })
    .await
}
