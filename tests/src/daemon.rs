//! One Keel daemon of a test, started through the launcher
//! ([`keel_launch`]): it learns its addresses from the daemon's ready file,
//! restarts on the same ports, and with `--stdio` speaks JSON lines over
//! the child's stdin and stdout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ChildStdin;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use keel_launch::{Process, Spec};

/// One running daemon process.
pub struct Daemon {
    /// Short name, e.g. `master` or `cs1`.
    pub name: String,
    spec: Spec,
    process: Process,
    /// gRPC address it bound.
    pub addr: SocketAddr,
    /// HTTP address (the master's, or a chunk server's started with
    /// `--http-listen`).
    pub http_addr: Option<SocketAddr>,
    /// With `--stdio`: the child's stdin, for JSON-lines requests.
    stdin: Option<ChildStdin>,
    /// With `--stdio`: lines the child wrote to stdout.
    stdout_lines: Option<Receiver<String>>,
}

impl Daemon {
    /// Starts `bin` with `args` and `envs`, logging to `log`, and waits for
    /// its ready file (an error, with the log's tail, if it exits first or
    /// stays silent for 20 s).
    pub fn start(
        name: &str,
        bin: PathBuf,
        args: Vec<String>,
        envs: Vec<(String, String)>,
        log: PathBuf,
    ) -> Result<Self> {
        let stdio = args.iter().any(|a| a == "--stdio");
        let mut spec = Spec::new(name, bin, log)
            .args(args)
            .keel_daemon()
            .env(
                "RUST_LOG",
                std::env::var("KEEL_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("KEEL_MASTER");
        for (k, v) in envs {
            spec = spec.env(k, v);
        }
        if stdio {
            spec = spec.piped_stdio();
        }
        let (process, ready) = Process::start(&spec)?;
        let mut d = Daemon {
            name: name.to_owned(),
            spec,
            process,
            addr: ready.grpc,
            http_addr: ready.http,
            stdin: None,
            stdout_lines: None,
        };
        d.take_pipes();
        Ok(d)
    }

    fn spawn(&mut self) -> Result<()> {
        let (process, ready) = Process::start(&self.spec)?;
        self.process = process;
        (self.addr, self.http_addr) = (ready.grpc, ready.http);
        self.take_pipes();
        Ok(())
    }

    fn take_pipes(&mut self) {
        self.stdin = self.process.take_stdin();
        self.stdout_lines = self.process.take_stdout().map(read_lines);
    }

    /// With `--stdio`: writes one line to the child's stdin.
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        self.send_bytes(format!("{line}\n").as_bytes())
    }

    /// With `--stdio`: writes raw bytes to the child's stdin, as they are
    /// (no newline added; they need not be UTF-8).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        use std::io::Write;
        let Some(stdin) = self.stdin.as_mut() else {
            bail!("{} was not started with --stdio", self.name)
        };
        stdin.write_all(bytes)?;
        stdin.flush()?;
        Ok(())
    }

    /// With `--stdio`: the next line the child wrote to stdout, or an error
    /// after `timeout`.
    pub fn recv_line(&self, timeout: Duration) -> Result<String> {
        let Some(rx) = self.stdout_lines.as_ref() else {
            bail!("{} was not started with --stdio", self.name)
        };
        rx.recv_timeout(timeout)
            .with_context(|| format!("no stdout line from {} within {timeout:?}", self.name))
    }

    /// With `--stdio`: closes the child's stdin (EOF).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits up to `timeout` for the child to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.process.wait_exit(timeout)
    }

    /// `http://ADDR` for gRPC clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Process id of the running child.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        self.process.kill();
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        self.process.stop(keel_launch::process::STOP_GRACE);
    }

    /// Starts the same command again on the same address.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.rebind_same_port();
        self.spawn()
    }

    /// Starts again after a [`Daemon::kill9`] or [`Daemon::stop`].
    pub fn start_again(&mut self) -> Result<()> {
        assert!(self.pid().is_none(), "{} is still running", self.name);
        self.rebind_same_port();
        self.spawn()
    }

    fn rebind_same_port(&mut self) {
        self.spec.set_flag("--listen", &self.addr.to_string());
        if let Some(h) = self.http_addr {
            self.spec.set_flag("--http-listen", &h.to_string());
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The last `n` lines of the log.
    pub fn tail(&self, n: usize) -> String {
        self.process.tail(n)
    }
}

/// Forwards each line of `out` to a channel from a reader thread, so tests
/// can wait for a line with a timeout.
fn read_lines(out: std::process::ChildStdout) -> Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
