//! Measures a balancer pass at scale while heartbeats keep arriving: the
//! whole pass from its start to moves queued, how long it holds the metadata
//! lock, and how long heartbeats applied meanwhile wait for that lock; then
//! one mover-loop tick over a full queue and one status answer.
//!
//! `cargo run --release -p keel-master --example balance_scale -- 10000000`
//! (chunks; default 1 000 000). `--servers N` (default 1 000) servers hold
//! every chunk three times, 64 MiB each, half full, and a tenth as many join
//! empty; `--servers 20` is the earlier shape (20 servers, one joining).
//! A second thread applies a heartbeat every 2 ms (a delta adding one chunk)
//! for as long as the passes run and records each wait for the lock.
//! `--compare` first runs one pass the way the master planned before it kept
//! its balancer view up to date (a full copy under the lock, a view built in
//! id order outside it), as the baseline of the same run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use keel_balancer::queue::QueueConfig;
use keel_balancer::{InFlight, PlannedMove, Policy, plan};
use keel_master::balance::{
    ENQUEUE_BATCH, Enqueued, InFlightNames, MAX_QUEUED, PassInput, QueueState, named, plan_pass,
};
use keel_master::meta::{Heartbeat, Meta, MetaSettings, ReplicaReport, find_sorted, lock};

const REPLICATION: usize = 3;
const CHUNK: u64 = 64 << 20;
/// Pause between two heartbeats of the heartbeat thread.
const HEARTBEAT_EVERY: Duration = Duration::from_millis(2);

/// The cluster's shape.
struct Shape {
    chunks: usize,
    /// Servers holding the chunks.
    full: usize,
    /// Servers joining empty.
    empty: usize,
}

fn id(server: usize) -> String {
    format!("cs{server:04}")
}

fn chunk_id(i: usize) -> String {
    format!("vol{:03}.seg-{:012}", i % 1000, i)
}

fn replica(chunk: String, crc32c: u32) -> ReplicaReport {
    ReplicaReport {
        chunk,
        size: CHUNK,
        crc32c,
        replication: REPLICATION as u32,
        reads: 0,
        replica_id: u64::from(crc32c) + 1,
        suspect: false,
    }
}

fn heartbeat(server: usize, capacity: u64, full: bool, chunks: Vec<ReplicaReport>) -> Heartbeat {
    Heartbeat {
        id: id(server),
        address: format!("http://10.0.{}.{}:7001", server / 250, server % 250),
        rack: String::new(),
        capacity,
        used: 0,
        full_report: full,
        chunk_count: chunks.len() as u64,
        chunks,
        removed: vec![],
        stamp: None,
        draining: false,
        migrate_rate: 0,
        deleting: vec![],
        reads: Default::default(),
    }
}

/// Loads the cluster: chunk i lives on servers i, i+1, i+2 (mod `full`).
/// Returns the chunk count of each server.
fn load(meta: &mut Meta, shape: &Shape, capacity: u64) -> Vec<u64> {
    let mut lists: Vec<Vec<u32>> = vec![Vec::new(); shape.full];
    for i in 0..shape.chunks {
        for k in 0..REPLICATION {
            lists[(i + k) % shape.full].push(i as u32);
        }
    }
    let mut counts = Vec::new();
    for (s, list) in lists.into_iter().enumerate() {
        let reports = list
            .into_iter()
            .map(|i| replica(chunk_id(i as usize), i))
            .collect::<Vec<_>>();
        counts.push(reports.len() as u64);
        meta.apply_heartbeat(heartbeat(s, capacity, true, reports), Instant::now());
    }
    for s in shape.full..shape.full + shape.empty {
        meta.apply_heartbeat(heartbeat(s, capacity, true, vec![]), Instant::now());
        counts.push(0);
    }
    counts
}

/// Lock waits seen by the heartbeat thread: when each was asked, how long.
#[derive(Default)]
struct Waits {
    all: Vec<(Instant, Duration)>,
}

impl Waits {
    /// The waits of heartbeats asked between `from` and `to`.
    fn summary(&self, (from, to): (Instant, Instant)) -> String {
        let mut all: Vec<Duration> = self
            .all
            .iter()
            .filter(|(at, _)| (from..to).contains(at))
            .map(|&(_, d)| d)
            .collect();
        if all.is_empty() {
            return "no heartbeats".to_owned();
        }
        all.sort();
        let n = all.len();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "{n} heartbeats, lock wait p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(all[n / 2]),
            ms(all[(n * 99 / 100).min(n - 1)]),
            ms(all[n - 1])
        )
    }
}

