//! Command-line flags, each also read from a `KEEL_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use keel_proto::units::{parse_duration, parse_size};

/// How a chunk server is started.
#[derive(Parser, Debug, Clone)]
#[command(name = "keel-chunkserver", version, about = "Keel chunk server")]
pub struct Config {
    /// Server id, e.g. `cs1`. Stored in the data dir on first start; a
    /// different id on a later start is refused.
    #[arg(long, env = "KEEL_ID")]
    pub id: String,

    /// Address the gRPC server binds (port 0 picks a free port).
    #[arg(long, env = "KEEL_LISTEN", default_value = "0.0.0.0:7001")]
    pub listen: SocketAddr,

    /// Address others use to reach this server, `host:port` or a URL
    /// (default: `http://`, or `https://` with `--tls-cert`, and the address
    /// actually bound).
    #[arg(long, env = "KEEL_ADVERTISE")]
    pub advertise: Option<String>,

    /// gRPC address of the master, `host:port` or a URL.
    #[arg(long, env = "KEEL_MASTER", default_value = "http://127.0.0.1:7000")]
    pub master: String,

    /// Directory holding the chunks (created if missing).
    #[arg(long, env = "KEEL_DATA_DIR")]
    pub data_dir: PathBuf,

    /// Bytes counted as 100 % (default: the size of the data dir's file system).
    #[arg(long, env = "KEEL_CAPACITY", value_parser = parse_size)]
    pub capacity: Option<u64>,

    /// Failure-domain label; the master keeps replicas on different racks.
    #[arg(long, env = "KEEL_RACK")]
    pub rack: Option<String>,

    /// Time between heartbeats to the master.
    #[arg(long, env = "KEEL_HEARTBEAT_INTERVAL", default_value = "3s", value_parser = parse_duration)]
    pub heartbeat_interval: Duration,

    /// Bytes per second for all migration traffic of this server, in and out
    /// together (`0` = unlimited).
    #[arg(long, env = "KEEL_MIGRATE_BANDWIDTH", default_value = "64MiB", value_parser = parse_size)]
    pub migrate_bandwidth: u64,

    /// Shared secret: every keel.v1 call must carry `authorization: Bearer <token>`,
    /// and calls this server makes carry it too.
    #[arg(long, env = "KEEL_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// Token files, the client token and TLS (see docs/security.md).
    #[command(flatten)]
    pub security: keel_proto::flags::Security,

    /// How long in-flight reads, writes and copies may run on after SIGTERM.
    #[arg(long, env = "KEEL_SHUTDOWN_TIMEOUT", default_value = "8s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

impl Config {
    /// A configuration with the documented defaults, for embedding and tests.
    pub fn new(id: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        Config {
            id: id.into(),
            listen: SocketAddr::from(([0, 0, 0, 0], 7001)),
            advertise: None,
            master: "http://127.0.0.1:7000".into(),
            data_dir: data_dir.into(),
            capacity: None,
            rack: None,
            heartbeat_interval: Duration::from_secs(3),
            migrate_bandwidth: 64 << 20,
            auth_token: None,
            security: keel_proto::flags::Security::default(),
            shutdown_timeout: Duration::from_secs(8),
        }
    }

    /// The address to advertise, given the address actually bound.
    pub fn advertise_url(&self, bound: SocketAddr) -> String {
        match &self.advertise {
            Some(a) => normalize_url(a),
            // A server with a certificate serves TLS only.
            None if self.security.tls_cert.is_some() => format!("https://{bound}"),
            None => format!("http://{bound}"),
        }
    }

    /// The master's URL.
    pub fn master_url(&self) -> String {
        normalize_url(&self.master)
    }
}

/// Accepts `host:port` or a URL and returns `scheme://host:port` without a trailing `/`.
pub fn normalize_url(addr: &str) -> String {
    let addr = addr.trim().trim_end_matches('/');
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised() {
        assert_eq!(normalize_url("10.0.0.5:7001"), "http://10.0.0.5:7001");
        assert_eq!(normalize_url("http://m:7000/"), "http://m:7000");
        assert_eq!(normalize_url("https://m:7000"), "https://m:7000");
    }

    #[test]
    fn advertise_defaults_to_the_bound_address() {
        let mut c = Config::new("cs1", "/tmp/x");
        let bound: SocketAddr = "127.0.0.1:41873".parse().expect("addr");
        assert_eq!(c.advertise_url(bound), "http://127.0.0.1:41873");
        c.advertise = Some("cs1:7001".into());
        assert_eq!(c.advertise_url(bound), "http://cs1:7001");
        c.advertise = None;
        c.security.tls_cert = Some("/certs/node.crt".into());
        assert_eq!(c.advertise_url(bound), "https://127.0.0.1:41873");
    }

    #[test]
    fn flags_parse_sizes_and_durations() {
        let c = Config::try_parse_from([
            "keel-chunkserver",
            "--id",
            "cs1",
            "--data-dir",
            "/d",
            "--capacity",
            "1GiB",
            "--migrate-bandwidth",
            "4MiB",
            "--heartbeat-interval",
            "300ms",
        ])
        .expect("parse");
        assert_eq!(c.capacity, Some(1 << 30));
        assert_eq!(c.migrate_bandwidth, 4 << 20);
        assert_eq!(c.heartbeat_interval, Duration::from_millis(300));
        assert_eq!(c.listen.port(), 7001);
    }
}
