//! Allocation, move gates and bookkeeping, trimming and repair planning.

use std::time::{Duration, Instant};

use super::tests::{apply, hb, put, rep};
use super::*;
use crate::error::Error;

/// Servers `a`..: capacity 1000 each, holding the given chunks.
fn cluster(layout: &[(&str, &[(&str, u64)])], now: Instant) -> Meta {
    let mut m = Meta::new(MetaSettings::default());
    for (id, chunks) in layout {
        put(&mut m, id, chunks, now);
    }
    m
}

fn alloc(chunk: &str, size: u64, replication: u32, on: &[&str]) -> AllocRequest {
    AllocRequest {
        chunk: chunk.into(),
        size,
        replication,
        on: on.iter().map(|s| s.to_string()).collect(),
    }
}

fn ids(a: &Allocation) -> Vec<&str> {
    a.servers.iter().map(|s| s.id.as_str()).collect()
}

#[test]
fn allocation_prefers_the_emptiest_and_remembers_itself() {
    let now = Instant::now();
    let mut m = cluster(
        &[("a", &[("x", 600)]), ("b", &[("y", 100)]), ("c", &[])],
        now,
    );
    let a = m.allocate(&alloc("n1", 200, 1, &[]), now).expect("placed");
    assert_eq!(ids(&a), ["c"]);
    // c now carries 200 pending bytes, b 100 used: the next goes to b.
    let a = m.allocate(&alloc("n2", 150, 1, &[]), now).expect("placed");
    assert_eq!(ids(&a), ["b"]);
    // Once c's heartbeat shows n1 the pending bytes turn into used ones.
    apply(&mut m, hb("c", false, vec![rep("n1", 200)], &[], 1), now);
    assert_eq!(
        m.server_by_id("c").map(|s| (s.used, s.pending)),
        Some((200, 0))
    );
    // Unconfirmed allocations expire.
    m.expire_pending(now + PENDING_TTL);
    assert_eq!(m.server_by_id("b").map(|s| s.pending), Some(0));
}

#[test]
fn allocation_clamps_replication_and_refuses_when_full() {
    let now = Instant::now();
    let mut m = cluster(&[("a", &[("x", 850)]), ("b", &[]), ("c", &[])], now);
    let a = m.allocate(&alloc("n", 10, 0, &[]), now).expect("placed");
    assert_eq!(a.replication, 3);
    assert!(
        m.allocate(&alloc("n2", 100, 0, &[]), now).is_err(),
        "a cannot keep 10% free"
    );
    let a = m.allocate(&alloc("n3", 100, 7, &[]), now);
    assert!(matches!(a, Err(Error::NoSpace { .. })));
    let a = m.allocate(&alloc("n4", 100, 2, &[]), now).expect("two fit");
    assert_eq!(ids(&a), ["b", "c"]);
    assert!(matches!(
        m.allocate(&alloc("x", 1, 0, &[]), now),
        Err(Error::ChunkExists { .. })
    ));
    m.check().expect("invariants");
}

#[test]
fn pinned_allocation_is_checked() {
    let now = Instant::now();
    let mut m = cluster(&[("a", &[]), ("b", &[])], now);
    let a = m.allocate(&alloc("n", 10, 0, &["b"]), now).expect("pinned");
    assert_eq!((ids(&a), a.replication), (vec!["b"], 1));
    let e = |m: &mut Meta, on: &[&str], r: u32| m.allocate(&alloc("n", 10, r, on), now).err();
    assert!(matches!(
        e(&mut m, &["zz"], 0),
        Some(Error::UnknownServer { .. })
    ));
    assert!(matches!(
        e(&mut m, &["a", "a"], 0),
        Some(Error::DuplicateServer { .. })
    ));
    assert!(matches!(
        e(&mut m, &["a"], 2),
        Some(Error::PinnedReplicationMismatch { .. })
    ));
    let b = m.server_no("b").expect("b");
    m.drain_marked(b, true);
    assert!(matches!(
        e(&mut m, &["b"], 0),
        Some(Error::ServerDraining { .. })
    ));
    m.sweep_liveness(now + Duration::from_secs(11));
    assert!(matches!(
        e(&mut m, &["a"], 0),
        Some(Error::ServerDead { .. })
    ));
    assert!(matches!(e(&mut m, &[], 0), Some(Error::NoLiveServers)));
}

