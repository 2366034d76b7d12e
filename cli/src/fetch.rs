//! Reading one replica into a temp file beside the destination, verifying
//! size and CRC32C against the server's header and the master's record, and
//! renaming into place only when everything matches. An attempt that moves
//! no bytes for `--stream-idle-timeout` (connecting, waiting for the answer
//! or between frames) fails like any other replica error.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use keel_proto::v1::{ReadChunkRequest, ServerRef};
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;
use tonic::Code;

use crate::client::{Clients, normalize_url};
use crate::error::{Error, Peer};
use crate::idle::{self, Progress};

/// What to fetch and what the master says it should be.
pub struct Attempt<'a> {
    /// Chunk id.
    pub chunk: &'a str,
    /// Size on record at the master.
    pub size: u64,
    /// CRC32C on record at the master.
    pub crc32c: u32,
    /// Final path.
    pub dest: &'a Path,
}

/// Why one replica could not be used.
pub enum Failure {
    /// A local problem (disk full, permissions): no other replica would help.
    Local(Error),
    /// This replica failed; `corrupt` when its bytes are bad.
    Replica {
        /// What went wrong.
        error: Error,
        /// Whether the replica served bad bytes (worth reporting).
        corrupt: bool,
    },
}

fn replica(error: Error) -> Failure {
    Failure::Replica {
        error,
        corrupt: false,
    }
}

fn corrupt(peer: &str, what: String) -> Failure {
    Failure::Replica {
        error: Error::BadCopy {
            peer: peer.to_owned(),
            what,
        },
        corrupt: true,
    }
}

/// Streams the chunk from `server` into `attempt.dest`, giving up when
/// nothing arrives for the idle timeout (the temp file goes with it).
pub async fn fetch(
    clients: &Clients,
    server: &ServerRef,
    attempt: &Attempt<'_>,
) -> Result<(), Failure> {
    let progress = Progress::new();
    let idle = clients.stream_idle();
    let transfer = read_replica(clients, server, attempt, &progress);
    idle::guard(idle, &progress, transfer)
        .await
        .unwrap_or_else(|idle::Stalled| {
            let op = "read chunk";
            Err(replica(stalled(server, op, idle)))
        })
}

async fn read_replica(
    clients: &Clients,
    server: &ServerRef,
    attempt: &Attempt<'_>,
    progress: &Progress,
) -> Result<(), Failure> {
    let mut cs = clients
        .chunkserver(&server.id, &server.address)
        .await
        .map_err(replica)?;
    let peer = cs.peer.clone();
    let rpc_failure = |s: tonic::Status| Failure::Replica {
        corrupt: s.code() == Code::DataLoss,
        error: Error::rpc(&peer, "read chunk", s),
    };
    let req = ReadChunkRequest {
        chunk: attempt.chunk.to_owned(),
        migration: false,
    };
    let mut stream = cs
        .client
        .read_chunk(req)
        .await
        .map_err(rpc_failure)?
        .into_inner();
    let mut tmp = TempFile::beside(attempt.dest)
        .await
        .map_err(Failure::Local)?;
    let mut header = None;
    let (mut size, mut crc) = (0u64, 0u32);
    while let Some(msg) = stream.message().await.map_err(rpc_failure)? {
        progress.touch();
        match (msg.header, &header) {
            (Some(_), Some(_)) => return Err(corrupt(&peer, "a second header".into())),
            (Some(h), None) => header = Some(h),
            (None, None) => return Err(corrupt(&peer, "data before the header".into())),
            (None, Some(_)) => {}
        }
        size += msg.data.len() as u64;
        if size > attempt.size {
            return Err(corrupt(
                &peer,
                format!("more than the {} bytes on record", attempt.size),
            ));
        }
        crc = crc32c::crc32c_append(crc, &msg.data);
        tmp.write(&msg.data).await.map_err(Failure::Local)?;
    }
    let Some(h) = header else {
        return Err(corrupt(&peer, "an empty stream without a header".into()));
    };
    let received = (h.chunk.as_str(), h.size, h.crc32c);
    if let Some(why) = verify(attempt, received, (size, crc)) {
        return Err(corrupt(&peer, why));
    }
    tmp.commit(attempt.dest).await.map_err(Failure::Local)
}

