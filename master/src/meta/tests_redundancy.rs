//! Redundancy: every loss path makes its chunk a repair candidate, repairs
//! come before drains, stale reports never undo a recorded change, and trims
//! keep racks. Each step is followed by the invariant check.

use std::time::{Duration, Instant};

use super::tests::{apply, hb, rep};
use super::*;

fn factor(chunk: &str, size: u64, replication: u32) -> ReplicaReport {
    let mut r = rep(chunk, size);
    r.replication = replication;
    r
}

fn stamp(seq: u64) -> Option<Stamp> {
    Some(Stamp {
        incarnation: 1,
        seq,
    })
}

/// Servers a..=n, each with a full report of `chunks`.
fn cluster(m: &mut Meta, servers: &[(&str, Vec<ReplicaReport>)], now: Instant) {
    for (id, chunks) in servers {
        let n = chunks.len() as u64;
        apply(m, hb(id, true, chunks.clone(), &[], n), now);
    }
}

#[test]
fn a_wiped_disk_is_repaired_at_once() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let x = factor("x", 10, 2);
    cluster(
        &mut m,
        &[("a", vec![x.clone()]), ("b", vec![x]), ("c", vec![])],
        now,
    );
    assert!(m.start_repairs(now, 10).copies.is_empty());
    // b comes back empty under the same id.
    apply(&mut m, hb("b", true, vec![], &[], 0), now);
    let p = m.start_repairs(now, 10);
    assert_eq!(
        p.copies.len(),
        1,
        "no grace period for a replica the server says it lacks"
    );
    assert_eq!(p.copies[0].kind, CopyClass::Repair);
    assert_eq!(m.redundancy().under_replicated, 1);
    let e = m.explain("x", now);
    assert_eq!(e.status, "under-replicated");
    assert!(
        e.replicas
            .iter()
            .any(|r| r.server == "b" && r.health == "missing"),
        "{e:?}"
    );
    m.check().expect("invariants");
}

#[test]
fn a_partial_write_is_repaired_once_it_settles() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    cluster(
        &mut m,
        &[
            ("a", vec![factor("x", 10, 3)]),
            ("b", vec![]),
            ("c", vec![]),
        ],
        now,
    );
    let p = m.start_repairs(now, 10);
    assert!(
        p.copies.is_empty(),
        "its other replicas may still be on their way"
    );
    assert_eq!(m.redundancy().under_replicated, 1);
    let later = now + PENDING_TTL;
    let p = m.start_repairs(later, 10);
    assert_eq!(p.copies.len(), 1, "settled below its factor: repaired");
    // A chunk that reaches its factor while settling needs nothing.
    apply(
        &mut m,
        hb("b", true, vec![factor("y", 10, 2)], &[], 1),
        later,
    );
    apply(
        &mut m,
        hb("c", true, vec![factor("y", 10, 2)], &[], 1),
        later,
    );
    let p = m.start_repairs(later + PENDING_TTL, 10);
    assert!(p.copies.iter().all(|t| t.chunk != "y"));
}

#[test]
fn repairs_come_before_drains_and_fewest_replicas_first() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let (x, y, z) = (factor("x", 10, 3), factor("y", 10, 3), factor("z", 10, 2));
    cluster(
        &mut m,
        &[
            ("a", vec![x.clone(), y.clone(), z.clone()]),
            ("b", vec![x.clone(), z]),
            ("c", vec![]),
            ("d", vec![]),
        ],
        now,
    );
    let mut drain = hb("b", true, vec![x, factor("z", 10, 2)], &[], 2);
    drain.draining = true;
    apply(&mut m, drain, now);
    // x and y were first seen below their factor: they settle first.
    let _ = m.start_repairs(now, 0);
    let now = now + PENDING_TTL;
    let p = m.start_repairs(now, 10);
    let order: Vec<(&str, CopyClass)> = p
        .copies
        .iter()
        .map(|t| (t.chunk.as_str(), t.kind))
        .collect();
    // y has 1 of 3, x 2 of 3 (one of them draining): repairs; z 2 of 2 with one draining: a drain.
    assert_eq!(
        order,
        [
            ("y", CopyClass::Repair),
            ("x", CopyClass::Repair),
            ("z", CopyClass::Drain)
        ]
    );
    let b = m.server_no("b").expect("b");
    assert_eq!(m.drain_state(b), ("draining", 2));
    for t in &p.copies {
        assert_ne!(t.to.id, "b", "a draining server takes nothing");
    }
    m.check().expect("invariants");
}

