//! Seeded simulations of balancing by load. (a) Random skewed clusters with
//! a Zipf-like heat: after one plan is applied every live server is inside
//! the capacity band, inside the load band when the plan says so (and it
//! says so for most seeds), no move made a server hot, and the bytes moved
//! stay within 1.3 × the capacity-only plan plus the hot chunks' bytes.
//! (b) A thousand rounds of noisy load with the master's cooldown memory:
//! nothing moves back and forth, load moves die out, capacity stays in its
//! band. A failing seed is printed; `KEEL_SIM_SEED=<seed>` replays it.

use std::collections::{BTreeMap, BTreeSet};

use keel_balancer::load::check;
use keel_balancer::sim::{HeatSpec, Rng, SkewSpec, refresh_reads, skewed_cluster, zipf_heat};
use keel_balancer::{
    ChunkIdx, ClusterView, InFlight, LoadPosition, MoveReason, Plan, Policy, ReadRate, ServerIdx,
    load_position, plan,
};

/// Seeds tried when `KEEL_SIM_SEED` is not set.
const SEEDS: u64 = 200;

fn seeds(all: u64) -> Vec<u64> {
    match std::env::var("KEEL_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("KEEL_SIM_SEED is a number")],
        Err(_) => (1..=all).collect(),
    }
}

/// A cluster of 6 to 20 servers, replication 1 to 3, racks or not, with a
/// hot set on one server (two seeds in three) or spread over the cluster.
/// `roomy`: every server between 35 and 60 % full and more racks than
/// replicas, so bytes and racks leave the load band within reach; else
/// some servers are nearly full or nearly empty and racks may bind.
fn cluster(seed: u64, roomy: bool) -> ClusterView {
    let spec = SkewSpec {
        servers: 6 + (seed % 15) as usize,
        chunks: 1500,
        capacity: 1 << 30,
        unequal: seed.is_multiple_of(5),
        hot: if roomy { 0.0 } else { 0.1 },
        cold: if roomy { 0.0 } else { 0.05 },
        replication: 1 + (seed % 3) as u32,
        racks: if roomy {
            [0, 4, 5][(seed / 3 % 3) as usize]
        } else {
            [0, 3, 4][(seed / 3 % 3) as usize]
        },
    };
    let mut v = skewed_cluster(seed, &spec);
    // The hot set sits where the bytes are, as in seed 004: on the fullest
    // server.
    let fullest = (0..v.servers.len())
        .max_by_key(|&i| v.servers[i].used)
        .unwrap_or(0);
    let on = (!seed.is_multiple_of(3)).then_some(ServerIdx(fullest as u32));
    let heat = HeatSpec {
        total_reads_per_sec: 100.0 * spec.servers as f64,
        background: 0.3,
        // Enough hot chunks, mildly skewed, that the hottest is cooler than
        // the mean: a chunk hotter than that makes any holder hot, a case
        // for extra replicas rather than moves.
        hot_chunks: spec.servers * (4 + (seed % 5) as usize),
        exponent: 0.2 + (seed % 5) as f64 * 0.1,
        on,
    };
    zipf_heat(seed, &mut v, &heat);
    v
}

fn bytes_only() -> Policy {
    Policy {
        load_threshold_pct: 0.0,
        ..Policy::default()
    }
}

/// Applies `p` to a copy of `v`, checking the invariants after each move.
fn applied(v: &ClusterView, p: &Plan) -> Result<ClusterView, String> {
    let mut after = v.clone();
    for m in &p.moves {
        after.apply(m).map_err(|e| format!("{m:?}: {e}"))?;
        after.check_invariants()?;
    }
    Ok(after)
}

/// Positions of the live servers against the load band of `v`.
fn load_positions(v: &ClusterView, pct: f64) -> Vec<(usize, LoadPosition)> {
    let r = check(v, 20.0, pct);
    v.servers
        .iter()
        .enumerate()
        .filter(|(_, s)| s.alive)
        .map(|(i, s)| {
            let p = load_position(s.reads.reads_per_sec, r.average_reads_per_sec, pct);
            (i, p)
        })
        .collect()
}

/// One seed of (a); `Ok(reached the load band)`.
fn one_plan(seed: u64, roomy: bool) -> Result<bool, String> {
    let v = cluster(seed, roomy);
    let policy = Policy::default();
    let capacity = plan(&v, &bytes_only(), &InFlight::new());
    let p = plan(&v, &policy, &InFlight::new());
    let after = applied(&v, &p)?;
    let report = check(&after, policy.threshold_pct, policy.load_threshold_pct);
    if p.band_reached != report.balanced() || capacity.band_reached && !p.band_reached {
        return Err(format!(
            "capacity band: plan says {}, {report:?}",
            p.band_reached
        ));
    }
    if p.load_band_reached != report.load_balanced() {
        return Err(format!(
            "load band: plan says {}, {:?}",
            p.load_band_reached, p.notes
        ));
    }
    let before = load_positions(&v, policy.load_threshold_pct);
    let now = load_positions(&after, policy.load_threshold_pct);
    for ((i, was), (_, is)) in before.iter().zip(&now) {
        if *was != LoadPosition::Hot && *is == LoadPosition::Hot {
            return Err(format!("{} made hot: {:?}", v.servers[*i].id, p.notes));
        }
    }
    let hot_bytes: u64 = v
        .heat
        .iter()
        .map(|(_, c, _)| c)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(|c| v.chunk(c).size())
        .sum();
    for m in p.moves.iter().filter(|m| m.reason == MoveReason::Load) {
        if v.heat.get(m.from, m.chunk).is_idle() {
            return Err(format!("a cold chunk moved for load: {m:?}"));
        }
    }
    let bound = 1.3 * capacity.bytes as f64 + hot_bytes as f64;
    if p.bytes as f64 > bound {
        return Err(format!("{} bytes moved, bound {bound}", p.bytes));
    }
    Ok(p.load_band_reached)
}

