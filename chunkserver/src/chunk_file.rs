//! One chunk, one file: a fixed 64-byte header (size, CRC32C, replication,
//! guarded by its own checksum; then the replica's identity with a second
//! checksum) followed by the chunk's bytes.
//!
//! The replica identity names this one file: a delete carries the identity
//! of the replica it means, so a delete meant for an older or damaged copy
//! never removes a newer one. Files written before identities existed have
//! zeros there; they are named by their inode instead ([`inode_replica`]).
//!
//! New chunks are written as [`TempChunk`]s under `tmp/`: bytes streamed in with
//! a running CRC32C, checked against the header, fsynced, renamed into
//! `chunks/`, and the directory fsynced. Until then the temp file is removed
//! when the value is dropped, so an error or a cancelled request never leaves a
//! partial file.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Bytes of the header in front of every chunk's data.
pub const HEADER_LEN: u64 = 64;

/// Marks a Keel chunk file, format version 1.
const MAGIC: [u8; 8] = *b"KEELCHK1";

/// What is kept beside a chunk's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    /// Bytes of data.
    pub size: u64,
    /// CRC32C (Castagnoli) of the data.
    pub crc32c: u32,
    /// Replication factor the writer asked for.
    pub replication: u32,
}

/// Identities of files written before identities existed have this bit set
/// (see [`inode_replica`]); identities this server assigns never do.
pub const INODE_REPLICA_BIT: u64 = 1 << 63;

/// Encodes the header of a chunk file for the replica `replica`.
pub fn encode_header(meta: &ChunkMeta, replica: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..16].copy_from_slice(&meta.size.to_le_bytes());
    h[16..20].copy_from_slice(&meta.crc32c.to_le_bytes());
    h[20..24].copy_from_slice(&meta.replication.to_le_bytes());
    let guard = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&guard.to_le_bytes());
    h[32..40].copy_from_slice(&replica.to_le_bytes());
    let guard = crc32c::crc32c(&h[0..40]);
    h[40..44].copy_from_slice(&guard.to_le_bytes());
    h
}

/// The replica identity a header carries: 0 for a file written before
/// identities existed (all zeros there).
pub fn decode_replica(h: &[u8; HEADER_LEN as usize]) -> Result<u64, String> {
    if h[32..44].iter().all(|&b| b == 0) {
        return Ok(0);
    }
    let mut guard = [0u8; 4];
    guard.copy_from_slice(&h[40..44]);
    if u32::from_le_bytes(guard) != crc32c::crc32c(&h[0..40]) {
        return Err("replica identity checksum mismatch".into());
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[32..40]);
    Ok(u64::from_le_bytes(id))
}

/// The identity of a file whose header carries none: its inode number with
/// [`INODE_REPLICA_BIT`] set. Stable across restarts (the file is never
/// rewritten) and distinct from every identity this server assigns.
pub fn inode_replica(file: &File) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(file.metadata()?.ino() | INODE_REPLICA_BIT)
}

/// Decodes a header, or says why it is not one.
pub fn decode_header(h: &[u8; HEADER_LEN as usize]) -> Result<ChunkMeta, String> {
    if h[0..8] != MAGIC {
        return Err("not a Keel chunk file (bad magic)".into());
    }
    let word = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 4];
        b.copy_from_slice(&h[r]);
        u32::from_le_bytes(b)
    };
    if word(24..28) != crc32c::crc32c(&h[0..24]) {
        return Err("header checksum mismatch".into());
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&h[8..16]);
    Ok(ChunkMeta {
        size: u64::from_le_bytes(size),
        crc32c: word(16..20),
        replication: word(20..24),
    })
}

/// Opens a stored chunk, checks its header and length, and leaves the file
/// positioned at the first data byte.
pub fn open_chunk(path: &Path) -> io::Result<(File, Result<ChunkMeta, String>)> {
    let (file, found) = open_replica(path)?;
    Ok((file, found.map(|(meta, _)| meta)))
}

/// An opened chunk file: the file, and its header with the replica's
/// identity, or why it is damaged.
pub type OpenedReplica = (File, Result<(ChunkMeta, u64), String>);

/// [`open_chunk`], with the replica's identity (never 0: a file without
/// one is named by its inode).
pub fn open_replica(path: &Path) -> io::Result<OpenedReplica> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut h = [0u8; HEADER_LEN as usize];
    if len < HEADER_LEN {
        return Ok((
            file,
            Err(format!("file is {len} bytes, shorter than its header")),
        ));
    }
    file.read_exact(&mut h)?;
    let meta = decode_header(&h).and_then(|m| {
        if HEADER_LEN + m.size == len {
            Ok(m)
        } else {
            Err(format!(
                "header declares {} bytes but the file holds {}",
                m.size,
                len - HEADER_LEN
            ))
        }
    });
    let found = match meta.and_then(|m| decode_replica(&h).map(|r| (m, r))) {
        Ok((m, 0)) => Ok((m, inode_replica(&file)?)),
        other => other,
    };
    Ok((file, found))
}

/// Why bytes could not be added to a [`TempChunk`].
#[derive(Debug)]
pub enum AppendError {
    /// More bytes than the header declared; nothing was written.
    TooMany {
        /// Bytes that would have been received.
        received: u64,
    },
    /// The disk refused.
    Io(io::Error),
}

/// How a finished [`TempChunk`] failed its checks.
#[derive(Debug)]
pub enum FinishError {
    /// Fewer bytes than declared.
    TooFew {
        /// Bytes received.
        received: u64,
    },
    /// The CRC32C of the bytes differs from the declared one.
    Checksum {
        /// CRC32C of the bytes received.
        actual: u32,
    },
    /// The disk refused.
    Io(io::Error),
}

