//! `keelctl put`: checksum a file (or standard input, spooled) in one
//! streaming pass, ask the master where the chunk goes, then stream it to
//! every replica in parallel. A replica stream that takes no frame and gives
//! no answer for `--stream-idle-timeout` fails that replica.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use futures::{Stream, StreamExt, future, stream};
use keel_proto::v1::{
    AllocateChunkRequest, ChunkHeader, LocateChunkRequest, ServerRef, WriteCapability,
    WriteChunkRequest,
};
use serde::Serialize;
use tokio::fs::File;
use tokio::io::AsyncReadExt;
use tonic::Code;

use crate::client::{Clients, Master};
use crate::error::Error;
use crate::idle::{self, Progress};
use crate::{output, spool};

/// `keelctl put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// Chunk id: 1–128 characters of `[A-Za-z0-9._-]`, not starting with `.`.
    pub chunk: String,
    /// File whose bytes become the chunk; `-` reads standard input (a file
    /// named `-` is `./-`).
    pub file: PathBuf,
    /// Number of replicas (default: the master's `--replication`).
    #[arg(long, env = "KEEL_REPLICATION", value_parser = clap::value_parser!(u32).range(1..=i64::from(keel_proto::MAX_REPLICATION)))]
    pub replication: Option<u32>,
    /// Pin placement to this chunk server id (repeatable).
    #[arg(
        long = "on",
        value_name = "SERVER",
        env = "KEEL_ON",
        value_delimiter = ','
    )]
    pub on: Vec<String>,
}

/// `--json` output of a successful put.
#[derive(Debug, Serialize, PartialEq)]
pub struct PutJson {
    /// Chunk id.
    pub chunk: String,
    /// Bytes stored.
    pub size: u64,
    /// CRC32C of the bytes.
    pub crc32c: u32,
    /// Ids of the servers holding a replica.
    pub servers: Vec<String>,
}

/// One chunk to store: bytes already on disk, with their size and CRC32C.
pub struct Upload<'a> {
    /// Chunk id (validated by the caller).
    pub chunk: &'a str,
    /// File holding exactly the chunk's bytes.
    pub path: &'a Path,
    /// Its size.
    pub size: u64,
    /// Its CRC32C.
    pub crc32c: u32,
    /// Number of replicas, `0` for the master's default.
    pub replication: u32,
    /// Servers to pin placement to (empty: the master chooses).
    pub on: &'a [String],
}

/// Runs `keelctl put`. The file `-` is standard input, spooled to a temp
/// file first (removed afterwards) so every replica gets the same bytes.
pub async fn run(clients: &Clients, args: PutArgs, json: bool) -> Result<(), Error> {
    keel_proto::chunk_id::validate(&args.chunk)?;
    let spooled;
    let (path, size, crc32c) = if args.file.as_os_str() == "-" {
        spooled = spool::stdin().await?;
        (spooled.path(), spooled.size, spooled.crc32c)
    } else {
        let (size, crc32c) = digest_file(&args.file).await?;
        (args.file.as_path(), size, crc32c)
    };
    let upload = Upload {
        chunk: &args.chunk,
        path,
        size,
        crc32c,
        replication: args.replication.unwrap_or(0),
        on: &args.on,
    };
    let out = store(clients, &upload).await?;
    if json {
        output::print_json(&out)
    } else {
        output::print_prose(&format!(
            "stored chunk {:?} ({}, crc32c {:#010x}) on {}\n",
            out.chunk,
            output::size(out.size),
            out.crc32c,
            out.servers.join(", ")
        ))
    }
}