#[test]
fn a_draining_servers_first_report_to_a_fresh_master_queues_its_drain() {
    // A restarted master has scanned its view; then a draining server's
    // first full report arrives: its mark is followed before its chunks
    // are known. It held the only copy of x (factor 1) and a copy of y,
    // already whole on a: it is not drained until x is copied elsewhere.
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let y = factor("y", 10, 1);
    cluster(&mut m, &[("a", vec![y.clone()]), ("c", vec![])], now);
    m.scan_redundancy();
    let _ = m.start_repairs(now, 10);
    let mut first = hb("b", true, vec![factor("x", 10, 1), y], &[], 2);
    first.draining = true;
    apply(&mut m, first, now);
    let p = m.start_repairs(now, 10);
    let b = m.server_no("b").expect("b");
    assert_eq!(m.drain_state(b), ("draining", 1));
    let copies: Vec<(&str, CopyClass)> = p
        .copies
        .iter()
        .map(|t| (t.chunk.as_str(), t.kind))
        .collect();
    assert_eq!(copies, [("x", CopyClass::Drain)]);
    m.check().expect("invariants");
}

#[test]
fn a_drained_server_holds_nothing_needed_and_its_copies_are_trimmed_first() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let x = factor("x", 10, 2);
    cluster(
        &mut m,
        &[
            ("a", vec![x.clone()]),
            ("b", vec![x.clone()]),
            ("c", vec![]),
        ],
        now,
    );
    let b = m.server_no("b").expect("b");
    m.drain_marked(b, true);
    let p = m.start_repairs(now, 10);
    assert_eq!(p.copies.len(), 1);
    let t = p.copies[0].clone();
    // Any holder may be the source; the copy goes to the one server left.
    assert_eq!((t.to.id.as_str(), t.kind), ("c", CopyClass::Drain));
    m.record_copy(&t, None);
    m.end_busy("x");
    let _ = m.start_repairs(now, 10);
    assert_eq!(m.drain_state(b), ("drained", 0));
    let trims = m.plan_trims(10);
    assert_eq!(trims.len(), 1);
    assert_eq!(trims[0].servers[0].id, "b", "the draining copy goes first");
    m.check().expect("invariants");
}

#[test]
fn a_report_built_before_a_delete_cannot_bring_the_replica_back() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let x = factor("x", 10, 1);
    let mut h = hb("a", true, vec![x.clone()], &[], 1);
    h.stamp = stamp(5);
    apply(&mut m, h, now);
    let a = m.server_no("a").expect("a");
    // The master deleted x on a; a's answer was stamped 7.
    m.record_removal("x", a, stamp(7));
    // A full report built at 6, still listing x, arrives late.
    let mut late = hb("a", true, vec![x.clone()], &[], 1);
    late.stamp = stamp(6);
    apply(&mut m, late, now);
    assert!(m.chunk("x").is_none(), "not resurrected");
    // A report built after the delete no longer lists it; one that does
    // (a new write of x) counts.
    let mut later = hb("a", true, vec![x], &[], 1);
    later.stamp = stamp(9);
    apply(&mut m, later, now);
    assert!(m.chunk("x").is_some());
    m.check().expect("invariants");
}

#[test]
fn a_report_built_before_a_copy_does_not_forget_it() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let x = factor("x", 10, 1);
    cluster(&mut m, &[("a", vec![x])], now);
    let mut h = hb("b", true, vec![], &[], 0);
    h.stamp = stamp(3);
    apply(&mut m, h, now);
    let t = m
        .begin_move("x", "a", "b", CopyClass::Balance)
        .expect("move");
    m.record_copy(&t, stamp(4));
    m.end_busy("x");
    let mut late = hb("b", true, vec![], &[], 0);
    late.stamp = stamp(3);
    let out = apply(&mut m, late, now);
    assert!(!out.send_full_report);
    let b = m.server_no("b").expect("b");
    assert!(m.chunk("x").is_some_and(|c| c.holds(b)));
}

