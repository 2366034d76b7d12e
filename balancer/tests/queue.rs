//! The move queue as a state machine: gates, reasons, retries, obsolete
//! moves, pausing, limits and history, with time passed in.

use std::time::Duration;

use keel_balancer::queue::{
    AfterFailure, MoveQueue, MoveState, Outcome, QueueConfig, RETRY_CAP, WaitReason, backoff,
};
use keel_balancer::{ClusterView, CopyClass, CopyJob, MoveRef, PlannedMove, QueueError, ServerIdx};

const S: Duration = Duration::from_secs(1);

/// Servers a, b, c, d (capacity 100, floor 10 %); chunks c0..c9 of 5 bytes on a.
fn view() -> ClusterView {
    let mut v = ClusterView::new();
    for id in ["a", "b", "c", "d"] {
        v.add_server(id, None, 100, true);
    }
    for i in 0..10 {
        v.add_chunk(format!("c{i}"), 5, 0, 1, &[ServerIdx(0)]);
    }
    v
}

fn mv(v: &ClusterView, chunk: &str, to: u32) -> PlannedMove {
    let chunk = v.chunk_by_id(chunk).expect("chunk");
    PlannedMove {
        chunk,
        from: ServerIdx(0),
        to: ServerIdx(to),
        bytes: 5,
        reason: keel_balancer::MoveReason::Capacity,
    }
}

fn waiting(q: &MoveQueue, now: Duration) -> Vec<Option<WaitReason>> {
    q.status(now)
        .moves
        .iter()
        .filter(|m| m.state == MoveState::Pending)
        .map(|m| m.waiting.clone())
        .collect()
}

#[test]
fn a_blocked_head_does_not_block_the_rest() {
    let mut v = view();
    v.add_chunk("filler", 88, 0, 1, &[ServerIdx(1)]); // b: 88 of 90 allowed
    let mut q = MoveQueue::new(QueueConfig {
        max_moves_per_server: 4,
        ..Default::default()
    });
    let blocked = q.enqueue_planned(mv(&v, "c0", 1), S, &v).expect("enqueue");
    q.enqueue_planned(mv(&v, "c1", 2), S, &v).expect("enqueue");
    q.enqueue_planned(mv(&v, "c2", 3), S, &v).expect("enqueue");
    let started: Vec<_> = q.next_ready(2 * S, &v).iter().map(|s| s.slot.to).collect();
    assert_eq!(started, [2, 3]);
    assert_eq!(waiting(&q, 2 * S), [Some(WaitReason::TargetAtFloor)]);
    let st = q.status(10 * S);
    assert_eq!(
        (st.pending, st.running, st.oldest_pending_age),
        (1, 2, Some(9 * S))
    );
    assert_eq!(st.moves[0].id, blocked);
}

#[test]
fn running_moves_count_against_the_target_floor() {
    let mut v = view();
    v.add_chunk("filler", 82, 0, 1, &[ServerIdx(1)]); // room for one 5-byte chunk
    let mut q = MoveQueue::new(QueueConfig {
        max_moves_per_server: 4,
        ..Default::default()
    });
    q.enqueue_planned(mv(&v, "c0", 1), S, &v).expect("enqueue");
    q.enqueue_planned(mv(&v, "c1", 1), S, &v).expect("enqueue");
    assert_eq!(q.next_ready(S, &v).len(), 1);
    assert_eq!(waiting(&q, S), [Some(WaitReason::TargetAtFloor)]);
    // The caller records the running copy's bytes as incoming (the master
    // does when it marks the copy begun): still blocked on the next pass.
    v.servers[1].incoming += 5;
    assert!(q.next_ready(2 * S, &v).is_empty());
    assert_eq!(waiting(&q, 2 * S), [Some(WaitReason::TargetAtFloor)]);
}

