//! `keel-balance-bench`: time to balance at the migration budget, on real
//! processes, against the least time the plan's bytes allow.
//!
//! Each round starts a master and `--servers` chunk servers in a temp dir,
//! every server with the same `--migrate-bandwidth` B (in and out together).
//! `--full` of them are loaded with `--data` bytes each, in chunks of mixed
//! sizes (`--min-chunk` to `--max-chunk`, seeded per round), the others
//! start empty. The master's plan (`RebalancePlan`) gives the bytes each
//! server sends and receives; its bottleneck server decides the bound,
//! `max over servers (bytes in + bytes out) ÷ B`. Then `RebalanceRun` queues
//! the same plan and the clock runs until no move is pending or running.
//! Reported per round: planned bytes, the bound, the time taken and their
//! ratio (the target is ≤ 1.15); then the median and the maximum.
//!
//! Prints Markdown on stdout, progress on stderr. Run it through
//! `scripts/bench-balance.sh`, which builds the release binaries first.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_proto::units::parse_size;
use keel_proto::v1::{RebalancePlanRequest, RebalanceRunRequest, RebalanceStatusRequest};
use keel_tests::bench::{Fresh, strings};
use keel_tests::chunks::{pattern, write};
use keel_tests::{Cluster, Daemon, master_client};

const USAGE: &str = "\
usage: keel-balance-bench [options]

  --servers N        chunk servers, at least 4 (default 8)
  --full N           of them loaded at the start, the rest empty (default half)
  --data SIZE        bytes on each loaded server (default 256MiB)
  --min-chunk SIZE   smallest chunk (default 1MiB)
  --max-chunk SIZE   largest chunk (default 16MiB)
  --bandwidth SIZE   each server's --migrate-bandwidth (default 16MiB)
  --moves N|auto     the master's --max-concurrent-moves (default auto, its default)
  --per-server N     the master's --max-moves-per-server (default 4, its default)
  --threshold PCT    the master's --threshold-pct (default 2)
  --rounds N         rounds, each on a fresh cluster (default 3)
  --dir DIR          where the temp dirs go (default: $TMPDIR or /tmp)
";

/// What to run.
#[derive(Debug, Clone)]
struct Opts {
    servers: usize,
    full: usize,
    data: u64,
    min_chunk: u64,
    max_chunk: u64,
    bandwidth: u64,
    moves: String,
    per_server: u32,
    threshold: f64,
    rounds: usize,
    dir: std::path::PathBuf,
}

impl Opts {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Opts>> {
        let mut o = Opts {
            servers: 8,
            full: 0,
            data: 256 << 20,
            min_chunk: 1 << 20,
            max_chunk: 16 << 20,
            bandwidth: 16 << 20,
            moves: "auto".into(),
            per_server: 4,
            threshold: 2.0,
            rounds: 3,
            dir: std::env::temp_dir(),
        };
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--servers" => o.servers = value()?.parse().context("--servers")?,
                "--full" => o.full = value()?.parse().context("--full")?,
                "--data" => o.data = parse_size(&value()?).context("--data")?,
                "--min-chunk" => o.min_chunk = parse_size(&value()?).context("--min-chunk")?,
                "--max-chunk" => o.max_chunk = parse_size(&value()?).context("--max-chunk")?,
                "--bandwidth" => o.bandwidth = parse_size(&value()?).context("--bandwidth")?,
                "--moves" => o.moves = value()?,
                "--per-server" => o.per_server = value()?.parse().context("--per-server")?,
                "--threshold" => o.threshold = value()?.parse().context("--threshold")?,
                "--rounds" => o.rounds = value()?.parse().context("--rounds")?,
                "--dir" => o.dir = value()?.into(),
                "-h" | "--help" => return Ok(None),
                _ => bail!("unknown argument {arg:?}\n{USAGE}"),
            }
        }
        if o.full == 0 {
            o.full = o.servers / 2;
        }
        let sizes_ok = 0 < o.min_chunk && o.min_chunk <= o.max_chunk && o.max_chunk <= o.data;
        if o.servers < 4 || o.full == 0 || o.full >= o.servers || !sizes_ok {
            bail!(
                "--servers must be 4 or more, --full between 1 and --servers - 1, chunk sizes between 1 byte and --data"
            );
        }
        let moves_ok = o.moves == "auto" || o.moves.parse::<u32>().is_ok_and(|n| n > 0);
        if o.bandwidth == 0 || !moves_ok || o.per_server == 0 || o.rounds == 0 {
            bail!(
                "--bandwidth, --per-server and --rounds must be above 0, --moves `auto` or above 0"
            );
        }
        Ok(Some(o))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let parsed = Opts::parse(std::env::args().skip(1));
    keel_tests::bench::main("keel-balance-bench", USAGE, parsed, |o| async move {
        run(&o).await
    })
    .await
}

