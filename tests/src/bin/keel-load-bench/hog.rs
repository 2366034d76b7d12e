//! Competing work for the `--auto` rounds, stopped when dropped:
//! - [`Hog`]: `sh -c 'while :; do :; done'` loops keeping CPUs busy;
//! - [`DiskHog`]: a thread rewriting a file on the data dirs' file system
//!   and fsyncing it, so the chunk servers' own fsyncs queue behind it.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::{Context, Result};

/// Busy loops running until dropped.
pub struct Hog(Vec<Child>);

impl Hog {
    /// Starts `n` busy loops (none for 0).
    pub fn start(n: usize) -> Result<Hog> {
        let mut children = Vec::with_capacity(n);
        for _ in 0..n {
            let child = Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting a busy loop (sh)")?;
            children.push(child);
        }
        Ok(Hog(children))
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Bytes written between two fsyncs: a few MiB, so each fsync has real work
/// and the device queue stays full, as a backup or a compaction would keep it.
const SYNC_EVERY: u64 = 8 << 20;
/// The file wraps around at this size: the disk stays busy without filling.
const FILE_LEN: u64 = 256 << 20;
/// One write.
const BLOCK: usize = 1 << 20;

/// A writer keeping the disk busy until dropped; its file is removed then.
pub struct DiskHog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl DiskHog {
    /// Starts rewriting a file in `dir` (on the same file system as the
    /// daemons' data dirs), fsyncing every [`SYNC_EVERY`] bytes.
    pub fn start(dir: &Path) -> Result<DiskHog> {
        let path = dir.join(format!("keel-load-bench-disk-hog-{}", std::process::id()));
        let mut file = File::create(&path)
            .with_context(|| format!("creating the disk hog's file {}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let block = vec![0x5a_u8; BLOCK];
            let mut written = 0u64;
            while !flag.load(Ordering::Relaxed) {
                // An error (the disk full, say) ends the hog, not the bench.
                if file.write_all(&block).is_err() {
                    return;
                }
                written += BLOCK as u64;
                if written.is_multiple_of(SYNC_EVERY) && file.sync_data().is_err() {
                    return;
                }
                if written.is_multiple_of(FILE_LEN) && file.seek(SeekFrom::Start(0)).is_err() {
                    return;
                }
            }
        });
        Ok(DiskHog {
            stop,
            thread: Some(thread),
            path,
        })
    }
}

impl Drop for DiskHog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
