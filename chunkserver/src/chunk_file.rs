//! One chunk, one file: a fixed 64-byte header (size, CRC32C, replication,
//! guarded by its own checksum) followed by the chunk's bytes.
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

/// Encodes the header of a chunk file.
pub fn encode_header(meta: &ChunkMeta) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..16].copy_from_slice(&meta.size.to_le_bytes());
    h[16..20].copy_from_slice(&meta.crc32c.to_le_bytes());
    h[20..24].copy_from_slice(&meta.replication.to_le_bytes());
    let guard = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&guard.to_le_bytes());
    h
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
    Ok((file, meta))
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
    /// Data bytes written so far.
    written: u64,
    /// Running CRC32C of those bytes.
    crc: u32,
}

impl TempChunk {
    /// Creates `path` and writes the header for `meta`.
    pub fn create(path: PathBuf, meta: ChunkMeta) -> io::Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let mut t = TempChunk {
            file: Some(file),
            path,
            meta,
            written: 0,
            crc: 0,
        };
        t.file_mut()?.write_all(&encode_header(&meta))?;
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
        let mut h = encode_header(&m);
        assert_eq!(decode_header(&h), Ok(m));
        h[9] ^= 1;
        assert!(decode_header(&h).is_err());
    }

    #[test]
    fn commit_then_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = b"some chunk bytes";
        let mut t = TempChunk::create(dir.path().join("t"), meta(data)).expect("create");
        t.append(&data[..4]).expect("append");
        t.append(&data[4..]).expect("append");
        let dest = dir.path().join("c");
        t.commit(&dest).expect("commit");
        assert!(!dir.path().join("t").exists());
        let (mut f, m) = open_chunk(&dest).expect("open");
        assert_eq!(m, Ok(meta(data)));
        let mut back = Vec::new();
        f.read_to_end(&mut back).expect("read");
        assert_eq!(back, data);
    }

    #[test]
    fn bad_writes_leave_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = b"0123456789";
        let mut t = TempChunk::create(dir.path().join("a"), meta(data)).expect("create");
        assert!(matches!(
            t.append(b"0123456789x"),
            Err(AppendError::TooMany { received: 11 })
        ));
        t.append(b"012").expect("append");
        assert!(matches!(
            t.commit(&dir.path().join("c")),
            Err(FinishError::TooFew { received: 3 })
        ));
        let mut t = TempChunk::create(dir.path().join("b"), meta(data)).expect("create");
        t.append(b"0123456780").expect("append");
        assert!(matches!(
            t.commit(&dir.path().join("c")),
            Err(FinishError::Checksum { .. })
        ));
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
    }
}
