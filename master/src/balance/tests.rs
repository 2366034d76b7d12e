//! The balancer's loop logic with time passed in: planning by ids, queueing,
//! starting under the limits (each start marked begun in the metadata),
//! retries and drops, pause, operator moves and repairs ahead of balance
//! moves, and a queue that stays right while the metadata renumbers chunks.

use std::time::{Duration, Instant};

use keel_balancer::Policy;
use keel_balancer::queue::{AfterFailure, QueueConfig, WaitReason, backoff};

use super::pass::{PassInput, plan_pass};
use keel_balancer::{CopyClass, CopyJob, MoveRef};

use super::state::{InFlightNames, QueueState, Start};
use crate::meta::tests::put;
use crate::meta::{Meta, MetaSettings};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn named(chunk: &str, from: &str, to: &str, bytes: u64) -> CopyJob {
    CopyJob::new(MoveRef::new(chunk, from, to), bytes, CopyClass::Balance)
}

/// `a` holds ten chunks of 50 bytes (500 of 1000), `b` and `c` nothing.
fn cluster() -> Meta {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let chunks: Vec<(String, u64)> = (0..10).map(|i| (format!("k{i}"), 50)).collect();
    let chunks: Vec<(&str, u64)> = chunks.iter().map(|(c, s)| (c.as_str(), *s)).collect();
    put(&mut m, "a", &chunks, now);
    put(&mut m, "b", &[], now);
    put(&mut m, "c", &[], now);
    m
}

fn queue() -> QueueState {
    QueueState::new(QueueConfig {
        max_concurrent_moves: 4,
        max_moves_per_server: 2,
        move_retries: 2,
        ..QueueConfig::default()
    })
}

/// What a started copy moves.
fn mv_of(s: &Start) -> MoveRef {
    MoveRef {
        chunk: s.ticket.chunk.clone(),
        from: s.ticket.from.id.clone(),
        to: s.ticket.to.id.clone(),
    }
}

/// A copy's task ended: its busy mark goes (the mover's guard does this).
fn ended(m: &mut Meta, s: &Start) {
    m.end_busy(&s.ticket.chunk);
}

fn pass(m: &mut Meta, in_flight: InFlightNames) -> super::PassPlan {
    let input = PassInput::take(m, &in_flight, &Default::default());
    plan_pass(input, &Policy::new(10.0, 10.0))
}

#[test]
fn a_pass_names_moves_and_leaves_queued_chunks_alone() {
    let mut m = cluster();
    let p = pass(&mut m, InFlightNames::default());
    assert!(!p.moves.is_empty() && p.reaches_band, "{p:?}");
    assert!(p.moves.iter().all(|n| n.mv.from == "a" && n.bytes == 50));
    assert_eq!(p.bytes, 50 * p.moves.len() as u64);
    assert_eq!(p.chunks, 10);

    // The same moves queued: the next pass counts them as done and plans nothing.
    let in_flight = InFlightNames {
        moves: p.moves.clone(),
        chunks: vec![],
    };
    let again = pass(&mut m, in_flight);
    assert!(again.moves.is_empty() && again.reaches_band, "{again:?}");
}

#[test]
fn starts_respect_the_limits_and_done_moves_free_slots() {
    let mut m = cluster();
    let mut q = queue();
    let moves: Vec<CopyJob> = (0..4)
        .map(|i| {
            named(
                &format!("k{i}"),
                "a",
                if i % 2 == 0 { "b" } else { "c" },
                50,
            )
        })
        .collect();
    let e = q.enqueue(&m, &moves, secs(1));
    assert_eq!((e.moves, e.bytes, e.stale), (4, 200, 0));
    let starts = q.start_ready(&mut m, secs(1));
    assert_eq!(starts.len(), 2, "two per server, and all come from a");
    assert_eq!(mv_of(&starts[0]), moves[0].mv);
    assert!(m.busy_chunks().any(|c| c == "k0"), "begun in the metadata");
    assert_eq!(starts[0].attempt, 1);
    let st = q.status(secs(1));
    assert_eq!((st.pending, st.running), (2, 2));
    assert!(
        st.moves
            .iter()
            .any(|mv| mv.waiting == Some(WaitReason::NoSlot))
    );

    q.finish(starts[0].id, Ok(()), secs(2)).expect("running");
    ended(&mut m, &starts[0]);
    let next = q.start_ready(&mut m, secs(2));
    assert_eq!(next.len(), 1);
    assert_eq!(mv_of(&next[0]), moves[2].mv);
    assert_eq!(q.status(secs(2)).done, 1);
    assert_eq!(q.status(secs(2)).bytes_moved, 50);
}

