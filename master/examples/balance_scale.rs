//! Measures the balancer's costs at scale: the copy under the lock, a full
//! planning pass (view build and planner) outside it, queueing a plan, one
//! mover-loop tick over a full queue, and one status answer.
//!
//! `cargo run --release -p keel-master --example balance_scale -- 10000000`
//! (chunks; default 1 000 000): 20 servers hold every chunk three times,
//! 64 MiB each, half full; a 21st server joins empty.

use std::time::{Duration, Instant};

use keel_balancer::Policy;
use keel_balancer::queue::QueueConfig;
use keel_master::balance::{InFlightNames, MAX_QUEUED, PassInput, QueueState, plan_pass};
use keel_master::meta::{Heartbeat, Meta, MetaSettings, ReplicaReport};

const SERVERS: usize = 20;
const REPLICATION: usize = 3;
const CHUNK: u64 = 64 << 20;

fn report(server: usize, chunks: usize, capacity: u64) -> Heartbeat {
    // Chunk i lives on servers i, i+1, i+2 (mod SERVERS).
    let mine: Vec<ReplicaReport> = (0..chunks)
        .filter(|i| server < SERVERS && (0..REPLICATION).any(|k| (i + k) % SERVERS == server))
        .map(|i| ReplicaReport {
            chunk: format!("vol{:03}.seg-{:012}", i % 1000, i),
            size: CHUNK,
            crc32c: i as u32,
            replication: REPLICATION as u32,
            reads: 0,
        })
        .collect();
    Heartbeat {
        id: format!("cs{server:02}"),
        address: format!("http://10.0.0.{server}:7001"),
        rack: String::new(),
        capacity,
        used: 0,
        full_report: true,
        chunk_count: mine.len() as u64,
        chunks: mine,
        removed: vec![],
        stamp: None,
        draining: false,
        migrate_rate: 0,
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn main() {
    let chunks: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let per_server = (chunks * REPLICATION).div_ceil(SERVERS) as u64;
    let capacity = per_server * CHUNK * 2;
    let mut meta = Meta::new(MetaSettings::default());
    for s in 0..=SERVERS {
        meta.apply_heartbeat(report(s, chunks, capacity), Instant::now());
    }
    println!(
        "chunks {chunks}, replicas {}, servers {} (one empty)",
        chunks * REPLICATION,
        SERVERS + 1
    );

    let mut queue = QueueState::new(QueueConfig::default());
    let t = Instant::now();
    let input = PassInput {
        snapshot: meta.snapshot(),
        in_flight: InFlightNames::default(),
        busy: vec![],
    };
    let locked = t.elapsed();
    let t = Instant::now();
    let plan = plan_pass(input, &Policy::default());
    let planned = t.elapsed();
    println!(
        "pass: snapshot under the lock {:.2} s; view and plan outside it {:.2} s: {} moves, {} GiB (lower bound {} GiB)",
        secs(locked),
        secs(planned),
        plan.moves.len(),
        plan.bytes >> 30,
        plan.lower_bound_bytes >> 30
    );

    let take = plan.moves.len().min(MAX_QUEUED);
    let t = Instant::now();
    let queued = queue.enqueue(&meta, &plan.moves[..take], Duration::ZERO);
    println!(
        "queueing {} moves: {:.3} s",
        queued.moves,
        secs(t.elapsed())
    );

    let t = Instant::now();
    let starts = queue.start_ready(&mut meta, Duration::from_secs(1));
    println!(
        "one tick over {} queued moves (gates against the metadata): {:.1} ms, {} started",
        queue.len(),
        t.elapsed().as_secs_f64() * 1000.0,
        starts.len()
    );

    let t = Instant::now();
    let in_flight = queue.in_flight(Duration::from_secs(1));
    let input = PassInput {
        snapshot: meta.snapshot(),
        in_flight,
        busy: vec![],
    };
    let again = plan_pass(input, &Policy::default());
    println!(
        "next pass with the queue in flight: {:.2} s, {} more moves",
        secs(t.elapsed()),
        again.moves.len()
    );
    let t = Instant::now();
    let status = queue.status(Duration::from_secs(2));
    println!(
        "status of {} moves: {:.1} ms",
        status.moves.len(),
        t.elapsed().as_secs_f64() * 1000.0
    );
}
