//! Heartbeats, liveness, locate, the balancer views and corruption, each
//! followed by the invariant check.

use std::time::{Duration, Instant};

use super::*;
use crate::meta::VerifyOutcome;

pub(crate) fn rep(chunk: &str, size: u64) -> ReplicaReport {
    ReplicaReport {
        chunk: chunk.into(),
        size,
        crc32c: size as u32 ^ 0xabc,
        replication: 1,
        reads: 0,
        ..ReplicaReport::default()
    }
}

pub(crate) fn hb(
    id: &str,
    full: bool,
    chunks: Vec<ReplicaReport>,
    removed: &[&str],
    count: u64,
) -> Heartbeat {
    Heartbeat {
        id: id.into(),
        address: format!("http://{id}:1"),
        rack: String::new(),
        capacity: 1000,
        used: 0,
        full_report: full,
        chunks,
        removed: removed.iter().map(|s| s.to_string()).collect(),
        chunk_count: count,
        stamp: None,
        draining: false,
        migrate_rate: 0,
        deleting: Vec::new(),
        reads: Default::default(),
    }
}

/// Applies a heartbeat and checks the invariants.
pub(crate) fn apply(m: &mut Meta, h: Heartbeat, now: Instant) -> HeartbeatOutcome {
    let out = m.apply_heartbeat(h, now);
    m.check().expect("invariants");
    out
}

/// Server `id` with a full report of `chunks` (replication 1).
pub(crate) fn put(m: &mut Meta, id: &str, chunks: &[(&str, u64)], now: Instant) {
    let reps: Vec<_> = chunks.iter().map(|(c, s)| rep(c, *s)).collect();
    let n = reps.len() as u64;
    apply(m, hb(id, true, reps, &[], n), now);
}

fn holders(m: &Meta, chunk: &str) -> Vec<(String, bool)> {
    m.locate(chunk)
        .map(|l| l.replicas.into_iter().map(|r| (r.id, r.alive)).collect())
        .unwrap_or_default()
}

#[test]
fn full_report_then_deltas() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let out = apply(
        &mut m,
        hb("a", true, vec![rep("x", 10), rep("y", 20)], &[], 2),
        now,
    );
    assert!(out.registered && !out.send_full_report);
    assert_eq!(m.server_by_id("a").map(|s| s.used), Some(30));
    let out = apply(&mut m, hb("a", false, vec![rep("z", 5)], &["x"], 2), now);
    assert!(!out.send_full_report);
    assert!(m.chunk("x").is_none(), "last replica gone: chunk forgotten");
    assert_eq!(
        m.server_by_id("a").map(|s| (s.used, s.replicas)),
        Some((25, 2))
    );
}

#[test]
fn unknown_state_asks_for_a_full_report_and_ignores_the_delta() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let out = apply(&mut m, hb("a", false, vec![rep("x", 10)], &[], 1), now);
    assert!(out.send_full_report && out.registered);
    assert!(m.chunk("x").is_none());
    assert_eq!(m.server_by_id("a").map(|s| s.alive), Some(true));
}

#[test]
fn a_delta_that_does_not_add_up_asks_for_a_full_report() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    apply(&mut m, hb("a", true, vec![rep("x", 10)], &[], 1), now);
    let out = apply(&mut m, hb("a", false, vec![rep("y", 10)], &[], 3), now);
    assert!(out.send_full_report);
    // Until the full report arrives, deltas are ignored.
    let out = apply(&mut m, hb("a", false, vec![rep("q", 10)], &[], 4), now);
    assert!(out.send_full_report);
    assert!(m.chunk("q").is_none());
    let out = apply(
        &mut m,
        hb("a", true, vec![rep("x", 10), rep("w", 1)], &[], 2),
        now,
    );
    assert!(!out.send_full_report);
    assert!(
        m.chunk("y").is_none(),
        "the full report replaced the chunk set"
    );
    assert_eq!(m.server_by_id("a").map(|s| s.replicas), Some(2));
}

#[test]
fn full_report_keeps_other_servers_replicas() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    apply(&mut m, hb("a", true, vec![rep("x", 10)], &[], 1), now);
    apply(&mut m, hb("b", true, vec![rep("x", 10)], &[], 1), now);
    apply(&mut m, hb("a", true, vec![], &[], 0), now);
    assert_eq!(holders(&m, "x"), [("b".to_string(), true)]);
}

#[test]
fn disagreeing_replica_is_kept_out_but_counted_as_held() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    apply(&mut m, hb("a", true, vec![rep("x", 10)], &[], 1), now);
    let mut bad = rep("x", 10);
    bad.crc32c ^= 1;
    let out = apply(&mut m, hb("b", true, vec![bad], &[], 1), now);
    assert!(!out.send_full_report);
    assert_eq!(holders(&m, "x"), [("a".to_string(), true)]);
    let b = m.server_by_id("b").map(|s| (s.used, s.held()));
    assert_eq!(b, Some((0, 1)));
    // A delta removing it adds up.
    let out = apply(&mut m, hb("b", false, vec![], &["x"], 0), now);
    assert!(!out.send_full_report);
}

