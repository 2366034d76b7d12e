//! `keelctl demo`, the one-command local cluster, run as the built binary
//! with a small data set: with `--exit-when-balanced` it shows the before
//! and after tables and the balanced line, verifies every chunk, exits 0
//! and leaves no daemon and no temp dir behind; without it, it keeps the
//! cluster running until SIGINT, then stops within seconds, again leaving
//! nothing behind. The data flows through real processes and sockets.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_tests::bin;

/// The whole demo must end within this, or it is killed and the test fails.
const HARD_LIMIT: Duration = Duration::from_secs(150);
/// After SIGINT, the demo and its daemons must be gone within this.
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// A running `keelctl demo`: stdout lines arrive on a channel, stderr goes
/// to a file. Dropping it interrupts the demo (which stops its daemons),
/// then kills it.
struct Demo {
    child: Option<Child>,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Demo {
    /// Starts the demo with a small, quick data set on any free ports.
    fn start(extra: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let stderr = dir.path().join("stderr");
        let mut child = Command::new(bin("keelctl"))
            .args(["demo", "--chunks", "24", "--chunk-size", "1MiB"])
            .args([
                "--master-listen",
                "127.0.0.1:0",
                "--http-listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env_remove("KEEL_MASTER")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr)?)
            .spawn()
            .context("starting keelctl demo")?;
        let out = child.stdout.take().context("stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Demo {
            child: Some(child),
            lines,
            seen: Vec::new(),
            stderr,
            _dir: dir,
        })
    }

    /// Collects stdout until a line contains `needle`.
    fn wait_for_line(&mut self, needle: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!("no {needle:?} within {limit:?}\n{}", self.output())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("demo ended before {needle:?}\n{}", self.output())
                }
            }
        }
    }

    /// Waits for the demo to exit on its own, collecting the rest of stdout.
    fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().context("already reaped")?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(1)) {
                    self.seen.push(line);
                }
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("demo still running after {limit:?}\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stdout(&self) -> String {
        self.seen.join("\n")
    }

    fn output(&self) -> String {
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        format!("--- stdout ---\n{}\n--- stderr ---\n{err}", self.stdout())
    }

    /// Process ids from the `  NAME  pid N  grpc ...` lines.
    fn pids(&self) -> Vec<i32> {
        self.seen
            .iter()
            .filter_map(|l| l.split_whitespace().skip_while(|w| *w != "pid").nth(1))
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// The temp dir from `(data and logs in DIR)`.
    fn data_dir(&self) -> Option<PathBuf> {
        let line = self.seen.iter().find(|l| l.contains("data and logs in "))?;
        let rest = line.split("data and logs in ").nth(1)?;
        Some(PathBuf::from(rest.split(')').next()?))
    }

    fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
            #[allow(unsafe_code)]
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.output());
        }
        self.signal(libc::SIGINT);
        if let Some(mut c) = self.child.take() {
            let deadline = Instant::now() + STOP_LIMIT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether `pid` is a live process (a zombie counts as gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

/// Asserts the six daemons were reported and none is left.
fn assert_cleaned_up(demo: &Demo) {
    let pids = demo.pids();
    assert_eq!(
        pids.len(),
        6,
        "master + cs1..cs5 pids: {pids:?}\n{}",
        demo.output()
    );
    let left: Vec<i32> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "daemons still running: {left:?}");
    let dir = demo.data_dir().expect("the demo names its temp dir");
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn exit_when_balanced_verifies_and_cleans_up() -> Result<()> {
    let mut demo = Demo::start(&["--exit-when-balanced"])?;
    let status = demo.wait_exit(HARD_LIMIT)?;
    let out = demo.stdout();
    assert!(status.success(), "exit {status}\n{}", demo.output());
    for needle in [
        "before:",
        "adding cs5",
        "after:",
        "balanced: every server within ±10 points of the average",
        "verified 24 chunks",
        "stopped the cluster",
    ] {
        assert!(
            out.contains(needle),
            "missing {needle:?}\n{}",
            demo.output()
        );
    }
    let tables = out.matches("ID   ADDRESS").count();
    assert_eq!(tables, 2, "before and after tables\n{out}");
    assert!(out.contains("overloaded cs1, cs2"), "skewed before\n{out}");
    assert_cleaned_up(&demo);
    Ok(())
}

#[test]
fn sigint_stops_the_running_cluster() -> Result<()> {
    let mut demo = Demo::start(&[])?;
    demo.wait_for_line("cluster is running", HARD_LIMIT)?;
    demo.wait_for_line("press Ctrl-C", Duration::from_secs(5))?;
    let pids = demo.pids();
    assert_eq!(pids.len(), 6, "{pids:?}");
    assert!(
        pids.iter().all(|p| alive(*p)),
        "all daemons up while running"
    );
    let sent = Instant::now();
    demo.signal(libc::SIGINT);
    let status = demo.wait_exit(STOP_LIMIT)?;
    assert!(sent.elapsed() < STOP_LIMIT);
    assert!(
        status.success(),
        "Ctrl-C on a running demo is a clean stop: {status}"
    );
    assert_cleaned_up(&demo);
    Ok(())
}