#[test]
fn every_move_gate_has_its_reason() {
    let now = Instant::now();
    let mut m = cluster(
        &[
            ("a", &[("x", 100), ("big", 500)]),
            ("b", &[("y", 100)]),
            ("c", &[("x", 100)]),
            ("d", &[]),
        ],
        now,
    );
    let r = |m: &Meta, c: &str, f: &str, t: &str| {
        m.check_move(c, f, t, CopyClass::Balance)
            .err()
            .map(|e| e.to_string())
    };
    assert_eq!(r(&m, "x", "zz", "b"), Some("unknown server zz".into()));
    assert_eq!(r(&m, "x", "a", "zz"), Some("unknown server zz".into()));
    assert_eq!(
        r(&m, "x", "a", "a"),
        Some("from and to are the same server (a)".into())
    );
    assert_eq!(r(&m, "nope", "a", "b"), Some("unknown chunk nope".into()));
    assert_eq!(r(&m, "y", "a", "c"), Some("chunk y is not on a".into()));
    assert_eq!(r(&m, "x", "a", "c"), Some("c already holds chunk x".into()));
    // b holds 100; 500 more would leave less than 10 % free only with pending bytes.
    m.allocate(&alloc("p", 350, 1, &["b"]), now)
        .expect("pinned");
    assert!(r(&m, "big", "a", "b").is_some_and(|e| e.contains("less than 10% free")));
    assert!(r(&m, "x", "a", "b").is_none());
    let t = m
        .begin_move("x", "a", "b", CopyClass::Balance)
        .expect("gates pass");
    assert_eq!(
        (t.size, t.from.id.as_str(), t.to.id.as_str()),
        (100, "a", "b")
    );
    assert_eq!(
        r(&m, "x", "a", "d"),
        Some("chunk x is already moving".into())
    );
    m.end_busy("x");
    m.sweep_liveness(now + Duration::from_secs(11));
    assert_eq!(r(&m, "x", "a", "d"), Some("server a is dead".into()));
    m.check().expect("invariants");
}

#[test]
fn the_queue_is_answered_with_the_floor_it_asks_for() {
    use keel_balancer::{Admits, CopyJob, MoveRef, Refusal};
    let now = Instant::now();
    let m = cluster(&[("a", &[("big", 500)]), ("b", &[])], now);
    let job = CopyJob::new(MoveRef::new("big", "a", "b"), 500, CopyClass::Balance);
    // b (1000 bytes) keeps 500 free after the copy: enough for 10 %, not 60 %.
    assert!(Admits::check(&m, &job, 0, 10.0).is_ok());
    assert_eq!(
        Admits::check(&m, &job, 0, 60.0).err(),
        Some(Refusal::BelowFloor)
    );
    // The master's own last check uses its settings (10 %).
    assert!(m.check_move("big", "a", "b", CopyClass::Balance).is_ok());
}

#[test]
fn a_move_keeps_racks_diverse() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    for (id, rack, chunks) in [
        ("a", "r1", vec![rep("x", 1)]),
        ("b", "r2", vec![rep("x", 1)]),
        ("c", "r2", vec![]),
        ("d", "r3", vec![]),
    ] {
        let mut h = hb(id, true, chunks.clone(), &[], chunks.len() as u64);
        h.rack = rack.into();
        apply(&mut m, h, now);
    }
    let e = m
        .check_move("x", "a", "c", CopyClass::Balance)
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        e,
        Some("moving chunk x to c (rack r2) would leave it in fewer racks".into())
    );
    assert!(m.check_move("x", "a", "d", CopyClass::Balance).is_ok());
    assert!(
        m.check_move("x", "b", "c", CopyClass::Balance).is_ok(),
        "within one rack"
    );
}

