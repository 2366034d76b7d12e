//! Seeded simulations of balancing by load. (a) Random skewed clusters with
//! a Zipf-like heat: after one plan is applied every live server is inside
//! the capacity band, inside the load band when the plan says so (the share
//! of seeds where it does is measured and bounded below, swaps included),
//! no move made a server hot, a cold chunk moves for load only as the cold
//! half of a swap, and the bytes moved stay within 1.3 × the capacity-only
//! plan plus the hot chunks' bytes. Whatever order the plan's moves finish
//! in, no server that starts inside the capacity band leaves it and none
//! passes its floor; run in random orders under the admission rule, no
//! order gets stuck.
//! (b) A thousand rounds of noisy load with the master's cooldown memory:
//! nothing moves back and forth, load moves die out, capacity stays in its
//! band. A failing seed is printed; `KEEL_SIM_SEED=<seed>` replays it.

use std::collections::{BTreeMap, BTreeSet};

use keel_balancer::admission::check_in_view;
use keel_balancer::load::{Position, average_utilization_pct, check, position};
use keel_balancer::sim::{HeatSpec, Rng, SkewSpec, refresh_reads, skewed_cluster, zipf_heat};
use keel_balancer::space::{fill_limit, utilization_pct};
use keel_balancer::{
    ChunkIdx, ClusterView, CopyClass, InFlight, LoadPosition, MoveReason, Plan, PlannedMove,
    Policy, ReadRate, ServerIdx, load_position, plan,
};

/// Seeds tried when `KEEL_SIM_SEED` is not set.
const SEEDS: u64 = 200;
/// Random orders each plan of (a) is run in.
const ORDERS: u64 = 2;

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

/// Checks that `p` keeps every rule whatever order its moves finish in (the
/// queue runs them concurrently):
/// - each chunk moves at most once, so anti-affinity and racks, which the
///   planner checks per chunk, hold in any order;
/// - a server that starts inside the capacity band and under its
///   free-space floor stays inside both at every step: all of its incoming
///   moves done and none of its outgoing ones, or the reverse;
/// - no server drops further below the band than where it started.
fn any_order_keeps_the_band(v: &ClusterView, p: &Plan, policy: &Policy) -> Result<(), String> {
    let mut chunks = BTreeSet::new();
    if let Some(m) = p.moves.iter().find(|m| !chunks.insert(m.chunk)) {
        return Err(format!("{m:?}: a chunk moves twice in one plan"));
    }
    let (mut ins, mut outs) = (vec![0u64; v.servers.len()], vec![0u64; v.servers.len()]);
    for m in &p.moves {
        ins[m.to.0 as usize] += m.bytes;
        outs[m.from.0 as usize] += m.bytes;
    }
    let average = average_utilization_pct(v);
    for (i, s) in v.servers.iter().enumerate().filter(|(_, s)| s.alive) {
        let at = |used: u64| {
            position(
                utilization_pct(used, s.capacity),
                average,
                policy.threshold_pct,
            )
        };
        let limit = fill_limit(s.capacity, policy.min_free_pct);
        let (peak, trough) = (s.used + ins[i], s.used - outs[i]);
        let inside = at(s.used) == Position::Inside && s.used <= limit;
        if inside && (at(peak) == Position::Over || peak > limit) {
            return Err(format!(
                "{}: {} bytes, {peak} with its incoming moves done first",
                s.id, s.used
            ));
        }
        if trough < s.used && at(trough) == Position::Under && at(s.used) != Position::Under {
            return Err(format!(
                "{}: {} bytes, {trough} with its outgoing moves done first",
                s.id, s.used
            ));
        }
    }
    Ok(())
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

/// What one seed of (a) came to.
#[derive(Debug, Default, Clone, Copy)]
struct Outcome {
    /// The plan reaches the load band.
    reached: bool,
    /// It does so with a swap onto a server that started the pass over its
    /// capacity band (and so had no room for a hot chunk).
    by_swap_onto_full: bool,
}

/// The cold halves of the swaps in `p`: moves for load of a chunk idle on
/// its source, whose source takes a hot chunk for load in the same plan.
/// A cold chunk moved for load any other way is an error.
fn cold_halves<'p>(v: &ClusterView, p: &'p Plan) -> Result<Vec<&'p PlannedMove>, String> {
    let is_hot = |m: &PlannedMove| !v.heat.get(m.from, m.chunk).is_idle();
    let load: Vec<&PlannedMove> = p
        .moves
        .iter()
        .filter(|m| m.reason == MoveReason::Load)
        .collect();
    let cold: Vec<&PlannedMove> = load.iter().copied().filter(|m| !is_hot(m)).collect();
    match cold
        .iter()
        .find(|m| !load.iter().any(|h| is_hot(h) && h.to == m.from))
    {
        Some(m) => Err(format!("a cold chunk moved for load: {m:?}")),
        None => Ok(cold),
    }
}

