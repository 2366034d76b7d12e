//! The move queue as a state machine: gates, reasons, retries, obsolete
//! moves, pausing, limits and history, with time passed in.

use std::time::Duration;

use keel_balancer::queue::{
    AfterFailure, MoveQueue, MoveState, Outcome, QueueConfig, RETRY_CAP, backoff,
};
use keel_balancer::{ClusterView, PlannedMove, QueueError, ServerIdx};

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
    }
}

fn waiting(q: &MoveQueue, now: Duration) -> Vec<Option<String>> {
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
    let blocked = q.enqueue(mv(&v, "c0", 1), S, &v).expect("enqueue");
    q.enqueue(mv(&v, "c1", 2), S, &v).expect("enqueue");
    q.enqueue(mv(&v, "c2", 3), S, &v).expect("enqueue");
    let started: Vec<_> = q.next_ready(2 * S, &v).iter().map(|s| s.mv.to.0).collect();
    assert_eq!(started, [2, 3]);
    assert_eq!(
        waiting(&q, 2 * S),
        [Some("target free space at floor".to_owned())]
    );
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
    q.enqueue(mv(&v, "c0", 1), S, &v).expect("enqueue");
    q.enqueue(mv(&v, "c1", 1), S, &v).expect("enqueue");
    assert_eq!(q.next_ready(S, &v).len(), 1);
    assert_eq!(
        waiting(&q, S),
        [Some("target free space at floor".to_owned())]
    );
    // Still blocked on the next pass while the first one runs.
    assert!(q.next_ready(2 * S, &v).is_empty());
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
        q.enqueue(mv(&v, &format!("c{i}"), to), S, &v)
            .expect("enqueue");
    }
    // a is the source of all four: two slots on a.
    assert_eq!(q.next_ready(S, &v).len(), 2);
    assert_eq!(
        waiting(&q, S),
        [Some("no slot".to_owned()), Some("no slot".to_owned())]
    );
    let mut q = MoveQueue::new(QueueConfig {
        max_concurrent_moves: 0,
        ..Default::default()
    });
    q.enqueue(mv(&v, "c0", 1), S, &v).expect("enqueue");
    assert!(
        q.next_ready(S, &v).is_empty(),
        "no slots means nothing runs"
    );
    assert_eq!(waiting(&q, S), [Some("no slot".to_owned())]);
}

#[test]
fn failures_back_off_then_drop_with_the_last_error() {
    let v = view();
    let mut q = MoveQueue::new(QueueConfig::default());
    let id = q
        .enqueue(mv(&v, "c0", 1), Duration::ZERO, &v)
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
        let expected = format!("retrying: copy failed #{attempt}");
        assert_eq!(status.moves[0].waiting.as_deref(), Some(expected.as_str()));
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
    q.enqueue(m, S, &v).expect("enqueue");
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
fn invalid_placement_waits_and_heals() {
    let mut v = view();
    let mut q = MoveQueue::new(QueueConfig::default());
    q.enqueue(mv(&v, "c0", 1), S, &v).expect("enqueue");
    v.servers[1].alive = false;
    assert!(q.next_ready(S, &v).is_empty());
    assert_eq!(waiting(&q, S), [Some("no valid placement".to_owned())]);
    v.servers[1].alive = true;
    assert_eq!(q.next_ready(2 * S, &v).len(), 1);
}

#[test]
fn pause_resume_cancel_and_duplicates() {
    let v = view();
    let mut q = MoveQueue::new(QueueConfig::default());
    let id = q.enqueue(mv(&v, "c0", 1), S, &v).expect("enqueue");
    let dup = q.enqueue(mv(&v, "c0", 2), S, &v);
    assert_eq!(
        dup,
        Err(QueueError::ChunkBusy {
            chunk: mv(&v, "c0", 1).chunk,
            existing: id
        })
    );
    let same = PlannedMove {
        to: ServerIdx(0),
        ..mv(&v, "c1", 1)
    };
    assert!(matches!(
        q.enqueue(same, S, &v),
        Err(QueueError::SameServer { .. })
    ));
    q.pause();
    assert!(q.next_ready(S, &v).is_empty());
    assert_eq!(waiting(&q, S), [Some("paused".to_owned())]);
    q.resume();
    let other = q.enqueue(mv(&v, "c2", 1), S, &v).expect("enqueue");
    q.cancel(other, S).expect("pending");
    let starts = q.next_ready(S, &v);
    assert_eq!(starts.len(), 1);
    q.on_done(starts[0].id, 2 * S).expect("running");
    assert_eq!(q.totals().done, 1);
    assert_eq!(q.totals().cancelled, 1);
    assert_eq!(q.totals().bytes_moved, 5);
}

#[test]
fn moves_started_elsewhere_hold_slots_and_are_not_retried() {
    let v = view();
    let mut q = MoveQueue::new(QueueConfig {
        max_concurrent_moves: 1,
        ..Default::default()
    });
    let ext = q.on_started(mv(&v, "c0", 1), S, &v).expect("start");
    q.enqueue(mv(&v, "c1", 2), S, &v).expect("enqueue");
    assert!(q.next_ready(S, &v).is_empty());
    assert_eq!(
        q.on_failed(ext, "operator move failed", S),
        Ok(AfterFailure::Dropped)
    );
    assert_eq!(q.next_ready(S, &v).len(), 1);
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
        let id = q
            .on_started(
                PlannedMove {
                    chunk,
                    from: a,
                    to: b,
                    bytes: 1,
                },
                S,
                &v,
            )
            .expect("start");
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
fn moves_follow_their_chunk_ids_across_renumbered_views() {
    let v = view();
    let mut q = MoveQueue::new(QueueConfig::default());
    q.enqueue(mv(&v, "c3", 1), S, &v).expect("enqueue");
    q.enqueue(mv(&v, "c0", 2), S, &v).expect("enqueue");
    let w = renumbered();

    // Unrebased, the indices now name other chunks: dropped, never started.
    let mut stale = q.clone();
    assert!(stale.next_ready(S, &w).is_empty());
    assert_eq!(stale.totals().obsolete, 2);

    // Rebased, c3 is found at its new index; c0 is gone from the view.
    assert_eq!(q.rebase(&w, S), 1);
    let starts = q.next_ready(S, &w);
    assert_eq!(starts.len(), 1);
    assert_eq!(w.chunk(starts[0].mv.chunk).id(), "c3");
    let names = &q.status(S).moves[0].names;
    assert_eq!(
        (names.chunk.as_str(), names.from.as_str(), names.to.as_str()),
        ("c3", "a", "b")
    );
    assert!(q.busy(S).contains(starts[0].mv.chunk));
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
        q.enqueue(wrong_size, S, &v),
        Err(QueueError::NotInView { mv: wrong_size })
    );
    let no_server = PlannedMove {
        to: ServerIdx(9),
        ..mv(&v, "c0", 1)
    };
    assert!(q.enqueue(no_server, S, &v).is_err());
    assert!(q.is_idle());
}