async fn start(o: &Opts) -> Result<Fresh> {
    let mut f = Fresh::new("keel-balance-bench-", &o.dir)?;
    let c = &mut f.0;
    let mut args = strings(&[
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--safe-mode",
        "0s",
        "--balance-interval",
        "0",
    ]);
    args.extend(["--max-concurrent-moves".into(), o.moves.clone()]);
    args.extend(["--max-moves-per-server".into(), o.per_server.to_string()]);
    args.extend(["--threshold-pct".into(), o.threshold.to_string()]);
    let log = c.dir.path().join("master.log");
    let bin = keel_tests::bench::sibling_bin("keel-master")?;
    c.master = Some(Daemon::start("master", bin, args, vec![], log)?);
    let url = c.master_url();
    let capacity = (o.data * 2).to_string();
    for i in 1..=o.servers {
        let id = format!("cs{i}");
        let data = c.dir.path().join(format!("data-{id}"));
        let mut a = strings(&["--id", &id, "--listen", "127.0.0.1:0", "--master", &url]);
        a.extend([
            "--data-dir".into(),
            data.display().to_string(),
            "--capacity".into(),
            capacity.clone(),
        ]);
        a.extend(["--migrate-bandwidth".into(), o.bandwidth.to_string()]);
        a.extend(strings(&["--heartbeat-interval", "500ms"]));
        let log = c.dir.path().join(format!("{id}.log"));
        let bin = keel_tests::bench::sibling_bin("keel-chunkserver")?;
        c.chunkservers
            .insert(id.clone(), Daemon::start(&id, bin, a, vec![], log)?);
    }
    c.wait_alive(o.servers).await?;
    Ok(f)
}

/// A small seeded generator (xorshift), so every round's sizes differ but
/// can be replayed.
struct Sizes(u64);

impl Sizes {
    fn next(&mut self, min: u64, max: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // Whole 64 KiB steps, like most real chunk sizes.
        let steps = (max - min) / (64 << 10) + 1;
        min + (self.0 % steps) * (64 << 10)
    }
}

/// Fills each of the first `--full` servers with `--data` bytes of chunks
/// of one replica; returns the bytes written.
async fn load(c: &Cluster, o: &Opts, round: usize) -> Result<u64> {
    let started = Instant::now();
    let mut sizes = Sizes(0x9e37_79b9_7f4a_7c15 ^ (round as u64 + 1));
    let (mut total, mut n) = (0u64, 0usize);
    for s in 1..=o.full {
        let url = c.chunkservers[&format!("cs{s}")].url();
        let mut held = 0;
        while held + o.min_chunk <= o.data {
            let size = sizes.next(o.min_chunk, o.max_chunk).min(o.data - held);
            let data = pattern(n as u64, size as usize);
            write(&url, &format!("r{round}-c{n:05}"), &data, 1).await?;
            held += size;
            n += 1;
        }
        total += held;
    }
    eprintln!(
        "round {round}: wrote {n} chunks, {} MiB, in {:.1}s",
        total >> 20,
        started.elapsed().as_secs_f64()
    );
    Ok(total)
}

