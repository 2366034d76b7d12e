//! `keel-load-bench`: read latency of clients that read and write
//! throughout, first while the cluster is idle and then while it rebalances
//! at the default migration bandwidth (no `--migrate-bandwidth` is passed).
//!
//! Each round starts a fresh cluster in a temp dir: a master and two chunk
//! servers preloaded straight to disk with the same chunks (two replicas
//! each), and a third server that joins empty while the balancer is paused.
//! The load (`keel_tests::load`) then runs `--secs` with the balancer still
//! paused (the idle phase), the balancer is resumed, and the same load runs
//! on until the cluster is balanced and the queue idle (the rebalance phase);
//! `--alternate N` pauses and resumes the balancer every N seconds instead.
//! `RebalanceStatus` is polled every 250 ms: a read counts as idle when it
//! started between two polls that both saw the balancer paused and no move
//! running, and as rebalance when both saw a move running. Afterwards every
//! acknowledged chunk is read back from every replica.
//!
//! Prints Markdown on stdout, progress on stderr. Run it through
//! `scripts/bench-load.sh`, which builds the release binaries first; the
//! daemons are taken from the directory of this executable, or from
//! `KEEL_BIN_DIR`.
//!
//! With `--auto` (8 rounds unless `--rounds` says otherwise), every round runs
//! with `--migrate-bandwidth auto`, its kind taken in turn from quiet, CPU
//! hogged (`--hog N` busy loops), disk hogged (a writer fsyncing on the data
//! dirs' file system), many clients (4 × `--clients`, as many writes a
//! second) and a big move set
//! (2 × `--data`); each is judged by the rule that makes `auto` the default:
//! p99 during the rebalance ≤ max(1.2 × idle p99, `--client-latency-target`).
//! Then rebalances with no clients at all (at `--data` and 2 × `--data`) show
//! how fast `auto` moves on an idle cluster, against `--migrate-bandwidth-max`
//! (≥ 80 %). `--compare-fixed` runs every round a second time at a fixed
//! 64 MiB/s.
//!
//! # Layout
//! - `auto`: the `--auto` rounds, their kinds and the rule they are judged by.
//! - `cluster`: a fresh cluster, its preload, and the CPU time of its daemons.
//! - `hog`: busy loops competing for the CPU, a writer competing for the disk.
//! - `round`: one idle phase and one rebalance phase, and what they measured.
//! - `report`: the Markdown.

#[path = "keel-load-bench/auto.rs"]
mod auto;
#[path = "keel-load-bench/cluster.rs"]
mod cluster;
#[path = "keel-load-bench/hog.rs"]
mod hog;
#[path = "keel-load-bench/report.rs"]
mod report;
#[path = "keel-load-bench/round.rs"]
mod round;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use keel_proto::units::parse_size;

const USAGE: &str = "\
usage: keel-load-bench [options]

  --secs N          length of each idle phase in seconds (default 30)
  --clients N       concurrent clients (default 8)
  --rate N          operations per second of each client, 0 for back to back (default 10)
  --write-one-in N  one operation in N writes a new chunk, 0 for none (default 8)
  --rounds N        idle + rebalance pairs, each on a fresh cluster (default 2; 8 with --auto)
  --alternate N     instead of one idle phase and then the rebalance, pause and
                    resume the balancer every N seconds until balanced (default 0: off)
  --data SIZE       bytes preloaded on each of the two loaded servers (default 2GiB)
  --dir DIR         where the temp dir goes (default: $TMPDIR or /tmp); needs about
                    2 x --data plus what the clients write (1 GiB at the defaults)
  --auto            every round at --migrate-bandwidth auto, its kind in turn quiet,
                    CPU hogged, disk hogged, many clients (4 x --clients, as many
                    writes/s), big move
                    set (2 x --data), judged by p99 <= max(1.2 x idle, target);
                    then unloaded rebalances against --migrate-bandwidth-max
  --compare-fixed   with --auto: each round also at a fixed 64 MiB/s
  --first-round N   number of the first round (default 1); with --auto it picks the
                    first kind, e.g. --first-round 4 --rounds 1 for many clients alone
  --auto-max SIZE   --migrate-bandwidth-max of the auto servers (default 128MiB)
  --latency-target D  --client-latency-target of the auto servers (default 20ms)
  --hog N           busy loops competing for the CPU in the CPU-hogged --auto rounds
                    (default: the number of cores)
";

