//! The end-to-end move an operator times: a real master and two chunk
//! servers, A and B, and one `RebalanceExecute` naming the chunk, as
//! `keelctl rebalance execute --move CHUNK:FROM:TO` sends it. The call
//! returns once the master has checked its gates, the target has pulled the
//! chunk (`CopyChunk`: stream, CRC32C on both sides, write, fsync, rename,
//! directory fsync), the master has recorded the new replica and the source
//! has deleted its own. The chunk goes A→B in one run and back B→A in the
//! next, so every run starts with the bytes in the source's page cache, as
//! the baselines' source file is.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_proto::v1::{Move, MoveOutcome, RebalanceExecuteRequest};
use keel_tests::{Daemon, master_client};

use crate::payload::upload_slice;
use crate::sample::cpu_times;

/// The chunk moved back and forth.
const CHUNK: &str = "moved";

/// A master and two chunk servers in a directory of their own. Fields drop
/// in order: the daemons stop before their directory is removed.
pub struct Trio {
    master: Daemon,
    a: Daemon,
    b: Daemon,
    /// Data dirs and logs; removed when the trio is dropped.
    _dir: tempfile::TempDir,
    /// Whether the chunk is on A now.
    on_a: bool,
}

/// What one move cost.
#[derive(Debug, Clone, Copy)]
pub struct MoveCost {
    /// Wall time of the `RebalanceExecute` call.
    pub secs: f64,
    /// CPU seconds of both chunk servers (user + system).
    pub cpu_servers: f64,
    /// CPU seconds of the master.
    pub cpu_master: f64,
}

impl Trio {
    /// Starts the daemons under `root` and puts `data` on A as [`CHUNK`].
    pub async fn start(root: &Path, data: &std::sync::Arc<Vec<u8>>) -> Result<Trio> {
        let dir = tempfile::Builder::new()
            .prefix("keel-move-")
            .tempdir_in(root)?;
        let bin = |name: &str| keel_tests::bench::sibling_bin(name);
        let strings = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // No background pass: only the bench's moves run.
        let args = strings(&[
            "--listen",
            "127.0.0.1:0",
            "--safe-mode",
            "0s",
            "--balance-interval",
            "0",
        ]);
        let log = dir.path().join("master.log");
        let master = Daemon::start("master", bin("keel-master")?, args, vec![], log)?;
        let server = |id: &str| -> Result<Daemon> {
            let data_dir = dir.path().join(id).display().to_string();
            let args = strings(&[
                "--id",
                id,
                "--listen",
                "127.0.0.1:0",
                "--master",
                &master.url(),
                "--data-dir",
                &data_dir,
                "--migrate-bandwidth",
                "0",
                "--heartbeat-interval",
                "1s",
            ]);
            let log = dir.path().join(format!("{id}.log"));
            Daemon::start(id, bin("keel-chunkserver")?, args, vec![], log)
        };
        let (a, b) = (server("a")?, server("b")?);
        upload_slice(&a.url(), CHUNK, data, keel_proto::FRAME_BYTES).await?;
        keel_tests::master::wait_known(&master.url(), &[CHUNK]).await?;
        Ok(Trio {
            master,
            a,
            b,
            _dir: dir,
            on_a: true,
        })
    }

    /// Moves the chunk to the other server and measures it.
    pub async fn run(&mut self) -> Result<MoveCost> {
        let (from, to) = if self.on_a { ("a", "b") } else { ("b", "a") };
        let mut m = master_client(&self.master.url()).await?;
        let cpu = |d: &Daemon| -> Result<f64> {
            let pid = d.pid().context("daemon not running")?;
            Ok(cpu_times(&pid.to_string())?.own)
        };
        let before = (cpu(&self.master)?, cpu(&self.a)? + cpu(&self.b)?);
        let req = RebalanceExecuteRequest {
            moves: vec![Move {
                chunk: CHUNK.into(),
                from: from.into(),
                to: to.into(),
            }],
        };
        let start = Instant::now();
        let resp = tokio::time::timeout(Duration::from_secs(300), m.rebalance_execute(req))
            .await
            .context("the move took over 5 minutes")?
            .with_context(|| format!("RebalanceExecute {CHUNK} {from}→{to}"))?
            .into_inner();
        let secs = start.elapsed().as_secs_f64();
        let after = (cpu(&self.master)?, cpu(&self.a)? + cpu(&self.b)?);
        match resp.results.first() {
            Some(r) if r.outcome == MoveOutcome::Done as i32 && r.error.is_empty() => {}
            other => bail!("move {CHUNK} {from}→{to} did not complete cleanly: {other:?}"),
        }
        self.on_a = !self.on_a;
        Ok(MoveCost {
            secs,
            cpu_servers: after.1 - before.1,
            cpu_master: after.0 - before.0,
        })
    }
}