#[test]
fn dead_and_alive_again() {
    let t0 = Instant::now();
    let mut m = Meta::new(MetaSettings {
        heartbeat_timeout: Duration::from_secs(3),
        ..MetaSettings::default()
    });
    apply(&mut m, hb("a", true, vec![rep("x", 10)], &[], 1), t0);
    apply(&mut m, hb("b", true, vec![rep("x", 10)], &[], 1), t0);
    assert!(
        m.sweep_liveness(t0 + Duration::from_secs(3))
            .died
            .is_empty()
    );
    apply(
        &mut m,
        hb("b", false, vec![], &[], 1),
        t0 + Duration::from_secs(3),
    );
    let l = m.sweep_liveness(t0 + Duration::from_secs(4));
    assert_eq!(l.died, ["a"]);
    m.check().expect("invariants");
    assert_eq!(
        holders(&m, "x"),
        [("b".to_string(), true), ("a".to_string(), false)]
    );
    let out = apply(
        &mut m,
        hb("a", false, vec![], &[], 1),
        t0 + Duration::from_secs(5),
    );
    assert!(out.revived && !out.send_full_report);
    assert_eq!(
        holders(&m, "x"),
        [("a".to_string(), true), ("b".to_string(), true)]
    );
}

#[test]
fn address_rack_and_capacity_follow_every_heartbeat() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    apply(&mut m, hb("a", true, vec![], &[], 0), now);
    let mut h = hb("a", false, vec![], &[], 0);
    h.address = "http://elsewhere:2".into();
    h.rack = "r9".into();
    h.capacity = 5;
    apply(&mut m, h, now);
    let s = m
        .server_by_id("a")
        .map(|s| (s.address.clone(), s.rack.clone(), s.capacity));
    assert_eq!(s, Some(("http://elsewhere:2".into(), "r9".into(), 5)));
}

#[test]
fn zero_replication_means_the_default() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings {
        default_replication: 2,
        ..MetaSettings::default()
    });
    let mut r = rep("x", 1);
    r.replication = 0;
    apply(&mut m, hb("a", true, vec![r], &[], 1), now);
    assert_eq!(m.chunk("x").map(|c| c.replication), Some(2));
}

#[test]
fn reads_sum_over_replicas() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let mut r = rep("x", 1);
    r.reads = 4;
    apply(&mut m, hb("a", true, vec![r.clone()], &[], 1), now);
    r.reads = 6;
    apply(&mut m, hb("b", true, vec![r.clone()], &[], 1), now);
    r.reads = 7;
    apply(&mut m, hb("b", false, vec![r], &[], 1), now);
    assert_eq!(m.chunk("x").map(|c| c.reads()), Some(11));
}

#[test]
fn list_servers_sorted_and_locate_not_found() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    for id in ["c", "a", "b"] {
        apply(&mut m, hb(id, true, vec![], &[], 0), now);
    }
    let ids: Vec<String> = m.list_servers(now).into_iter().map(|s| s.id).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    assert!(matches!(
        m.locate("nope"),
        Err(crate::error::Error::ChunkNotFound { .. })
    ));
}

/// The seed's example through heartbeats: 78 / 50 / 57 / 15 % of equal capacities.
#[test]
fn seed_example_via_heartbeats() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    for (id, used) in [("cs1", 780), ("cs2", 500), ("cs3", 570), ("cs4", 150)] {
        apply(
            &mut m,
            hb(id, true, vec![rep(&format!("{id}-data"), used)], &[], 1),
            now,
        );
    }
    let r = keel_balancer::load::check(&m.load_view(), 20.0, 0.0);
    assert_eq!(r.average_utilization_pct, 50.0);
    assert_eq!(
        r.overloaded
            .iter()
            .map(|s| s.server.as_str())
            .collect::<Vec<_>>(),
        ["cs1"]
    );
    assert_eq!(
        r.underloaded
            .iter()
            .map(|s| s.server.as_str())
            .collect::<Vec<_>>(),
        ["cs4"]
    );
}

#[test]
fn cluster_view_matches_the_metadata() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    apply(
        &mut m,
        hb("a", true, vec![rep("x", 10), rep("y", 20)], &[], 2),
        now,
    );
    apply(&mut m, hb("b", true, vec![rep("x", 10)], &[], 1), now);
    let v = m.cluster_view();
    assert_eq!(
        v.servers.iter().map(|s| s.used).collect::<Vec<_>>(),
        [30, 10]
    );
    let x = keel_balancer::ServerIdx(0);
    assert_eq!(v.server(x).id, "a");
    assert_eq!(m.load_view().servers, v.servers);
}

