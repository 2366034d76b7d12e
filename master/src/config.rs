//! Command-line flags of `keel-master`. Every flag also reads `KEEL_<FLAG>`.

use std::time::Duration;

use clap::Parser;
use keel_proto::units::{parse_duration, parse_size};

/// Configuration of one master process.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "keel-master",
    version,
    about = "Keel master: metadata, placement and the balancer",
    // A flag given twice takes its last value, so wrappers can override defaults.
    args_override_self = true
)]
pub struct Config {
    /// gRPC listen address (`keel.v1.Master`, health, reflection).
    #[arg(long, env = "KEEL_LISTEN", default_value = "0.0.0.0:7000")]
    pub listen: String,

    /// HTTP listen address (`/metrics`, `/healthz`).
    #[arg(long, env = "KEEL_HTTP_LISTEN", default_value = "0.0.0.0:7080")]
    pub http_listen: String,

    /// Half-width of the band around the average utilization, in percentage points.
    #[arg(long, env = "KEEL_THRESHOLD_PCT", default_value_t = 20.0, value_parser = parse_pct)]
    pub threshold_pct: f64,

    /// Half-width of the read-load band, in percent of the mean client
    /// reads/s of the live servers; `0` balances bytes only.
    #[arg(long, env = "KEEL_LOAD_THRESHOLD_PCT", default_value_t = keel_balancer::traffic::DEFAULT_LOAD_THRESHOLD_PCT, value_parser = parse_load_pct)]
    pub load_threshold_pct: f64,

    /// A chunk moved for read load is not moved for load again within this.
    #[arg(long, env = "KEEL_LOAD_COOLDOWN", default_value = "10m", value_parser = parse_duration)]
    pub load_cooldown: Duration,

    /// A background pass moves a server's chunks for read load only once
    /// the server has been hot at every pass for this long; `0` at once.
    #[arg(long, env = "KEEL_LOAD_DWELL", default_value = "1m", value_parser = parse_duration)]
    pub load_dwell: Duration,

    /// Period of the background balancer pass; `0` plans only on demand.
    #[arg(long, env = "KEEL_BALANCE_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub balance_interval: Duration,

    /// Moves running at once, cluster-wide: a number, or `auto` (no cap beyond
    /// the per-server slots, so it grows with the live servers).
    #[arg(long, env = "KEEL_MAX_CONCURRENT_MOVES", default_value = "auto", value_parser = parse_move_cap)]
    pub max_concurrent_moves: MoveCap,

    /// Moves running at once with one server as their source or target.
    #[arg(long, env = "KEEL_MAX_MOVES_PER_SERVER", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_moves_per_server: u32,

    /// Share of a server's capacity that must stay free after a move or placement.
    #[arg(long, env = "KEEL_MIN_FREE_PCT", default_value_t = 10.0, value_parser = parse_pct)]
    pub min_free_pct: f64,

    /// Retries of a failing copy before the move is dropped and counted as failed.
    #[arg(long, env = "KEEL_MOVE_RETRIES", default_value_t = 3)]
    pub move_retries: u32,

    /// Default replication factor of new chunks (clamped to the live servers).
    #[arg(long, env = "KEEL_REPLICATION", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=i64::from(keel_proto::MAX_REPLICATION)))]
    pub replication: u32,

    /// A server silent for this long is marked dead.
    #[arg(long, env = "KEEL_HEARTBEAT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub heartbeat_timeout: Duration,

    /// No background pass (balancing, trimming, repair) this soon after start,
    /// so nothing is decided on a partial view.
    #[arg(long, env = "KEEL_SAFE_MODE", default_value = "10s", value_parser = parse_duration)]
    pub safe_mode: Duration,

    /// Once serving, write `{"grpc": ADDR, "http": ADDR|null}` to this file
    /// (atomically: a temp file beside it, fsync, rename), for whoever
    /// started this process to learn the bound ports.
    #[arg(long, env = "KEEL_READY_FILE")]
    pub ready_file: Option<std::path::PathBuf>,

    /// Also speak the seed's JSON-lines protocol on stdin/stdout (gRPC keeps serving; EOF stops the master).
    #[arg(long, env = "KEEL_STDIO")]
    pub stdio: bool,

    /// Shared secret: every `keel.v1` call must carry `authorization: Bearer <token>`.
    #[arg(long, env = "KEEL_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// Token files, the client token and TLS (see docs/security.md).
    #[command(flatten)]
    pub security: keel_proto::flags::Security,

    /// Grace period before the replicas of a dead server are re-created elsewhere
    /// (most dead servers come back).
    #[arg(long, env = "KEEL_RE_REPLICATE_AFTER", default_value = "5m", value_parser = parse_duration)]
    pub re_replicate_after: Duration,

    /// Period of the maintenance pass (trimming excess replicas, repairs).
    #[arg(long, env = "KEEL_MAINTENANCE_INTERVAL", default_value = "2s", value_parser = parse_duration, hide = true)]
    pub maintenance_interval: Duration,

