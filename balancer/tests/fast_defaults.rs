//! Time to balance at the master's default limits, in the predictor: the
//! real planner and the real queue against each server's migration bucket.
//! The layout is the one the balance benchmark runs: half the servers hold
//! 128 MiB in chunks of 1–16 MiB, half are empty, every server migrates at
//! 16 MiB/s. The bound is the bottleneck server's bytes in + out over its
//! bandwidth: no schedule can beat it. The defaults must come within 15 % of
//! it at 8, 32 and 100 servers. The old defaults (4 moves cluster-wide, 2 per
//! server) must miss it at 32 and 100 servers, or this test would not be
//! telling them apart; at 8 servers four slots still reach one move per
//! source, and the predictor (40 ms of overhead per move) puts them within
//! the target too. So does `auto` with two slots per server: the per-server
//! default had to grow to four as well (see the last test).
//!
//! Print the figures with
//! `cargo test -p keel-balancer --test fast_defaults -- --nocapture`.

use std::time::Duration;

use keel_balancer::predict::{Execution, Prediction, predict};
use keel_balancer::queue::QueueConfig;
use keel_balancer::{ClusterView, Policy};

const MIB: u64 = 1 << 20;
/// Each server's `--migrate-bandwidth`.
const BANDWIDTH: u64 = 16 * MIB;
/// Bytes on each loaded server.
const DATA: u64 = 128 * MIB;

/// `servers` servers of 256 MiB; the first half hold [`DATA`] each in
/// chunks of 1–16 MiB (a fixed sequence, so the test repeats exactly).
fn half_full(servers: usize) -> ClusterView {
    let mut v = ClusterView::new();
    let idx: Vec<_> = (0..servers)
        .map(|i| v.add_server(format!("cs{i:03}"), None, 2 * DATA, true))
        .collect();
    let mut n = 0u64;
    for &s in &idx[..servers / 2] {
        let mut left = DATA;
        while left > 0 {
            let size = ((1 + (n * 7) % 16) * MIB).min(left);
            v.add_chunk(format!("c{n}"), size, 0, 1, &[s]);
            left -= size;
            n += 1;
        }
    }
    v
}

/// The prediction at `queue`'s limits, with the benchmark's threshold (2).
fn run(v: &ClusterView, queue: QueueConfig) -> Prediction {
    let exec = Execution {
        queue,
        default_bandwidth: BANDWIDTH,
        ..Execution::default()
    };
    predict(v, &Policy::new(2.0, 10.0), &exec).expect("predicts")
}

/// Seconds the bottleneck server needs for its bytes in + out.
fn bound(p: &Prediction) -> f64 {
    p.servers
        .iter()
        .map(|s| (s.bytes_in + s.bytes_out) as f64 / s.bandwidth as f64)
        .fold(0.0, f64::max)
}

fn ratio(p: &Prediction) -> f64 {
    p.eta.as_secs_f64() / bound(p)
}

#[test]
fn defaults_balance_near_the_bound_at_every_size() {
    let old = QueueConfig {
        max_concurrent_moves: 4,
        max_moves_per_server: 2,
        ..QueueConfig::default()
    };
    for servers in [8, 32, 100] {
        let v = half_full(servers);
        let new = run(&v, QueueConfig::default());
        let was = run(&v, old);
        assert!(new.reaches_band && new.not_started.is_empty(), "{servers}");
        assert_eq!(new.bytes, was.bytes, "{servers}: one plan for both");
        eprintln!(
            "{servers} servers: {:.0} MiB moved, bound {:.1} s; defaults {:.1} s ({:.2} ×), old defaults {:.1} s ({:.2} ×)",
            new.bytes as f64 / MIB as f64,
            bound(&new),
            new.eta.as_secs_f64(),
            ratio(&new),
            was.eta.as_secs_f64(),
            ratio(&was),
        );
        assert!(ratio(&new) <= 1.15, "{servers} servers: {:.3}", ratio(&new));
        assert!(ratio(&new) <= ratio(&was), "{servers} servers");
        if servers > 8 {
            assert!(ratio(&was) > 1.15, "{servers} servers: {:.3}", ratio(&was));
        }
    }
}

#[test]
fn the_prediction_repeats() {
    let v = half_full(32);
    let a = run(&v, QueueConfig::default());
    assert_eq!(a, run(&v, QueueConfig::default()));
    assert!(a.eta > Duration::ZERO);
}

#[test]
fn two_slots_per_server_are_not_enough() {
    // `auto` alone, with the old two slots per server: a server's free slot
    // waits on a partner whose slots are all taken.
    let v = half_full(32);
    let two = QueueConfig {
        max_moves_per_server: 2,
        ..QueueConfig::default()
    };
    assert!(ratio(&run(&v, two)) > 1.15);
}