#[test]
fn the_balance_view_follows_changes_and_a_lent_one_stays_still() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    apply(
        &mut m,
        hb("a", true, vec![rep("x", 10), rep("y", 20)], &[], 2),
        now,
    );
    let lent = m.balance_view();
    let x = m.balance_idx("x").expect("x");
    assert_eq!(lent.chunk(x).id(), "x");
    assert_eq!(lent.servers[0].used, 30);
    // While a pass holds its view, changes leave it alone (and are
    // marked, not copied); the next view has them.
    apply(&mut m, hb("a", false, vec![rep("z", 5)], &["x"], 2), now);
    apply(&mut m, hb("b", true, vec![rep("y", 20)], &[], 1), now);
    assert_eq!((lent.chunk(x).id(), lent.chunk_count()), ("x", 2));
    drop(lent);
    let v = m.balance_view();
    assert_eq!(v.check_invariants(), Ok(()));
    assert_eq!(m.balance_idx("x"), None);
    let (y, z) = (
        m.balance_idx("y").expect("y"),
        m.balance_idx("z").expect("z"),
    );
    assert_eq!(v.chunk(z).size(), 5);
    let holders = v
        .chunk(y)
        .replicas()
        .iter()
        .map(|s| v.server(*s).id.clone());
    assert_eq!(holders.collect::<Vec<_>>(), ["a", "b"]);
    let used: Vec<u64> = v.servers.iter().map(|s| s.used).collect();
    assert_eq!(used, [25, 20]);
    // A freed slot is reused for the next new chunk.
    apply(&mut m, hb("b", false, vec![rep("w", 1)], &[], 2), now);
    assert_eq!(m.balance_idx("w"), Some(x));
}

#[test]
fn cluster_view_lists_chunks_in_id_order() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let ids = [
        "b",
        "a",
        "vol001.seg-000000000002",
        "vol001.seg-000000000001",
        "a0",
    ];
    let reps: Vec<_> = ids.iter().map(|c| rep(c, 1)).collect();
    apply(&mut m, hb("s", true, reps, &[], ids.len() as u64), now);
    let v = m.snapshot().into_view();
    let got: Vec<String> = v.chunks().map(|c| c.id().to_string()).collect();
    assert_eq!(
        got,
        [
            "a",
            "a0",
            "b",
            "vol001.seg-000000000001",
            "vol001.seg-000000000002"
        ]
    );
}

#[test]
fn a_verified_corruption_queues_a_repair_elsewhere() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let mut r = rep("x", 10);
    r.replication = 2;
    apply(&mut m, hb("a", true, vec![r.clone()], &[], 1), now);
    apply(&mut m, hb("b", true, vec![r.clone()], &[], 1), now);
    apply(&mut m, hb("c", true, vec![], &[], 0), now);
    let v = m
        .report_corruption("x", "a")
        .expect("reported")
        .expect("verify");
    assert_eq!(v.server.id, "a");
    assert!(
        m.report_corruption("x", "a").expect("again").is_none(),
        "one verification at a time"
    );
    // Until verified the replica still counts as whole for reads.
    assert_eq!(holders(&m, "x").len(), 2);
    let a = m.server_no("a").expect("a");
    // The server's verdict names the damaged copy.
    m.verified(
        "x",
        a,
        &VerifyOutcome::Corrupt {
            detail: "bad crc".into(),
            replica: 7,
        },
        None,
    );
    m.check().expect("invariants");
    assert_eq!(holders(&m, "x"), [("b".to_string(), true)]);
    // The repair prefers c (a tie on utilization) over the server whose copy went bad.
    let repairs = m.start_repairs(now, 10);
    assert_eq!(repairs.copies.len(), 1);
    assert_eq!(
        (
            repairs.copies[0].from.id.as_str(),
            repairs.copies[0].to.id.as_str()
        ),
        ("b", "c")
    );
    assert!(
        repairs.damaged.is_empty(),
        "the damaged copy waits for the repair"
    );
    assert!(m.is_busy("x"));
    m.record_copy(&repairs.copies[0], None);
    m.end_busy("x");
    let after = m.start_repairs(now, 10);
    assert!(after.copies.is_empty());
    assert_eq!(
        after.damaged.len(),
        1,
        "back at its factor: the damaged copy goes"
    );
    assert_eq!(after.damaged[0].1.id, "a");
    m.check().expect("invariants");
}

#[test]
fn a_false_report_deletes_nothing() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let mut r = rep("x", 10);
    r.replication = 3;
    for id in ["a", "b", "c"] {
        apply(&mut m, hb(id, true, vec![r.clone()], &[], 1), now);
    }
    for id in ["a", "b", "c"] {
        let v = m
            .report_corruption("x", id)
            .expect("reported")
            .expect("verify");
        assert_eq!(v.server.id, id);
    }
    // While all three are suspect, none counts towards deleting another.
    let a = m.server_no("a").expect("a");
    assert!(m.source_deletable("x", a).is_err());
    for id in ["a", "b", "c"] {
        let no = m.server_no(id).expect("no");
        m.verified("x", no, &VerifyOutcome::Whole, None);
    }
    assert_eq!(holders(&m, "x").len(), 3);
    assert!(m.plan_trims(10).is_empty());
    let p = m.start_repairs(now, 10);
    assert!(p.copies.is_empty() && p.damaged.is_empty());
    assert!(m.report_corruption("x", "zz").is_err());
    assert!(m.report_corruption("nope", "a").is_err());
    m.check().expect("invariants");
}
