//! `keel-traffic-bench`: seed 004's worked example with traffic. Eight real
//! chunk servers, node 1 (`cs1`) near 95 % and holding the hot set, the
//! others near 40 %; real readers ([`keel_tests::readers`]) read with a
//! Zipf-like skew; one balancer pass evens the cluster out. Run twice, each
//! on a fresh cluster with the same seed: capacity-only
//! (`--load-threshold-pct 0`, today's behaviour) and traffic-aware (the
//! master's default).
//!
//! Phases, the readers running throughout:
//! 1. before: the readers read the hot set on node 1 (and the cold chunks)
//!    until the master sees node 1 hot, and at least `--secs`;
//! 2. during: one pass (`RebalanceRun`), until no move is pending or running;
//! 3. after: `--secs` more, once the readers' location caches have expired;
//! 4. baseline: `--secs` on an evenly spread copy of the hot set (and the
//!    same cold chunks): the same readers on an evenly loaded cluster. It
//!    runs last so that its reads are not in the decayed rates the pass
//!    planned on.
//!
//! Latency is what the readers waited for the chunk servers (the master's
//! `LocateChunk` excluded), keyed by the server that served the read.
//! Reads/s per server are the readers' own counts; the load band is the
//! balancer's (`keel_balancer::traffic::load_position`, ±25 % of the mean).
//!
//! Prints Markdown on stdout, progress on stderr. Run it through
//! `scripts/bench-traffic.sh`, which builds the release binaries first.
//!
//! # Layout
//! - `cluster`: a fresh cluster, its layout and what the readers read.
//! - `round`: one design's phases and what they measured.
//! - `report`: the Markdown.

#[path = "keel-traffic-bench/cluster.rs"]
mod cluster;
#[path = "keel-traffic-bench/report.rs"]
mod report;
#[path = "keel-traffic-bench/round.rs"]
mod round;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use keel_proto::units::parse_size;

const USAGE: &str = "\
usage: keel-traffic-bench [options]

  --servers N      chunk servers, at least 4 (default 8)
  --capacity SIZE  each server's --capacity (default 256MiB)
  --chunk SIZE     every chunk's size (default 1MiB)
  --hot N          hot chunks on node 1 (default 48)
  --hot-fill PCT   node 1's utilization (default 95)
  --fill PCT       the other nodes' utilization (default 40)
  --readers N      concurrent readers (default 16)
  --rate N         reads per second of each reader (default 20)
  --exponent X     Zipf exponent (default 1.1)
  --offset Q       Zipf-Mandelbrot offset, flattening the head (default 5)
  --secs N         length of the baseline, before and after phases (default 20)
  --cs-threads N   TOKIO_WORKER_THREADS of each chunk server, 0 for the
                   runtime's default (default 1: a node of one core)
  --seed N         seed of the layout and the readers (default 4)
  --only DESIGN    run only `capacity-only` or `traffic-aware`
  --dir DIR        where the temp dirs go (default: $TMPDIR or /tmp)
";

/// What to run.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Chunk servers.
    pub servers: usize,
    /// Capacity of each, bytes.
    pub capacity: u64,
    /// Size of every chunk, bytes.
    pub chunk: u64,
    /// Hot chunks on node 1.
    pub hot: usize,
    /// Node 1's utilization, percent.
    pub hot_fill: f64,
    /// The others' utilization, percent.
    pub fill: f64,
    /// Concurrent readers.
    pub readers: usize,
    /// Reads per second of each reader.
    pub rate: f64,
    /// Zipf exponent.
    pub exponent: f64,
    /// Zipf–Mandelbrot offset.
    pub offset: f64,
    /// Seconds of each measured phase.
    pub secs: u64,
    /// Runtime threads of each chunk server (0: tokio's default).
    pub cs_threads: usize,
    /// Seed.
    pub seed: u64,
    /// Run only this design.
    pub only: Option<String>,
    /// Parent of the temp dirs.
    pub dir: PathBuf,
}

