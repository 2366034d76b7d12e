//! The two baselines a Keel copy is compared with, on the same file and disk:
//! a plain TCP transfer on loopback into a file that is then fsynced, and an
//! rsync daemon on loopback pulled from by the `rsync` client.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_launch::{Process, Spec};
use keel_tests::wait_until;

use crate::sample::cpu_times;

/// What one plain TCP transfer took.
#[derive(Debug, Clone, Copy)]
pub struct TcpCost {
    /// From connecting until the receiver's fsync returned.
    pub total: Duration,
    /// The receiver's fsync alone.
    pub fsync: Duration,
    /// CPU seconds of sender and receiver together (this process).
    pub cpu: f64,
}

/// Thread names of the plain TCP baseline's sender and receiver.
const TCP_SENDER: &str = "tcp-sender";
const TCP_RECEIVER: &str = "tcp-receiver";

/// Sends `src` over a loopback TCP connection into a new file `dest`, in
/// reads and writes of `buf` bytes, and fsyncs `dest`.
pub fn tcp_copy(src: &Path, dest: &Path, buf: usize) -> Result<TcpCost> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let dest = dest.to_path_buf();
    let cpu = cpu_times("self")?.own;
    let start = Instant::now();
    // Named threads, so a profile of this process can pick the baseline's
    // samples out (`scripts/bench-copy.sh --profile`).
    let receiver = std::thread::Builder::new()
        .name(TCP_RECEIVER.into())
        .spawn(move || receive(&listener, &dest, buf))?;
    let src = src.to_path_buf();
    std::thread::Builder::new()
        .name(TCP_SENDER.into())
        .spawn(move || send(&src, addr, buf))?
        .join()
        .map_err(|_| anyhow::anyhow!("TCP sender panicked"))??;
    let fsync = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("TCP receiver panicked"))??;
    let total = start.elapsed();
    Ok(TcpCost {
        total,
        fsync,
        cpu: cpu_times("self")?.own - cpu,
    })
}

fn send(src: &Path, addr: SocketAddr, buf: usize) -> Result<()> {
    let mut file = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut sock = TcpStream::connect(addr)?;
    sock.set_nodelay(true)?;
    let mut b = vec![0u8; buf];
    loop {
        let n = fill(&mut file, &mut b)?;
        if n == 0 {
            break;
        }
        sock.write_all(&b[..n])?;
    }
    sock.shutdown(std::net::Shutdown::Write)?;
    Ok(())
}

/// Receives into `dest` and fsyncs it; returns how long the fsync took.
fn receive(listener: &TcpListener, dest: &Path, buf: usize) -> Result<Duration> {
    let (mut sock, _) = listener.accept()?;
    let mut file = File::create(dest).with_context(|| format!("creating {}", dest.display()))?;
    let mut b = vec![0u8; buf];
    loop {
        let n = fill(&mut sock, &mut b)?;
        if n == 0 {
            break;
        }
        file.write_all(&b[..n])?;
    }
    let start = Instant::now();
    file.sync_all()?;
    Ok(start.elapsed())
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(n)
}

/// What the installed `rsync` is and can do.
#[derive(Debug, Clone)]
pub struct RsyncInfo {
    /// First line of `rsync --version`.
    pub version: String,
    /// Whether the client accepts `--fsync` (rsync 3.2.4 and later).
    pub fsync: bool,
}

/// Looks `rsync` up; `None` when it is not installed.
pub fn rsync_info() -> Option<RsyncInfo> {
    let out = Command::new("rsync").arg("--version").output().ok()?;
    let version = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let help = Command::new("rsync").arg("--help").output().ok()?;
    let fsync = String::from_utf8_lossy(&help.stdout).contains("--fsync");
    Some(RsyncInfo { version, fsync })
}

/// An `rsync --daemon --no-detach` on loopback serving one directory as
/// module `bench`; started and stopped by the launcher like Keel's daemons.
pub struct RsyncDaemon {
    /// The daemon process.
    process: Process,
    /// Port it listens on.
    port: u16,
}