    /// Slowest copy rate the master plans for when it sets a copy's deadline
    /// (bytes per second; a copy may take `size / rate` plus a fixed margin).
    #[arg(long, env = "KEEL_COPY_MIN_RATE", default_value = "1MiB", value_parser = parse_size, hide = true)]
    pub copy_min_rate: u64,

    /// How long shutdown waits for running moves and requests.
    #[arg(long, env = "KEEL_SHUTDOWN_DEADLINE", default_value = "8s", value_parser = parse_duration, hide = true)]
    pub shutdown_deadline: Duration,

    /// etcd endpoints, comma-separated: run as one of several masters, the
    /// leader elected through etcd. Unset: a single master, the leader always.
    #[arg(long, env = "KEEL_ETCD", value_delimiter = ',')]
    pub etcd: Vec<String>,

    /// Address other masters, chunk servers and clients reach this master's
    /// gRPC at, `host:port` or a URL (default: the bound `--listen` address).
    #[arg(long, env = "KEEL_ADVERTISE")]
    pub advertise: Option<String>,

    /// Time to live of the leader's etcd lease: a leader that cannot renew
    /// it steps down within three quarters of it, and a standby takes over
    /// once it has run out.
    #[arg(long, env = "KEEL_LEADER_LEASE", default_value = "5s", value_parser = parse_lease)]
    pub leader_lease: Duration,

    /// Prefix of Keel's keys in etcd (the leader key, operator state).
    #[arg(long, env = "KEEL_ETCD_PREFIX", default_value = "/keel")]
    pub etcd_prefix: String,

    /// etcd's TLS and authentication (`--etcd-tls-*`, `--etcd-user`,
    /// `--etcd-password-file`).
    #[command(flatten)]
    pub etcd_access: crate::ha::EtcdAccessFlags,

    /// Distinct chunk-server ids the master will learn; heartbeats from new
    /// ids beyond it get RESOURCE_EXHAUSTED (servers are never forgotten, so
    /// bogus ids would otherwise grow memory without end).
    #[arg(long, env = "KEEL_MAX_SERVERS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..), hide = true)]
    pub max_servers: u64,

    /// Allocations remembered while their writes are under way; more get
    /// RESOURCE_EXHAUSTED until some are written or expire.
    #[arg(long, env = "KEEL_MAX_PENDING_ALLOCATIONS", default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..), hide = true)]
    pub max_pending_allocations: u64,

    /// The queue counts as stuck (`keel_queue_stuck` 1) when moves have been
    /// pending this long and none has finished meanwhile.
    #[arg(long, env = "KEEL_STUCK_AFTER", default_value = "10m", value_parser = parse_duration)]
    pub stuck_after: Duration,

    /// Log lines as `text`, or `json`: one object per line on stderr, with
    /// the event's fields and its spans, for log shippers.
    #[arg(long, env = "KEEL_LOG_FORMAT", value_enum, default_value_t = keel_proto::logging::LogFormat::Text)]
    pub log_format: keel_proto::logging::LogFormat,
}

/// Parses `--leader-lease`: whole seconds are what etcd grants, so at least 1s.
fn parse_lease(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) {
        return Err(format!("{d:?} is shorter than etcd's smallest lease, 1s"));
    }
    Ok(d)
}

/// Parses a percentage in `0..=100`.
/// `--max-concurrent-moves`: `auto` or a fixed cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveCap {
    /// No cap beyond the per-server slots (`keel_balancer::slots::AUTO`).
    Auto,
    /// At most this many copies at once, cluster-wide.
    Max(u32),
}

impl MoveCap {
    /// The queue's `max_concurrent_moves`.
    pub fn slots(self) -> usize {
        match self {
            MoveCap::Auto => keel_balancer::slots::AUTO,
            MoveCap::Max(n) => n as usize,
        }
    }
}

fn parse_move_cap(s: &str) -> Result<MoveCap, String> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(MoveCap::Auto);
    }
    match s.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(MoveCap::Max(n)),
        _ => Err(format!(
            "expected `auto` or a whole number of at least 1, got {s:?}"
        )),
    }
}

fn parse_pct(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("{v} is not a percentage between 0 and 100"));
    }
    Ok(v)
}

/// Largest `--load-threshold-pct`: a band ten times the mean is already
/// "never move for load"; beyond it a typo is likelier than intent.
const MAX_LOAD_THRESHOLD_PCT: f64 = 1000.0;

/// Parses `--load-threshold-pct`: a finite percentage of the mean in
/// `0..=1000` (it may exceed 100: a server at 2.5× the mean is 150 % above).
fn parse_load_pct(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if !v.is_finite() || !(0.0..=MAX_LOAD_THRESHOLD_PCT).contains(&v) {
        return Err(format!(
            "{s:?} is not a percentage of the mean between 0 (bytes only) and {MAX_LOAD_THRESHOLD_PCT}"
        ));
    }
    Ok(v)
}

