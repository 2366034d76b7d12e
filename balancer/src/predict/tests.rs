//! Predictions checked against arithmetic done by hand, and the queue's
//! limits checked at every instant of a larger run.

use std::time::Duration;

use super::*;
use crate::ids::ServerIdx;
use crate::plan::PlannedMove;
use crate::sim::{SkewSpec, skewed_cluster};

const MIB: u64 = 1 << 20;

/// Two slots per server, as the hand arithmetic below counts them.
fn exec(bandwidth: u64, overhead_ms: u64) -> Execution {
    Execution {
        queue: crate::queue::QueueConfig {
            max_concurrent_moves: 4,
            max_moves_per_server: 2,
            ..crate::queue::QueueConfig::default()
        },
        default_bandwidth: bandwidth,
        move_overhead: Duration::from_millis(overhead_ms),
        ..Execution::default()
    }
}

/// Two servers; `n` chunks of `size` on the first.
fn pair(n: usize, size: u64) -> ClusterView {
    let mut v = ClusterView::new();
    let hot = v.add_server("a", None, 100 * MIB, true);
    v.add_server("b", None, 100 * MIB, true);
    for i in 0..n {
        v.add_chunk(format!("c{i}"), size, 0, 1, &[hot]);
    }
    v
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[test]
fn one_move_takes_bytes_over_bandwidth_plus_overhead() {
    let v = pair(4, 8 * MIB);
    let plan = Plan {
        moves: vec![PlannedMove {
            chunk: crate::ChunkIdx(0),
            from: ServerIdx(0),
            to: ServerIdx(1),
            bytes: 8 * MIB,
            reason: crate::MoveReason::Capacity,
        }],
        bytes: 8 * MIB,
        ..Plan::default()
    };
    let p = predict_plan(&v, &plan, &exec(4 * MIB, 250)).expect("predicts");
    assert!((secs(p.eta) - 2.25).abs() < 1e-6, "{:?}", p.eta);
    assert_eq!((p.moves.len(), p.bytes), (1, 8 * MIB));
    assert_eq!(p.servers[0].bytes_out, 8 * MIB);
    assert_eq!(p.servers[1].bytes_in, 8 * MIB);
}

#[test]
fn a_pair_shares_its_buckets_over_the_whole_plan() {
    // 60 % vs 0 %: the planner moves about half the bytes off `a`; two
    // slots per server share `a`'s bucket, so the transfer time is the
    // bytes over one bucket, plus one overhead per pair of moves.
    let v = pair(60, MIB);
    let policy = Policy::new(10.0, 10.0);
    let p = predict(&v, &policy, &exec(4 * MIB, 100)).expect("predicts");
    let n = p.moves.len() as f64;
    assert!(n >= 20.0, "{} moves", p.moves.len());
    let want = p.bytes as f64 / (4 * MIB) as f64 + n / 2.0 * 0.1;
    assert!(
        (secs(p.eta) - want).abs() < 0.2,
        "eta {:?}, want {want}",
        p.eta
    );
    assert_eq!(p.bytes, p.planned_bytes);
    assert!(p.bytes >= p.lower_bound_bytes && p.lower_bound_bytes > 0);
    assert!(p.not_started.is_empty(), "{:?}", p.not_started);
    let last = p.points.last().expect("points");
    assert_eq!((last.bytes_done, last.running), (p.bytes, 0));
}

#[test]
fn the_slower_end_sets_the_pace_and_unlimited_costs_only_overhead() {
    let v = pair(60, MIB);
    let policy = Policy::new(10.0, 10.0);
    let mut e = exec(0, 10);
    e.bandwidth = vec![0, 2 * MIB];
    let slow = predict(&v, &policy, &e).expect("predicts");
    let want = slow.bytes as f64 / (2 * MIB) as f64;
    assert!(
        secs(slow.eta) > want && secs(slow.eta) < want + 0.5,
        "{:?}",
        slow.eta
    );
    let free = predict(&v, &policy, &exec(0, 10)).expect("predicts");
    let overheads = (free.moves.len() as f64 / 2.0).ceil() * 0.01;
    assert!((secs(free.eta) - overheads).abs() < 1e-6, "{:?}", free.eta);
}

#[test]
fn slot_limits_hold_at_every_instant_and_results_repeat() {
    let spec = SkewSpec {
        servers: 12,
        chunks: 3000,
        capacity: 10 << 30,
        unequal: true,
        hot: 0.3,
        cold: 0.3,
        replication: 2,
        racks: 3,
    };
    let v = skewed_cluster(7, &spec);
    let mut e = exec(32 * MIB, 20);
    e.queue.max_concurrent_moves = 6;
    e.queue.max_moves_per_server = 2;
    e.queue_window = 40; // exercise the refills too
    e.bandwidth = (0..12).map(|i| (8 + 4 * i) * MIB).collect();
    let p = predict(&v, &Policy::new(5.0, 10.0), &e).expect("predicts");
    assert!(p.moves.len() > 50, "{} moves", p.moves.len());
    for m in &p.moves {
        let at = m.start;
        let live: Vec<&TimedMove> = p
            .moves
            .iter()
            .filter(|o| o.start <= at && at < o.end)
            .collect();
        assert!(live.len() <= 6, "{} running at {at:?}", live.len());
        for s in [&m.from, &m.to] {
            let on = live.iter().filter(|o| &o.from == s || &o.to == s).count();
            assert!(on <= 2, "{on} moves on {s} at {at:?}");
        }
    }
    assert!(p.points.iter().all(|x| x.running <= 6));
    assert_eq!(p, predict(&v, &Policy::new(5.0, 10.0), &e).expect("again"));
}