#[test]
fn slots_are_limited_cluster_wide_and_per_server() {
    let v = view();
    let mut q = MoveQueue::new(QueueConfig {
        max_concurrent_moves: 3,
        max_moves_per_server: 2,
        ..Default::default()
    });
    for (i, to) in [1, 1, 1, 2].into_iter().enumerate() {
        q.enqueue_planned(mv(&v, &format!("c{i}"), to), S, &v)
            .expect("enqueue");
    }
    // a is the source of all four: two slots on a.
    assert_eq!(q.next_ready(S, &v).len(), 2);
    assert_eq!(
        waiting(&q, S),
        [Some(WaitReason::NoSlot), Some(WaitReason::NoSlot)]
    );
    let mut q = MoveQueue::new(QueueConfig {
        max_concurrent_moves: 0,
        ..Default::default()
    });
    q.enqueue_planned(mv(&v, "c0", 1), S, &v).expect("enqueue");
    assert!(
        q.next_ready(S, &v).is_empty(),
        "no slots means nothing runs"
    );
    assert_eq!(waiting(&q, S), [Some(WaitReason::NoSlot)]);
}

#[test]
fn failures_back_off_then_drop_with_the_last_error() {
    let v = view();
    let mut q = MoveQueue::new(QueueConfig::default());
    let id = q
        .enqueue_planned(mv(&v, "c0", 1), Duration::ZERO, &v)
        .expect("enqueue");
    let mut now = Duration::ZERO;
    for (attempt, delay) in [(1, S), (2, 2 * S), (3, 4 * S)] {
        let starts = q.next_ready(now, &v);
        assert_eq!(starts.len(), 1);
        assert_eq!(starts[0].attempt, attempt);
        let after = q
            .on_failed(id, format!("copy failed #{attempt}"), now)
            .expect("running");
        assert_eq!(
            after,
            AfterFailure::Retry {
                not_before: now + delay
            }
        );
        assert!(
            q.next_ready(now + delay - Duration::from_millis(1), &v)
                .is_empty()
        );
        let status = q.status(now);
        let expected = WaitReason::Retrying(format!("copy failed #{attempt}"));
        assert_eq!(status.moves[0].waiting, Some(expected));
        assert_eq!(status.moves[0].retries, attempt);
        now += delay;
    }
    assert_eq!(q.next_ready(now, &v).len(), 1);
    assert_eq!(
        q.on_failed(id, "copy failed #4", now),
        Ok(AfterFailure::Dropped)
    );
    assert!(q.is_idle());
    let last = q.history().last().expect("history");
    assert_eq!(
        last.outcome,
        Outcome::Failed {
            error: "copy failed #4".into()
        }
    );
    assert_eq!((q.totals().failed, q.totals().done), (1, 0));
    assert_eq!(
        q.on_done(id, now),
        Err(QueueError::UnknownMove {
            id,
            state: "running"
        })
    );
    assert_eq!(backoff(30), RETRY_CAP);
}

#[test]
fn a_move_whose_chunk_left_its_source_is_obsolete() {
    let mut v = view();
    let mut q = MoveQueue::new(QueueConfig::default());
    let m = mv(&v, "c0", 1);
    q.enqueue_planned(m, S, &v).expect("enqueue");
    v.apply(&PlannedMove {
        to: ServerIdx(2),
        ..m
    })
    .expect("someone else moved it");
    assert!(q.next_ready(2 * S, &v).is_empty());
    assert!(q.is_idle());
    assert_eq!(q.totals().obsolete, 1);
    assert_eq!(
        q.history().last().map(|h| &h.outcome),
        Some(&Outcome::Obsolete)
    );
}

#[test]
fn a_copy_that_can_never_run_as_named_is_obsolete() {
    let mut v = view();
    let mut q = MoveQueue::new(QueueConfig::default());
    q.enqueue_planned(mv(&v, "c0", 1), S, &v).expect("enqueue");
    q.enqueue_planned(mv(&v, "c1", 2), S, &v).expect("enqueue");
    // A dead target: its planner plans without it.
    v.servers[1].alive = false;
    assert_eq!(q.next_ready(S, &v).len(), 1);
    assert_eq!(q.totals().obsolete, 1);
    assert_eq!(q.pending_len(), 0);
}

