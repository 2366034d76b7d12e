//! Harness for Keel's integration tests: starts the real `keel-master` and
//! `keel-chunkserver` binaries as separate processes on loopback port 0, each
//! test in its own temp dir, and always cleans its children up.
//!
//! Daemons log one line containing `grpc listening addr=HOST:PORT` (and
//! masters, whose names start with `master`, `http listening addr=HOST:PORT`)
//! once bound, or with `--log-format json` that message with an `addr` field;
//! the harness reads it from the daemon's log file. Logs are kept per daemon and their tails are
//! printed when a test panics.
//!
//! Binaries of other packages are not in `CARGO_BIN_EXE_*`: they are looked up
//! next to the test executable (`target/<profile>/`), or in `KEEL_BIN_DIR`.
//! The test command builds them first (`cargo build --bins`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_proto::v1::chunk_server_client::ChunkServerClient;
use keel_proto::v1::master_client::MasterClient;
use tonic::transport::Channel;

pub mod bench;
pub mod certs;
pub mod chunks;
pub mod cs;
pub mod faults;
pub mod ha;
pub mod load;
pub mod master;

/// Directory holding the workspace's binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KEEL_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// Path of the binary `name`, with a clear panic when it was not built.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --bins` first (or set KEEL_BIN_DIR)",
        path.display()
    );
    path
}

/// Polls `cond` every 50 ms until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut cond: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One running daemon process.
pub struct Daemon {
    /// Short name, e.g. `master` or `cs1`.
    pub name: String,
    bin: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// gRPC address it bound.
    pub addr: SocketAddr,
    /// HTTP address (the master's, or a chunk server's started with
    /// `--http-listen`).
    pub http_addr: Option<SocketAddr>,
    /// With `--stdio`: the child's stdin, for JSON-lines requests.
    stdin: Option<std::process::ChildStdin>,
    /// With `--stdio`: lines the child wrote to stdout.
    stdout_lines: Option<std::sync::mpsc::Receiver<String>>,
}