impl Config {
    /// Defaults for tests: every flag at its default, listening on loopback port 0.
    pub fn for_tests() -> Self {
        let mut c = Config::parse_from(["keel-master"]);
        c.listen = "127.0.0.1:0".into();
        c.http_listen = "127.0.0.1:0".into();
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let c = Config::parse_from(["keel-master"]);
        assert_eq!(c.listen, "0.0.0.0:7000");
        assert_eq!(c.http_listen, "0.0.0.0:7080");
        assert_eq!(c.threshold_pct, 20.0);
        assert_eq!(c.load_threshold_pct, 25.0);
        assert_eq!(c.load_cooldown, Duration::from_secs(600));
        assert_eq!(c.load_dwell, Duration::from_secs(60));
        assert_eq!(c.balance_interval, Duration::from_secs(30));
        assert_eq!(
            (c.max_concurrent_moves, c.max_moves_per_server),
            (MoveCap::Auto, 4)
        );
        assert_eq!(c.min_free_pct, 10.0);
        assert_eq!((c.move_retries, c.replication), (3, 3));
        assert_eq!(c.heartbeat_timeout, Duration::from_secs(10));
        assert_eq!(c.safe_mode, Duration::from_secs(10));
        assert!(!c.stdio && c.auth_token.is_none());
        assert_eq!(c.re_replicate_after, Duration::from_secs(300));
        assert!(c.etcd.is_empty() && c.advertise.is_none());
        assert_eq!(c.leader_lease, Duration::from_secs(5));
    }

    #[test]
    fn max_concurrent_moves_takes_auto_or_a_number() {
        let parse = |v: &str| {
            Config::try_parse_from(["keel-master".into(), format!("--max-concurrent-moves={v}")])
        };
        let cap = |v: &str| parse(v).expect("parses").max_concurrent_moves;
        assert_eq!(cap("auto"), MoveCap::Auto);
        assert_eq!(cap("AUTO"), MoveCap::Auto);
        assert_eq!(cap("4"), MoveCap::Max(4));
        assert_eq!(MoveCap::Max(4).slots(), 4);
        assert_eq!(MoveCap::Auto.slots(), keel_balancer::slots::AUTO);
        for bad in ["0", "-1", "many", ""] {
            let e = parse(bad).expect_err(bad).to_string();
            assert!(
                e.contains("expected `auto` or a whole number"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn several_etcd_endpoints_and_a_lease() {
        let c = Config::parse_from([
            "keel-master",
            "--etcd",
            "http://e1:2379,http://e2:2379",
            "--leader-lease",
            "2s",
        ]);
        assert_eq!(c.etcd, ["http://e1:2379", "http://e2:2379"]);
        assert_eq!(c.leader_lease, Duration::from_secs(2));
        assert!(Config::try_parse_from(["keel-master", "--leader-lease", "500ms"]).is_err());
    }

    #[test]
    fn parses_units_and_refuses_nonsense() {
        let c = Config::parse_from([
            "keel-master",
            "--balance-interval",
            "0",
            "--heartbeat-timeout",
            "500ms",
            "--threshold-pct",
            "12.5",
        ]);
        assert_eq!(c.balance_interval, Duration::ZERO);
        assert_eq!(c.heartbeat_timeout, Duration::from_millis(500));
        assert_eq!(c.threshold_pct, 12.5);
        assert!(Config::try_parse_from(["keel-master", "--threshold-pct", "120"]).is_err());
        assert!(Config::try_parse_from(["keel-master", "--replication", "0"]).is_err());
        assert!(Config::try_parse_from(["keel-master", "--replication", "17"]).is_err());
        assert!(Config::try_parse_from(["keel-master", "--safe-mode", "10"]).is_err());
    }

    #[test]
    fn load_flags_parse_and_refuse_nonsense() {
        let parse = |args: &[&str]| {
            let mut all = vec!["keel-master"];
            all.extend_from_slice(args);
            Config::try_parse_from(all)
        };
        let c = parse(&[
            "--load-threshold-pct",
            "0",
            "--load-cooldown",
            "90s",
            "--load-dwell",
            "0",
        ])
        .expect("valid");
        assert_eq!(c.load_dwell, Duration::ZERO);
        assert_eq!(c.load_threshold_pct, 0.0);
        assert_eq!(c.load_cooldown, Duration::from_secs(90));
        assert_eq!(
            parse(&["--load-threshold-pct", "150"])
                .map(|c| c.load_threshold_pct)
                .ok(),
            Some(150.0)
        );
        for bad in ["-5", "NaN", "inf", "x", "1e9"] {
            let arg = format!("--load-threshold-pct={bad}");
            let e = parse(&[&arg]).expect_err(bad).to_string();
            assert!(e.contains("--load-threshold-pct"), "{e}");
        }
        assert!(parse(&["--load-cooldown", "soon"]).is_err());
    }
}