/// Applies a delta heartbeat (one new chunk on a rotating server) every
/// [`HEARTBEAT_EVERY`] until `stop`, recording each wait for the lock.
fn heartbeats(
    meta: Arc<Mutex<Meta>>,
    mut counts: Vec<u64>,
    capacity: u64,
    stop: Arc<AtomicBool>,
) -> Waits {
    let mut waits = Waits::default();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let s = n % counts.len();
        counts[s] += 1;
        let mut hb = heartbeat(s, capacity, false, vec![replica(format!("hb.{n:09}"), 1)]);
        hb.chunk_count = counts[s];
        let asked = Instant::now();
        let mut m = lock(&meta);
        waits.all.push((asked, asked.elapsed()));
        m.apply_heartbeat(hb, Instant::now());
        drop(m);
        n += 1;
        thread::sleep(HEARTBEAT_EVERY);
    }
    waits
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One pass as the master runs it: the view taken under the lock, the plan
/// outside it, the moves queued under it again. Prints its times and
/// returns when it started and ended.
fn pass(
    meta: &Mutex<Meta>,
    queue: &mut QueueState,
    label: &str,
    now: Duration,
) -> (Instant, Instant) {
    let started = Instant::now();
    let in_flight = queue.in_flight(now);
    let t = Instant::now();
    let input = PassInput::take(&mut lock(meta), &in_flight, &Default::default());
    let copied = t.elapsed();
    let t = Instant::now();
    let plan = plan_pass(input, &Policy::default());
    let planned = t.elapsed();
    let take = plan.moves.len().min(MAX_QUEUED.saturating_sub(queue.len()));
    let t = Instant::now();
    let mut queued = Enqueued::default();
    for batch in plan.moves[..take].chunks(ENQUEUE_BATCH) {
        queued += queue.enqueue(&lock(meta), batch, now);
    }
    let enqueued = t.elapsed();
    println!(
        "{label}: whole pass {:.2} s (under the lock: copy {:.1} ms; queueing {:.1} ms in batches of {ENQUEUE_BATCH}; outside it: view and plan {:.2} s): {} moves planned, {} queued, {} GiB (lower bound {} GiB)",
        secs(started.elapsed()),
        ms(copied),
        ms(enqueued),
        secs(planned),
        plan.planned,
        queued.moves,
        plan.bytes >> 30,
        plan.lower_bound_bytes >> 30
    );
    (started, Instant::now())
}

/// A pass the way the master planned before it kept its view up to date:
/// every chunk copied under the lock, a view built in id order outside it.
/// Queues nothing; returns when it started and ended.
fn old_pass(meta: &Mutex<Meta>, names: &InFlightNames) -> (Instant, Instant) {
    let started = Instant::now();
    let (snapshot, busy) = {
        let m = lock(meta);
        let busy: Vec<String> = m.busy_chunks().map(str::to_owned).collect();
        (m.snapshot(), busy)
    };
    let copied = started.elapsed();
    let t = Instant::now();
    let view = snapshot.into_view();
    let built = t.elapsed();
    let mut in_flight = InFlight::new();
    for m in &names.moves {
        let server = |id: &str| view.server_by_id(id);
        if let (Some(chunk), Some(from), Some(to)) = (
            find_sorted(&view, &m.mv.chunk),
            server(&m.mv.from),
            server(&m.mv.to),
        ) {
            in_flight.add_move(PlannedMove {
                chunk,
                from,
                to,
                bytes: m.bytes,
                reason: keel_balancer::MoveReason::Capacity,
            });
        }
    }
    for id in names.chunks.iter().chain(&busy) {
        if let Some(c) = find_sorted(&view, id) {
            in_flight.add_chunk(c);
        }
    }
    let p = plan(&view, &Policy::default(), &in_flight);
    let moves: Vec<keel_balancer::CopyJob> = p.moves.iter().map(|m| named(&view, m)).collect();
    println!(
        "baseline pass (full copy): whole pass {:.2} s (under the lock: copy {:.1} ms; outside it: view {:.2} s, plan {:.2} s): {} moves planned",
        secs(started.elapsed()),
        ms(copied),
        secs(built),
        secs(t.elapsed() - built),
        moves.len()
    );
    (started, Instant::now())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut chunks = 1_000_000;
    let mut servers = 1000;
    let mut compare = false;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--compare" => compare = true,
            "--servers" => servers = args.next().and_then(|v| v.parse().ok()).unwrap_or(servers),
            n => chunks = n.parse().unwrap_or(chunks),
        }
    }
    let shape = Shape {
        chunks,
        full: servers,
        empty: (servers / 10).max(1),
    };
    let per_server = (chunks * REPLICATION).div_ceil(shape.full) as u64;
    let capacity = per_server * CHUNK * 2;
    let mut meta = Meta::new(MetaSettings::default());
    let t = Instant::now();
    let counts = load(&mut meta, &shape, capacity);
    println!(
        "chunks {chunks}, replicas {}, servers {} ({} joining empty); loaded in {:.1} s",
        chunks * REPLICATION,
        shape.full + shape.empty,
        shape.empty,
        secs(t.elapsed())
    );
    let meta = Arc::new(Mutex::new(meta));
    let stop = Arc::new(AtomicBool::new(false));
    let beats = {
        let (meta, stop) = (Arc::clone(&meta), Arc::clone(&stop));
        thread::spawn(move || heartbeats(meta, counts, capacity, stop))
    };
    thread::sleep(Duration::from_millis(50));

    let mut queue = QueueState::new(QueueConfig::default());
    let old = compare.then(|| old_pass(&meta, &InFlightNames::default()));
    let first = pass(&meta, &mut queue, "first pass", Duration::ZERO);

    let t = Instant::now();
    let starts = queue.start_ready(&mut lock(&meta), Duration::from_secs(1));
    println!(
        "one tick over {} queued moves (gates against the metadata): {:.1} ms, {} started",
        queue.len(),
        ms(t.elapsed()),
        starts.len()
    );
    let next = pass(
        &meta,
        &mut queue,
        "next pass, the queue in flight",
        Duration::from_secs(1),
    );
    stop.store(true, Ordering::Relaxed);
    let waits = beats.join().expect("heartbeat thread");
    if let Some(old) = old {
        println!(
            "heartbeats during the baseline pass: {}",
            waits.summary(old)
        );
    }
    println!("heartbeats during the first pass: {}", waits.summary(first));
    println!("heartbeats during the next pass: {}", waits.summary(next));

    let t = Instant::now();
    let status = queue.status(Duration::from_secs(2));
    println!(
        "status of {} moves: {:.1} ms",
        status.moves.len(),
        ms(t.elapsed())
    );
}