impl Opts {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Opts>> {
        let mut o = Opts {
            servers: 8,
            capacity: 256 << 20,
            chunk: 1 << 20,
            hot: 48,
            hot_fill: 95.0,
            fill: 40.0,
            readers: 16,
            rate: 20.0,
            exponent: 1.1,
            offset: 5.0,
            secs: 20,
            cs_threads: 1,
            seed: 4,
            only: None,
            dir: std::env::temp_dir(),
        };
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--servers" => o.servers = value()?.parse().context("--servers")?,
                "--capacity" => o.capacity = parse_size(&value()?).context("--capacity")?,
                "--chunk" => o.chunk = parse_size(&value()?).context("--chunk")?,
                "--hot" => o.hot = value()?.parse().context("--hot")?,
                "--hot-fill" => o.hot_fill = value()?.parse().context("--hot-fill")?,
                "--fill" => o.fill = value()?.parse().context("--fill")?,
                "--readers" => o.readers = value()?.parse().context("--readers")?,
                "--rate" => o.rate = value()?.parse().context("--rate")?,
                "--exponent" => o.exponent = value()?.parse().context("--exponent")?,
                "--offset" => o.offset = value()?.parse().context("--offset")?,
                "--secs" => o.secs = value()?.parse().context("--secs")?,
                "--cs-threads" => o.cs_threads = value()?.parse().context("--cs-threads")?,
                "--seed" => o.seed = value()?.parse().context("--seed")?,
                "--only" => o.only = Some(value()?),
                "--dir" => o.dir = value()?.into(),
                "-h" | "--help" => return Ok(None),
                _ => bail!("unknown argument {arg:?}\n{USAGE}"),
            }
        }
        o.validate()?;
        Ok(Some(o))
    }

    fn validate(&self) -> Result<()> {
        if self.servers < 4 || self.readers == 0 || self.secs == 0 || self.hot == 0 {
            bail!("--servers must be 4 or more; --readers, --secs and --hot above 0");
        }
        if self.chunk == 0 || self.chunk > self.capacity / 16 {
            bail!("--chunk must be above 0 and at most a sixteenth of --capacity");
        }
        let pct = |p: f64| p.is_finite() && (0.0..=100.0).contains(&p);
        if !pct(self.hot_fill) || !pct(self.fill) || self.fill >= self.hot_fill {
            bail!("--hot-fill and --fill are percentages, --fill below --hot-fill");
        }
        let per_server = (self.capacity / self.chunk) as f64;
        if self.hot as f64 + (self.hot / self.servers + 1) as f64
            > per_server * self.hot_fill / 100.0
        {
            bail!("--hot chunks (and node 1's share of their copy) do not fit in --hot-fill");
        }
        if !(self.rate.is_finite() && self.rate > 0.0) {
            bail!("--rate must be above 0");
        }
        if let Some(d) = &self.only
            && !DESIGNS.iter().any(|(name, _)| name == d)
        {
            bail!("--only takes `capacity-only` or `traffic-aware`, not {d:?}");
        }
        Ok(())
    }
}

/// The designs compared, and the master flags that select each.
const DESIGNS: [(&str, &[&str]); 2] = [
    ("capacity-only", &["--load-threshold-pct", "0"]),
    ("traffic-aware", &[]),
];

#[tokio::main]
async fn main() -> ExitCode {
    let parsed = Opts::parse(std::env::args().skip(1));
    keel_tests::bench::main("keel-traffic-bench", USAGE, parsed, |o| async move {
        run(&o).await
    })
    .await
}

/// Both designs, then the comparison. Fails when a read failed.
async fn run(opts: &Opts) -> Result<()> {
    report::emit(&report::setup(opts));
    let mut rounds = vec![];
    for (design, flags) in DESIGNS {
        if opts.only.as_deref().is_some_and(|d| d != design) {
            continue;
        }
        let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        let r = round::run(opts, design, &flags).await?;
        report::emit(&report::nodes(&r));
        rounds.push(r);
    }
    if let [cap, aware] = rounds.as_slice() {
        report::emit(&report::compare(cap, aware));
    }
    let failed: usize = rounds.iter().map(|r| r.failures.len()).sum();
    if failed > 0 {
        let some: Vec<&String> = rounds.iter().flat_map(|r| &r.failures).take(5).collect();
        bail!("{failed} reads failed, e.g. {some:?}");
    }
    Ok(())
}