#[test]
fn a_finished_copy_is_recorded_and_the_source_released_only_when_safe() {
    let now = Instant::now();
    let mut m = cluster(&[("a", &[("x", 100)]), ("b", &[])], now);
    let t = m
        .begin_move("x", "a", "b", CopyClass::Balance)
        .expect("gates pass");
    assert_eq!(m.server_by_id("b").map(|s| s.incoming), Some(100));
    assert!(
        m.source_deletable("x", t.from.no).is_err(),
        "b holds nothing yet"
    );
    m.record_copy(&t, None);
    m.check().expect("invariants");
    assert_eq!(
        m.server_by_id("b").map(|s| (s.used, s.incoming)),
        Some((100, 0))
    );
    m.source_deletable("x", t.from.no).expect("b holds it now");
    m.record_removal("x", t.from.no, None);
    m.end_busy("x");
    m.check().expect("invariants");
    assert_eq!(m.locate("x").map(|l| l.replicas.len()), Ok(1));
    assert!(!m.is_busy("x"));
}

#[test]
fn excess_replicas_are_trimmed_from_the_fullest_holders() {
    let now = Instant::now();
    let mut m = cluster(
        &[
            ("a", &[("x", 100), ("f", 500)]),
            ("b", &[("x", 100)]),
            ("c", &[("x", 100), ("g", 200)]),
        ],
        now,
    );
    // x has replication 1 and three live replicas: delete from a then c.
    let plan = m.plan_trims(10);
    assert_eq!(plan.len(), 1);
    assert_eq!(
        plan[0]
            .servers
            .iter()
            .map(|s| s.id.as_str())
            .collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert!(m.is_busy("x"));
    assert!(m.plan_trims(10).is_empty(), "busy chunks wait");
    for s in &plan[0].servers {
        m.source_deletable("x", s.no).expect("others remain");
        m.record_removal("x", s.no, None);
    }
    m.end_busy("x");
    assert!(m.plan_trims(10).is_empty());
    assert_eq!(m.locate("x").map(|l| l.replicas.len()), Ok(1));
    m.check().expect("invariants");
}

#[test]
fn dead_replicas_are_not_trimmed_and_returning_servers_are_rescanned() {
    let t0 = Instant::now();
    let mut m = cluster(&[("a", &[("x", 100)]), ("b", &[])], t0);
    let t1 = t0 + Duration::from_secs(11);
    apply(&mut m, hb("b", false, vec![], &[], 0), t1);
    m.sweep_liveness(t1);
    let t = m.begin_move("x", "a", "b", CopyClass::Balance).err();
    assert_eq!(t.map(|e| e.to_string()), Some("server a is dead".into()));
    // While a is dead, a copy on b is not excess.
    apply(&mut m, hb("b", false, vec![rep("x", 100)], &[], 1), t1);
    assert!(m.plan_trims(10).is_empty());
    apply(&mut m, hb("a", false, vec![], &[], 1), t1);
    let plan = m.plan_trims(10);
    assert_eq!(plan.len(), 1);
}

#[test]
fn dead_servers_are_repaired_only_after_the_grace_period() {
    let t0 = Instant::now();
    let mut r = rep("x", 100);
    r.replication = 2;
    let mut m = Meta::new(MetaSettings {
        re_replicate_after: Duration::from_secs(60),
        ..MetaSettings::default()
    });
    apply(&mut m, hb("a", true, vec![r.clone()], &[], 1), t0);
    apply(&mut m, hb("b", true, vec![r], &[], 1), t0);
    apply(&mut m, hb("c", true, vec![], &[], 0), t0);
    let t1 = t0 + Duration::from_secs(11);
    for id in ["b", "c"] {
        let held = m.server_by_id(id).map_or(0, |s| s.held());
        apply(&mut m, hb(id, false, vec![], &[], held), t1);
    }
    m.sweep_liveness(t1);
    assert!(
        m.start_repairs(t1 + Duration::from_secs(59), 10)
            .copies
            .is_empty()
    );
    let t2 = t1 + Duration::from_secs(60);
    for id in ["b", "c"] {
        let held = m.server_by_id(id).map_or(0, |s| s.held());
        apply(&mut m, hb(id, false, vec![], &[], held), t2);
    }
    let plan = m.start_repairs(t2, 10).copies;
    assert_eq!(plan.len(), 1);
    assert_eq!(
        (
            plan[0].from.id.as_str(),
            plan[0].to.id.as_str(),
            plan[0].kind
        ),
        ("b", "c", CopyClass::Repair)
    );
    m.record_copy(&plan[0], None);
    m.end_busy("x");
    assert!(
        m.start_repairs(t2, 10).copies.is_empty(),
        "two live replicas again"
    );
    m.check().expect("invariants");
}
