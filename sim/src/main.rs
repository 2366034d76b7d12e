//! `keel-sim`: runs seeds of the protocol simulation and prints, last,
//! `seeds N, failures F, steps S, R steps/s`. A failing seed prints the
//! command that replays it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Parser;

/// Runs seeds of Keel's protocol simulation.
#[derive(Debug, Parser)]
#[command(name = "keel-sim", version)]
struct Args {
    /// How many seeds to run.
    #[arg(long, env = "KEEL_SEEDS", default_value_t = 1000)]
    seeds: u64,
    /// The first seed.
    #[arg(long, env = "KEEL_FIRST_SEED", default_value_t = 0)]
    first_seed: u64,
    /// Runs this one seed only, telling what it did.
    #[arg(long, env = "KEEL_SEED", conflicts_with_all = ["seeds", "first_seed"])]
    seed: Option<u64>,
    /// With `--seed`: print every event.
    #[arg(long, env = "KEEL_TRACE", requires = "seed")]
    trace: bool,
    /// Run every seed to its end after a violation (to time full runs).
    #[arg(long, env = "KEEL_KEEP_GOING")]
    keep_going: bool,
    /// Worker threads (default: the machine's cores).
    #[arg(long, env = "KEEL_THREADS")]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (first, count) = match args.seed {
        Some(s) => (s, 1),
        None => (args.first_seed, args.seeds),
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let started = Instant::now();
    let next = AtomicU64::new(first);
    let steps = AtomicU64::new(0);
    let failures = AtomicU64::new(0);
    let end = first.saturating_add(count);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let opts = keel_sim::Options {
                        trace: args.trace,
                        keep_going: args.keep_going,
                    };
                    let out = keel_sim::run_seed_with(seed, opts);
                    steps.fetch_add(out.steps, Ordering::Relaxed);
                    if let Err(why) = &out.result {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("seed {seed} failed ({}): {why}", out.cluster);
                        eprintln!("  replay: scripts/simulate.sh --seed {seed}");
                    } else if args.seed.is_some() {
                        eprintln!(
                            "seed {seed} held ({}), digest {:#x}",
                            out.cluster, out.digest
                        );
                    }
                }
            });
        }
    });
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let (steps, failures) = (steps.into_inner(), failures.into_inner());
    println!(
        "seeds {count}, failures {failures}, steps {steps}, {:.0} steps/s",
        steps as f64 / secs
    );
    if failures > 0 {
        std::process::exit(1);
    }
    Ok(())
}
