//! Numbers into Markdown, and how busy the machine was.

use std::io::Write;
use std::time::Duration;

use keel_tests::load::Percentiles;

use crate::Opts;
use crate::round::Round;

/// Bytes in a MiB.
pub const MIB: f64 = (1u64 << 20) as f64;
/// The target: p99 while moves run at most this many times the idle p99.
const TARGET_P99_RATIO: f64 = 1.5;

/// Prints a section to stdout at once.
pub fn emit(markdown: &str) {
    println!("{markdown}");
    let _ = std::io::stdout().flush();
}

/// What the run is: the load and the cluster.
pub fn setup(opts: &Opts) -> String {
    let pace = if opts.rate > 0.0 {
        format!("{} operations/s each", opts.rate)
    } else {
        "each back to back".to_owned()
    };
    let writes = match opts.write_one_in {
        0 => "no writes".to_owned(),
        n => format!("1 write of a new chunk in {n} operations"),
    };
    let phases = match opts.alternate {
        0 => format!(
            "an idle phase of {} s with the balancer paused, then the rebalance",
            opts.secs
        ),
        n => format!("the balancer paused and resumed every {n} s until balanced"),
    };
    let bandwidth = if opts.auto {
        "at `--migrate-bandwidth` as each round says"
    } else {
        "at the default `--migrate-bandwidth`"
    };
    format!(
        "{} clients, {pace}, {writes}, chunks of 64 KiB–1 MiB. Each round: a fresh master and \
         three chunk servers {bandwidth}; {} MiB preloaded \
         on cs1 and cs2 (the same chunks on both, half their capacity), cs3 joins empty; \
         {phases} (band ±2 points), all under the same load. A read counts as idle when it \
         started between two status polls (every 250 ms) that both saw the balancer paused \
         and no move running, as rebalance when both saw a move running. At start: {}.\n",
        opts.clients,
        opts.data >> 20,
        busy()
    )
}

/// The tables of one round.
pub fn round(r: &Round, no: usize) -> String {
    let mut out =
        format!("### Round {no}\n\n| phase | reads | p50 | p99 | max |\n|---|---|---|---|---|\n");
    out += &row("idle (balancer paused)", &r.idle);
    out += &row(
        &format!("rebalance (moves running, {:.1} s)", r.move_secs),
        &r.moving,
    );
    out += &format!(
        "| rebalance ÷ idle | | **{:.2}** | **{:.2}** | {:.2} |\n\n",
        ratio(r.moving.p50, r.idle.p50),
        ratio(r.moving.p99, r.idle.p99),
        ratio(r.moving.max, r.idle.max),
    );
    out += &format!(
        "Moved {:.0} MiB in {} moves, {:.1} MiB/s over the {:.1} s the balancer ran. \
         At the end: {}.\n\n",
        r.moved_bytes as f64 / MIB,
        r.moves,
        r.move_rate(),
        r.cpu.1.secs,
        r.machine
    );
    out += &cpu_table(r);
    out += &outcome(r);
    out
}

fn row(name: &str, p: &Percentiles) -> String {
    format!(
        "| {name} | {} | {} | {} | {} |\n",
        p.count,
        ms(p.p50),
        ms(p.p99),
        ms(p.max)
    )
}

/// CPU cores each process kept busy while paused and while moving, and how
/// much of the time some task on the machine waited for a CPU.
fn cpu_table(r: &Round) -> String {
    let names: Vec<&str> = r.cpu.0.procs.iter().map(|p| p.0.as_str()).collect();
    let mut out = format!(
        "| CPU cores busy | {} | total | some task waiting for a CPU |\n|---|{}---|---|\n",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for (phase, share) in [
        ("balancer paused", &r.cpu.0),
        ("balancer running", &r.cpu.1),
    ] {
        let secs = share.secs.max(1e-9);
        let cores: Vec<f64> = share.procs.iter().map(|p| p.1 / secs).collect();
        let cells: Vec<String> = cores.iter().map(|x| format!("{x:.2}")).collect();
        out += &format!(
            "| {phase} ({:.0} s) | {} | {:.2} | {:.0} % |\n",
            share.secs,
            cells.join(" | "),
            cores.iter().sum::<f64>(),
            100.0 * share.waited / secs
        );
    }
    out + "\n"
}

/// Reads, writes and the read-back, with the first few failures.
fn outcome(r: &Round) -> String {
    let (l, v) = (&r.report, &r.verified);
    let mut out = format!(
        "Reads: {} ({} located again), {} failed. Writes: {} acknowledged, {} failed. \
         Read back: {} chunks from {} replicas, {} lost, {} bad replicas, {} below their factor.\n",
        l.reads,
        l.relocated,
        l.failed_reads.len(),
        l.writes,
        l.failed_writes.len(),
        v.chunks,
        v.good_replicas,
        v.lost.len(),
        v.bad.len(),
        v.short.len(),
    );
    let failures = l.failed_reads.iter().chain(&l.failed_writes);
    for e in failures
        .chain(&v.lost)
        .chain(&v.bad)
        .chain(&v.short)
        .take(10)
    {
        out += &format!("- {e}\n");
    }
    out
}

/// One line per round, and whether each met the target.
pub fn summary(rounds: &[Round]) -> String {
    let mut out = String::from(
        "### All rounds\n\n| round | idle p50 | idle p99 | rebalance p50 | rebalance p99 \
         | p50 ratio | p99 ratio | moved | p99 ≤ 1.5× idle |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (i, r) in rounds.iter().enumerate() {
        let p99 = ratio(r.moving.p99, r.idle.p99);
        out += &format!(
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.1} MiB/s | {} |\n",
            i + 1,
            ms(r.idle.p50),
            ms(r.idle.p99),
            ms(r.moving.p50),
            ms(r.moving.p99),
            ratio(r.moving.p50, r.idle.p50),
            p99,
            r.move_rate(),
            if p99 <= TARGET_P99_RATIO {
                "met"
            } else {
                "MISSED"
            },
        );
    }
    out
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

/// Load averages and CPU pressure, e.g. `load 1.20 0.90 0.70, CPU pressure 12 %`.
pub fn busy() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let pressure = std::fs::read_to_string("/proc/pressure/cpu")
        .ok()
        .and_then(|t| {
            let some = t.lines().find(|l| l.starts_with("some"))?.to_owned();
            let avg10 = some
                .split_whitespace()
                .find_map(|f| f.strip_prefix("avg10="))?;
            Some(format!(", CPU pressure {avg10} %"))
        })
        .unwrap_or_default();
    format!("load {}{pressure}", load.join(" "))
}