/// Asks the master where the chunk goes, streams it to every replica in
/// parallel, and waits until the master lists them.
pub async fn store(clients: &Clients, up: &Upload<'_>) -> Result<PutJson, Error> {
    let master = clients.leader().await?;
    let req = AllocateChunkRequest {
        chunk: up.chunk.to_owned(),
        size: up.size,
        replication: up.replication,
        on: up.on.to_vec(),
    };
    let alloc = master
        .call_changing("allocate chunk", || {
            let (mut c, req) = (master.client.clone(), req.clone());
            async move { c.allocate_chunk(req).await }
        })
        .await?;
    if alloc.servers.is_empty() {
        return Err(Error::NoPlacement {
            chunk: up.chunk.to_owned(),
        });
    }
    let header = ChunkHeader {
        chunk: up.chunk.to_owned(),
        size: up.size,
        crc32c: up.crc32c,
        replication: effective_replication(alloc.replication, alloc.servers.len()),
    };
    let writes = alloc
        .servers
        .iter()
        .map(|s| write_replica(clients, s, &header, alloc.capability.as_ref(), up.path));
    let results = future::join_all(writes).await;
    let mut stored = Vec::new();
    let mut failed = Vec::new();
    for (server, result) in alloc.servers.iter().zip(results) {
        match result {
            Ok(()) => stored.push(server.id.clone()),
            Err(e) => failed.push(e),
        }
    }
    if !failed.is_empty() {
        return Err(Error::ReplicaWrites {
            chunk: up.chunk.to_owned(),
            stored,
            failed,
        });
    }
    if let Err(why) = wait_registered(&master, up.chunk, &stored).await {
        output::warn(&format!(
            "chunk {:?} is stored on {}, but {why}; a get may not find it until the servers' next heartbeat",
            up.chunk,
            stored.join(", ")
        ));
    }
    Ok(PutJson {
        chunk: up.chunk.to_owned(),
        size: up.size,
        crc32c: up.crc32c,
        servers: stored,
    })
}

/// How long `put` waits for the master to list the new replicas.
const REGISTER_WAIT: Duration = Duration::from_secs(10);

/// Waits until the master lists every server in `stored` for `chunk`, so a
/// `get` right after `put` finds it: the master learns of new replicas only
/// from the chunk servers' heartbeats.
async fn wait_registered(master: &Master, chunk: &str, stored: &[String]) -> Result<(), String> {
    let deadline = Instant::now() + REGISTER_WAIT;
    let mut pause = Duration::from_millis(20);
    loop {
        let req = LocateChunkRequest {
            chunk: chunk.to_owned(),
            rack: Default::default(),
        };
        match master
            .call("locate chunk", master.client.clone().locate_chunk(req))
            .await
        {
            Ok(loc)
                if stored
                    .iter()
                    .all(|s| loc.replicas.iter().any(|r| &r.id == s)) =>
            {
                return Ok(());
            }
            Ok(_) => {}
            Err(e) if e.code() == Some(Code::NotFound) => {}
            Err(e) => return Err(e.to_string()),
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the master has not listed it after {}",
                output::age(REGISTER_WAIT)
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// The factor written into each replica's header.
fn effective_replication(allocated: u32, servers: usize) -> u32 {
    if allocated > 0 {
        allocated
    } else {
        u32::try_from(servers).unwrap_or(u32::MAX)
    }
}

/// Size and CRC32C of a file, read once in frames (never whole).
pub async fn digest_file(path: &Path) -> Result<(u64, u32), Error> {
    let mut file = open_regular(path).await?;
    let mut buf = vec![0u8; keel_proto::FRAME_BYTES];
    let (mut size, mut crc) = (0u64, 0u32);
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| Error::file("cannot read", path, e))?;
        if n == 0 {
            return Ok((size, crc));
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        size += n as u64;
    }
}

/// Opens a file for reading, refusing directories with a clear message.
async fn open_regular(path: &Path) -> Result<File, Error> {
    let file = File::open(path)
        .await
        .map_err(|e| Error::file("cannot open", path, e))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| Error::file("cannot read", path, e))?;
    if meta.is_dir() {
        return Err(Error::file(
            "cannot read",
            path,
            io::Error::other("it is a directory"),
        ));
    }
    Ok(file)
}

/// Streams the file to one server and checks what it says it stored,
/// giving up when the stream moves nothing for the idle timeout.
async fn write_replica(
    clients: &Clients,
    server: &ServerRef,
    header: &ChunkHeader,
    capability: Option<&WriteCapability>,
    path: &Path,
) -> Result<(), Error> {
    let progress = Progress::new();
    let idle = clients.stream_idle();
    let first = WriteChunkRequest {
        header: Some(header.clone()),
        data: Default::default(),
        capability: capability.cloned(),
    };
    let transfer = send_replica(clients, server, first, path, &progress);
    idle::guard(idle, &progress, transfer)
        .await
        .unwrap_or_else(|idle::Stalled| Err(crate::fetch::stalled(server, "write chunk", idle)))
}

async fn send_replica(
    clients: &Clients,
    server: &ServerRef,
    first: WriteChunkRequest,
    path: &Path,
    progress: &Progress,
) -> Result<(), Error> {
    let (size, crc) = first.header.as_ref().map_or((0, 0), |h| (h.size, h.crc32c));
    let mut cs = clients.chunkserver(&server.id, &server.address).await?;
    let file = open_regular(path).await?;
    let read_error = Arc::new(Mutex::new(None));
    let ticks = progress.clone();
    let requests =
        request_stream(first, file, Arc::clone(&read_error)).inspect(move |_| ticks.touch());
    let answer = cs.client.write_chunk(requests).await;
    if let Some(e) = read_error.lock().ok().and_then(|mut slot| slot.take()) {
        return Err(Error::file("cannot read", path, e));
    }
    let resp = answer
        .map_err(|s| Error::rpc(&cs.peer, "write chunk", s))?
        .into_inner();
    if resp.size != size || resp.crc32c != crc {
        return Err(Error::StoredMismatch {
            peer: cs.peer,
            got_size: resp.size,
            got_crc: resp.crc32c,
            size,
            crc,
        });
    }
    Ok(())
}

/// `first` (the header and the master's write capability), then the file in
/// frames of [`keel_proto::FRAME_BYTES`]. A read error ends the stream early
/// and is left in `read_error`.
fn request_stream(
    first: WriteChunkRequest,
    file: File,
    read_error: Arc<Mutex<Option<io::Error>>>,
) -> impl Stream<Item = WriteChunkRequest> + Send + 'static {
    let frames = stream::unfold(Some(file), move |file| {
        let read_error = Arc::clone(&read_error);
        async move {
            let mut file = file?;
            let mut buf = vec![0u8; keel_proto::FRAME_BYTES];
            match read_full(&mut file, &mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    let msg = WriteChunkRequest {
                        header: None,
                        data: buf.into(),
                        capability: None,
                    };
                    Some((msg, Some(file)))
                }
                Err(e) => {
                    if let Ok(mut slot) = read_error.lock() {
                        *slot = Some(e);
                    }
                    None
                }
            }
        }
    });
    stream::once(future::ready(first)).chain(frames)
}