#[test]
fn pause_resume_cancel_and_duplicates() {
    let v = view();
    let mut q = MoveQueue::new(QueueConfig::default());
    let id = q.enqueue_planned(mv(&v, "c0", 1), S, &v).expect("enqueue");
    let dup = q.enqueue_planned(mv(&v, "c0", 2), S, &v);
    assert_eq!(
        dup,
        Err(QueueError::ChunkBusy {
            chunk: "c0".into(),
            existing: id
        })
    );
    let same = PlannedMove {
        to: ServerIdx(0),
        ..mv(&v, "c1", 1)
    };
    assert!(matches!(
        q.enqueue_planned(same, S, &v),
        Err(QueueError::SameServer { .. })
    ));
    q.pause();
    assert!(q.next_ready(S, &v).is_empty());
    assert_eq!(waiting(&q, S), [Some(WaitReason::Paused)]);
    q.resume();
    let other = q.enqueue_planned(mv(&v, "c2", 1), S, &v).expect("enqueue");
    q.cancel(other, S).expect("pending");
    let starts = q.next_ready(S, &v);
    assert_eq!(starts.len(), 1);
    q.on_done(starts[0].id, 2 * S).expect("running");
    assert_eq!(q.totals().done, 1);
    assert_eq!(q.totals().cancelled, 1);
    assert_eq!(q.totals().bytes_moved, 5);
}

fn copy(chunk: &str, to: &str, class: CopyClass) -> CopyJob {
    CopyJob::new(MoveRef::new(chunk, "a", to), 5, class)
}

#[test]
fn repairs_and_drains_go_first_and_reserve_their_servers() {
    let v = view();
    let mut q = MoveQueue::new(QueueConfig {
        max_concurrent_moves: 4,
        max_moves_per_server: 1,
        ..Default::default()
    });
    let balance = q
        .enqueue(copy("c0", "b", CopyClass::Balance), S)
        .expect("enqueue");
    let operator = q
        .enqueue(copy("c1", "c", CopyClass::Operator), S)
        .expect("enqueue");
    let drain = q
        .enqueue(copy("c2", "d", CopyClass::Drain), S)
        .expect("enqueue");
    let repair = q
        .enqueue(copy("c3", "b", CopyClass::Repair), S)
        .expect("enqueue");
    // a is in every copy and has one slot: the repair takes it although it
    // was queued last; the drain, waiting for a, reserves a and d.
    let starts = q.next_ready(S, &v);
    assert_eq!(starts.iter().map(|s| s.id).collect::<Vec<_>>(), [repair]);
    q.on_done(repair, 2 * S).expect("running");
    let order: Vec<_> = [2, 3, 4]
        .into_iter()
        .map(|t| {
            let s = q.next_ready(t * S, &v);
            assert_eq!(s.len(), 1);
            q.on_done(s[0].id, t * S).expect("running");
            s[0].id
        })
        .collect();
    assert_eq!(order, [drain, operator, balance]);
}

#[test]
fn an_urgent_copy_takes_over_a_pending_move_of_its_chunk() {
    let v = view();
    let mut q = MoveQueue::new(QueueConfig::default());
    let balance = q
        .enqueue(copy("c0", "b", CopyClass::Balance), S)
        .expect("enqueue");
    let repair = q
        .enqueue_over(copy("c0", "c", CopyClass::Repair), S)
        .expect("takes over");
    assert_eq!(q.totals().cancelled, 1);
    assert_eq!(q.of_chunk("c0").map(|(id, _)| id), Some(repair));
    // Not the other way round, and not a running copy.
    assert!(matches!(
        q.enqueue_over(copy("c0", "b", CopyClass::Balance), S),
        Err(QueueError::ChunkBusy { .. })
    ));
    let started = q.next_ready(S, &v);
    assert_eq!(started[0].id, repair);
    assert!(matches!(
        q.enqueue_over(copy("c0", "d", CopyClass::Repair), S),
        Err(QueueError::ChunkBusy { .. })
    ));
    assert_ne!(balance, repair);
}