/// Runs `p`'s moves on `v` in random orders, as the queue may finish them:
/// each step starts a move the admission rule lets through on the live
/// state (the target's free space as it is then) and finishes it. A swap's
/// hot chunk may have to wait there for its cold chunk to leave; this checks
/// that no order gets stuck that way, that no move lands on a replica, that
/// no server ever holds more than its floor allows (or its start, if more),
/// and the invariants at the end.
fn random_orders(v: &ClusterView, p: &Plan, policy: &Policy, seed: u64) -> Result<(), String> {
    let limits: Vec<u64> = v
        .servers
        .iter()
        .map(|s| fill_limit(s.capacity, policy.min_free_pct).max(s.used))
        .collect();
    for round in 0..ORDERS {
        let mut rng = Rng::new(seed.wrapping_mul(ORDERS + 1) + round);
        let (mut now, mut pending) = (v.clone(), p.moves.clone());
        while !pending.is_empty() {
            let first = rng.range(0, pending.len() as u64 - 1) as usize;
            let admitted = |&i: &usize| {
                let m = &pending[i];
                check_in_view(&now, m, CopyClass::Balance, 0, policy.min_free_pct).is_ok()
            };
            let Some(i) = (first..pending.len()).chain(0..first).find(admitted) else {
                let n = pending.len();
                return Err(format!("order {round}: {n} moves wait, none admitted"));
            };
            let m = pending.swap_remove(i);
            // `apply` refuses a chunk already on its target.
            now.apply(&m)
                .map_err(|e| format!("order {round}: {m:?}: {e}"))?;
            let t = m.to.0 as usize;
            if now.servers[t].used > limits[t] {
                return Err(format!(
                    "order {round}: {m:?} took its target past its floor"
                ));
            }
        }
        now.check_invariants()?;
    }
    Ok(())
}

/// One seed of (a).
fn one_plan(seed: u64, roomy: bool) -> Result<Outcome, String> {
    let v = cluster(seed, roomy);
    let policy = Policy::default();
    let capacity = plan(&v, &bytes_only(), &InFlight::new());
    let p = plan(&v, &policy, &InFlight::new());
    let after = applied(&v, &p)?;
    any_order_keeps_the_band(&v, &p, &policy)?;
    random_orders(&v, &p, &policy, seed)?;
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
    let cold = cold_halves(&v, &p)?;
    let bound = 1.3 * capacity.bytes as f64 + hot_bytes as f64;
    if p.bytes as f64 > bound {
        return Err(format!("{} bytes moved, bound {bound}", p.bytes));
    }
    let average = average_utilization_pct(&v);
    let over = |s: ServerIdx| {
        let u = v.server(s).utilization_pct();
        position(u, average, policy.threshold_pct) == Position::Over
    };
    Ok(Outcome {
        reached: p.load_band_reached,
        by_swap_onto_full: p.load_band_reached && cold.iter().any(|m| over(m.from)),
    })
}

/// Runs (a) over every seed: (seeds that reached the load band, those of
/// them that needed a swap onto a server over its capacity band, seeds).
fn one_plan_all(roomy: bool) -> (usize, usize, usize) {
    let (mut reached, mut onto_full, mut tried) = (0, 0, 0);
    for seed in seeds(SEEDS) {
        match one_plan(seed, roomy) {
            Ok(o) => {
                reached += usize::from(o.reached);
                onto_full += usize::from(o.by_swap_onto_full);
                tried += 1;
            }
            Err(e) => panic!("seed {seed} (roomy {roomy}): {e}\nreplay: KEEL_SIM_SEED={seed}"),
        }
    }
    println!(
        "roomy {roomy}: load band reached for {reached} of {tried} seeds, \
         {onto_full} of them by a swap onto a server over its capacity band"
    );
    (reached, onto_full, tried)
}

/// Whether this run tries every seed (not one replayed).
fn all_seeds() -> bool {
    std::env::var("KEEL_SIM_SEED").is_err()
}

#[test]
fn one_plan_evens_out_load_with_bounded_bytes() {
    // Plain moves alone reached the band for 149 of 200 seeds: where they
    // missed, the cold servers had started over their capacity band and
    // sat at its aim once shed, with no room for a hot chunk. Swaps (a hot
    // chunk in, a cold one out) reach it for 182. The rest: racks or
    // replicas pin the hot set, or a cool server sits so close to its
    // band's edge that a hot chunk landing before its cold one left would
    // push it over.
    let (reached, onto_full, tried) = one_plan_all(true);
    if all_seeds() {
        assert!(reached * 100 >= tried * 88, "{reached} of {tried}");
        assert!(onto_full >= tried / 10, "{onto_full} of {tried}");
    }
}

#[test]
fn one_plan_on_crowded_clusters_keeps_every_rule() {
    // Full servers take no load and racks pin replicas: the band is often
    // out of reach (108 of 200 seeds reached without swaps, 151 with), but
    // every rule holds and the plan says so honestly.
    let (reached, _, tried) = one_plan_all(false);
    if all_seeds() {
        assert!(reached * 100 >= tried * 70, "{reached} of {tried}");
    }
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