#[test]
fn trims_never_leave_fewer_racks() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let x = factor("x", 10, 2);
    for (id, rack) in [("a", "r1"), ("b", "r1"), ("c", "r2")] {
        let mut h = hb(id, true, vec![x.clone()], &[], 1);
        h.rack = rack.into();
        h.used = if id == "c" { 900 } else { 0 };
        apply(&mut m, h, now);
    }
    let trims = m.plan_trims(10);
    assert_eq!(trims.len(), 1);
    let gone: Vec<&str> = trims[0].servers.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(gone.len(), 1);
    assert_ne!(gone[0], "c", "c alone spans r2");
}

#[test]
fn a_dead_server_counts_as_unavailable_and_is_repaired_after_the_grace() {
    let t0 = Instant::now();
    let mut m = Meta::new(MetaSettings {
        re_replicate_after: Duration::from_secs(60),
        ..MetaSettings::default()
    });
    cluster(
        &mut m,
        &[("a", vec![factor("x", 10, 1)]), ("b", vec![])],
        t0,
    );
    let _ = m.start_repairs(t0, 10);
    let t1 = t0 + Duration::from_secs(11);
    apply(&mut m, hb("b", false, vec![], &[], 0), t1);
    m.sweep_liveness(t1);
    let p = m.start_repairs(t1, 10);
    assert!(p.copies.is_empty(), "no live source");
    assert_eq!(m.redundancy().unavailable, 1);
    assert_eq!(m.explain("x", t1).status, "unavailable");
    // Every later pass within the grace period still counts it.
    for s in 1..4 {
        let _ = m.start_repairs(t1 + Duration::from_secs(s), 10);
        assert_eq!(m.redundancy().unavailable, 1, "pass {s} s later");
        assert_eq!(m.redundancy().under_replicated, 1, "pass {s} s later");
    }
}

#[test]
fn a_chunk_short_by_a_server_in_its_grace_stays_counted_and_keeps_its_damaged_copy() {
    let t0 = Instant::now();
    let mut m = Meta::new(MetaSettings {
        re_replicate_after: Duration::from_secs(60),
        ..MetaSettings::default()
    });
    let x = factor("x", 10, 2);
    cluster(
        &mut m,
        &[("a", vec![x.clone()]), ("b", vec![x]), ("c", vec![])],
        t0,
    );
    let _ = m.start_repairs(t0, 10);
    // c's copy was found corrupt earlier and replaced by b's: c keeps it in damaged/.
    let c = m.server_no("c").expect("c");
    m.corrupt_on.entry("x".into()).or_default().push(c);
    // a goes silent; it is dead but within its grace period.
    let t1 = t0 + Duration::from_secs(11);
    for id in ["b", "c"] {
        let n = u64::from(id == "b");
        let chunks = if id == "b" {
            vec![factor("x", 10, 2)]
        } else {
            vec![]
        };
        apply(&mut m, hb(id, true, chunks, &[], n), t1);
    }
    m.sweep_liveness(t1);
    for s in 0..3 {
        let p = m.start_repairs(t1 + Duration::from_secs(s), 10);
        assert!(p.copies.is_empty(), "the grace period is not over");
        assert!(
            p.damaged.is_empty(),
            "only one whole replica on a live server: the damaged copy stays"
        );
        assert_eq!(m.redundancy().under_replicated, 1, "pass {s} s later");
    }
}