/// A chunk being written under `tmp/`; removed on drop unless committed.
#[derive(Debug)]
pub struct TempChunk {
    /// Open temp file; `None` once committed.
    file: Option<File>,
    /// Where the temp file is.
    path: PathBuf,
    /// What the header declares.
    meta: ChunkMeta,
    /// The identity written into the header.
    replica: u64,
    /// Data bytes written so far.
    written: u64,
    /// Running CRC32C of those bytes.
    crc: u32,
}

impl TempChunk {
    /// Creates `path` and writes the header for `meta` and `replica`.
    pub fn create(path: PathBuf, meta: ChunkMeta, replica: u64) -> io::Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let mut t = TempChunk {
            file: Some(file),
            path,
            meta,
            replica,
            written: 0,
            crc: 0,
        };
        t.file_mut()?.write_all(&encode_header(&meta, replica))?;
        Ok(t)
    }

    fn file_mut(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("temp chunk already committed"))
    }

    /// What the header declares.
    pub fn meta(&self) -> ChunkMeta {
        self.meta
    }

    /// The replica's identity.
    pub fn replica(&self) -> u64 {
        self.replica
    }

    /// Data bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends data, refusing anything beyond the declared size.
    pub fn append(&mut self, data: &[u8]) -> Result<(), AppendError> {
        let received = self.written + data.len() as u64;
        if received > self.meta.size {
            return Err(AppendError::TooMany { received });
        }
        self.file_mut()
            .and_then(|f| f.write_all(data))
            .map_err(AppendError::Io)?;
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.written = received;
        Ok(())
    }

    /// Checks size and CRC32C, fsyncs, renames to `dest` and fsyncs its directory.
    pub fn commit(mut self, dest: &Path) -> Result<ChunkMeta, FinishError> {
        if self.written != self.meta.size {
            return Err(FinishError::TooFew {
                received: self.written,
            });
        }
        if self.crc != self.meta.crc32c {
            return Err(FinishError::Checksum { actual: self.crc });
        }
        let file = self.file_mut().map_err(FinishError::Io)?;
        file.sync_all().map_err(FinishError::Io)?;
        std::fs::rename(&self.path, dest).map_err(FinishError::Io)?;
        // Renamed: nothing left for Drop to remove.
        self.file = None;
        if let Some(dir) = dest.parent()
            && let Err(e) = sync_dir(dir)
        {
            // Not known to be durable: take it back rather than leave a chunk
            // that the caller was told failed but a restart would find.
            let _ = std::fs::remove_file(dest);
            return Err(FinishError::Io(e));
        }
        Ok(self.meta)
    }
}

impl Drop for TempChunk {
    fn drop(&mut self) {
        if self.file.take().is_some()
            && let Err(e) = std::fs::remove_file(&self.path)
        {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove temp chunk");
        }
    }
}

/// fsyncs a directory, making renames and unlinks in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(data: &[u8]) -> ChunkMeta {
        ChunkMeta {
            size: data.len() as u64,
            crc32c: crc32c::crc32c(data),
            replication: 3,
        }
    }

    #[test]
    fn header_round_trips_and_detects_damage() {
        let m = meta(b"hello");
        let mut h = encode_header(&m, 42);
        assert_eq!(decode_header(&h), Ok(m));
        assert_eq!(decode_replica(&h), Ok(42));
        h[33] ^= 1;
        assert!(decode_replica(&h).is_err(), "a damaged identity is refused");
        h[9] ^= 1;
        assert!(decode_header(&h).is_err());
        let mut old = encode_header(&m, 0);
        old[32..44].fill(0);
        assert_eq!(decode_replica(&old), Ok(0), "a file without identity");
    }

    #[test]
    fn a_file_without_identity_is_named_by_its_inode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = b"old";
        let mut h = encode_header(&meta(data), 0);
        h[32..44].fill(0);
        let path = dir.path().join("c");
        std::fs::write(&path, [&h[..], data].concat()).expect("write");
        let (_, found) = open_replica(&path).expect("open");
        let (m, id) = found.expect("a whole chunk");
        assert_eq!(m, meta(data));
        assert_ne!(id & INODE_REPLICA_BIT, 0);
        let (_, again) = open_replica(&path).expect("open");
        assert_eq!(again.map(|(_, id)| id), Ok(id), "stable");
    }

    #[test]
    fn commit_then_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = b"some chunk bytes";
        let mut t = TempChunk::create(dir.path().join("t"), meta(data), 7).expect("create");
        t.append(&data[..4]).expect("append");
        t.append(&data[4..]).expect("append");
        let dest = dir.path().join("c");
        t.commit(&dest).expect("commit");
        assert!(!dir.path().join("t").exists());
        let (mut f, m) = open_replica(&dest).expect("open");
        assert_eq!(m, Ok((meta(data), 7)));
        let mut back = Vec::new();
        f.read_to_end(&mut back).expect("read");
        assert_eq!(back, data);
    }

    #[test]
    fn bad_writes_leave_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = b"0123456789";
        let mut t = TempChunk::create(dir.path().join("a"), meta(data), 1).expect("create");
        assert!(matches!(
            t.append(b"0123456789x"),
            Err(AppendError::TooMany { received: 11 })
        ));
        t.append(b"012").expect("append");
        assert!(matches!(
            t.commit(&dir.path().join("c")),
            Err(FinishError::TooFew { received: 3 })
        ));
        let mut t = TempChunk::create(dir.path().join("b"), meta(data), 2).expect("create");
        t.append(b"0123456780").expect("append");
        assert!(matches!(
            t.commit(&dir.path().join("c")),
            Err(FinishError::Checksum { .. })
        ));
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
    }
}
