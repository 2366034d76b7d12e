//! Planner benchmark: planning time and model memory for 1,000 servers ×
//! 1,000,000 chunks and 10,000 servers × 10,000,000 chunks (replication 1),
//! plus 1,000 × 1,000,000 at replication 3 over 3 racks,
//! the 1,000 × 1,000,000 cluster with and without 100,000 hot replicas,
//! and bytes moved ÷ lower bound over 100+ random skewed clusters. Prints
//! Markdown tables. `-- --quick` skips the largest cluster.
//!
//! Memory is counted by a global allocator that wraps the system one and
//! keeps live and peak byte counts (bytes requested; the system allocator's
//! own bookkeeping comes on top, see the resident-set column).

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use keel_balancer::load::check;
use keel_balancer::sim::{HeatSpec, Rng, SkewSpec, skewed_cluster, zipf_heat};
use keel_balancer::{ClusterView, InFlight, Plan, Policy, plan};

/// Counts bytes handed out by the system allocator.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counters are
// plain atomics and never affect the memory returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grow(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grow(new_size);
        }
        p
    }
}

fn grow(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Resident set size of this process, from /proc (0 where there is none).
fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// One row of the scale table.
struct ScaleRow {
    servers: usize,
    chunks: usize,
    replicas: usize,
    replication: u32,
    racks: usize,
    model_bytes: usize,
    rss_bytes: usize,
    build: Duration,
    plan: Duration,
    plan_peak: usize,
    plan_out: Plan,
}

fn scale(servers: usize, chunks: usize, replication: u32, racks: usize) -> ScaleRow {
    let (live0, rss0) = (LIVE.load(Ordering::Relaxed), rss_bytes());
    let t = Instant::now();
    let spec = SkewSpec {
        servers,
        chunks,
        capacity: 1 << 40,
        unequal: true,
        hot: 0.1,
        cold: 0.05,
        replication,
        racks,
    };
    let view = skewed_cluster(42, &spec);
    let build = t.elapsed();
    let model_bytes = LIVE.load(Ordering::Relaxed) - live0;
    let rss_bytes = rss_bytes().saturating_sub(rss0);
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let t = Instant::now();
    let plan_out = plan(&view, &Policy::default(), &InFlight::new());
    let plan = t.elapsed();
    let plan_peak = PEAK.load(Ordering::Relaxed) - base;
    let chunks = view.chunk_count();
    let replicas = view.chunks().map(|c| c.replicas().len()).sum();
    let row = ScaleRow {
        servers,
        chunks,
        replicas,
        replication,
        racks,
        model_bytes,
        rss_bytes,
        build,
        plan,
        plan_peak,
        plan_out,
    };
    drop(view);
    row
}

fn mib(bytes: usize) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn print_scale(rows: &[ScaleRow]) {
    println!(
        "| servers | chunks | replication, racks | model (allocated) | per replica | model (RSS) | plan time | planner peak | moves | bytes ÷ bound | band reached |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|");
    for r in rows {
        println!(
            "| {} | {} | {}, {} | {:.0} MiB | {:.1} B | {:.0} MiB | {:.3} s | {:.0} MiB | {} | {:.3} | {} |",
            r.servers,
            r.chunks,
            r.replication,
            r.racks,
            mib(r.model_bytes),
            r.model_bytes as f64 / r.replicas as f64,
            mib(r.rss_bytes),
            r.plan.as_secs_f64(),
            mib(r.plan_peak),
            r.plan_out.moves.len(),
            r.plan_out.efficiency_ratio(),
            if r.plan_out.band_reached { "yes" } else { "no" },
        );
        eprintln!("  (built in {:.1} s)", r.build.as_secs_f64());
    }
}

/// Bytes moved ÷ lower bound over `n` random skewed clusters.
fn ratios(n: u64, margin_pct: f64) -> (f64, f64, usize, usize) {
    let mut rng = Rng::new(2024);
    let policy = Policy {
        margin_pct,
        ..Policy::default()
    };
    let (mut sum, mut max, mut reached, mut counted) = (0.0, 0.0f64, 0, 0);
    for seed in 0..n {
        let spec = SkewSpec {
            servers: rng.range(20, 200) as usize,
            chunks: rng.range(20_000, 100_000) as usize,
            capacity: 1 << 40,
            unequal: seed % 2 == 1,
            hot: 0.05 + 0.2 * rng.unit(),
            cold: 0.05 * rng.unit() + if seed % 3 == 0 { 0.1 } else { 0.0 },
            replication: 1,
            racks: 0,
        };
        let view = skewed_cluster(seed, &spec);
        let p = plan(&view, &policy, &InFlight::new());
        reached += usize::from(p.band_reached && balanced_after(&view, &p));
        if p.lower_bound_bytes > 0 {
            counted += 1;
            sum += p.efficiency_ratio();
            max = max.max(p.efficiency_ratio());
        }
    }
    (sum / counted.max(1) as f64, max, reached, counted)
}

fn balanced_after(view: &ClusterView, p: &Plan) -> bool {
    let mut v = view.clone();
    p.moves.iter().all(|m| v.apply(m).is_ok()) && check(&v, 20.0, 0.0).balanced()
}

/// Planning time of the 1,000 × 1,000,000 cluster without heat and with
/// 100,000 hot replicas (a hundred per server, as the chunk servers' top
/// lists report), with the load band on: (seconds, moves, load moves).
fn heat_rows() {
    println!("\n### Planning with read load (1000 servers, 1M chunks, load band 25 %)\n");
    println!("| heat | plan time | moves | for load | load band reached |");
    println!("|---|---:|---:|---:|:---:|");
    let spec = SkewSpec {
        servers: 1_000,
        chunks: 1_000_000,
        capacity: 1 << 40,
        unequal: true,
        hot: 0.05,
        cold: 0.05,
        replication: 1,
        racks: 0,
    };
    let mut view = skewed_cluster(7, &spec);
    for hot in [0usize, 100_000] {
        if hot > 0 {
            let heat = HeatSpec {
                total_reads_per_sec: 100_000.0,
                background: 0.3,
                hot_chunks: hot,
                exponent: 0.6,
                on: None,
            };
            zipf_heat(7, &mut view, &heat);
        }
        let started = Instant::now();
        let p = plan(&view, &Policy::default(), &InFlight::new());
        let took = started.elapsed().as_secs_f64();
        let for_load = p
            .moves
            .iter()
            .filter(|m| m.reason == keel_balancer::MoveReason::Load)
            .count();
        let reached = if p.load_band_reached { "yes" } else { "no" };
        println!(
            "| {hot} hot replicas | {took:.3} s | {} | {for_load} | {reached} |",
            p.moves.len()
        );
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let mut sizes = vec![(1_000, 1_000_000, 1, 0)];
    if !quick {
        sizes.push((10_000, 10_000_000, 1, 0));
    }
    sizes.push((1_000, 1_000_000, 3, 3));
    let rows: Vec<_> = sizes
        .into_iter()
        .map(|(s, c, r, k)| scale(s, c, r, k))
        .collect();
    println!("### Planning at scale (skewed, unequal capacities)\n");
    print_scale(&rows);
    heat_rows();
    println!(
        "\nChunk ids are 10 characters; a longer id adds its extra bytes once per chunk. \
         Per replica = model bytes allocated ÷ replicas."
    );
    println!(
        "\n### Bytes moved ÷ lower bound, 120 random skewed clusters (20–200 servers, 20k–100k chunks)\n"
    );
    println!("| margin | mean | max | clusters with a bound | band reached |");
    println!("|---:|---:|---:|---:|---:|");
    for margin in [0.5, 0.0, 1.0] {
        let (mean, max, reached, counted) = ratios(120, margin);
        println!("| {margin} pp | {mean:.4} | {max:.4} | {counted} | {reached}/120 |");
    }
}