/// Fills `buf` unless the file ends first; returns the bytes read.
async fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn digest_matches_whole_file_crc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(keel_proto::FRAME_BYTES * 2 + 17))
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        std::fs::write(&path, &data).expect("write");
        let (size, crc) = digest_file(&path).await.expect("digest");
        assert_eq!(size, data.len() as u64);
        assert_eq!(crc, crc32c::crc32c(&data));
        let err = digest_file(&dir.path().join("missing"))
            .await
            .expect_err("must fail");
        assert!(
            err.to_string().ends_with("no such file or directory"),
            "{err}"
        );
        let err = digest_file(dir.path()).await.expect_err("must fail");
        assert!(err.to_string().ends_with("it is a directory"), "{err}");
    }

    #[tokio::test]
    async fn stream_is_header_then_full_frames() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let len = keel_proto::FRAME_BYTES * 2 + 5;
        std::fs::write(&path, vec![7u8; len]).expect("write");
        let file = File::open(&path).await.expect("open");
        let header = ChunkHeader {
            chunk: "c".into(),
            size: len as u64,
            crc32c: 0,
            replication: 1,
        };
        let slot = Arc::new(Mutex::new(None));
        let first = WriteChunkRequest {
            header: Some(header.clone()),
            ..Default::default()
        };
        let msgs: Vec<_> = request_stream(first, file, slot).collect().await;
        assert_eq!(msgs[0].header.as_ref(), Some(&header));
        assert!(msgs[0].data.is_empty());
        let sizes: Vec<usize> = msgs[1..].iter().map(|m| m.data.len()).collect();
        assert_eq!(sizes, [keel_proto::FRAME_BYTES, keel_proto::FRAME_BYTES, 5]);
        assert!(msgs[1..].iter().all(|m| m.header.is_none()));
    }

    #[test]
    fn json_shape_and_replication() {
        let v = serde_json::to_value(PutJson {
            chunk: "c1".into(),
            size: 3,
            crc32c: 9,
            servers: vec!["cs1".into()],
        })
        .expect("encodes");
        assert_eq!(
            v,
            serde_json::json!({"chunk": "c1", "size": 3, "crc32c": 9, "servers": ["cs1"]})
        );
        assert_eq!(effective_replication(0, 2), 2);
        assert_eq!(effective_replication(3, 2), 3);
    }
}
