//! What the benchmark binaries share: finding the daemons built beside
//! them (through the launcher, [`keel_launch`]), a cluster per round that cleans up after itself, and a `main` that
//! prints usage, stops cleanly on SIGINT/SIGTERM and maps the outcome to an
//! exit code.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use tokio::signal::unix::{SignalKind, signal};

use crate::{Cluster, Daemon};

/// A cluster for one round, in a temp dir of its own, whose daemons stop
/// before the directory is removed.
pub struct Fresh(pub Cluster);

impl Fresh {
    /// An empty cluster in a new temp dir under `dir`, named `prefix…`.
    pub fn new(prefix: &str, dir: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix(prefix).tempdir_in(dir)?;
        Ok(Fresh(Cluster {
            dir,
            master: None,
            chunkservers: BTreeMap::new(),
            envs: vec![],
        }))
    }
}

impl Drop for Fresh {
    fn drop(&mut self) {
        let c = &mut self.0;
        c.chunkservers.values_mut().for_each(Daemon::stop);
        c.master.iter_mut().for_each(Daemon::stop);
    }
}

/// Owned copies of `a`, for argument lists.
pub fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// The binary `name` from the launcher's finder: `KEEL_BIN_DIR`, or else
/// the directory of the running benchmark (`target/release`); an error says
/// how to build it.
pub fn sibling_bin(name: &str) -> Result<PathBuf> {
    Ok(keel_launch::find(name)?)
}

/// Runs a benchmark: `parsed` is its options (`None` asks for `usage`);
/// exit 2 on bad options, 1 when `run` fails. On a signal the benchmark's
/// future is dropped, so its daemons stop and its temp dirs go on the way out.
pub async fn main<O, F, Fut>(name: &str, usage: &str, parsed: Result<Option<O>>, run: F) -> ExitCode
where
    F: FnOnce(O) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let opts = match parsed {
        Ok(Some(o)) => o,
        Ok(None) => {
            print!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{name}: {e:#}");
            return ExitCode::from(2);
        }
    };
    let result = tokio::select! {
        r = run(opts) => r,
        r = interrupted() => r.and_then(|sig| bail!("{sig}: stopped, cleaning up")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Waits for SIGINT or SIGTERM and names it.
async fn interrupted() -> Result<&'static str> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
