//! Measures the master's metadata at scale: heap bytes per chunk replica
//! (everything the metadata holds, the balancer's view it keeps up to date
//! included), how long full reports take to apply, and how long a balancer
//! view takes: the one a pass takes, and a full copy in id order.
//!
//! `cargo run --release -p keel-master --example meta_memory -- 10000000`
//! (chunks; default 1 000 000), 20 servers, replication 3, 24-character ids.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use keel_master::meta::{Heartbeat, Meta, MetaSettings, ReplicaReport};

/// The system allocator, counting live bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SERVERS: usize = 20;
const REPLICATION: usize = 3;

fn chunk_id(i: usize) -> String {
    format!("vol{:03}.seg-{:012}", i % 1000, i)
}

fn report(server: usize, chunks: usize) -> Heartbeat {
    // Chunk i lives on servers i, i+1, i+2 (mod SERVERS).
    let mine: Vec<ReplicaReport> = (0..chunks)
        .filter(|i| (0..REPLICATION).any(|k| (i + k) % SERVERS == server))
        .map(|i| ReplicaReport {
            chunk: chunk_id(i),
            size: 64 << 20,
            crc32c: i as u32,
            replication: REPLICATION as u32,
            reads: 0,
            replica_id: i as u64 + 1,
            suspect: false,
        })
        .collect();
    Heartbeat {
        id: format!("cs{server:02}"),
        address: format!("http://10.0.0.{server}:7001"),
        rack: format!("r{}", server % 4),
        capacity: u64::MAX / 64,
        used: 0,
        full_report: true,
        chunk_count: mine.len() as u64,
        chunks: mine,
        removed: vec![],
        stamp: None,
        draining: false,
        migrate_rate: 0,
        deleting: vec![],
        reads: Default::default(),
    }
}

fn main() {
    let chunks: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let base = LIVE.load(Ordering::Relaxed);
    let mut meta = Meta::new(MetaSettings::default());
    let mut applying = Duration::ZERO;
    for s in 0..SERVERS {
        let hb = report(s, chunks);
        let t = Instant::now();
        meta.apply_heartbeat(hb, Instant::now());
        applying += t.elapsed();
    }
    let heap = LIVE.load(Ordering::Relaxed) - base;
    let replicas = chunks * REPLICATION;
    println!("chunks {chunks}, replicas {replicas}, servers {SERVERS}");
    println!("metadata heap {:.1} MiB", heap as f64 / (1 << 20) as f64);
    println!(
        "bytes per chunk {:.1}, per replica {:.1}",
        heap as f64 / chunks as f64,
        heap as f64 / replicas as f64
    );
    println!(
        "full reports applied in {:.2} s ({:.0} ns per replica)",
        applying.as_secs_f64(),
        applying.as_nanos() as f64 / replicas as f64
    );
    // Re-applying the same full reports (the periodic case) changes nothing.
    let hb = report(0, chunks);
    let n = hb.chunks.len();
    let t = Instant::now();
    meta.apply_heartbeat(hb, Instant::now());
    println!(
        "repeated full report of {n} replicas: {:.3} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let view = meta.load_view();
    println!(
        "load_view (RebalanceCheck): {:?} for {} servers",
        t.elapsed(),
        view.servers.len()
    );
    let t = Instant::now();
    let snap = meta.snapshot();
    let locked = t.elapsed();
    let t = Instant::now();
    let view = snap.into_view();
    let built = t.elapsed();
    let view_heap = view.heap_bytes();
    println!(
        "cluster view: snapshot under the lock {:.2} s, built outside it in {:.2} s, {:.1} MiB ({:.1} bytes per chunk)",
        locked.as_secs_f64(),
        built.as_secs_f64(),
        view_heap as f64 / (1 << 20) as f64,
        view_heap as f64 / chunks as f64
    );
    drop(view);
    let t = Instant::now();
    let view = meta.balance_view();
    println!(
        "balance view (what a pass takes under the lock): {:.2} ms for {} chunk slots",
        t.elapsed().as_secs_f64() * 1000.0,
        view.chunk_count()
    );
    drop(view);
    if let Err(e) = meta.check() {
        eprintln!("invariant broken: {e}");
        std::process::exit(1);
    }
}
