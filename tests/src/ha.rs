//! Several masters for tests: a real etcd (`/usr/bin/etcd`, or
//! `KEEL_ETCD_BIN`) on free loopback ports, masters started with `--etcd`,
//! and chunk servers that heartbeat to all of them.
//!
//! etcd is started by the same launcher as Keel's daemons
//! ([`keel_launch`]), with its own data dir and log under the cluster's
//! temp dir; it is ready once it answers `/health`, and stopped when
//! dropped, like every daemon.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_launch::{Process, Spec};
use keel_proto::v1::{ListServersRequest, ListServersResponse};

use crate::cluster::{MASTER_LOOPBACK, MASTER_TIMINGS};
use crate::faults::quick_master;
use crate::faults::relay::Relay;
use crate::master::http_get;
use crate::{Cluster, CsOpts, Daemon, bin, wait_until};

/// Path of the etcd binary.
pub fn etcd_bin() -> PathBuf {
    std::env::var_os("KEEL_ETCD_BIN").map_or_else(|| PathBuf::from("/usr/bin/etcd"), PathBuf::from)
}

/// A port nobody listens on right now.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// How long etcd may take to answer `/health` after it starts.
const ETCD_START: Duration = Duration::from_secs(20);

/// A running etcd.
pub struct Etcd {
    spec: Spec,
    process: Option<Process>,
    /// Client address (`--listen-client-urls`).
    pub addr: SocketAddr,
    /// Where `/health` is served in plaintext (the client address, or
    /// `--listen-metrics-urls` when clients speak TLS).
    health: SocketAddr,
    /// Clients speak TLS.
    tls: bool,
}

impl Etcd {
    /// Starts a one-member etcd with its data in `dir` and waits until it
    /// answers `/health`.
    pub async fn start(dir: &std::path::Path) -> Result<Self> {
        Etcd::start_with(dir, None).await
    }

