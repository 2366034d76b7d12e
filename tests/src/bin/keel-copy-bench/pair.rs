//! Two real `keel-chunkserver` processes, A (source) and B (target), in a
//! directory of their own, and what one `CopyChunk` from A to B costs: the
//! time the RPC takes, the transfer and commit times B logs, and CPU time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_proto::v1::{CopyChunkRequest, DeleteChunkRequest};
use keel_tests::{Daemon, chunkserver_client, cs::NO_MASTER, wait_until};

use crate::sample::cpu_times;

/// The line B logs for every finished copy.
const COPIED: &str = "chunk copied";

/// A source and a target chunk server. Fields drop in order: both servers
/// stop before their directory is removed.
pub struct Pair {
    /// Source.
    pub a: Daemon,
    /// Target.
    pub b: Daemon,
    /// Data dirs and logs of both; removed when the pair is dropped.
    dir: tempfile::TempDir,
}

/// What one copy cost.
#[derive(Debug, Clone, Copy)]
pub struct CopyCost {
    /// Wall time of the `CopyChunk` call, as the caller sees it.
    pub rpc_secs: f64,
    /// B's `transfer_secs`: connect, stream and write, before the commit.
    pub transfer_secs: f64,
    /// B's `commit_secs`: checks, fsync, rename, directory fsync.
    pub commit_secs: f64,
    /// CPU seconds A spent (user + system).
    pub cpu_a: f64,
    /// CPU seconds B spent.
    pub cpu_b: f64,
}

impl Pair {
    /// Starts A and B under `root` with `--migrate-bandwidth bandwidth`.
    pub fn start(root: &Path, bin: &Path, bandwidth: &str) -> Result<Pair> {
        let dir = tempfile::Builder::new()
            .prefix("keel-pair-")
            .tempdir_in(root)?;
        let server = |id: &str| -> Result<Daemon> {
            let args = [
                "--id",
                id,
                "--listen",
                "127.0.0.1:0",
                "--master",
                NO_MASTER,
                "--data-dir",
                &dir.path().join(id).display().to_string(),
                "--migrate-bandwidth",
                bandwidth,
            ];
            let args = args.iter().map(|s| s.to_string()).collect();
            let log = dir.path().join(format!("{id}.log"));
            Daemon::start(id, bin.to_path_buf(), args, vec![], log)
        };
        let a = server("a")?;
        let b = server("b")?;
        Ok(Pair { a, b, dir })
    }

    /// B's temp dir, where a copy grows until it is committed.
    pub fn target_tmp(&self) -> PathBuf {
        self.dir.path().join("b").join("tmp")
    }

    /// Copies `id` from A to B and measures it.
    pub async fn copy(&self, id: &str, size: u64, crc32c: u32) -> Result<CopyCost> {
        let mut client = chunkserver_client(&self.b.url()).await?;
        let logged = self.b.log_text().matches(COPIED).count();
        let cpu = (cpu_secs(&self.a)?, cpu_secs(&self.b)?);
        let req = CopyChunkRequest {
            chunk: id.to_owned(),
            source_id: "a".into(),
            source_address: self.a.url(),
            expected_size: size,
            expected_crc32c: crc32c,
            term: 0,
        };
        let start = Instant::now();
        client
            .copy_chunk(req)
            .await
            .with_context(|| format!("CopyChunk {id} from A to B"))?;
        let rpc_secs = start.elapsed().as_secs_f64();
        let (cpu_a, cpu_b) = (cpu_secs(&self.a)? - cpu.0, cpu_secs(&self.b)? - cpu.1);
        let b = &self.b;
        wait_until("B to log the copy", Duration::from_secs(5), || async move {
            b.log_text().matches(COPIED).count() > logged
        })
        .await?;
        let (transfer_secs, commit_secs) = last_copy_times(&self.b.log_text())?;
        Ok(CopyCost {
            rpc_secs,
            transfer_secs,
            commit_secs,
            cpu_a,
            cpu_b,
        })
    }

    /// Deletes `id` on the server at `url` (A or B), so it can be written or
    /// copied again.
    pub async fn delete(&self, url: &str, id: &str) -> Result<()> {
        let mut client = chunkserver_client(url).await?;
        client
            .delete_chunk(DeleteChunkRequest {
                chunk: id.into(),
                term: 0,
                ..Default::default()
            })
            .await
            .with_context(|| format!("DeleteChunk {id} on {url}"))?;
        Ok(())
    }
}

/// `transfer_secs` and `commit_secs` of the last copy logged in `log`.
fn last_copy_times(log: &str) -> Result<(f64, f64)> {
    let Some(line) = log.lines().rev().find(|l| l.contains(COPIED)) else {
        bail!("no `{COPIED}` line in the target's log");
    };
    let field = |name: &str| -> Result<f64> {
        let key = format!(" {name}=");
        let at = line
            .find(&key)
            .with_context(|| format!("no {name} in {line:?}"))?;
        let value: String = line[at + key.len()..]
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        value
            .parse()
            .with_context(|| format!("bad {name} {value:?} in {line:?}"))
    };
    Ok((field("transfer_secs")?, field("commit_secs")?))
}

/// CPU seconds (user + system) the daemon's process has used so far.
fn cpu_secs(d: &Daemon) -> Result<f64> {
    let pid = d.pid().context("daemon not running")?;
    Ok(cpu_times(&pid.to_string())?.own)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_times_come_from_the_last_line() {
        let log = "\
x INFO chunk copied chunk=c from=a bytes=1 transfer_secs=1.5 commit_secs=0.25 mib_per_s=1
y INFO chunk copied chunk=c from=a bytes=1 transfer_secs=0.5 commit_secs=0.125 mib_per_s=2
z INFO something else";
        assert_eq!(last_copy_times(log).ok(), Some((0.5, 0.125)));
        assert!(last_copy_times("nothing").is_err());
    }
}
