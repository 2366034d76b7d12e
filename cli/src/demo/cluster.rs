//! The demo's daemons as child processes, and the guard that always stops
//! them.
//!
//! Every daemon runs in its own process group (a Ctrl-C in the terminal
//! reaches only keelctl, which then stops them in order), gets SIGTERM from
//! the kernel if keelctl dies without cleaning up (`PR_SET_PDEATHSIG`), logs
//! to its own file in the demo's temp dir, and is found by the
//! `grpc listening addr=` line it logs once bound. [`Cluster::shutdown`]
//! stops them gracefully; [`Drop`] does the same synchronously on error and
//! panic paths; `kill_on_drop` is the last resort.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::process::{Child, Command};

use super::bins::Bins;
use super::error::DemoError;
use crate::error::Error;

/// How long a daemon may take to log its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a daemon may take to stop after SIGTERM (theirs is 8 s).
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The same on panic and error paths, where keelctl blocks while it waits.
const DROP_GRACE: Duration = Duration::from_secs(5);
/// Polling period while waiting for log lines and exits.
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
    child: Child,
    log: PathBuf,
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
        self.spawn("master", &bin, args).await?;
        let d = self.daemons.last_mut().ok_or_else(no_daemon)?;
        d.http = Some(wait_for_addr(d, "http listening addr=").await?);
        Ok(())
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

    /// Spawns `bin` as `name` and waits for its gRPC address.
    async fn spawn(&mut self, name: &str, bin: &Path, args: Vec<String>) -> Result<(), Error> {
        let log = self.dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log)
            .map_err(|e| DemoError::setup(format!("create {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| DemoError::setup(format!("open {}", log.display()), e))?;
        let mut cmd = Command::new(bin);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env("RUST_LOG", "info")
            .kill_on_drop(true)
            .process_group(0);
        // The operator's KEEL_* settings are for keelctl, not the demo's daemons.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("KEEL_") {
                cmd.env_remove(key);
            }
        }
        // Through the environment, never the command line (`ps` shows that).
        if let Some(t) = &self.token {
            cmd.env("KEEL_AUTH_TOKEN", t);
        }
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| DemoError::setup(format!("start {}", bin.display()), e))?;
        let pid = child.id().unwrap_or_default();
        self.daemons.push(Daemon {
            name: name.to_owned(),
            pid,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: None,
            child,
            log,
        });
        let d = self.daemons.last_mut().ok_or_else(no_daemon)?;
        d.addr = wait_for_addr(d, "grpc listening addr=").await?;
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
            let text = std::fs::read_to_string(&d.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(n)..];
            out.push_str(&format!("----- {} ({}) -----\n", d.name, d.log.display()));
            for l in tail {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// SIGTERM to every daemon, up to [`STOP_GRACE`] for them to exit, then
    /// SIGKILL. Returns the names of those that had to be killed.
    pub async fn shutdown(&mut self) -> Vec<String> {
        for d in &self.daemons {
            terminate(d.pid);
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        let mut killed = Vec::new();
        for mut d in self.daemons.drain(..) {
            let waited = tokio::time::timeout_at(deadline, d.child.wait()).await;
            if !matches!(waited, Ok(Ok(_))) {
                let _ = d.child.start_kill();
                let _ = d.child.wait().await;
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
            terminate(d.pid);
        }
        let deadline = Instant::now() + DROP_GRACE;
        while Instant::now() < deadline
            && self
                .daemons
                .iter_mut()
                .any(|d| matches!(d.child.try_wait(), Ok(None)))
        {
            std::thread::sleep(POLL);
        }
        for d in &mut self.daemons {
            if matches!(d.child.try_wait(), Ok(None)) {
                let _ = d.child.start_kill();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline
            && self
                .daemons
                .iter_mut()
                .any(|d| matches!(d.child.try_wait(), Ok(None)))
        {
            std::thread::sleep(POLL);
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
        .child
        .try_wait()
        .map_err(|e| DemoError::setup(format!("check on {}", d.name), e))?;
    Ok(status.map(|s| s.to_string()))
}

/// Waits for `marker` followed by an address in `d`'s log.
async fn wait_for_addr(d: &mut Daemon, marker: &str) -> Result<SocketAddr, Error> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = tokio::fs::read_to_string(&d.log).await.unwrap_or_default();
        if let Some(addr) = find_addr(&text, marker) {
            return Ok(addr);
        }
        if let Some(status) = exited(d)? {
            return Err(DemoError::DaemonExited {
                name: d.name.clone(),
                status,
                during: "before it was listening",
            }
            .into());
        }
        if Instant::now() >= deadline {
            return Err(DemoError::DaemonSilent {
                name: d.name.clone(),
                after: START_TIMEOUT,
            }
            .into());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The address after the first `marker` in a log, e.g.
/// `grpc listening addr=127.0.0.1:7000`.
pub fn find_addr(log: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &log[log.find(marker)? + marker.len()..];
    let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
    addr.parse().ok()
}

/// SIGTERM to `pid` (a child not yet reaped, so the pid is still ours).
fn terminate(pid: u32) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

/// Asks the kernel to SIGTERM the child when keelctl's thread that spawned
/// it dies (keelctl spawns from the thread that runs `block_on`, which lives
/// as long as the process). Covers a SIGKILLed keelctl, which no guard can.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    let parent = i32::try_from(std::process::id()).unwrap_or_default();
    // SAFETY: the closure runs in the forked child before exec; it only makes
    // two system calls (prctl, getppid) and builds an io::Error from an errno
    // without allocating, all async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))?;
            // keelctl may have died between fork and prctl.
            if rustix::process::Pid::as_raw(rustix::process::getppid()) != parent {
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
}

#[cfg(test)]
#[path = "cluster_tests.rs"]
mod tests;
