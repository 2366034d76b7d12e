//! A master and chunk servers of one test, in one temp dir, with the
//! timings tests want (fast heartbeats, no safe mode, no background pass).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use keel_proto::v1::chunk_server_client::ChunkServerClient;
use keel_proto::v1::master_client::MasterClient;
use tonic::transport::Channel;

use crate::{Daemon, bin, chunkserver_client, master_client, wait_until};

/// A test master's listeners: loopback, any free ports.
pub const MASTER_LOOPBACK: [&str; 4] = ["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"];

/// A test master's timings: dead after 3 s of silence, no safe mode, no
/// background pass unless a test asks.
pub const MASTER_TIMINGS: [&str; 6] = [
    "--heartbeat-timeout",
    "3s",
    "--safe-mode",
    "0s",
    "--balance-interval",
    "0",
];

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
        let args: Vec<String> = MASTER_LOOPBACK
            .iter()
            .chain(&MASTER_TIMINGS)
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        let log = self.dir.path().join("master.log");
        let d = Daemon::start(
            "master",
            bin(keel_launch::bins::MASTER),
            args,
            self.envs.clone(),
            log,
        )?;
        Ok(self.master.insert(d))
    }

    /// [`Cluster::start_master`] with owned flags, as the TLS tests build
    /// them.
    pub fn start_master_with(&mut self, extra: &[String]) -> Result<&mut Daemon> {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        self.start_master(&extra)
    }

    /// The master's bound gRPC address, bare (`host:port`).
    pub fn master_addr(&self) -> String {
        self.master
            .as_ref()
            .expect("master started")
            .addr
            .to_string()
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
        let d = Daemon::start(
            id,
            bin(keel_launch::bins::CHUNKSERVER),
            args,
            self.envs.clone(),
            log,
        )?;
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
        crate::keelctl::run(&self.master_url(), args)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let all = self.master.iter().chain(self.chunkservers.values());
            for d in all {
                eprintln!("----- {} log (tail) -----\n{}", d.name, d.tail(40));
            }
        }
        // Daemons stop in their own Drop.
    }
}
