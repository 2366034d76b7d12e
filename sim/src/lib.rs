//! Deterministic simulation of Keel's protocol for moves, repairs, trims,
//! drains of corrupt copies and failover, in the FoundationDB / TigerBeetle
//! style: the master's real metadata, move queue and leadership run against
//! simulated chunk servers, a simulated etcd key and a simulated network,
//! with one seeded scheduler and simulated time. The same seed always takes
//! the same steps.
//!
//! # Layout
//! - [`net`]: the scheduler, the events, the network's weather.
//! - [`chunkserver`]: a chunk server's files in memory, with its rules.
//! - [`master`]: a master: real `Meta`, `QueueState`, `Leadership`, and
//!   the maintenance loop's steps.
//! - [`mover`]: the master's own mover steps, driven one RPC at a time.
//! - [`drain`]: an operator's drains and undrains, and what a drain must end in.
//! - [`world`]: the cluster and the step loop.
//! - [`faults`]: the fault injector and etcd's elections.
//! - [`invariants`]: what must hold after every step, and after healing.

pub mod chunkserver;
pub mod drain;
pub mod faults;
pub mod invariants;
pub mod master;
pub mod mover;
pub mod net;
pub mod world;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keel_balancer::sim::Rng;

use chunkserver::ChunkServer;
use master::SimMaster;
use net::{Event, Scheduler};
use world::{Etcd, Truth, World};

/// How long faults are injected.
pub const FAULT_PHASE: Duration = Duration::from_secs(30);

/// How long the must-heal phase runs after the faults stop.
pub const HEAL_PHASE: Duration = Duration::from_secs(90);

/// What one seed did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedRun {
    /// Events run.
    pub steps: u64,
    /// The first invariant broken, if any.
    pub result: Result<(), String>,
    /// A digest of every file left on every disk (same seed, same digest).
    pub digest: u64,
    /// One line saying what the cluster was.
    pub cluster: String,
}

/// Runs seed `seed` to the end of its must-heal phase.
pub fn run_seed(seed: u64) -> SeedRun {
    run_seed_with(seed, Options::default())
}

/// How to run a seed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Print every event to stderr.
    pub trace: bool,
    /// Run to the end after a violation (the first one is still reported).
    pub keep_going: bool,
}

/// Runs seed `seed` as `opts` say.
pub fn run_seed_with(seed: u64, opts: Options) -> SeedRun {
    let mut w = build(seed);
    w.trace = opts.trace;
    w.keep_going = opts.keep_going;
    let result = w.run();
    SeedRun {
        steps: w.steps,
        result,
        digest: digest(&w),
        cluster: describe(&w),
    }
}

/// The cluster seed `seed` starts with: three or four servers, one or two
/// masters, a few chunks at factor 1, 2 or 3 (some with an excess copy).
fn build(seed: u64) -> World {
    let mut rng = Rng::new(seed);
    let n = if rng.unit() < 0.7 { 3 } else { 4 };
    let masters = if rng.unit() < 0.35 { 1 } else { 2 };
    let mut w = World {
        rng: Rng::new(seed ^ 0x5151_5151),
        sched: Scheduler::new(),
        weather: faults::STORMY,
        base: Instant::now(),
        servers: (0..n)
            .map(|i| ChunkServer::new(format!("cs{i}"), masters))
            .collect(),
        masters: (0..masters)
            .map(|m| Some(SimMaster::new(m, Duration::ZERO)))
            .collect(),
        frozen_until: vec![Duration::ZERO; masters],
        etcd: Etcd::default(),
        truth: BTreeMap::new(),
        next_generation: 0,
        next_op: 0,
        faults_until: FAULT_PHASE,
        end: FAULT_PHASE + HEAL_PHASE,
        violations: Vec::new(),
        gone_at: BTreeMap::new(),
        applied_built: vec![vec![Duration::ZERO; n]; masters],
        master_started: vec![Duration::ZERO; masters],
        steps: 0,
        trace: false,
        keep_going: false,
        mismatches: rng.unit() < 0.3,
        accepted: Vec::new(),
        found_rotten: Default::default(),
        faulted_at: BTreeMap::new(),
        double_faults: 0,
    };
    for i in 0..rng.range(1, 4) {
        let factor = match rng.range(0, 3) {
            0 => 1,
            1 => 2,
            _ => 3,
        };
        let chunk = format!("c{i}");
        let size = (1 << 20) + i;
        let crc32c = (seed as u32).wrapping_mul(31).wrapping_add(i as u32);
        w.truth.insert(
            chunk.clone(),
            Truth {
                size,
                crc32c,
                factor,
            },
        );
        let extra = usize::from(rng.unit() < 0.25);
        let copies = (factor as usize + extra).min(n);
        let mut on: Vec<usize> = (0..n).collect();
        for _ in 0..n - copies {
            on.remove(rng.range(0, on.len() as u64 - 1) as usize);
        }
        for s in on {
            let f = w.new_file(&chunk);
            w.put_file(s, &chunk, f);
        }
    }
    for s in 0..n {
        let d = Duration::from_millis(rng.range(0, 999));
        w.sched.after(d, Event::Beat(s));
    }
    for m in 0..masters {
        let d = Duration::from_millis(rng.range(0, 499));
        w.sched.after(d, Event::Tick(m));
    }
    w.sched
        .after(Duration::from_millis(200), Event::LeaseLapsed(0));
    w.sched.after(Duration::from_secs(2), Event::Fault);
    w.sched.after(FAULT_PHASE, Event::Heal);
    w
}

fn digest(w: &World) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |x: u64| {
        h ^= x;
        h = h.wrapping_mul(0x0100_0000_01b3);
    };
    eat(w.steps);
    for (i, s) in w.servers.iter().enumerate() {
        for f in s.files.values() {
            eat(i as u64);
            eat(f.generation);
        }
    }
    h
}

fn describe(w: &World) -> String {
    let chunks: Vec<String> = w
        .truth
        .iter()
        .map(|(c, t)| format!("{c}@{}", t.factor))
        .collect();
    format!(
        "{} servers, {} masters, chunks {}",
        w.servers.len(),
        w.masters.len(),
        chunks.join(" ")
    )
}