#[test]
fn stale_moves_are_not_queued() {
    let m = cluster();
    let mut q = queue();
    let moves = [
        named("k0", "b", "c", 50),      // not on the source
        named("nope", "a", "b", 50),    // unknown chunk
        named("k1", "a", "a", 50),      // same server
        named("k2", "a", "b", 49),      // wrong size
        named("k3", "a", "b", 50),      // fine
        named("k3", "a", "c", 50),      // chunk already queued
        named("k4", "a", "nobody", 50), // unknown server
    ];
    let e = q.enqueue(&m, &moves, secs(0));
    assert_eq!((e.moves, e.stale), (1, 6));
}

#[test]
fn failures_back_off_then_drop_and_cool_down() {
    let mut m = cluster();
    let mut q = queue();
    q.enqueue(&m, &[named("k0", "a", "b", 50)], secs(0));
    let mut now = secs(0);
    for attempt in 1..=3 {
        let starts = q.start_ready(&mut m, now);
        assert_eq!(starts.len(), 1, "attempt {attempt}");
        assert_eq!(starts[0].attempt, attempt);
        let after = q.finish(starts[0].id, Err("b unreachable".into()), now);
        ended(&mut m, &starts[0]);
        match after.expect("running") {
            Some(AfterFailure::Retry { not_before }) => {
                assert_eq!(not_before, now + backoff(attempt));
                assert!(q.start_ready(&mut m, now).is_empty(), "backing off");
                let st = q.status(now);
                assert_eq!(
                    st.moves[0].waiting,
                    Some(WaitReason::Retrying("b unreachable".into()))
                );
                now = not_before;
            }
            Some(AfterFailure::Dropped) => assert_eq!(attempt, 3, "two retries, then dropped"),
            None => panic!("reported as done"),
        }
    }
    let st = q.status(now);
    assert_eq!((st.pending, st.running, st.failed), (0, 0, 1));
    assert_eq!(
        q.in_flight(now).chunks,
        ["k0"],
        "left out of plans for a while"
    );
    assert!(
        pass(&mut m, q.in_flight(now))
            .moves
            .iter()
            .all(|n| n.mv.chunk != "k0")
    );
}

#[test]
fn paused_moves_wait_and_resume_starts_them() {
    let mut m = cluster();
    let mut q = queue();
    q.pause();
    q.enqueue(&m, &[named("k0", "a", "b", 50)], secs(0));
    // A repair is not held by the pause.
    let repair = CopyJob {
        class: CopyClass::Repair,
        ..named("k1", "a", "c", 50)
    };
    q.enqueue_urgent(repair, secs(0)).expect("queued");
    let started = q.start_ready(&mut m, secs(1));
    assert_eq!(
        started.iter().map(mv_of).collect::<Vec<_>>(),
        [named("k1", "a", "c", 50).mv]
    );
    let st = q.status(secs(1));
    assert!(st.paused);
    assert_eq!(st.moves[0].waiting, Some(WaitReason::Paused));
    q.resume();
    assert_eq!(q.start_ready(&mut m, secs(2)).len(), 1);
}

#[test]
fn operator_moves_and_repairs_displace_pending_moves_and_go_first() {
    let mut m = cluster();
    let mut q = queue();
    q.enqueue(
        &m,
        &[
            named("k0", "a", "b", 50),
            named("k1", "a", "b", 50),
            named("k2", "a", "c", 50),
        ],
        secs(0),
    );
    let op: CopyJob = CopyJob {
        class: CopyClass::Operator,
        ..named("k0", "a", "c", 50)
    };
    let op_id = q.enqueue_urgent(op, secs(0)).expect("queued");
    let repair = CopyJob {
        class: CopyClass::Repair,
        ..named("k2", "a", "b", 50)
    };
    q.enqueue_urgent(repair, secs(0)).expect("queued");
    let st = q.status(secs(0));
    assert_eq!(
        (st.pending, q.queue().totals().cancelled),
        (3, 2u64),
        "k0's and k2's balance moves gave way"
    );
    // a has two slots: the repair, then the operator's move.
    let starts = q.start_ready(&mut m, secs(0));
    let kinds: Vec<CopyClass> = starts.iter().map(|s| s.ticket.kind).collect();
    assert_eq!(kinds, [CopyClass::Repair, CopyClass::Operator]);
    assert!(q.start_ready(&mut m, secs(0)).is_empty());
    // One retry policy for every class: an operator's move is retried too.
    assert!(matches!(
        q.finish(op_id, Err("copy failed".into()), secs(1)),
        Ok(Some(AfterFailure::Retry { .. }))
    ));
    // A chunk with a running copy cannot take another.
    assert!(
        q.enqueue_urgent(
            CopyJob {
                class: CopyClass::Operator,
                ..named("k2", "a", "c", 50)
            },
            secs(1)
        )
        .is_err()
    );
}

