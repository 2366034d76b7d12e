//! One daemon as a child process: its output goes to a log file, its
//! readiness is read from its ready file (or judged by the caller's own
//! probe), and dropping it stops it: SIGTERM, a grace period, then SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, ExitStatus};
use std::time::{Duration, Instant};

use crate::error::LaunchError;
use crate::ready::Ready;
use crate::spec::Spec;

/// How long a stop waits after SIGTERM before SIGKILL: the daemons' own
/// shutdown deadline is 8 s.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a daemon may take to become ready, by default.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Log lines an error shows.
pub const TAIL_LINES: usize = 30;
/// Polling period while waiting on ready files and exits.
const POLL: Duration = Duration::from_millis(20);

/// A running (or stopped) daemon; dropping it stops it.
#[derive(Debug)]
pub struct Process {
    name: String,
    log: PathBuf,
    ready_file: Option<PathBuf>,
    child: Option<Child>,
}

impl Process {
    /// Starts `spec`. A ready file left by an earlier run is removed first,
    /// so only this run's can be read.
    pub fn spawn(spec: &Spec) -> Result<Self, LaunchError> {
        if let Some(ready) = &spec.ready_file {
            let _ = std::fs::remove_file(ready);
        }
        let child = spec
            .command()?
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                name: spec.name.clone(),
                program: spec.program.clone(),
                source,
            })?;
        Ok(Process {
            name: spec.name.clone(),
            log: spec.log.clone(),
            ready_file: spec.ready_file.clone(),
            child: Some(child),
        })
    }

    /// Starts `spec` and waits up to [`START_TIMEOUT`] for its ready file.
    pub fn start(spec: &Spec) -> Result<(Self, Ready), LaunchError> {
        let mut p = Process::spawn(spec)?;
        let ready = p.wait_ready(START_TIMEOUT)?;
        Ok((p, ready))
    }

    /// Blocks until the ready file appears, the child exits, or `timeout`
    /// passes.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Ready, LaunchError> {
        let path = self.ready_path()?;
        self.wait_ready_at(&path, timeout)
    }

    /// [`Process::wait_ready`] on a ready file the child was told of some
    /// other way than the spec (its environment, say).
    pub fn wait_ready_at(&mut self, path: &Path, timeout: Duration) -> Result<Ready, LaunchError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ready) = self.poll_ready(path, deadline, timeout)? {
                return Ok(ready);
            }
            std::thread::sleep(POLL);
        }
    }

    /// [`Process::wait_ready`] for async callers: sleeps without blocking
    /// the runtime, so the caller can select on signals meanwhile.
    pub async fn wait_ready_async(&mut self, timeout: Duration) -> Result<Ready, LaunchError> {
        let path = self.ready_path()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(ready) = self.poll_ready(&path, deadline, timeout)? {
                return Ok(ready);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The ready file the spec named.
    fn ready_path(&self) -> Result<PathBuf, LaunchError> {
        self.ready_file
            .clone()
            .ok_or_else(|| LaunchError::NoReadyFile {
                name: self.name.clone(),
            })
    }

    /// One look: the ready file if written, an error if the child exited or
    /// the deadline passed, else `None`.
    fn poll_ready(
        &mut self,
        path: &Path,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Option<Ready>, LaunchError> {
        match Ready::read(path) {
            Ok(Some(ready)) => return Ok(Some(ready)),
            Ok(None) => {}
            Err(source) => {
                return Err(LaunchError::Ready {
                    name: self.name.clone(),
                    source,
                    log: self.tail(TAIL_LINES),
                });
            }
        }
        self.check_running()?;
        if Instant::now() >= deadline {
            return Err(LaunchError::Timeout {
                name: self.name.clone(),
                after: timeout,
                log: self.tail(TAIL_LINES),
            });
        }
        Ok(None)
    }

    /// `Ok` while the child runs; [`LaunchError::Exited`] (with the log's
    /// tail) once it has ended. For callers with their own readiness probe.
    pub fn check_running(&mut self) -> Result<(), LaunchError> {
        match self.try_exit() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(LaunchError::Exited {
                name: self.name.clone(),
                status,
                log: self.tail(TAIL_LINES),
            }),
            Err(source) => Err(LaunchError::Wait {
                name: self.name.clone(),
                source,
            }),
        }
    }

    /// A [`LaunchError::Timeout`] for a caller whose own probe gave up
    /// after `after`.
    pub fn timed_out(&self, after: Duration) -> LaunchError {
        LaunchError::Timeout {
            name: self.name.clone(),
            after,
            log: self.tail(TAIL_LINES),
        }
    }

    /// How the child ended, once it has (and reaps it); `None` while it runs.
    /// After the child is reaped its pid is no longer ours: no signal is
    /// sent to it again.
    pub fn try_exit(&mut self) -> std::io::Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = child.try_wait()?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_exit(), Ok(None)) && self.child.is_some()
    }

    /// The child's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The daemon's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last `n` lines of the log.
    pub fn tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    /// With [`Spec::piped_stdio`]: the child's stdin, once.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.as_mut().and_then(|c| c.stdin.take())
    }

    /// With [`Spec::piped_stdio`]: the child's stdout, once.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.as_mut().and_then(|c| c.stdout.take())
    }

    /// Sends SIGTERM and returns at once.
    pub fn terminate(&self) {
        if let Some(pid) = self.pid() {
            crate::signal::terminate(pid);
        }
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.try_exit() {
                return Some(status);
            }
            if self.child.is_none() || Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// [`Process::wait_exit`] for async callers, until `deadline`.
    pub async fn wait_exit_async(&mut self, deadline: Instant) -> Option<ExitStatus> {
        loop {
            if let Ok(Some(status)) = self.try_exit() {
                return Some(status);
            }
            if self.child.is_none() || Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGKILL, no chance to clean up; waits for the child to go.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`. Returns
    /// whether it had to be killed.
    pub fn stop(&mut self, grace: Duration) -> bool {
        if self.child.is_none() {
            return false;
        }
        self.terminate();
        if self.wait_exit(grace).is_some() {
            return false;
        }
        let killed = self.child.is_some();
        self.kill();
        killed
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop(STOP_GRACE);
    }
}

/// The last `n` lines of the file at `path` (empty when unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
#[path = "process_tests.rs"]
mod tests;
