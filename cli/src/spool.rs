//! `keelctl put <chunk> -`: standard input copied once into a temp file in
//! [`std::env::temp_dir`] while its size and CRC32C are computed, so the
//! chunk can then be sent to every replica like any file. The temp file is
//! removed when the [`Spooled`] is dropped, whether the put worked or not
//! (Ctrl-C included).

use std::io::IsTerminal;
use std::path::Path;

use tempfile::TempPath;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::error::Error;

/// Standard input, on disk.
#[derive(Debug)]
pub struct Spooled {
    /// Removes the file on drop.
    path: TempPath,
    /// Bytes read.
    pub size: u64,
    /// Their CRC32C.
    pub crc32c: u32,
}

impl Spooled {
    /// Where the bytes are.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Spools standard input; refuses a terminal (the bytes must be piped in).
pub async fn stdin() -> Result<Spooled, Error> {
    if std::io::stdin().is_terminal() {
        return Err(Error::Usage(
            "standard input is a terminal: pipe the chunk's bytes in, e.g. `head -c 8M /dev/urandom | keelctl put c1 -`".into(),
        ));
    }
    spool(tokio::io::stdin(), &std::env::temp_dir()).await
}

/// Copies `input` to a new temp file in `dir`, in frames, checksumming as
/// it goes; the file is fsynced before it is read back.
pub async fn spool<R: AsyncRead + Unpin>(mut input: R, dir: &Path) -> Result<Spooled, Error> {
    let named = tempfile::Builder::new()
        .prefix(".keelctl-stdin-")
        .tempfile_in(dir)
        .map_err(|e| Error::file("cannot create a temporary file in", dir, e))?;
    let (file, path) = named.into_parts();
    let mut file = tokio::fs::File::from_std(file);
    let mut buf = vec![0u8; keel_proto::FRAME_BYTES];
    let (mut size, mut crc32c) = (0u64, 0u32);
    loop {
        let n = input
            .read(&mut buf)
            .await
            .map_err(|e| Error::file("cannot read", "standard input", e))?;
        if n == 0 {
            break;
        }
        crc32c = crc32c::crc32c_append(crc32c, &buf[..n]);
        size += n as u64;
        file.write_all(&buf[..n])
            .await
            .map_err(|e| Error::file("cannot write", &*path, e))?;
    }
    file.flush()
        .await
        .map_err(|e| Error::file("cannot write", &*path, e))?;
    Ok(Spooled { path, size, crc32c })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spools_checksums_and_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data: Vec<u8> = (0..(keel_proto::FRAME_BYTES * 3 + 11))
            .map(|i| (i * 7 % 253) as u8)
            .collect();
        let spooled = spool(&data[..], dir.path()).await.expect("spool");
        assert_eq!(spooled.size, data.len() as u64);
        assert_eq!(spooled.crc32c, crc32c::crc32c(&data));
        assert_eq!(std::fs::read(spooled.path()).expect("read back"), data);
        let path = spooled.path().to_path_buf();
        drop(spooled);
        assert!(!path.exists(), "temp file removed on drop");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
    }

    #[tokio::test]
    async fn empty_input_is_an_empty_chunk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spooled = spool(&b""[..], dir.path()).await.expect("spool");
        assert_eq!((spooled.size, spooled.crc32c), (0, 0));
    }

    #[tokio::test]
    async fn missing_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = spool(&b"x"[..], &dir.path().join("nope"))
            .await
            .expect_err("must fail");
        assert!(
            err.to_string()
                .starts_with("cannot create a temporary file in"),
            "{err}"
        );
    }
}