    /// The same; with `tls` (a dir made by `scripts/dev-certs.sh`), clients
    /// must speak TLS and present a certificate from its CA.
    pub async fn start_with(dir: &std::path::Path, tls: Option<&std::path::Path>) -> Result<Self> {
        let (client, peer) = (free_port()?, free_port()?);
        let scheme = if tls.is_some() { "https" } else { "http" };
        let client_url = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let data = dir.join("etcd-data");
        let args = vec![
            "--name".into(),
            "default".into(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen-client-urls".into(),
            client_url.clone(),
            "--advertise-client-urls".into(),
            client_url,
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url.clone(),
            "--initial-cluster".into(),
            format!("default={peer_url}"),
        ];
        let addr: SocketAddr = format!("127.0.0.1:{client}").parse()?;
        let mut args = args;
        let mut health = addr;
        if let Some(certs) = tls {
            let metrics = free_port()?;
            health = format!("127.0.0.1:{metrics}").parse()?;
            let p = |f: &str| certs.join(f).display().to_string();
            args.extend([
                "--cert-file".into(),
                p("node.crt"),
                "--key-file".into(),
                p("node.key"),
                "--trusted-ca-file".into(),
                p("ca.crt"),
                "--client-cert-auth".into(),
                "--listen-metrics-urls".into(),
                format!("http://{health}"),
            ]);
        }
        let mut e = Etcd {
            spec: Spec::new("etcd", etcd_bin(), dir.join("etcd.log")).args(args),
            process: None,
            addr,
            health,
            tls: tls.is_some(),
        };
        e.spawn().await?;
        Ok(e)
    }

    /// Starts etcd and waits until `/health` says so; an exit or a timeout
    /// is an error carrying etcd's log tail.
    async fn spawn(&mut self) -> Result<()> {
        let process = Process::spawn(&self.spec)
            .context("starting etcd (install etcd-server, or set KEEL_ETCD_BIN)")?;
        let process = self.process.insert(process);
        let deadline = Instant::now() + ETCD_START;
        loop {
            let healthy = matches!(
                http_get(self.health, "/health").await,
                Ok((200, body)) if body.contains("true")
            );
            if healthy {
                return Ok(());
            }
            process.check_running()?;
            if Instant::now() >= deadline {
                return Err(process.timed_out(ETCD_START).into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last `n` lines of etcd's log.
    pub fn tail(&self, n: usize) -> String {
        self.process
            .as_ref()
            .map_or_else(String::new, |p| p.tail(n))
    }

    /// `http://ADDR` (`https://` with TLS) for `--etcd`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Turns on etcd's authentication with user `root` and `password`,
    /// through its JSON gateway (plaintext etcd only).
    pub async fn enable_auth(&self, password: &str) -> Result<()> {
        let user = format!(r#"{{"name":"root","password":"{password}"}}"#);
        for (path, body) in [
            ("/v3/auth/user/add", user.as_str()),
            ("/v3/auth/role/add", r#"{"name":"root"}"#),
            ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
            ("/v3/auth/enable", "{}"),
        ] {
            let (code, text) = crate::master::http_post(self.addr, path, body).await?;
            if code != 200 {
                bail!("etcd {path}: {code} {text}");
            }
        }
        Ok(())
    }

    /// Process id of the running etcd.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(Process::pid)
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(p) = self.process.as_mut() {
            p.kill();
        }
    }

    /// Starts it again on the same ports and data after [`Etcd::kill9`].
    pub async fn start_again(&mut self) -> Result<()> {
        assert!(self.pid().is_none(), "etcd is still running");
        self.spawn().await
    }
}

/// Sends `sig` to process `pid` (SIGSTOP, SIGCONT in the tests).
pub fn signal_pid(pid: u32, sig: i32) {
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// A process held with SIGSTOP until this is dropped (then SIGCONT), so a
/// test that fails mid-pause never leaves a frozen child behind.
#[derive(Debug)]
pub struct Frozen(u32);

impl Frozen {
    /// Freezes process `pid`.
    pub fn new(pid: u32) -> Self {
        signal_pid(pid, libc::SIGSTOP);
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        signal_pid(self.0, libc::SIGCONT);
    }
}

/// How long a probe of a master may take: a frozen (SIGSTOP) master
/// accepts connections and never answers.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// `ListServers` of the master at `url`, or `None` when it does not answer
/// within [`PROBE_TIMEOUT`].
pub async fn list_servers(url: &str) -> Option<ListServersResponse> {
    let ask = async {
        let mut m = quick_master(url).await.ok()?;
        m.list_servers(ListServersRequest {}).await.ok()
    };
    tokio::time::timeout(PROBE_TIMEOUT, ask)
        .await
        .ok()
        .flatten()
        .map(tonic::Response::into_inner)
}

/// Masters sharing one etcd, chunk servers heartbeating to all of them.
pub struct HaCluster {
    /// The masters, `master-a`, `master-b`, …
    pub masters: Vec<Daemon>,
    /// Chunk servers (its `master` is never set); declared before etcd and
    /// the dir so daemons stop first.
    pub cluster: Cluster,
    /// The election's etcd.
    pub etcd: Etcd,
    /// With [`HaCluster::start_fronted`]: each master's relay (its address,
    /// and the relay while open), through which chunk servers reach it.
    fronts: Vec<(SocketAddr, Option<Relay>)>,
}

/// Flags every test master of several takes beside the harness's usual
/// timings ([`MASTER_TIMINGS`]): a 2 s lease and fast upkeep.
pub const MASTER_FLAGS: [&str; 4] = ["--leader-lease", "2s", "--maintenance-interval", "200ms"];

impl HaCluster {
    /// etcd and `n` masters with [`MASTER_TIMINGS`], [`MASTER_FLAGS`] and `extra`.
    pub async fn start(n: usize, extra: &[&str]) -> Result<Self> {
        let cluster = Cluster::new()?;
        let etcd = Etcd::start(cluster.dir.path()).await?;
        let url = etcd.url();
        Self::with_masters(cluster, etcd, &url, n, extra)
    }

    /// Like [`HaCluster::start`], but the masters reach etcd only through
    /// the returned relay, which can cut one of them off.
    pub async fn start_behind_relay(n: usize, extra: &[&str]) -> Result<(Self, Relay)> {
        let cluster = Cluster::new()?;
        let etcd = Etcd::start(cluster.dir.path()).await?;
        let relay = Relay::start().await?;
        relay.forward_to(etcd.addr);
        let c = Self::with_masters(cluster, etcd, &relay.url(), n, extra)?;
        Ok((c, relay))
    }

    /// Like [`HaCluster::start`], but chunk servers added later reach each
    /// master through a relay of its own, which counts what that master is
    /// sent ([`HaCluster::front`]).
    pub async fn start_fronted(n: usize, extra: &[&str]) -> Result<Self> {
        let mut c = Self::start(n, extra).await?;
        for m in &c.masters {
            let relay = Relay::start().await?;
            relay.forward_to(m.addr);
            c.fronts.push((relay.addr, Some(relay)));
        }
        Ok(c)
    }

    /// The open relay in front of master `i`, if it has one.
    pub fn front(&self, i: usize) -> Option<&Relay> {
        self.fronts.get(i).and_then(|(_, r)| r.as_ref())
    }

    /// Closes the relay in front of master `i`: chunk servers are refused
    /// there, as if no master had ever been configured at that address.
    pub fn close_front(&mut self, i: usize) {
        if let Some(f) = self.fronts.get_mut(i) {
            f.1 = None;
        }
    }

    /// Opens the relay in front of master `i` again, on the same address,
    /// forwarding to where the master listens now.
    pub async fn reopen_front(&mut self, i: usize) -> Result<()> {
        let (addr, _) = self.fronts.get(i).context("no relay for that master")?;
        let relay = Relay::start_at(*addr).await?;
        relay.forward_to(self.masters[i].addr);
        self.fronts[i].1 = Some(relay);
        Ok(())
    }

    fn with_masters(
        cluster: Cluster,
        etcd: Etcd,
        etcd_url: &str,
        n: usize,
        extra: &[&str],
    ) -> Result<Self> {
        let mut masters = Vec::new();
        for i in 0..n {
            let name = format!("master-{}", (b'a' + i as u8) as char);
            let mut args: Vec<String> = MASTER_LOOPBACK
                .iter()
                .chain(&MASTER_TIMINGS)
                .chain(&MASTER_FLAGS)
                .chain(extra)
                .map(|s| s.to_string())
                .collect();
            args.extend(["--etcd".into(), etcd_url.to_owned()]);
            let log = cluster.dir.path().join(format!("{name}.log"));
            let d = Daemon::start(&name, bin("keel-master"), args, cluster.envs.clone(), log)?;
            masters.push(d);
        }
        Ok(HaCluster {
            masters,
            cluster,
            etcd,
            fronts: Vec::new(),
        })
    }

    /// Every master's URL (its relay's, when fronted), comma-separated,
    /// for `--master`.
    pub fn master_list(&self) -> String {
        let urls: Vec<String> = if self.fronts.is_empty() {
            self.masters.iter().map(Daemon::url).collect()
        } else {
            self.fronts
                .iter()
                .map(|(a, _)| format!("http://{a}"))
                .collect()
        };
        urls.join(",")
    }

    /// Starts chunk server `id` heartbeating to every master.
    pub fn add_chunkserver(&mut self, id: &str, mut opts: CsOpts) -> Result<()> {
        opts.with_master = false;
        opts.extra.extend(["--master".into(), self.master_list()]);
        self.cluster.add_chunkserver(id, opts)?;
        Ok(())
    }

    /// The index of the master that says it leads, if one does.
    pub async fn leader(&self) -> Option<usize> {
        for (i, m) in self.masters.iter().enumerate() {
            if list_servers(&m.url())
                .await
                .is_some_and(|r| r.answered_by_leader)
            {
                return Some(i);
            }
        }
        None
    }

    /// Waits until some master other than `not` leads; returns its index.
    pub async fn wait_leader(&self, not: Option<usize>, timeout: Duration) -> Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.leader().await
                && Some(i) != not
            {
                return Ok(i);
            }
            if Instant::now() >= deadline {
                bail!("no new leader within {timeout:?}; logs:\n{}", self.tails());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until master `i` lists `n` alive servers.
    pub async fn wait_alive(&self, i: usize, n: usize) -> Result<()> {
        let url = self.masters[i].url();
        wait_until(
            &format!("{n} alive chunk servers on master {i}"),
            Duration::from_secs(20),
            || {
                let url = url.clone();
                async move {
                    crate::master::servers(&url)
                        .await
                        .is_ok_and(|s| s.iter().filter(|r| r.alive).count() == n)
                }
            },
        )
        .await
    }

    /// The last lines of every master's log.
    pub fn tails(&self) -> String {
        let mut out = String::new();
        for m in &self.masters {
            out.push_str(&format!("----- {} -----\n{}\n", m.name, m.tail(25)));
        }
        out
    }
}

impl Drop for HaCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprint!("{}", self.tails());
            eprintln!("----- etcd -----\n{}", self.etcd.tail(15));
        }
    }
}
