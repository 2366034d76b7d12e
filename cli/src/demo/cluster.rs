//! The demo's daemons as child processes, and the guard that always stops
//! them.
//!
//! The daemons are started by the launcher ([`keel_launch`]): each runs in
//! its own process group (a Ctrl-C in the terminal reaches only keelctl,
//! which then stops them in order), gets SIGTERM from the kernel if keelctl
//! dies without cleaning up (`PR_SET_PDEATHSIG`), logs to its own file in
//! the demo's temp dir, and tells its addresses through its ready file
//! (`--ready-file`). [`Cluster::shutdown`] stops them gracefully; [`Drop`]
//! does the same synchronously on error and panic paths; each process's own
//! guard is the last resort.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use keel_launch::{LaunchError, Process, Spec};
use tempfile::TempDir;

use super::bins::Bins;
use super::error::DemoError;
use crate::error::Error;

/// How long a daemon may take to write its ready file.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a daemon may take to stop after SIGTERM (theirs is 8 s).
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The same on panic and error paths, where keelctl blocks while it waits.
const DROP_GRACE: Duration = Duration::from_secs(5);
/// Polling period while waiting for exits.
const POLL: Duration = Duration::from_millis(50);
/// Any free port on loopback.
pub const ANY_PORT: &str = "127.0.0.1:0";

/// One running daemon.
pub struct Daemon {
    /// `master` or a server id.
    pub name: String,
    /// Process id, printed so the operator (and tests) can see it.
    pub pid: u32,
    /// gRPC address it bound.
    pub addr: SocketAddr,
    /// The master's HTTP address.
    pub http: Option<SocketAddr>,
    process: Process,
}

/// The demo's daemons and their temp dir (data and logs), removed on drop.
pub struct Cluster {
    bins: Bins,
    token: Option<String>,
    daemons: Vec<Daemon>,
    dir: TempDir,
}

impl Cluster {
    /// A fresh temp dir, no daemon yet.
    pub fn new(bins: Bins, token: Option<&str>) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("keel-demo-")
            .tempdir()
            .map_err(|e| DemoError::setup("create the demo's temp dir", e))?;
        Ok(Cluster {
            bins,
            token: token.map(str::to_owned),
            daemons: Vec::new(),
            dir,
        })
    }

    /// Where data dirs and logs live.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts the master on `grpc`/`http` when those ports are free, on any
    /// free ports otherwise (or when the preferred start fails).
    pub async fn start_master(
        &mut self,
        grpc: &str,
        http: &str,
        flags: &[String],
    ) -> Result<&Daemon, Error> {
        let (g, h) = (free_or_any(grpc), free_or_any(http));
        let preferred = g != ANY_PORT || h != ANY_PORT;
        let first = self.try_master(&g, &h, flags).await;
        if first.is_err() && preferred {
            // Lost a race for the port, most likely: any port will do.
            self.daemons.retain(|d| d.name != "master");
            self.try_master(ANY_PORT, ANY_PORT, flags).await?;
        } else {
            first?;
        }
        self.last()
    }

    async fn try_master(&mut self, grpc: &str, http: &str, flags: &[String]) -> Result<(), Error> {
        let mut args = vec![
            "--listen".to_owned(),
            grpc.to_owned(),
            "--http-listen".to_owned(),
            http.to_owned(),
        ];
        args.extend_from_slice(flags);
        let bin = self.bins.master.clone();
        self.spawn("master", &bin, args).await
    }

    /// Starts chunk server `id` reporting to `master`, with `flags` after the
    /// ones every server gets.
    pub async fn start_chunkserver(
        &mut self,
        id: &str,
        master: &str,
        flags: &[String],
    ) -> Result<&Daemon, Error> {
        let data = self.dir.path().join(format!("data-{id}"));
        let mut args = vec![
            "--id".to_owned(),
            id.to_owned(),
            "--listen".to_owned(),
            ANY_PORT.to_owned(),
            "--master".to_owned(),
            master.to_owned(),
            "--data-dir".to_owned(),
            data.display().to_string(),
        ];
        args.extend_from_slice(flags);
        let bin = self.bins.chunkserver.clone();
        self.spawn(id, &bin, args).await?;
        self.last()
    }

    fn last(&self) -> Result<&Daemon, Error> {
        self.daemons.last().ok_or_else(no_daemon)
    }

    /// Spawns `bin` as `name` and waits for its ready file. The daemon is
    /// tracked from the moment it runs, so every exit path stops it.
    async fn spawn(&mut self, name: &str, bin: &Path, args: Vec<String>) -> Result<(), Error> {
        let log = self.dir.path().join(format!("{name}.log"));
        // The operator's KEEL_* settings are for keelctl, not the demo's daemons.
        let mut spec = Spec::new(name, bin, log)
            .args(args)
            .keel_daemon()
            .env("RUST_LOG", "info")
            .without_keel_env()
            .own_process_group()
            .die_with_parent();
        // Through the environment, never the command line (`ps` shows that).
        if let Some(t) = &self.token {
            spec = spec.env("KEEL_AUTH_TOKEN", t);
        }
        let process = Process::spawn(&spec).map_err(launch_error)?;
        self.daemons.push(Daemon {
            name: name.to_owned(),
            pid: process.pid().unwrap_or_default(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: None,
            process,
        });
        let d = self.daemons.last_mut().ok_or_else(no_daemon)?;
        let ready = d
            .process
            .wait_ready_async(START_TIMEOUT)
            .await
            .map_err(launch_error)?;
        (d.addr, d.http) = (ready.grpc, ready.http);
        Ok(())
    }

    /// Returns (with an error) as soon as any daemon exits; never otherwise.
    pub async fn watch(&mut self) -> Result<(), Error> {
        loop {
            for d in &mut self.daemons {
                if let Some(status) = exited(d)? {
                    return Err(DemoError::DaemonExited {
                        name: d.name.clone(),
                        status,
                        during: "while the cluster was running",
                    }
                    .into());
                }
            }
            tokio::time::sleep(POLL * 10).await;
        }
    }

    /// The last `n` lines of every daemon's log, headed by its name.
    pub fn log_tails(&self, n: usize) -> String {
        let mut out = String::new();
        for d in &self.daemons {
            let log = d.process.log_path().display();
            out.push_str(&format!("----- {} ({log}) -----\n", d.name));
            let tail = d.process.tail(n);
            if !tail.is_empty() {
                out.push_str(&tail);
                out.push('\n');
            }
        }
        out
    }

    /// SIGTERM to every daemon, up to [`STOP_GRACE`] for them to exit, then
    /// SIGKILL. Returns the names of those that had to be killed.
    pub async fn shutdown(&mut self) -> Vec<String> {
        for d in &self.daemons {
            d.process.terminate();
        }
        let deadline = Instant::now() + STOP_GRACE;
        let mut killed = Vec::new();
        for mut d in self.daemons.drain(..) {
            if d.process.pid().is_some() && d.process.wait_exit_async(deadline).await.is_none() {
                d.process.kill();
                killed.push(d.name);
            }
        }
        killed
    }
}