/// What to run.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Seconds of each idle phase.
    pub secs: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Operations per second of each client (0: back to back).
    pub rate: f64,
    /// One operation in this many is a write.
    pub write_one_in: u64,
    /// Idle + rebalance pairs (`None`: 2, or 8 with `--auto`).
    pub rounds: Option<usize>,
    /// Seconds between pausing and resuming the balancer (0: one idle
    /// phase, then the whole rebalance).
    pub alternate: u64,
    /// Bytes preloaded on each loaded server.
    pub data: u64,
    /// Parent of the temp dir.
    pub dir: PathBuf,
    /// Judge `--migrate-bandwidth auto` over rounds of every kind.
    pub auto: bool,
    /// With `auto`: run every round at a fixed 64 MiB/s too.
    pub compare_fixed: bool,
    /// Number of the first round (its seed, and with `auto` its kind).
    pub first_round: usize,
    /// `--migrate-bandwidth-max` of the auto servers.
    pub auto_max: u64,
    /// `--client-latency-target` of the auto servers.
    pub latency_target: String,
    /// Busy loops in the hogged rounds.
    pub hog: usize,
}

impl Opts {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Opts>> {
        let mut o = Opts {
            secs: 30,
            clients: 8,
            rate: 10.0,
            write_one_in: 8,
            rounds: None,
            alternate: 0,
            data: 2 << 30,
            dir: std::env::temp_dir(),
            auto: false,
            compare_fixed: false,
            first_round: 1,
            auto_max: 128 << 20,
            latency_target: "20ms".into(),
            hog: std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--secs" => o.secs = value()?.parse().context("--secs")?,
                "--clients" => o.clients = value()?.parse().context("--clients")?,
                "--rate" => o.rate = value()?.parse().context("--rate")?,
                "--write-one-in" => o.write_one_in = value()?.parse().context("--write-one-in")?,
                "--rounds" => o.rounds = Some(value()?.parse().context("--rounds")?),
                "--alternate" => o.alternate = value()?.parse().context("--alternate")?,
                "--data" => o.data = parse_size(&value()?).context("--data")?,
                "--dir" => o.dir = value()?.into(),
                "--auto" => o.auto = true,
                "--compare-fixed" => o.compare_fixed = true,
                "--first-round" => {
                    o.first_round = value()?.parse().context("--first-round")?;
                }
                "--auto-max" => o.auto_max = parse_size(&value()?).context("--auto-max")?,
                "--latency-target" => {
                    let v = value()?;
                    keel_proto::units::parse_duration(&v).context("--latency-target")?;
                    o.latency_target = v;
                }
                "--hog" => o.hog = value()?.parse().context("--hog")?,
                "-h" | "--help" => return Ok(None),
                _ => bail!("unknown argument {arg:?}\n{USAGE}"),
            }
        }
        if o.secs == 0
            || o.clients == 0
            || o.rounds == Some(0)
            || o.first_round == 0
            || o.rate.is_nan()
            || o.rate < 0.0
        {
            bail!(
                "--secs, --clients, --rounds and --first-round must be above 0, --rate 0 or more"
            );
        }
        if o.data < 64 << 20 {
            bail!("--data must be at least 64MiB");
        }
        Ok(Some(o))
    }

    /// Numbers of the rounds to run: `--rounds` of them from `--first-round`,
    /// by default 8 with `--auto` (enough for every kind once and the first
    /// three twice) and 2 without.
    pub fn rounds(&self) -> std::ops::RangeInclusive<usize> {
        let n = self.rounds.unwrap_or(if self.auto { 8 } else { 2 });
        self.first_round..=self.first_round + n - 1
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let parsed = Opts::parse(std::env::args().skip(1));
    keel_tests::bench::main("keel-load-bench", USAGE, parsed, |o| async move {
        run(&o).await
    })
    .await
}

/// Every round, printed as it ends, then the summary. Fails when a read
/// failed, a write failed or an acknowledged chunk did not read back.
async fn run(opts: &Opts) -> Result<()> {
    report::emit(&report::setup(opts));
    if opts.auto {
        return auto::run(opts).await;
    }
    let mut rounds = vec![];
    for no in opts.rounds() {
        let r = round::run(opts, no, &[]).await?;
        report::emit(&report::round(&r, no));
        rounds.push(r);
    }
    report::emit(&report::summary(&rounds));
    let trouble: usize = rounds.iter().map(round::Round::trouble).sum();
    if trouble > 0 {
        bail!("{trouble} failed reads, failed writes or bad chunks (listed above)");
    }
    Ok(())
}
