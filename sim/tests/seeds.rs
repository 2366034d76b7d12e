//! The protocol simulation in CI: many seeds must hold every invariant,
//! and a seed must take exactly the same steps every time it runs.
//!
//! `KEEL_SIM_SEEDS` sets how many seeds run (default 500: the workspace
//! suite stays quick; `.ci/run` runs 10,000 through `scripts/simulate.sh`);
//! `scripts/simulate.sh --seed S` replays a failing one.

use std::sync::atomic::{AtomicU64, Ordering};

/// Seeds the workspace test suite runs when `KEEL_SIM_SEEDS` is unset.
const CI_SEEDS: u64 = 500;

#[test]
fn a_seed_replays_exactly() {
    for seed in [1, 7, 42, 1234] {
        let a = keel_sim::run_seed(seed);
        let b = keel_sim::run_seed(seed);
        assert_eq!(a, b, "seed {seed} took different steps on a second run");
        assert!(a.steps > 100, "seed {seed} ran only {} steps", a.steps);
    }
}

#[test]
fn every_seed_holds_the_invariants() {
    let seeds = std::env::var("KEEL_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CI_SEEDS);
    let next = AtomicU64::new(0);
    let failed = std::sync::Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds {
                        break;
                    }
                    if let Err(why) = keel_sim::run_seed(seed).result {
                        let mut f = failed.lock().unwrap_or_else(|e| e.into_inner());
                        f.push((seed, why));
                    }
                }
            });
        }
    });
    let mut failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    failed.sort();
    for (seed, why) in failed.iter().take(20) {
        eprintln!("seed {seed}: {why}\n  replay: scripts/simulate.sh --seed {seed}");
    }
    assert!(
        failed.is_empty(),
        "{} of {seeds} seeds broke an invariant (first 20 above)",
        failed.len()
    );
}

/// Seeds that each found a bug fixed since (docs/guarantees.md, section
/// Simulation): each must keep holding.
const FOUND: &[u64] = &[
    422,    // a lost chunk redefined by a mismatched copy
    1071,   // a restarted master inheriting its previous run's reports (sim)
    1297,   // a draining server's replicas learned after its mark: no drain copy
    4595,   // the same lost-chunk redefinition, a damaged-copy delete
    6926,   // a staying copy's rot found while the delete was on its way
    9046,   // the same unplanned drain, reported drained (3 servers, 2 masters)
    9703,   // a StatChunk overtaking a DeleteChunk on one connection (sim)
    17907,  // a late report of a dead run
    27308,  // a second late report of the same dead run
    30778,  // a late whole verdict clearing a suspect mark
    38051,  // a source delete naming no replica, held up, removed a new copy
    50567,  // a StatChunk answer dated by its arrival, not its lookup (sim)
    53975,  // an ignored late report taken as applied (sim)
    56305,  // a trim stopped by a term change never reconsidered
    80432,  // a delta's copy dropped while a delete ran
    96065,  // a staying copy a read had found rotten confirmed by its header
    99625,  // the same dating, after a drain's trim (sim)
    107589, // a delta applied on a full report of another run
    113451, // a confirmation answer taken after a freeze, past its deadline
    137143, // a report sent to a master's previous process, taken by its successor (sim)
    206657, // rot found by a verification not counted as the fault it is (sim)
];

#[test]
fn the_seeds_that_found_bugs_hold() {
    for &seed in FOUND {
        let out = keel_sim::run_seed(seed);
        assert_eq!(out.result, Ok(()), "seed {seed} ({})", out.cluster);
    }
}