/// Runs (a) over every seed; the share of seeds that reached the load band.
fn one_plan_all(roomy: bool) -> f64 {
    let (mut reached, mut tried) = (0, 0);
    for seed in seeds(SEEDS) {
        match one_plan(seed, roomy) {
            Ok(r) => {
                reached += usize::from(r);
                tried += 1;
            }
            Err(e) => panic!("seed {seed} (roomy {roomy}): {e}\nreplay: KEEL_SIM_SEED={seed}"),
        }
    }
    println!("roomy {roomy}: load band reached for {reached} of {tried} seeds");
    reached as f64 / tried as f64
}

#[test]
fn one_plan_evens_out_load_with_bounded_bytes() {
    // Where it is missed, a server over its capacity band is also cold
    // (it has no room to take hot chunks: that needs a swap, hot in and
    // cold out), or racks pin every replica of the hot set.
    assert!(one_plan_all(true) >= 0.75);
}

#[test]
fn one_plan_on_crowded_clusters_keeps_every_rule() {
    // Full servers take no load and racks pin replicas: the band is often
    // out of reach, but every rule holds and the plan says so honestly.
    assert!(one_plan_all(false) >= 0.5);
}

/// Cooldown, in rounds, the harness keeps for a chunk moved for load (the
/// master's `--load-cooldown`).
const COOLDOWN: u64 = 20;
/// Clusters tried for the noisy rounds.
const NOISY_SEEDS: u64 = 12;
/// Rounds of noisy load.
const ROUNDS: u64 = 1000;
/// Multiplicative noise on each replica's rate, each round: ±20 %.
const NOISE: f64 = 0.2;

/// One seed of (b): `Ok((load moves, load moves after round 100))`.
/// `None` when the cluster cannot reach the load band even without noise
/// (a full server that can take no load, a chunk no server can hold): there
/// the band is out of reach and the question is another one.
fn noisy_rounds(seed: u64) -> Result<Option<(usize, usize)>, String> {
    let mut v = cluster(seed, seed.is_multiple_of(2));
    if !plan(&v, &Policy::default(), &InFlight::new()).load_band_reached {
        return Ok(None);
    }
    let truth: BTreeMap<ChunkIdx, f64> = v
        .heat
        .iter()
        .map(|(_, c, r)| (c, r.reads_per_sec))
        .collect();
    let background: Vec<f64> = v
        .servers
        .iter()
        .map(|s| s.reads.reads_per_sec)
        .collect::<Vec<_>>();
    let background: Vec<f64> = background
        .iter()
        .enumerate()
        .map(|(i, r)| {
            r - v
                .heat
                .on(ServerIdx(i as u32))
                .map(|(_, h)| h.reads_per_sec)
                .sum::<f64>()
        })
        .collect();
    let mut rng = Rng::new(seed);
    let mut cooling: BTreeMap<ChunkIdx, u64> = BTreeMap::new();
    let mut moved: BTreeSet<(ChunkIdx, ServerIdx, ServerIdx)> = BTreeSet::new();
    let (mut total, mut late) = (0, 0);
    let policy = Policy::default();
    for round in 0..ROUNDS {
        let replicas: Vec<_> = v.heat.iter().map(|(s, c, _)| (s, c)).collect();
        for (s, c) in replicas {
            let r = truth[&c] * (1.0 + NOISE * (2.0 * rng.unit() - 1.0));
            v.heat
                .set(s, c, ReadRate::new(r, r * v.chunk(c).size() as f64));
        }
        refresh_reads(&mut v, &background);
        let mut in_flight = InFlight::new();
        cooling.retain(|_, until| *until > round);
        cooling.keys().for_each(|&c| in_flight.add_cooling(c));
        let p = plan(&v, &policy, &in_flight);
        v = applied(&v, &p)?;
        if round > 0 && !check(&v, policy.threshold_pct, 0.0).balanced() && p.band_reached {
            return Err(format!("round {round}: capacity out of band"));
        }
        for m in p.moves.iter().filter(|m| m.reason == MoveReason::Load) {
            if moved.contains(&(m.chunk, m.to, m.from)) {
                return Err(format!("round {round}: {m:?} moves back"));
            }
            moved.insert((m.chunk, m.from, m.to));
            cooling.insert(m.chunk, round + COOLDOWN);
            total += 1;
            late += usize::from(round >= 100);
        }
    }
    Ok(Some((total, late)))
}

#[test]
fn a_thousand_rounds_of_noisy_load_do_not_oscillate() {
    let (mut worst_late, mut runs) = (0, 0);
    for seed in seeds(NOISY_SEEDS) {
        match noisy_rounds(seed) {
            Ok(Some((total, late))) => {
                println!("seed {seed}: {total} load moves, {late} after round 100");
                worst_late = worst_late.max(late);
                runs += 1;
            }
            Ok(None) => println!("seed {seed}: load band out of reach, skipped"),
            Err(e) => panic!("seed {seed}: {e}\nreplay: KEEL_SIM_SEED={seed}"),
        }
    }
    assert!(runs > 0, "no seed could reach the load band");
    assert!(worst_late <= 5, "load moves keep coming: {worst_late}");
}