#[test]
fn failed_repairs_do_not_cool_their_chunk_down() {
    let v = view();
    let mut q = MoveQueue::new(QueueConfig {
        move_retries: 0,
        ..Default::default()
    });
    q.enqueue(copy("c0", "b", CopyClass::Repair), S)
        .expect("enqueue");
    q.enqueue(copy("c1", "c", CopyClass::Balance), S)
        .expect("enqueue");
    for s in q.next_ready(S, &v) {
        assert_eq!(q.on_failed(s.id, "no", S), Ok(AfterFailure::Dropped));
    }
    assert_eq!(q.cooling(S).collect::<Vec<_>>(), ["c1"]);
    assert_eq!(q.slots().running(), 0, "slots come back");
}

#[test]
fn history_is_bounded_and_totals_are_not() {
    let mut v = ClusterView::new();
    let a = v.add_server("a", None, 1 << 20, true);
    let b = v.add_server("b", None, 1 << 20, true);
    for i in 0..30 {
        v.add_chunk(format!("k{i}"), 1, 0, 1, &[a]);
    }
    let mut q = MoveQueue::new(QueueConfig {
        history_limit: 10,
        ..Default::default()
    });
    for i in 0..30 {
        let chunk = v.chunk_by_id(&format!("k{i}")).expect("chunk");
        let mv = PlannedMove {
            chunk,
            from: a,
            to: b,
            bytes: 1,
            reason: keel_balancer::MoveReason::Capacity,
        };
        let id = q.enqueue_planned(mv, S, &v).expect("enqueue");
        assert_eq!(q.next_ready(S, &v)[0].id, id);
        q.on_done(id, S).expect("running");
    }
    assert_eq!(q.history().count(), 10);
    assert_eq!(q.history().next().map(|h| h.id.0), Some(20));
    assert_eq!(q.totals().done, 30);
}

/// The same servers and chunks as [`view`], chunks in reverse order, minus `c0`.
fn renumbered() -> ClusterView {
    let mut v = ClusterView::new();
    for id in ["a", "b", "c", "d"] {
        v.add_server(id, None, 100, true);
    }
    for i in (1..10).rev() {
        v.add_chunk(format!("c{i}"), 5, 0, 1, &[ServerIdx(0)]);
    }
    v
}

#[test]
fn copies_follow_their_ids_across_renumbered_views() {
    let v = view();
    let mut q = MoveQueue::new(QueueConfig::default());
    q.enqueue_planned(mv(&v, "c3", 1), S, &v).expect("enqueue");
    q.enqueue_planned(mv(&v, "c0", 2), S, &v).expect("enqueue");
    let w = renumbered();
    // c3 is found by id at its new index; c0 is gone from the view.
    let starts = q.next_ready(S, &w);
    assert_eq!(starts.len(), 1);
    assert_eq!(q.totals().obsolete, 1);
    let c = &starts[0].copy;
    assert_eq!((c.chunk(), c.from(), c.to()), ("c3", "a", "b"));
    let planned = w.planned(c).expect("in w");
    assert_eq!(w.chunk(planned.chunk).id(), "c3");
    assert!(q.busy(S, &w).contains(planned.chunk));
}

#[test]
fn a_move_that_does_not_fit_the_view_is_refused() {
    let v = view();
    let mut q = MoveQueue::new(QueueConfig::default());
    let wrong_size = PlannedMove {
        bytes: 6,
        ..mv(&v, "c0", 1)
    };
    assert_eq!(
        q.enqueue_planned(wrong_size, S, &v),
        Err(QueueError::NotInView { mv: wrong_size })
    );
    let no_server = PlannedMove {
        to: ServerIdx(9),
        ..mv(&v, "c0", 1)
    };
    assert!(q.enqueue_planned(no_server, S, &v).is_err());
    assert!(q.is_idle());
}