/// [`Error::Stalled`] naming `server` as its other errors do.
pub fn stalled(server: &ServerRef, op: &'static str, idle: std::time::Duration) -> Error {
    let url = normalize_url(&server.address, false).unwrap_or_else(|_| server.address.clone());
    let peer = Peer {
        id: Some(&server.id),
        url: &url,
    };
    Error::Stalled {
        peer: peer.to_string(),
        op,
        idle,
    }
}

/// Compares the server's header `(chunk, size, crc)` and the bytes actually
/// received `(size, crc)` with the master's record; `Some(reason)` on mismatch.
pub fn verify(attempt: &Attempt<'_>, header: (&str, u64, u32), got: (u64, u32)) -> Option<String> {
    let (chunk, h_size, h_crc) = header;
    if chunk != attempt.chunk {
        return Some(format!("its header names chunk {chunk:?}"));
    }
    if got != (h_size, h_crc) {
        return Some(format!(
            "received {} bytes with crc32c {:#010x}, its header says {h_size} bytes with crc32c {h_crc:#010x}",
            got.0, got.1
        ));
    }
    if got != (attempt.size, attempt.crc32c) {
        return Some(format!(
            "received {} bytes with crc32c {:#010x}, the master has {} bytes with crc32c {:#010x} on record",
            got.0, got.1, attempt.size, attempt.crc32c
        ));
    }
    None
}

/// A temp file in the destination's folder, removed on drop unless committed.
struct TempFile {
    path: PathBuf,
    file: Option<File>,
    committed: bool,
}

impl TempFile {
    async fn beside(dest: &Path) -> Result<Self, Error> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "chunk".into());
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp_name = format!(".{name}.keelctl-{}-{seq}.tmp", std::process::id());
        let path = dest.with_file_name(tmp_name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
            .map_err(|e| Error::file("cannot create a temporary file beside", dest, e))?;
        Ok(TempFile {
            path,
            file: Some(file),
            committed: false,
        })
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), Error> {
        let Some(file) = self.file.as_mut() else {
            return Err(self.closed());
        };
        file.write_all(data)
            .await
            .map_err(|e| Error::file("cannot write", &self.path, e))
    }

    /// fsync, rename over `dest`, fsync the folder.
    async fn commit(mut self, dest: &Path) -> Result<(), Error> {
        let mut file = self.file.take().ok_or_else(|| self.closed())?;
        let synced = async {
            file.flush().await?;
            file.sync_all().await
        };
        synced
            .await
            .map_err(|e| Error::file("cannot write", &self.path, e))?;
        drop(file);
        tokio::fs::rename(&self.path, dest)
            .await
            .map_err(|e| Error::file("cannot move the verified chunk to", dest, e))?;
        self.committed = true;
        if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Best effort: the rename is durable once the folder is synced.
            if let Ok(d) = File::open(dir).await {
                let _ = d.sync_all().await;
            }
        }
        Ok(())
    }

    fn closed(&self) -> Error {
        Error::file(
            "cannot write",
            &self.path,
            io::Error::other("file already closed"),
        )
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(dest: &Path) -> Attempt<'_> {
        Attempt {
            chunk: "c1",
            size: 3,
            crc32c: crc32c::crc32c(b"abc"),
            dest,
        }
    }

    #[test]
    fn verify_catches_each_mismatch() {
        let dest = Path::new("/tmp/x");
        let a = attempt(dest);
        let good = crc32c::crc32c(b"abc");
        assert_eq!(verify(&a, ("c1", 3, good), (3, good)), None);
        assert!(verify(&a, ("c2", 3, good), (3, good)).is_some_and(|w| w.contains("\"c2\"")));
        assert!(verify(&a, ("c1", 3, good), (3, 1)).is_some_and(|w| w.contains("its header")));
        assert!(verify(&a, ("c1", 3, 1), (3, 1)).is_some_and(|w| w.contains("the master")));
    }

    #[tokio::test]
    async fn temp_file_is_removed_unless_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("out");
        let mut t = TempFile::beside(&dest).await.expect("create");
        t.write(b"abc").await.expect("write");
        let tmp = t.path.clone();
        assert!(tmp.exists());
        drop(t);
        assert!(!tmp.exists());
        let mut t = TempFile::beside(&dest).await.expect("create");
        t.write(b"abc").await.expect("write");
        t.commit(&dest).await.expect("commit");
        assert_eq!(std::fs::read(&dest).expect("read"), b"abc");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(left.len(), 1, "only the destination remains");
    }
}