impl RsyncDaemon {
    /// Serves `dir` read-only; config and log go to `work`.
    pub async fn start(dir: &Path, work: &Path) -> Result<Self> {
        let port = free_port()?;
        let conf = work.join("rsyncd.conf");
        std::fs::write(&conf, config(dir, work)?)?;
        let spec = Spec::new("rsync --daemon", "rsync", work.join("rsyncd.stderr")).args([
            "--daemon".to_owned(),
            "--no-detach".to_owned(),
            format!("--config={}", conf.display()),
            format!("--port={port}"),
            "--address=127.0.0.1".to_owned(),
        ]);
        let mut d = RsyncDaemon {
            process: Process::spawn(&spec)?,
            port,
        };
        let ready = wait_until(
            "the rsync daemon to accept",
            Duration::from_secs(10),
            || async move { TcpStream::connect(("127.0.0.1", port)).is_ok() },
        )
        .await;
        d.process.check_running()?;
        ready.with_context(|| format!("see {}", work.display()))?;
        Ok(d)
    }

    /// Pulls `name` from the module into `dest` (a new file) with
    /// `--whole-file`, plus `--fsync` when `fsync`. Returns the client's time
    /// and the CPU seconds of client and daemon together (`None` if the
    /// daemon's worker was not reaped in time to count it).
    pub async fn pull(
        &self,
        name: &str,
        dest: &Path,
        fsync: bool,
    ) -> Result<(Duration, Option<f64>)> {
        let pid = self
            .process
            .pid()
            .context("the rsync daemon is not running")?
            .to_string();
        let daemon = || cpu_times(&pid).map(|c| c.own + c.children);
        let (client0, daemon0) = (cpu_times("self")?.children, daemon()?);
        let mut cmd = tokio::process::Command::new("rsync");
        cmd.arg("--whole-file");
        if fsync {
            cmd.arg("--fsync");
        }
        cmd.arg(format!("rsync://127.0.0.1:{}/bench/{name}", self.port))
            .arg(dest)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let start = Instant::now();
        let out = cmd.output().await.context("running the rsync client")?;
        let took = start.elapsed();
        if !out.status.success() {
            bail!(
                "rsync client failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let client = cpu_times("self")?.children - client0;
        // The daemon forks a worker per connection; its time shows once the
        // daemon has reaped it.
        let reaped = wait_until(
            "the rsync daemon to reap its worker",
            Duration::from_secs(2),
            || {
                let d = daemon();
                async move { d.is_ok_and(|d| d > daemon0) }
            },
        )
        .await;
        let cpu = reaped
            .ok()
            .and_then(|()| Some(client + daemon().ok()? - daemon0));
        Ok((took, cpu))
    }
}

/// An `rsyncd.conf` serving `dir` as `bench` as the current user (a daemon
/// started by root would otherwise switch to `nobody`).
fn config(dir: &Path, work: &Path) -> Result<String> {
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata(work)?;
    let path = |p: PathBuf| p.display().to_string();
    Ok(format!(
        "use chroot = no\nuid = {}\ngid = {}\npid file = {}\nlog file = {}\n\n\
         [bench]\npath = {}\nread only = yes\n",
        me.uid(),
        me.gid(),
        path(work.join("rsyncd.pid")),
        path(work.join("rsyncd.log")),
        dir.display(),
    ))
}

/// A loopback port nothing listens on right now.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_copy_delivers_every_byte() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let (src, dest) = (dir.path().join("src"), dir.path().join("dest"));
        let data = keel_tests::chunks::pattern(7, 3 << 20 | 4321);
        std::fs::write(&src, &data)?;
        tcp_copy(&src, &dest, 1 << 20)?;
        assert_eq!(std::fs::read(&dest)?, data);
        Ok(())
    }
}