#[test]
fn limited_slots_spread_over_the_sources() {
    let mut v = view();
    for i in 0..3 {
        v.add_chunk(format!("e{i}"), 5, 0, 1, &[ServerIdx(1)]);
    }
    let mut q = MoveQueue::new(QueueConfig {
        max_concurrent_moves: 2,
        ..Default::default()
    });
    // A plan lists a source's moves together: a's first, then b's.
    for (chunk, to) in [("c0", 2), ("c1", 3), ("c2", 2)] {
        q.enqueue_planned(mv(&v, chunk, to), S, &v)
            .expect("enqueue");
    }
    for (chunk, to) in [("e0", 2), ("e1", 3)] {
        let chunk = v.chunk_by_id(chunk).expect("chunk");
        let m = PlannedMove {
            chunk,
            from: ServerIdx(1),
            to: ServerIdx(to),
            bytes: 5,
            reason: keel_balancer::MoveReason::Capacity,
        };
        q.enqueue_planned(m, S, &v).expect("enqueue");
    }
    let froms: Vec<_> = q.next_ready(S, &v).iter().map(|s| s.slot.from).collect();
    assert_eq!(froms, [0, 1], "one slot per source, not both on a");
}

#[test]
fn repairs_of_the_chunks_closest_to_loss_go_first() {
    let v = view();
    let mut q = MoveQueue::new(QueueConfig {
        max_concurrent_moves: 1,
        ..Default::default()
    });
    // Queued first, but its chunk still has two whole replicas.
    let two_left = q
        .enqueue(
            CopyJob {
                rank: 2,
                ..copy("c0", "b", CopyClass::Repair)
            },
            S,
        )
        .expect("enqueue");
    let one_left = q
        .enqueue(
            CopyJob {
                rank: 1,
                ..copy("c1", "c", CopyClass::Repair)
            },
            2 * S,
        )
        .expect("enqueue");
    let starts = q.next_ready(2 * S, &v);
    assert_eq!(starts.iter().map(|s| s.id).collect::<Vec<_>>(), [one_left]);
    q.on_done(one_left, 3 * S).expect("running");
    let starts = q.next_ready(3 * S, &v);
    assert_eq!(starts.iter().map(|s| s.id).collect::<Vec<_>>(), [two_left]);
}

#[test]
fn default_limits_keep_every_server_busy() {
    // Eight full servers, eight empty: each source has four chunks queued,
    // one to each of four targets. At the defaults one pass fills every
    // server's slots (`auto` is live × per-server ÷ 2 = 32); the old fixed
    // cap of 4 ran one copy on half the servers and left the rest idle.
    let mut v = ClusterView::new();
    let servers: Vec<ServerIdx> = (0..16)
        .map(|i| v.add_server(format!("s{i:02}"), None, 1000, true))
        .collect();
    let mut planned = Vec::new();
    for (s, &from) in servers[..8].iter().enumerate() {
        for k in 0..4 {
            let chunk = v.add_chunk(format!("c{s}_{k}"), 5, 0, 1, &[from]);
            let to = servers[8 + (s + k) % 8];
            planned.push(PlannedMove {
                chunk,
                from,
                to,
                bytes: 5,
                reason: keel_balancer::MoveReason::Capacity,
            });
        }
    }
    let started = |config: QueueConfig| {
        let mut q = MoveQueue::new(config);
        for mv in &planned {
            q.enqueue_planned(*mv, S, &v).expect("enqueue");
        }
        let starts = q.next_ready(S, &v);
        let busy: std::collections::BTreeSet<u32> = starts
            .iter()
            .flat_map(|s| [s.slot.from, s.slot.to])
            .collect();
        (starts.len(), busy.len())
    };
    let d = QueueConfig::default();
    assert_eq!(d.effective_max_concurrent(16), 32);
    assert_eq!(started(d), (32, 16), "every slot of every server");
    let old = QueueConfig {
        max_concurrent_moves: 4,
        max_moves_per_server: 2,
        ..d
    };
    assert_eq!(started(old), (4, 8));
}