/// One round's figures.
#[derive(Debug, Clone, Copy)]
struct Round {
    moves: usize,
    bytes: u64,
    /// Bytes in plus out of the bottleneck server.
    bottleneck: u64,
    bound: Duration,
    took: Duration,
}

impl Round {
    fn ratio(&self) -> f64 {
        self.took.as_secs_f64() / self.bound.as_secs_f64()
    }
}

/// Plans, queues the plan and times it to the last move's end.
async fn round(o: &Opts, round: usize) -> Result<Round> {
    let f = start(o).await?;
    let url = f.0.master_url();
    let total = load(&f.0, o, round).await?;
    keel_tests::master::wait_used(&url, total, Duration::from_secs(60)).await?;
    let mut m = master_client(&url).await?;
    let plan = m
        .rebalance_plan(RebalancePlanRequest {})
        .await?
        .into_inner();
    let mut through: BTreeMap<&str, u64> = BTreeMap::new();
    for mv in &plan.moves {
        *through.entry(&mv.from).or_default() += mv.bytes;
        *through.entry(&mv.to).or_default() += mv.bytes;
    }
    let bottleneck = through.values().copied().max().unwrap_or(0);
    if bottleneck == 0 {
        bail!("round {round}: the plan moves nothing: {:?}", plan.notes);
    }
    let bound = Duration::from_secs_f64(bottleneck as f64 / o.bandwidth as f64);
    let started = Instant::now();
    let run = m.rebalance_run(RebalanceRunRequest {}).await?.into_inner();
    if run.bytes != plan.bytes {
        bail!(
            "round {round}: the run queued {} bytes, the plan had {}",
            run.bytes,
            plan.bytes
        );
    }
    let deadline = started + bound * 10 + Duration::from_secs(30);
    loop {
        let s = m
            .rebalance_status(RebalanceStatusRequest {})
            .await?
            .into_inner();
        if s.pending == 0 && s.running == 0 {
            if s.failed > 0 {
                bail!("round {round}: {} moves failed", s.failed);
            }
            break;
        }
        if Instant::now() > deadline {
            bail!("round {round}: not done after {:?}", started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = started.elapsed();
    let r = Round {
        moves: plan.moves.len(),
        bytes: plan.bytes,
        bottleneck,
        bound,
        took,
    };
    eprintln!(
        "round {round}: {} moves, {} MiB, bound {:.2}s, took {:.2}s, ratio {:.3}",
        r.moves,
        r.bytes >> 20,
        bound.as_secs_f64(),
        took.as_secs_f64(),
        r.ratio()
    );
    Ok(r)
}

async fn run(o: &Opts) -> Result<()> {
    let mut rounds = Vec::new();
    for i in 1..=o.rounds {
        rounds.push(round(o, i).await?);
    }
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!(
        "{} servers ({} loaded with {:.0} MiB each, the rest empty), `--migrate-bandwidth {:.0}MiB` each, chunks of {:.0}–{:.0} MiB, `--max-concurrent-moves {}`, `--max-moves-per-server {}`, `--threshold-pct {}`.",
        o.servers,
        o.full,
        mib(o.data),
        mib(o.bandwidth),
        mib(o.min_chunk),
        mib(o.max_chunk),
        o.moves,
        o.per_server,
        o.threshold
    );
    println!();
    println!("| round | moves | planned | bottleneck in + out | bound | took | took ÷ bound |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for (i, r) in rounds.iter().enumerate() {
        println!(
            "| {} | {} | {:.0} MiB | {:.0} MiB | {:.2} s | {:.2} s | **{:.3}** |",
            i + 1,
            r.moves,
            mib(r.bytes),
            mib(r.bottleneck),
            r.bound.as_secs_f64(),
            r.took.as_secs_f64(),
            r.ratio()
        );
    }
    let mut ratios: Vec<f64> = rounds.iter().map(Round::ratio).collect();
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let max = ratios[ratios.len() - 1];
    println!();
    println!(
        "took ÷ bound: median **{median:.3}**, max **{max:.3}** over {} rounds (target ≤ 1.15).",
        ratios.len()
    );
    Ok(())
}
