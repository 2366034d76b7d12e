//! Command-line flags, each also read from a `KEEL_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use keel_proto::units::{parse_duration, parse_size};

/// Default `--stream-idle-timeout`: long enough for a client or source slowed
/// by a busy network, short enough that a vanished one frees its space soon.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default `--max-transfers`: at 512 KiB frames, 64 streams keep a disk busy;
/// more only add memory and fsync contention.
pub const DEFAULT_MAX_TRANSFERS: usize = 64;

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

    /// gRPC address of the master, `host:port` or a URL; with several masters
    /// (`keel-master --etcd`) a comma-separated list of all of them: each gets
    /// its own heartbeats, so every standby keeps a warm view.
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
    /// together (`0` = unlimited), or `auto`: a rate between
    /// `--migrate-bandwidth-max` and a thirty-second of it, lowered while clients'
    /// reads and writes here are slower than `--client-latency-target` and
    /// raised again while they are not.
    #[arg(long, env = "KEEL_MIGRATE_BANDWIDTH", default_value = "64MiB", value_parser = parse_bandwidth)]
    pub migrate_bandwidth: Bandwidth,

    /// With `--migrate-bandwidth auto`: the highest rate, bytes per second.
    #[arg(long, env = "KEEL_MIGRATE_BANDWIDTH_MAX", default_value = "256MiB", value_parser = parse_size)]
    pub migrate_bandwidth_max: u64,

    /// With `--migrate-bandwidth auto`: the p99 of this server's client
    /// service times (see docs/bench-load.md) above which migration slows.
    #[arg(long, env = "KEEL_CLIENT_LATENCY_TARGET", default_value = "20ms", value_parser = parse_duration)]
    pub client_latency_target: Duration,

    /// Shared secret: every keel.v1 call must carry `authorization: Bearer <token>`,
    /// and calls this server makes carry it too.
    #[arg(long, env = "KEEL_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// A write or copy stream that brings no frame for this long ends
    /// (DEADLINE_EXCEEDED); its temp file, reserved space and chunk id are
    /// released, so a retry of the same id works.
    #[arg(long, env = "KEEL_STREAM_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub stream_idle_timeout: Duration,

    /// Writes and copies this server runs at once; more are refused with
    /// RESOURCE_EXHAUSTED. Client reads have `--max-reads`; migration reads
    /// by peers take their own `--max-transfers` slots.
    #[arg(long, env = "KEEL_MAX_TRANSFERS", default_value_t = DEFAULT_MAX_TRANSFERS)]
    pub max_transfers: usize,

    /// Client reads this server streams at once; one connection may hold a
    /// quarter of them. More are refused with RESOURCE_EXHAUSTED. Migration
    /// reads by peers are not counted here: they have their own
    /// `--max-transfers` slots, so clients cannot starve moves and repairs.
    #[arg(long, env = "KEEL_MAX_READS", default_value_t = crate::reads::DEFAULT_MAX_READS)]
    pub max_reads: usize,
    /// Token files, the client token and TLS (see docs/security.md).
    #[command(flatten)]
    pub security: keel_proto::flags::Security,

    /// HTTP address for `/metrics` (Prometheus text) and `/healthz`; none by
    /// default.
    #[arg(long, env = "KEEL_HTTP_LISTEN")]
    pub http_listen: Option<std::net::SocketAddr>,

    /// Once serving, write `{"grpc": ADDR, "http": ADDR|null}` to this file
    /// (atomically: a temp file beside it, fsync, rename), for whoever
    /// started this process to learn the bound ports.
    #[arg(long, env = "KEEL_READY_FILE")]
    pub ready_file: Option<std::path::PathBuf>,

    /// Log lines as `text`, or `json`: one object per line on stderr, with
    /// the event's fields and its spans, for log shippers.
    #[arg(long, env = "KEEL_LOG_FORMAT", value_enum, default_value_t = keel_proto::logging::LogFormat::Text)]
    pub log_format: keel_proto::logging::LogFormat,

    /// How long in-flight reads, writes and copies may run on after SIGTERM.
    #[arg(long, env = "KEEL_SHUTDOWN_TIMEOUT", default_value = "8s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// How often every indexed chunk file is checked to still exist (a file
    /// removed by hand or lost with a disk is then reported gone); `0` turns
    /// the check off.
    #[arg(long, env = "KEEL_SCRUB_INTERVAL", default_value = "60s", value_parser = parse_duration, hide = true)]
    pub scrub_interval: Duration,
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
            migrate_bandwidth: Bandwidth::Fixed(64 << 20),
            migrate_bandwidth_max: 256 << 20,
            client_latency_target: Duration::from_millis(20),
            auth_token: None,
            security: keel_proto::flags::Security::default(),
            log_format: keel_proto::logging::LogFormat::Text,
            http_listen: None,
            ready_file: None,
            shutdown_timeout: Duration::from_secs(8),
            scrub_interval: Duration::from_secs(60),
            stream_idle_timeout: DEFAULT_STREAM_IDLE_TIMEOUT,
            max_transfers: DEFAULT_MAX_TRANSFERS,
            max_reads: crate::reads::DEFAULT_MAX_READS,
        }
    }

    /// Refuses settings that would make the server useless.
    pub fn check(&self) -> Result<(), String> {
        if self.max_transfers == 0 {
            return Err("--max-transfers must be at least 1".into());
        }
        if self.max_reads == 0 {
            return Err("--max-reads must be at least 1".into());
        }
        if self.stream_idle_timeout.is_zero() {
            return Err("--stream-idle-timeout must be above 0".into());
        }
        for url in self.master.split(',').filter(|a| !a.trim().is_empty()) {
            normalize_url(url, self.tls()).map_err(|e| format!("--master: {e}"))?;
        }
        if let Some(a) = &self.advertise {
            normalize_url(a, self.tls()).map_err(|e| format!("--advertise: {e}"))?;
        }
        if self.master_urls().is_empty() {
            return Err("--master names no master".into());
        }
        if self.migrate_bandwidth == Bandwidth::Auto {
            if self.migrate_bandwidth_max == 0 {
                return Err(
                    "--migrate-bandwidth auto needs a --migrate-bandwidth-max above 0".into(),
                );
            }
            if self.client_latency_target.is_zero() {
                return Err("--client-latency-target must be above 0".into());
            }
        }
        Ok(())
    }

    /// Whether any TLS flag is set: then a bare `host:port` means `https://`
    /// and `http://` is refused ([`keel_proto::tls::url`]).
    pub fn tls(&self) -> bool {
        self.security.tls().any()
    }

    /// The address to advertise, given the address actually bound
    /// (`--advertise` is checked by [`Config::check`]).
    pub fn advertise_url(&self, bound: SocketAddr) -> String {
        match &self.advertise {
            Some(a) => normalize_url(a, self.tls()).unwrap_or_else(|_| a.trim().to_owned()),
            // A server with a certificate serves TLS only.
            None if self.security.tls_cert.is_some() => format!("https://{bound}"),
            None => format!("http://{bound}"),
        }
    }

    /// The masters' URLs, in `--master` order (duplicates dropped; those
    /// [`Config::check`] refuses left out).
    pub fn master_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = Vec::new();
        for url in self.master.split(',').filter(|a| !a.trim().is_empty()) {
            let Ok(url) = normalize_url(url, self.tls()) else {
                continue;
            };
            if !urls.contains(&url) {
                urls.push(url);
            }
        }
        urls
    }
}

