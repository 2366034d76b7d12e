//! The Markdown: both designs side by side, the goal's verdicts, and every
//! node's reads/s after the pass against the load band.

use std::time::Duration;

use keel_balancer::traffic::{DEFAULT_LOAD_THRESHOLD_PCT, LoadPosition};
use keel_tests::readers::Phase;
use keel_tests::traffic;

use crate::Opts;
use crate::cluster::HOT_NODE;
use crate::round::Round;

/// The goal: node 1's p99 after the pass at most this many times baseline.
pub const P99_GOAL: f64 = 1.2;
/// The goal: bytes moved at most this many times the capacity-only pass.
pub const BYTES_GOAL: f64 = 1.3;
const MIB: f64 = (1u64 << 20) as f64;

/// What was run, in one paragraph.
pub fn setup(o: &Opts) -> String {
    format!(
        "{} chunk servers of {} MiB (`--cs-threads {}`), chunks of {} KiB at factor 1; \
         {HOT_NODE} at {} % holding the {} hot chunks, the others at {} %, and an evenly \
         spread copy of the hot set for the baseline. {} readers at {} reads/s each, Zipf \
         exponent {} offset {}, seed {}; phases of {} s. Load band ±{DEFAULT_LOAD_THRESHOLD_PCT} % \
         of the mean reads/s (noise floor {} reads/s).\n",
        o.servers,
        o.capacity >> 20,
        o.cs_threads,
        o.chunk >> 10,
        o.hot_fill,
        o.hot,
        o.fill,
        o.readers,
        o.rate,
        o.exponent,
        o.offset,
        o.seed,
        o.secs,
        keel_balancer::traffic::LOAD_NOISE_FLOOR_READS_PER_SEC,
    )
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// Servers inside the load band after the pass, and how many there are.
fn inside_after(r: &Round) -> (usize, usize) {
    let rates = r.rates.get(&Phase::After).cloned().unwrap_or_default();
    let p = traffic::positions(&rates, DEFAULT_LOAD_THRESHOLD_PCT);
    let inside = p.values().filter(|p| **p == LoadPosition::Inside).count();
    (inside, p.len())
}

/// Node 1's share of reads in `phase`, percent.
fn share(r: &Round, phase: Phase) -> f64 {
    r.rates
        .get(&phase)
        .map_or(0.0, |rates| traffic::share_pct(rates, HOT_NODE))
}

/// The two designs side by side, and the goal's verdicts for the last.
pub fn compare(cap: &Round, aware: &Round) -> String {
    let mut out = format!("| | {} | {} |\n|---|---|---|\n", cap.design, aware.design);
    let row = |out: &mut String, name: &str, f: &dyn Fn(&Round) -> String| {
        *out += &format!("| {name} | {} | {} |\n", f(cap), f(aware));
    };
    row(&mut out, "baseline p99 (even copy, every node)", &|r| {
        ms(r.baseline.p99)
    });
    for (phase, name) in [
        (Phase::Before, "before"),
        (Phase::During, "during"),
        (Phase::After, "after"),
    ] {
        row(
            &mut out,
            &format!("node 1 p99 {name} (÷ baseline)"),
            &|r| {
                let p = r.node1(phase);
                format!("{} (**{:.2}×**)", ms(p.p99), ratio(p.p99, r.baseline.p99))
            },
        );
    }
    for (phase, name) in [(Phase::Before, "before"), (Phase::After, "after")] {
        row(
            &mut out,
            &format!("node 1 p99 {name} ÷ the other nodes' p99, same seconds"),
            &|r| {
                let others = r.others.get(&phase).copied().unwrap_or_default();
                let p99 = r.node1(phase).p99;
                format!("{} (**{:.2}×**)", ms(others.p99), ratio(p99, others.p99))
            },
        );
    }
    row(&mut out, "node 1 share of reads before → after", &|r| {
        format!(
            "{:.0} % → {:.0} %",
            share(r, Phase::Before),
            share(r, Phase::After)
        )
    });
    row(&mut out, "nodes inside the load band after", &|r| {
        let (i, n) = inside_after(r);
        format!("{i} of {n}")
    });
    row(&mut out, "capacity inside its band after", &|r| {
        (if r.capacity_balanced { "yes" } else { "no" }).to_owned()
    });
    row(&mut out, "planned moves: load + capacity", &|r| {
        format!("{} + {}", r.moves.0, r.moves.1)
    });
    row(&mut out, "bytes moved (÷ capacity-only)", &|r| {
        let x = r.bytes_moved as f64 / (cap.bytes_moved as f64).max(1.0);
        format!("{:.0} MiB ({x:.2}×)", r.bytes_moved as f64 / MIB)
    });
    row(&mut out, "pass took", &|r| format!("{:.1} s", r.pass_secs));
    row(&mut out, "failed reads / refusals", &|r| {
        format!("{} / {}", r.failures.len(), r.refusals)
    });
    out + "\n" + &goal(cap, aware)
}

/// The goal's four verdicts for the traffic-aware design.
fn goal(cap: &Round, aware: &Round) -> String {
    let p99 = ratio(aware.node1(Phase::After).p99, aware.baseline.p99);
    let others = aware.others.get(&Phase::After).copied().unwrap_or_default();
    let same = ratio(aware.node1(Phase::After).p99, others.p99);
    let (inside, n) = inside_after(aware);
    let bytes = aware.bytes_moved as f64 / (cap.bytes_moved as f64).max(1.0);
    format!(
        "Goal (traffic-aware): node 1 p99 after ≤ {P99_GOAL}× baseline: {p99:.2}×, {} \
         (÷ the other nodes in the same seconds: {same:.2}×, {}); every \
         node's reads/s inside the load band: {inside} of {n}, {}; capacity in band: {}; bytes \
         moved ≤ {BYTES_GOAL}× capacity-only: {bytes:.2}×, {}.\n",
        met(p99 <= P99_GOAL),
        met(same <= P99_GOAL),
        met(inside == n),
        met(aware.capacity_balanced),
        met(bytes <= BYTES_GOAL),
    )
}

/// Every node after the pass: readers' reads/s, their position in the band,
/// p99, the master's decayed reads/s and utilization.
pub fn nodes(r: &Round) -> String {
    let rates = r.rates.get(&Phase::After).cloned().unwrap_or_default();
    let pos = traffic::positions(&rates, DEFAULT_LOAD_THRESHOLD_PCT);
    let served = r.served.get(&Phase::After).cloned().unwrap_or_default();
    let before = r.rates.get(&Phase::Before).cloned().unwrap_or_default();
    let mut out = format!(
        "#### {}: every node after the pass (mean {:.1} reads/s)\n\n\
         | node | reads/s before | reads/s after | load band | p99 after | master's reads/s (decayed) | utilization |\n\
         |---|---:|---:|---|---:|---:|---:|\n",
        r.design,
        traffic::mean(rates.values())
    );
    for (id, rate) in &rates {
        let p = match pos.get(id) {
            Some(LoadPosition::Hot) => "hot",
            Some(LoadPosition::Cold) => "cold",
            _ => "inside",
        };
        let p99 = served.get(id).map_or("–".to_owned(), |s| ms(s.latency.p99));
        out += &format!(
            "| {id} | {:.1} | {rate:.1} | {p} | {p99} | {:.1} | {:.1} % |\n",
            before.get(id).copied().unwrap_or(0.0),
            r.master_rates.get(id).copied().unwrap_or(0.0),
            r.utilization.get(id).copied().unwrap_or(0.0),
        );
    }
    out
}

/// Prints `text` and a blank line on stdout, at once.
pub fn emit(text: &str) {
    println!("{text}");
}
