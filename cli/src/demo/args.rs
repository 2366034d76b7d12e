//! `keelctl demo`'s flags; most are hidden knobs for tests and benches.

use std::time::Duration;

use clap::Args;
use keel_proto::units::{parse_duration, parse_size};

/// `keelctl demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Once balanced, read every chunk back and check it, check every
    /// server is inside the band, stop the cluster and exit (1 if anything
    /// is off).
    #[arg(long, env = "KEEL_EXIT_WHEN_BALANCED")]
    pub exit_when_balanced: bool,
    /// Chunks in the skewed data set.
    #[arg(long, env = "KEEL_CHUNKS", default_value_t = 48, hide = true,
          value_parser = clap::value_parser!(u32).range(3..=100_000))]
    pub chunks: u32,
    /// Largest chunk; each is between half this and this.
    #[arg(long, env = "KEEL_CHUNK_SIZE", default_value = "8MiB", hide = true, value_parser = parse_size)]
    pub chunk_size: u64,
    /// Each chunk server's migration bandwidth (in and out together).
    #[arg(long, env = "KEEL_MIGRATE_BANDWIDTH", default_value = "10MiB", hide = true, value_parser = parse_size)]
    pub migrate_bandwidth: u64,
    /// The master's band half-width, in percentage points.
    #[arg(long, env = "KEEL_THRESHOLD_PCT", default_value_t = 10.0, hide = true)]
    pub threshold_pct: f64,
    /// The master's gRPC address when free (any free port otherwise).
    #[arg(
        long,
        env = "KEEL_MASTER_LISTEN",
        default_value = "127.0.0.1:7000",
        hide = true
    )]
    pub master_listen: String,
    /// The master's HTTP address when free (any free port otherwise).
    #[arg(
        long,
        env = "KEEL_HTTP_LISTEN",
        default_value = "127.0.0.1:7080",
        hide = true
    )]
    pub http_listen: String,
    /// Give up when the cluster is not balanced after this long.
    #[arg(long, env = "KEEL_BALANCE_TIMEOUT", default_value = "120s", hide = true, value_parser = parse_duration)]
    pub balance_timeout: Duration,
}