/// `--migrate-bandwidth`: a fixed rate, or one that follows client latency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bandwidth {
    /// Bytes per second (`0` = unlimited).
    Fixed(u64),
    /// Between `--migrate-bandwidth-max` and a thirty-second of it, by client latency.
    Auto,
}

/// Parses `auto` or a size (`64MiB`, plain bytes).
pub fn parse_bandwidth(s: &str) -> Result<Bandwidth, String> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(Bandwidth::Auto);
    }
    parse_size(s)
        .map(Bandwidth::Fixed)
        .map_err(|e| format!("{e} (or `auto`)"))
}

/// Accepts `host:port` or a URL and returns `scheme://host:port` without a
/// trailing `/`: with `tls` (any TLS flag set) a bare address is `https://`
/// and `http://` is refused.
pub fn normalize_url(addr: &str, tls: bool) -> Result<String, keel_proto::tls::AddressError> {
    keel_proto::tls::url(addr, tls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised() {
        let n = |a| normalize_url(a, false).expect("usable");
        assert_eq!(n("10.0.0.5:7001"), "http://10.0.0.5:7001");
        assert_eq!(n("http://m:7000/"), "http://m:7000");
        assert_eq!(n("https://m:7000"), "https://m:7000");
    }

    #[test]
    fn with_tls_bare_addresses_are_https_and_http_is_refused() {
        let mut c = Config::new("cs1", "/tmp/x");
        c.security.tls_ca = Some("/certs/ca.crt".into());
        c.master = "m1:7000".into();
        assert_eq!(c.master_urls(), ["https://m1:7000"]);
        assert_eq!(c.check(), Ok(()));
        c.master = "m1:7000,http://m2:7000".into();
        let err = c.check().expect_err("plaintext refused");
        assert!(
            err.contains("--master") && err.contains("http://m2:7000"),
            "{err}"
        );
        c.master = "m1:7000".into();
        c.advertise = Some("http://cs1:7001".into());
        assert!(c.check().expect_err("refused").contains("--advertise"));
        c.advertise = Some("cs1:7001".into());
        let bound: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        assert_eq!(c.advertise_url(bound), "https://cs1:7001");
    }

    #[test]
    fn several_masters_are_a_comma_separated_list() {
        let mut c = Config::new("cs1", "/tmp/x");
        assert_eq!(c.master_urls(), ["http://127.0.0.1:7000"]);
        c.master = "m1:7000, https://m2:7000/,m1:7000,".into();
        assert_eq!(c.master_urls(), ["http://m1:7000", "https://m2:7000"]);
        c.master = " , ".into();
        assert!(c.check().is_err());
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
        assert_eq!(c.migrate_bandwidth, Bandwidth::Fixed(4 << 20));
        assert_eq!(c.heartbeat_interval, Duration::from_millis(300));
        assert_eq!(c.listen.port(), 7001);
        assert_eq!(c.stream_idle_timeout, Duration::from_secs(30));
        assert_eq!(c.max_transfers, 64);
        assert_eq!(c.max_reads, 32);
        assert_eq!(c.check(), Ok(()));
    }

    #[test]
    fn auto_bandwidth_parses_and_is_checked() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["keel-chunkserver", "--id", "cs1", "--data-dir", "/d"];
            args.extend_from_slice(extra);
            Config::try_parse_from(args)
        };
        let c = parse(&[]).expect("defaults");
        assert_eq!(c.migrate_bandwidth, Bandwidth::Fixed(64 << 20));
        let c = parse(&[
            "--migrate-bandwidth",
            "auto",
            "--migrate-bandwidth-max",
            "128MiB",
            "--client-latency-target",
            "15ms",
        ])
        .expect("auto");
        assert_eq!(c.migrate_bandwidth, Bandwidth::Auto);
        assert_eq!(c.migrate_bandwidth_max, 128 << 20);
        assert_eq!(c.client_latency_target, Duration::from_millis(15));
        assert_eq!(c.check(), Ok(()));
        let no_max = parse(&[
            "--migrate-bandwidth",
            "AUTO",
            "--migrate-bandwidth-max",
            "0",
        ])
        .expect("parse")
        .check()
        .expect_err("auto without a ceiling");
        assert!(no_max.contains("--migrate-bandwidth-max"), "{no_max}");
        let bad = parse(&["--migrate-bandwidth", "fast"]).expect_err("not a size");
        assert!(bad.to_string().contains("auto"), "{bad}");
    }

    #[test]
    fn transfer_limits_parse_and_are_checked() {
        let parse = |extra: &[&str]| {
            let mut args = vec!["keel-chunkserver", "--id", "cs1", "--data-dir", "/d"];
            args.extend_from_slice(extra);
            Config::try_parse_from(args).expect("parse")
        };
        let c = parse(&["--stream-idle-timeout", "1500ms", "--max-transfers", "3"]);
        assert_eq!(c.stream_idle_timeout, Duration::from_millis(1500));
        assert_eq!(c.max_transfers, 3);
        assert_eq!(c.check(), Ok(()));
        let reads = parse(&["--max-reads", "0"]).check();
        assert!(reads.is_err_and(|e| e.contains("--max-reads")));
        let zero = parse(&["--max-transfers", "0"])
            .check()
            .expect_err("0 transfers");
        assert!(zero.contains("--max-transfers"), "{zero}");
        let idle = parse(&["--stream-idle-timeout", "0s"])
            .check()
            .expect_err("0 s");
        assert!(idle.contains("--stream-idle-timeout"), "{idle}");
        assert!(
            Config::try_parse_from([
                "keel-chunkserver",
                "--id",
                "cs1",
                "--data-dir",
                "/d",
                "--max-transfers",
                "many"
            ])
            .is_err()
        );
    }
}
