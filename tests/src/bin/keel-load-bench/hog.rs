//! A competing process that keeps CPUs busy: `sh -c 'while :; do :; done'`
//! loops, one per core asked for, stopped (killed and reaped) when dropped.

use std::process::{Child, Command, Stdio};

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
