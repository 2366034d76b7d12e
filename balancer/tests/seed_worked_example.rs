//! The queue-draining seed's worked example: eight nodes, node 1 at 95 %,
//! the rest near 40 %. The balancer plans twelve moves off node 1; the first
//! five complete; then node 4 fills up with client writes, so move 6, which
//! targets node 4, cannot land. The queue must not stall behind it: moves 7
//! to 12 still run, move 6 waits with the reason "target free space at
//! floor". The next balancer pass frees space on node 4 by moving data off
//! it; move 6's gate then passes, the queue drains and every node ends
//! inside the band.

use std::time::Duration;

use keel_balancer::load::check;
use keel_balancer::queue::{MoveQueue, QueueConfig, StartMove, WaitReason};
use keel_balancer::{ClusterView, InFlight, Policy, ServerIdx, plan};

const CAPACITY: u64 = 10_000;
const CHUNK: u64 = 250;
const MOVE_TIME: Duration = Duration::from_secs(10);

fn cluster() -> ClusterView {
    let mut v = ClusterView::new();
    for n in 1..=8 {
        let s = v.add_server(format!("node{n}"), None, CAPACITY, true);
        let chunks = if n == 1 { 38 } else { 16 }; // 95 % and 40 %
        for i in 0..chunks {
            v.add_chunk(format!("n{n}-{i:02}"), CHUNK, i, 1, &[s]);
        }
    }
    v
}

/// Runs one move to completion, checking invariants.
fn complete(v: &mut ClusterView, q: &mut MoveQueue, s: &StartMove, now: Duration) {
    let mv = v.planned(&s.copy).expect("in the view");
    v.apply(&mv).expect("move applies");
    v.check_invariants().expect("invariants");
    q.on_done(s.id, now).expect("running");
}

/// Starts and completes moves one by one until nothing can start.
fn drain(v: &mut ClusterView, q: &mut MoveQueue, now: &mut Duration) -> usize {
    let mut done = 0;
    loop {
        let starts = q.next_ready(*now, v);
        assert!(starts.len() <= q.config().max_concurrent_moves);
        if starts.is_empty() {
            return done;
        }
        *now += MOVE_TIME;
        for s in &starts {
            complete(v, q, s, *now);
            done += 1;
        }
    }
}

#[test]
fn the_queue_drains_past_a_target_at_its_floor() {
    let mut v = cluster();
    let policy = Policy::default();
    let first = plan(&v, &policy, &InFlight::new());
    assert_eq!(first.moves.len(), 12, "{:?}", first.notes);
    assert!(first.moves.iter().all(|m| m.from == ServerIdx(0)));
    let node4 = v.server_by_id("node4").expect("node4");

    // Queue order: the plan's second move into node 4 goes sixth.
    let mut moves = first.moves.clone();
    let late = moves
        .iter()
        .rposition(|m| m.to == node4)
        .expect("a move into node 4");
    let m6 = moves.remove(late);
    moves.insert(5, m6);
    let config = QueueConfig {
        max_concurrent_moves: 1,
        ..Default::default()
    };
    let mut q = MoveQueue::new(config);
    let mut now = Duration::ZERO;
    for m in &moves {
        q.enqueue_planned(*m, now, &v).expect("enqueue");
    }

    // The first five complete.
    for _ in 0..5 {
        let starts = q.next_ready(now, &v);
        assert_eq!(starts.len(), 1);
        now += MOVE_TIME;
        complete(&mut v, &mut q, &starts[0], now);
    }
    // Node 4 fills up with writes: 4.8 kB more puts it past its 90 % floor.
    for i in 0..4 {
        v.add_chunk(format!("write-{i}"), 1200, 1000, 1, &[node4]);
    }
    assert!(v.server(node4).utilization_pct() > 90.0);

    // Moves 7..12 still run; move 6 waits, with the reason shown.
    assert_eq!(drain(&mut v, &mut q, &mut now), 6);
    let stuck_at = now;
    let status = q.status(now + Duration::from_secs(60));
    assert_eq!((status.pending, status.running, status.done), (1, 0, 11));
    assert_eq!(v.planned(&status.moves[0].copy), Some(m6));
    assert_eq!(status.moves[0].waiting, Some(WaitReason::TargetAtFloor));
    assert!(status.oldest_pending_age > q.status(stuck_at).oldest_pending_age);

    // The next pass sees node 4 overloaded, counting move 6 as landed, and
    // moves data off it.
    let second = plan(&v, &policy, &q.busy(now, &v));
    assert!(!second.moves.is_empty());
    assert!(
        second
            .moves
            .iter()
            .all(|m| m.from == node4 && m.chunk != m6.chunk)
    );
    assert!(second.band_reached, "{:?}", second.notes);
    for m in &second.moves {
        q.enqueue_planned(*m, now, &v).expect("enqueue");
    }
    drain(&mut v, &mut q, &mut now);

    // Everything drained, move 6 included; every node is inside the band.
    assert!(q.is_idle());
    assert_eq!(q.totals().done as usize, 12 + second.moves.len());
    assert_eq!(q.totals().failed, 0);
    assert!(v.chunk(m6.chunk).is_on(node4));
    let report = check(&v, policy.threshold_pct, 0.0);
    assert!(report.balanced(), "{report:?}");
    assert!((report.average_utilization_pct - 52.9).abs() < 0.1);
    let third = plan(&v, &policy, &q.busy(now, &v));
    assert!(third.moves.is_empty(), "no oscillation: {:?}", third.moves);
}
