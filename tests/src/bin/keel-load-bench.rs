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
//! With `--auto`, each round runs twice on fresh clusters, once with the
//! chunk servers at the default fixed `--migrate-bandwidth` and once with
//! `--migrate-bandwidth auto`; every other round (the even ones) runs with
//! `--hog N` busy loops competing for the CPU throughout. Then a rebalance
//! with no clients at all shows how fast `auto` moves on an idle cluster,
//! against `--migrate-bandwidth-max` and the fixed default.
//!
//! # Layout
//! - `cluster`: a fresh cluster, its preload, and the CPU time of its daemons.
//! - `hog`: busy loops competing for the CPU.
//! - `round`: one idle phase and one rebalance phase, and what they measured.
//! - `report`: the Markdown.

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
  --rounds N        idle + rebalance pairs, each on a fresh cluster (default 2)
  --alternate N     instead of one idle phase and then the rebalance, pause and
                    resume the balancer every N seconds until balanced (default 0: off)
  --data SIZE       bytes preloaded on each of the two loaded servers (default 2GiB)
  --dir DIR         where the temp dir goes (default: $TMPDIR or /tmp); needs about
                    2 x --data plus what the clients write (1 GiB at the defaults)
  --auto            each round twice, fixed (default) and --migrate-bandwidth auto,
                    CPU hogs in even rounds, then an unloaded rebalance of each
  --auto-max SIZE   --migrate-bandwidth-max of the auto servers (default 128MiB)
  --latency-target D  --client-latency-target of the auto servers (default 20ms)
  --hog N           busy loops competing for the CPU in the even --auto rounds
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
    /// Idle + rebalance pairs.
    pub rounds: usize,
    /// Seconds between pausing and resuming the balancer (0: one idle
    /// phase, then the whole rebalance).
    pub alternate: u64,
    /// Bytes preloaded on each loaded server.
    pub data: u64,
    /// Parent of the temp dir.
    pub dir: PathBuf,
    /// Compare fixed and auto bandwidth, with and without CPU hogs.
    pub auto: bool,
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
            rounds: 2,
            alternate: 0,
            data: 2 << 30,
            dir: std::env::temp_dir(),
            auto: false,
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
                "--rounds" => o.rounds = value()?.parse().context("--rounds")?,
                "--alternate" => o.alternate = value()?.parse().context("--alternate")?,
                "--data" => o.data = parse_size(&value()?).context("--data")?,
                "--dir" => o.dir = value()?.into(),
                "--auto" => o.auto = true,
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
        if o.secs == 0 || o.clients == 0 || o.rounds == 0 || o.rate.is_nan() || o.rate < 0.0 {
            bail!("--secs, --clients and --rounds must be above 0, --rate 0 or more");
        }
        if o.data < 64 << 20 {
            bail!("--data must be at least 64MiB");
        }
        Ok(Some(o))
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
        return run_auto(opts).await;
    }
    let mut rounds = vec![];
    for no in 1..=opts.rounds {
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

/// Server flags of the two designs compared by `--auto`.
fn designs(opts: &Opts) -> [(&'static str, Vec<String>); 2] {
    let auto = vec![
        "--migrate-bandwidth".into(),
        "auto".into(),
        "--migrate-bandwidth-max".into(),
        opts.auto_max.to_string(),
        "--client-latency-target".into(),
        opts.latency_target.clone(),
    ];
    [("fixed 64 MiB/s", vec![]), ("auto", auto)]
}

/// `--auto`: every round with both designs (hogs in even rounds), then an
/// unloaded rebalance with each.
async fn run_auto(opts: &Opts) -> Result<()> {
    let mut rows = vec![];
    let mut trouble = 0;
    for no in 1..=opts.rounds {
        let hogs = if no % 2 == 0 { opts.hog } else { 0 };
        for (name, flags) in designs(opts) {
            let _hog = hog::Hog::start(hogs)?;
            eprintln!("round {no}: {name}, {hogs} busy loops");
            let r = round::run(opts, no, &flags).await?;
            report::emit(&format!(
                "#### Round {no}, {name}, {hogs} busy loops\n\n{}",
                report::round(&r, no)
            ));
            trouble += r.trouble();
            rows.push(report::AutoRow {
                round: no,
                hogs,
                design: name,
                round_result: r,
            });
        }
    }
    report::emit(&report::auto_summary(&rows));
    let mut unloaded = vec![];
    for (name, flags) in designs(opts) {
        eprintln!("unloaded rebalance: {name}");
        let (bytes, secs) = round::unloaded(opts, opts.rounds + 1, &flags).await?;
        unloaded.push((name, bytes, secs));
    }
    report::emit(&report::unloaded(opts.auto_max, &unloaded));
    if trouble > 0 {
        bail!("{trouble} failed reads, failed writes or bad chunks (listed above)");
    }
    Ok(())
}