#[test]
fn a_drain_out_of_the_only_rack_that_had_room_ends_drained() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let x = factor("x", 10, 2);
    // a is r1's only server; the drain copy can only go to r2.
    for (id, rack, chunks) in [
        ("a", "r1", vec![x.clone()]),
        ("b", "r2", vec![x.clone()]),
        ("c", "r2", vec![]),
    ] {
        let n = chunks.len() as u64;
        let mut h = hb(id, true, chunks, &[], n);
        h.rack = rack.into();
        apply(&mut m, h, now);
    }
    let a = m.server_no("a").expect("a");
    m.drain_marked(a, true);
    let p = m.start_repairs(now, 10);
    assert_eq!(p.copies.len(), 1);
    let t = p.copies[0].clone();
    assert_eq!((t.to.id.as_str(), t.kind), ("c", CopyClass::Drain));
    m.record_copy(&t, None);
    m.end_busy("x");
    let trims = m.plan_trims(10);
    assert_eq!(trims.len(), 1);
    let gone: Vec<&str> = trims[0].servers.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(gone, ["a"], "the leaving replica goes, not its replacement");
    m.record_removal("x", a, None);
    m.end_busy("x");
    assert!(m.start_repairs(now, 10).copies.is_empty());
    assert_eq!(m.drain_state(a), ("drained", 0));
    m.check().expect("invariants");
}

#[test]
fn queued_drain_copies_never_hold_a_repair_back() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    cluster(
        &mut m,
        &[
            ("a", vec![]),
            ("b", vec![factor("x", 10, 2)]),
            ("c", vec![]),
        ],
        now,
    );
    let _ = m.start_repairs(now, 0);
    let now = now + PENDING_TTL;
    let full_of_drains = QueuedCopies {
        drains: 1,
        ..QueuedCopies::default()
    };
    let p = m.plan_repairs(now, 1, &full_of_drains);
    assert_eq!(p.copies.len(), 1, "drains have their own budget");
    assert_eq!(
        (p.copies[0].class, p.copies[0].rank),
        (CopyClass::Repair, 1)
    );
    let full_of_repairs = QueuedCopies {
        repairs: 1,
        ..QueuedCopies::default()
    };
    assert!(m.plan_repairs(now, 1, &full_of_repairs).copies.is_empty());
}

#[test]
fn a_lost_chunk_is_reported_not_forgotten() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    cluster(&mut m, &[("a", vec![factor("x", 10, 1)])], now);
    apply(&mut m, hb("a", true, vec![], &[], 0), now);
    assert!(m.chunk("x").is_none());
    assert!(m.lost_chunks().contains_key("x"));
    let _ = m.start_repairs(now, 10);
    assert_eq!(m.redundancy().unavailable, 1);
    assert_eq!(m.explain("x", now).status, "lost");
    // It comes back: no longer lost.
    apply(&mut m, hb("a", true, vec![factor("x", 10, 1)], &[], 1), now);
    assert!(m.lost_chunks().is_empty());
}

#[test]
fn a_drain_spreads_its_bytes_over_every_bucket_the_draining_ones_included() {
    // b holds 20 chunks, each also on one of c..f; b drains. Every copied
    // byte passes two buckets (its source's and its target's), and b's only
    // sends: the least time is when every bucket carries 2/5 of the bytes,
    // b sending 8 of the 20 chunks.
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let others = ["c", "d", "e", "f"];
    let chunks: Vec<ReplicaReport> = (0..20)
        .map(|i| factor(&format!("x{i:02}"), 10, 2))
        .collect();
    let mut servers = vec![("b", chunks.clone())];
    for (n, id) in others.iter().enumerate() {
        let mine = chunks.iter().skip(n).step_by(others.len()).cloned();
        servers.push((id, mine.collect()));
    }
    cluster(&mut m, &servers, now);
    let b = m.server_no("b").expect("b");
    m.drain_marked(b, true);
    let p = m.plan_repairs(now, 32, &QueuedCopies::default());
    assert_eq!(p.copies.len(), 20);
    let mut bucket: HashMap<&str, u64> = HashMap::new();
    for c in &p.copies {
        *bucket.entry(c.from()).or_default() += c.bytes;
        *bucket.entry(c.to()).or_default() += c.bytes;
    }
    assert_eq!(bucket.get("b"), Some(&80), "{bucket:?}");
    let busiest = bucket.values().max().copied().unwrap_or(0);
    assert!(
        busiest <= 80 + 10,
        "one chunk over the even share at most: {bucket:?}"
    );
    m.check().expect("invariants");
}
