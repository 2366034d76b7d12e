//! keelctl against stopped daemons (SIGSTOP: connections open, nothing
//! answers, the worst case for a client). `get` of a chunk on two servers
//! whose first-listed holder is stopped gives up on it after
//! `--stream-idle-timeout` and finishes from the other, with the right bytes;
//! `put` to a stopped replica fails within the idle timeout naming it; a
//! control call to a stopped master ends with a deadline error within
//! `--timeout`. Every stopped process is continued afterwards.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_tests::chunks::{pattern, write};
use keel_tests::master::{locate, locate_ordered};
use keel_tests::{Cluster, CsOpts, Daemon, bin, wait_until};
use serde_json::Value;

/// The idle timeout given to keelctl.
const IDLE: Duration = Duration::from_secs(2);

/// Process start, connects and the read from the healthy replica.
const MARGIN: Duration = Duration::from_secs(8);

/// A daemon held with SIGSTOP until dropped (then SIGCONT).
struct Stopped(i32);

impl Stopped {
    fn new(d: &Daemon) -> Result<Self> {
        let pid = d.pid().context("daemon not running")?;
        let pid = i32::try_from(pid)?;
        signal(pid, libc::SIGSTOP);
        Ok(Stopped(pid))
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) on the pid of a child this test spawned and still owns.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid, sig);
    }
}

/// A master that keeps stopped servers listed as alive (the test is about
/// the client, not the master's liveness) and two chunk servers.
async fn cluster() -> Result<Cluster> {
    let mut c = Cluster::new()?;
    c.start_master(&["--heartbeat-timeout", "60s"])?;
    for id in ["cs1", "cs2"] {
        c.add_chunkserver(id, CsOpts::default())?;
    }
    c.wait_alive(2).await?;
    Ok(c)
}

/// A keelctl that hangs is killed after this (and the test fails).
const HANG: Duration = Duration::from_secs(30);

/// Runs keelctl with `args` and returns (status, stdout, stderr, time taken).
fn timed(c: &Cluster, args: &[&str]) -> Result<(i32, String, String, Duration)> {
    use std::io::Read;
    let started = Instant::now();
    let mut child = Command::new(bin("keelctl"))
        .args(args)
        .env("KEEL_MASTER", c.master_url())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            bail!("keelctl {args:?} still running after {HANG:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let (mut out, mut err) = (String::new(), String::new());
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out)?;
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err)?;
    }
    Ok((status.code().unwrap_or(-1), out, err, took))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_moves_on_from_a_stalled_replica() -> Result<()> {
    let mut c = cluster().await?;
    let data = pattern(35, 3 << 20);
    for id in ["cs1", "cs2"] {
        write(&c.chunkservers[id].url(), "c35", &data, 2).await?;
    }
    let url = c.master_url();
    wait_until(
        "the master to list both replicas",
        Duration::from_secs(20),
        || {
            let url = url.clone();
            async move {
                locate(&url, "c35")
                    .await
                    .is_ok_and(|r| r.is_some_and(|r| r.len() == 2))
            }
        },
    )
    .await?;
    // Both are alive, so keelctl tries them in the master's order (by load,
    // then a hash of chunk and server among equals).
    let order = locate_ordered(&url, "c35").await?.context("located")?;
    let (first, second) = (order[0].0.clone(), order[1].0.clone());

    let dest = c.dir.path().join("c35.out");
    let dest_s = dest.display().to_string();
    let stopped = Stopped::new(c.cs(&first))?;
    let idle = format!("{}s", IDLE.as_secs());
    let args = [
        "--json",
        "--stream-idle-timeout",
        &idle,
        "get",
        "c35",
        &dest_s,
    ];
    let (code, out, err, took) = timed(&c, &args)?;
    drop(stopped);

    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let v: Value = serde_json::from_str(&out).with_context(|| out.clone())?;
    assert_eq!(v["server"], second.as_str(), "{out}");
    assert!(
        err.contains(&format!("chunk server {first}"))
            && err.contains("stalled: read chunk moved no bytes for 2.0s")
            && err.contains(&format!("trying {second}")),
        "{err}"
    );
    eprintln!("get with its first replica stopped took {took:?} (idle timeout {IDLE:?})");
    assert!(took >= IDLE && took < IDLE + MARGIN, "get took {took:?}");
    assert!(std::fs::read(&dest)? == data, "fetched bytes differ");
    let leftovers = std::fs::read_dir(c.dir.path())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("keelctl-"))
        .count();
    assert_eq!(leftovers, 0, "a temp file of the stalled attempt is left");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_to_a_stalled_replica_fails_in_time_naming_it() -> Result<()> {
    let mut c = cluster().await?;
    let src = c.dir.path().join("c35.in");
    std::fs::write(&src, pattern(36, 1 << 20))?;
    let src_s = src.display().to_string();
    let stopped = Stopped::new(c.cs("cs1"))?;
    let idle = format!("{}s", IDLE.as_secs());
    let args = [
        "--stream-idle-timeout",
        &idle,
        "put",
        "c36",
        &src_s,
        "--on",
        "cs1",
        "--on",
        "cs2",
    ];
    let (code, out, err, took) = timed(&c, &args)?;
    drop(stopped);

    assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
    assert!(
        err.contains("was stored on cs2 only")
            && err.contains("chunk server cs1")
            && err.contains("stalled: write chunk moved no bytes for 2.0s"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(took >= IDLE && took < IDLE + MARGIN, "put took {took:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_call_to_a_stopped_master_ends_at_its_deadline() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    let (code, _, err, _) = timed(&c, &["rebalance", "check"])?;
    if code != 0 {
        bail!("rebalance check on a running master failed: {err}");
    }
    let master = c.master.as_ref().context("master")?;
    let stopped = Stopped::new(master)?;
    for (args, op) in [
        (
            &["--timeout", "2s", "rebalance", "check"][..],
            "rebalance check",
        ),
        (&["--timeout", "2s", "servers"][..], "list servers"),
    ] {
        let (code, out, err, took) = timed(&c, args)?;
        assert_eq!(code, 1, "stdout: {out}\nstderr: {err}");
        assert!(
            err.contains(&format!(
                "did not finish {op} in time: no answer within 2s (see --timeout)"
            )),
            "{err}"
        );
        eprintln!("{op} on a stopped master ended after {took:?} (--timeout 2s)");
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_secs(6),
            "{args:?} took {took:?}"
        );
    }
    drop(stopped);
    let (code, _, err, _) = timed(&c, &["--timeout", "5s", "rebalance", "check"])?;
    assert_eq!(code, 0, "the master answers again once continued: {err}");
    Ok(())
}