#[test]
fn the_queue_follows_chunks_when_the_metadata_renumbers_them() {
    let mut m = cluster();
    let mut q = queue();
    q.enqueue(
        &m,
        &[named("k5", "a", "b", 50), named("k6", "a", "c", 50)],
        secs(0),
    );
    // New chunks sorting before every queued one shift all indices.
    let now = Instant::now();
    let early: Vec<(String, u64)> = (0..5).map(|i| (format!("a{i}"), 10)).collect();
    let early: Vec<(&str, u64)> = early.iter().map(|(c, s)| (c.as_str(), *s)).collect();
    put(&mut m, "b", &early, now);
    let starts = q.start_ready(&mut m, secs(1));
    let got: Vec<MoveRef> = starts.iter().map(mv_of).collect();
    assert_eq!(
        got,
        [named("k5", "a", "b", 50).mv, named("k6", "a", "c", 50).mv]
    );

    // k6 reaches c some other way: a pending move of it would be obsolete.
    q.finish(starts[1].id, Err("timeout".into()), secs(1))
        .expect("running");
    ended(&mut m, &starts[1]);
    let mut keep: Vec<(String, u64)> = (0..10)
        .filter(|i| *i != 6)
        .map(|i| (format!("k{i}"), 50))
        .collect();
    keep.sort();
    let keep: Vec<(&str, u64)> = keep.iter().map(|(c, s)| (c.as_str(), *s)).collect();
    put(&mut m, "a", &keep, now);
    put(&mut m, "c", &[("k6", 50)], now);
    assert!(q.start_ready(&mut m, secs(10)).is_empty());
    let st = q.status(secs(10));
    assert_eq!((st.pending, st.running), (0, 1), "k6 dropped as obsolete");
}

#[test]
fn pending_moves_naming_a_dead_server_are_dropped() {
    let mut m = cluster();
    let mut q = queue();
    q.enqueue(
        &m,
        &[named("k0", "a", "b", 50), named("k1", "a", "c", 50)],
        secs(0),
    );
    let starts = q.start_ready(&mut m, secs(0));
    assert_eq!(starts.len(), 2);
    q.finish(starts[1].id, Err("c unreachable".into()), secs(1))
        .expect("running");
    ended(&mut m, &starts[1]);
    // c stays silent past the heartbeat timeout; a and b keep reporting.
    let later = Instant::now() + Duration::from_secs(30);
    let mut keep: Vec<(String, u64)> = (0..10).map(|i| (format!("k{i}"), 50)).collect();
    keep.sort();
    let keep: Vec<(&str, u64)> = keep.iter().map(|(c, s)| (c.as_str(), *s)).collect();
    put(&mut m, "a", &keep, later);
    put(&mut m, "b", &[], later);
    m.sweep_liveness(later);
    assert!(q.start_ready(&mut m, secs(5)).is_empty());
    let st = q.status(secs(5));
    assert_eq!((st.pending, st.running, st.failed), (0, 1, 0), "{st:?}");
    assert_eq!(
        q.queue().totals().obsolete,
        1,
        "its planner plans without c"
    );
}

/// A plan answer names each move's reason and the load band's outcome.
#[test]
fn plan_answers_carry_reasons_and_the_load_band() {
    use keel_balancer::{CopyClass, CopyJob, MoveReason, MoveRef};
    let job = |c: &str| CopyJob::new(MoveRef::new(c, "a", "b"), 10, CopyClass::Balance);
    let p = super::PassPlan {
        moves: vec![job("x"), job("y")],
        reasons: vec![MoveReason::Load, MoveReason::Capacity],
        planned: 2,
        bytes: 20,
        reaches_band: true,
        reaches_load_band: false,
        load_threshold_pct: 25.0,
        ..Default::default()
    };
    let r = super::plan_response(p);
    let reasons: Vec<_> = r.moves.iter().map(|m| m.reason.as_str()).collect();
    assert_eq!(reasons, ["load", "capacity"]);
    assert!(r.reaches_band && !r.reaches_load_band);
    assert_eq!(r.load_threshold_pct, 25.0);
}

/// Every cooling chunk reaches the planner as cooling, and a queued move
/// of one still cooling from its load move is projected as a load move.
#[test]
fn cooling_chunks_reach_the_planner() {
    use keel_balancer::MoveReason;
    let mut m = cluster();
    let cooling = [
        ("k1".into(), false),
        ("k2".into(), true),
        ("gone".into(), false),
    ]
    .into_iter()
    .collect();
    let names = InFlightNames {
        moves: vec![named("k2", "a", "b", 50)],
        ..Default::default()
    };
    let input = PassInput::take(&mut m, &names, &cooling);
    let idx = |c: &str| m.balance_idx(c).expect("known");
    assert!(input.in_flight.is_cooling(idx("k1")) && input.in_flight.is_cooling(idx("k2")));
    assert!(!input.in_flight.is_cooling(idx("k3")));
    let projected: Vec<_> = input.in_flight.moves().collect();
    assert_eq!(projected.len(), 1);
    assert_eq!(projected[0].reason, MoveReason::Load);
}