impl Drop for Cluster {
    /// The error and panic path: the same as [`Cluster::shutdown`], blocking.
    fn drop(&mut self) {
        for d in &self.daemons {
            d.process.terminate();
        }
        let deadline = Instant::now() + DROP_GRACE;
        while Instant::now() < deadline && self.daemons.iter_mut().any(|d| d.process.is_running()) {
            std::thread::sleep(POLL);
        }
        for d in &mut self.daemons {
            d.process.kill();
        }
        // The temp dir is removed when the `dir` field drops, after this.
    }
}

fn no_daemon() -> Error {
    DemoError::setup(
        "track the daemon just started",
        std::io::Error::other("it is gone"),
    )
    .into()
}

/// `addr` when a listener can bind it right now, else any free port.
fn free_or_any(addr: &str) -> String {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => addr.to_owned(),
        Err(_) => ANY_PORT.to_owned(),
    }
}

/// How `d` ended, if it has.
fn exited(d: &mut Daemon) -> Result<Option<String>, Error> {
    let status = d
        .process
        .try_exit()
        .map_err(|e| DemoError::setup(format!("check on {}", d.name), e))?;
    Ok(status.map(|s| s.to_string()))
}

/// The demo's sentence for a daemon that did not start; its log's tail is
/// printed with every daemon's when the demo fails, so it is left out here.
fn launch_error(e: LaunchError) -> Error {
    match e {
        LaunchError::Exited { name, status, .. } => DemoError::DaemonExited {
            name,
            status: status.to_string(),
            during: "before it was listening",
        }
        .into(),
        LaunchError::Timeout { name, after, .. } => DemoError::DaemonSilent { name, after }.into(),
        LaunchError::Log { path, source, .. } => {
            DemoError::setup(format!("create {}", path.display()), source).into()
        }
        LaunchError::Spawn {
            program, source, ..
        } => DemoError::setup(format!("start {}", program.display()), source).into(),
        LaunchError::Wait { name, source } => {
            DemoError::setup(format!("check on {name}"), source).into()
        }
        other => {
            DemoError::setup("start a daemon", std::io::Error::other(other.to_string())).into()
        }
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