impl Daemon {
    /// Starts `bin` with `args`, logging to `log`, and waits for its listening line.
    pub fn start(
        name: &str,
        bin: PathBuf,
        args: Vec<String>,
        envs: Vec<(String, String)>,
        log: PathBuf,
    ) -> Result<Self> {
        let mut d = Daemon {
            name: name.to_owned(),
            bin,
            args,
            envs,
            log,
            child: None,
            addr: "0.0.0.0:0".parse()?,
            http_addr: None,
            stdin: None,
            stdout_lines: None,
        };
        d.spawn()?;
        Ok(d)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let offset = log.metadata()?.len();
        let stdio = self.args.iter().any(|a| a == "--stdio");
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.args)
            .stdin(if stdio { Stdio::piped() } else { Stdio::null() })
            .stdout(if stdio {
                Stdio::piped()
            } else {
                Stdio::from(log.try_clone()?)
            })
            .stderr(log)
            .env(
                "RUST_LOG",
                std::env::var("KEEL_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("KEEL_MASTER");
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {}", self.bin.display()))?;
        if stdio {
            self.stdin = child.stdin.take();
            self.stdout_lines = child.stdout.take().map(read_lines);
        }
        self.child = Some(child);
        self.addr = self.wait_for_line("grpc listening addr=", offset)?;
        if self.name.starts_with("master") || self.args.iter().any(|a| a == "--http-listen") {
            self.http_addr = Some(self.wait_for_line("http listening addr=", offset)?);
        }
        Ok(())
    }

    fn wait_for_line(&mut self, marker: &str, offset: u64) -> Result<SocketAddr> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let text = text.get(offset as usize..).unwrap_or("");
            if let Some(pos) = text.find(marker) {
                let rest = &text[pos + marker.len()..];
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                return addr
                    .parse()
                    .with_context(|| format!("bad address {addr:?} in {} log", self.name));
            }
            if let Some(addr) = json_addr(text, marker) {
                return addr
                    .parse()
                    .with_context(|| format!("bad address {addr:?} in {} log", self.name));
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "{} exited with {status} before listening; log:\n{}",
                    self.name,
                    tail(&self.log, 30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not report `{marker}` in 20 s; log:\n{}",
                    self.name,
                    tail(&self.log, 30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// With `--stdio`: writes one line to the child's stdin.
    pub fn send_line(&mut self, line: &str) -> Result<()> {
        use std::io::Write;
        let Some(stdin) = self.stdin.as_mut() else {
            bail!("{} was not started with --stdio", self.name)
        };
        writeln!(stdin, "{line}")?;
        stdin.flush()?;
        Ok(())
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
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `http://ADDR` for gRPC clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Process id of the running child.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then SIGKILL after 10 s.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the same command again on the same address.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.rebind_same_port();
        self.spawn()
    }

    /// Starts again after a [`Daemon::kill9`] or [`Daemon::stop`].
    pub fn start_again(&mut self) -> Result<()> {
        assert!(self.child.is_none(), "{} is still running", self.name);
        self.rebind_same_port();
        self.spawn()
    }

    fn rebind_same_port(&mut self) {
        let listen = self.addr.to_string();
        if let Some(i) = self.args.iter().position(|a| a == "--listen") {
            self.args[i + 1] = listen;
        }
        if let (Some(h), Some(i)) = (
            self.http_addr,
            self.args.iter().position(|a| a == "--http-listen"),
        ) {
            self.args[i + 1] = h.to_string();
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Forwards each line of `out` to a channel from a reader thread, so tests
/// can wait for a line with a timeout.
fn read_lines(out: std::process::ChildStdout) -> std::sync::mpsc::Receiver<String> {
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

/// Last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Options for a chunk server started by [`Cluster::add_chunkserver`].
#[derive(Clone, Debug)]
pub struct CsOpts {
    /// `--capacity`.
    pub capacity: String,
    /// `--rack`.
    pub rack: Option<String>,
    /// `--migrate-bandwidth`.
    pub bandwidth: Option<String>,
    /// Whether to point `--master` at the cluster's master.
    pub with_master: bool,
    /// Extra flags.
    pub extra: Vec<String>,
}

impl Default for CsOpts {
    fn default() -> Self {
        CsOpts {
            capacity: "1GiB".into(),
            rack: None,
            bandwidth: None,
            with_master: true,
            extra: vec![],
        }
    }
}

/// A master and chunk servers in one temp dir.
pub struct Cluster {
    /// The master, when started.
    pub master: Option<Daemon>,
    /// Chunk servers by id.
    pub chunkservers: BTreeMap<String, Daemon>,
    /// Extra environment for every daemon.
    pub envs: Vec<(String, String)>,
    /// Root of every data dir and log. Declared last so it is removed after
    /// the daemons (fields drop in order) and no daemon sees its dir vanish.
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// An empty cluster directory.
    pub fn new() -> Result<Self> {
        Ok(Cluster {
            dir: tempfile::Builder::new().prefix("keel-test-").tempdir()?,
            master: None,
            chunkservers: BTreeMap::new(),
            envs: vec![],
        })
    }

    /// Starts the master with test-friendly timings plus `extra` flags.
    pub fn start_master(&mut self, extra: &[&str]) -> Result<&mut Daemon> {
        let mut args: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--heartbeat-timeout",
            "3s",
            "--safe-mode",
            "0s",
            "--balance-interval",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = self.dir.path().join("master.log");
        let d = Daemon::start("master", bin("keel-master"), args, self.envs.clone(), log)?;
        Ok(self.master.insert(d))
    }

    /// Master gRPC URL.
    pub fn master_url(&self) -> String {
        self.master.as_ref().expect("master started").url()
    }

    /// Data dir of chunk server `id`.
    pub fn data_dir(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("data-{id}"))
    }

    /// Starts chunk server `id`.
    pub fn add_chunkserver(&mut self, id: &str, opts: CsOpts) -> Result<&mut Daemon> {
        let data = self.data_dir(id);
        let mut args: Vec<String> = vec![
            "--id".into(),
            id.into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--capacity".into(),
            opts.capacity,
            "--heartbeat-interval".into(),
            "300ms".into(),
        ];
        if opts.with_master {
            args.extend(["--master".into(), self.master_url()]);
        }
        if let Some(r) = opts.rack {
            args.extend(["--rack".into(), r]);
        }
        if let Some(b) = opts.bandwidth {
            args.extend(["--migrate-bandwidth".into(), b]);
        }
        args.extend(opts.extra);
        let log = self.dir.path().join(format!("{id}.log"));
        let d = Daemon::start(id, bin("keel-chunkserver"), args, self.envs.clone(), log)?;
        self.chunkservers.insert(id.to_owned(), d);
        Ok(self.chunkservers.get_mut(id).expect("just inserted"))
    }

    /// Chunk server `id`.
    pub fn cs(&mut self, id: &str) -> &mut Daemon {
        self.chunkservers
            .get_mut(id)
            .unwrap_or_else(|| panic!("no chunk server {id}"))
    }

    /// A gRPC client of the master.
    pub async fn master_client(&self) -> Result<MasterClient<Channel>> {
        master_client(&self.master_url()).await
    }

    /// A gRPC client of chunk server `id`.
    pub async fn cs_client(&self, id: &str) -> Result<ChunkServerClient<Channel>> {
        chunkserver_client(&self.chunkservers[id].url()).await
    }

    /// Waits until the master lists `n` alive servers.
    pub async fn wait_alive(&self, n: usize) -> Result<()> {
        let url = self.master_url();
        wait_until(
            &format!("{n} alive chunk servers"),
            Duration::from_secs(20),
            || {
                let url = url.clone();
                async move {
                    let Ok(mut m) = master_client(&url).await else {
                        return false;
                    };
                    let Ok(r) = m.list_servers(keel_proto::v1::ListServersRequest {}).await else {
                        return false;
                    };
                    r.into_inner()
                        .servers
                        .iter()
                        .filter(|s| s.state == keel_proto::v1::ServerState::Alive as i32)
                        .count()
                        == n
                }
            },
        )
        .await
    }

    /// Runs `keelctl` against this cluster's master and returns (status, stdout, stderr).
    pub fn keelctl(&self, args: &[&str]) -> Result<(i32, String, String)> {
        let out = Command::new(bin("keelctl"))
            .args(args)
            .env("KEEL_MASTER", self.master_url())
            .stdin(Stdio::null())
            .output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let all = self.master.iter().chain(self.chunkservers.values());
            for d in all {
                eprintln!("----- {} log (tail) -----\n{}", d.name, tail(&d.log, 40));
            }
        }
        // Daemons stop in their own Drop.
    }
}

/// Connects to a master with Keel's message limits.
pub async fn master_client(url: &str) -> Result<MasterClient<Channel>> {
    let ch = Channel::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    Ok(MasterClient::new(ch)
        .max_decoding_message_size(keel_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(keel_proto::MAX_MESSAGE_BYTES))
}

/// Connects to a chunk server with Keel's message limits.
pub async fn chunkserver_client(url: &str) -> Result<ChunkServerClient<Channel>> {
    let ch = Channel::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    Ok(ChunkServerClient::new(ch)
        .max_decoding_message_size(keel_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(keel_proto::MAX_MESSAGE_BYTES))
}

/// The `addr` of the first `--log-format json` line whose message is
/// `marker` without its ` addr=` tail (e.g. `grpc listening`).
fn json_addr(text: &str, marker: &str) -> Option<String> {
    let message = marker.trim_end_matches("addr=").trim_end();
    text.lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == message)
        .and_then(|v| v["addr"].as_str().map(str::to_owned))
}
