//! Seeded simulations of the whole balancer loop (plan, queue, start, fail
//! or finish, apply, plan again) over many random clusters with injected
//! failures. Every step checks the invariants and the limits. A failing
//! seed is printed; `KEEL_SIM_SEED=<seed>` replays just that one.

use std::collections::BTreeSet;

use keel_balancer::load::check;
use keel_balancer::queue::{Outcome, QueueConfig};
use keel_balancer::sim::{
    FailureModel, RandomSpec, SimConfig, SimReport, random_cluster, simulate,
};
use keel_balancer::{ClusterView, InFlight, Policy, plan};

/// Seeds tried when `KEEL_SIM_SEED` is not set.
const SEEDS: u64 = 300;

fn seeds() -> Vec<u64> {
    match std::env::var("KEEL_SIM_SEED") {
        Ok(s) => vec![s.parse().expect("KEEL_SIM_SEED is a number")],
        Err(_) => (1..=SEEDS).collect(),
    }
}

/// A small cluster whose shape depends on the seed: 3 to 12 servers, racks
/// or not, replication 1 to 3, some dead servers.
fn spec(seed: u64) -> RandomSpec {
    RandomSpec {
        servers: 3 + (seed % 10) as usize,
        chunks: 40 + (seed % 7) as usize * 30,
        max_capacity: 10_000,
        max_chunk: 200 + (seed % 5) * 150,
        max_replication: 1 + (seed % 3) as u32,
        racks: [0, 2, 3][(seed / 3 % 3) as usize],
        dead: if seed.is_multiple_of(4) { 0.15 } else { 0.0 },
    }
}

fn run(seed: u64) -> Result<(ClusterView, SimReport), String> {
    let mut view = random_cluster(seed, &spec(seed));
    let cfg = SimConfig {
        seed,
        queue: QueueConfig {
            max_concurrent_moves: 1 + (seed % 4) as usize,
            max_moves_per_server: 1 + (seed % 2) as usize,
            ..QueueConfig::default()
        },
        failures: FailureModel {
            rate: 0.3,
            ..FailureModel::default()
        },
        max_plans: 12,
        ..SimConfig::default()
    };
    let report = simulate(&mut view, &cfg)?;
    let last = report.plans.last().ok_or("no plan made")?;
    if !last.moves.is_empty() {
        return Err(format!(
            "still planning after {} passes",
            report.plans.len()
        ));
    }
    let reachable = report.plans.iter().any(|p| p.band_reached);
    if reachable && !check(&view, cfg.policy.threshold_pct, 0.0).balanced() {
        return Err("a plan promised the band, the cluster did not get there".into());
    }
    Ok((view, report))
}

#[test]
fn random_clusters_drain_with_failures_and_keep_every_invariant() {
    let mut balanced = 0;
    let mut failed_moves = 0;
    for seed in seeds() {
        match run(seed) {
            Ok((view, report)) => {
                balanced += usize::from(check(&view, 20.0, 0.0).balanced());
                failed_moves += report.totals.failed;
            }
            Err(e) => panic!("seed {seed}: {e}\nreplay with KEEL_SIM_SEED={seed}"),
        }
    }
    eprintln!("{balanced} clusters ended balanced; {failed_moves} moves dropped after retries");
}

#[test]
fn a_permanently_failing_move_is_dropped_and_the_rest_complete() {
    let mut view = random_cluster(
        7,
        &RandomSpec {
            servers: 6,
            chunks: 200,
            max_capacity: 10_000,
            max_chunk: 300,
            max_replication: 1,
            racks: 0,
            dead: 0.0,
        },
    );
    let first = plan(&view, &Policy::default(), &InFlight::new());
    let bad = first.moves[0].chunk;
    let cfg = SimConfig {
        failures: FailureModel {
            rate: 0.0,
            always: BTreeSet::from([bad]),
        },
        ..SimConfig::default()
    };
    let report = simulate(&mut view, &cfg).expect("simulation");
    assert_eq!(report.totals.failed, 1);
    assert_eq!(
        report.totals.done as usize,
        report.plans.iter().map(|p| p.moves.len()).sum::<usize>() - 1
    );
    assert_eq!(report.stuck, 0);
    assert!(
        view.chunk(bad).is_on(first.moves[0].from),
        "the failed chunk stays where it was"
    );
    assert!(
        check(&view, 20.0, 0.0).balanced(),
        "other chunks made up for it"
    );
    assert!(
        report
            .plans
            .iter()
            .skip(1)
            .all(|p| p.moves.iter().all(|m| m.chunk != bad))
    );
    let dropped = &report.failed[0];
    assert_eq!(view.chunk_by_id(&dropped.copy.mv.chunk), Some(bad));
    assert_eq!(dropped.retries, QueueConfig::default().move_retries);
    assert_eq!(
        dropped.outcome,
        Outcome::Failed {
            error: "injected failure".into()
        }
    );
}

#[test]
fn a_cluster_without_any_valid_move_says_so_and_stops() {
    // Every chunk has a replica on both servers: nothing can move.
    let mut view = ClusterView::new();
    let a = view.add_server("a", None, 100, true);
    let b = view.add_server("b", None, 1000, true);
    for i in 0..9 {
        view.add_chunk(format!("x{i}"), 10, 0, 2, &[a, b]);
    }
    let report = simulate(&mut view, &SimConfig::default()).expect("simulation");
    assert_eq!(report.plans.len(), 1);
    let p = &report.plans[0];
    assert!(p.moves.is_empty() && !p.band_reached);
    assert!(
        p.notes
            .iter()
            .any(|n| n.starts_with("no valid placement for chunk x0 on a")),
        "{:?}",
        p.notes
    );
    assert!(p.notes.iter().any(|n| n.starts_with("a stays overloaded")));
    assert_eq!((report.totals.done, report.stuck), (0, 0));
}

#[test]
fn concurrency_limits_hold_at_every_step() {
    let mut view = random_cluster(
        99,
        &RandomSpec {
            servers: 12,
            chunks: 600,
            max_capacity: 100_000,
            max_chunk: 2_000,
            max_replication: 2,
            racks: 3,
            dead: 0.0,
        },
    );
    let cfg = SimConfig {
        queue: QueueConfig {
            max_concurrent_moves: 3,
            max_moves_per_server: 2,
            ..QueueConfig::default()
        },
        failures: FailureModel {
            rate: 0.2,
            ..FailureModel::default()
        },
        seed: 99,
        ..SimConfig::default()
    };
    // The simulation fails on the first step over either limit.
    let report = simulate(&mut view, &cfg).expect("simulation");
    assert_eq!(report.max_running, 3, "the limit was reached, never passed");
    assert!(report.totals.done > 20);
    assert!(check(&view, 20.0, 0.0).balanced());
}
