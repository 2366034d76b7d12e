//! Double faults: every delete names the replica it means, mismatched copies
//! go once the chunk is whole elsewhere, doubted replicas wait for their
//! server's word, and suspect marks come back from chunk servers.

use std::time::Instant;

use super::tests::{apply, hb, rep};
use super::*;

/// `x` (factor 3) on a, b and c, each replica with its own identity.
fn three_at_factor_three(now: Instant) -> Meta {
    let mut m = Meta::new(MetaSettings::default());
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        let mut r = rep("x", 10);
        r.replication = 3;
        r.replica_id = 100 + i as u64;
        apply(&mut m, hb(id, true, vec![r], &[], 1), now);
    }
    m
}

#[test]
fn the_damaged_copy_is_deleted_by_its_identity_not_the_repair_on_its_server() {
    let now = Instant::now();
    let mut m = three_at_factor_three(now);
    let a = m.server_no("a").expect("a");
    m.report_corruption("x", "a").expect("reported");
    let replica = m.replica_id("x", a);
    m.verified(
        "x",
        a,
        &VerifyOutcome::Corrupt {
            detail: "bad crc".into(),
            replica,
        },
        None,
    );
    // With servers = factor the repair can only go back onto a.
    let repairs = m.start_repairs(now, 10);
    assert_eq!(repairs.copies.len(), 1);
    assert_eq!(repairs.copies[0].to.id, "a");
    m.record_copy_of(&repairs.copies[0], None, 555);
    m.end_busy("x");
    let after = m.start_repairs(now, 10);
    assert!(after.copies.is_empty(), "exactly one repair");
    assert_eq!(after.damaged.len(), 1);
    assert_eq!(after.damaged[0].1.id, "a");
    assert_eq!(m.damaged_replica("x", a), 100, "the damaged copy, not 555");
    assert_eq!(m.replica_id("x", a), 555);
    m.damaged_delete_failed("x", a);
    let again = m.start_repairs(now, 10);
    assert_eq!(again.damaged.len(), 1, "a failed delete is planned again");
    assert_eq!(m.damaged_replica("x", a), 100);
    m.forget_excluded("x", a);
    assert_eq!(m.replica_id("x", a), 555, "the new copy stays counted");
    m.check().expect("invariants");
}

#[test]
fn a_mismatched_copy_is_deleted_once_the_chunk_is_whole_elsewhere_then_replaced() {
    let now = Instant::now();
    let mut m = three_at_factor_three(now);
    let c = m.server_no("c").expect("c");
    let mut bad = rep("x", 10);
    bad.replication = 3;
    bad.crc32c ^= 1;
    bad.replica_id = 900;
    apply(&mut m, hb("c", true, vec![bad], &[], 1), now);
    assert!(!m.chunk("x").expect("x").holds(c));
    let plan = m.start_repairs(now, 10);
    assert!(plan.copies.is_empty(), "c still holds the mismatched copy");
    assert_eq!(plan.damaged.len(), 1);
    assert_eq!(plan.damaged[0].1.id, "c");
    assert_eq!(m.damaged_replica("x", c), 900);
    assert!(
        m.start_repairs(now, 10).damaged.is_empty(),
        "planned once while its delete runs"
    );
    m.forget_excluded("x", c);
    let plan = m.start_repairs(now, 10);
    assert_eq!(plan.copies.len(), 1, "back to its factor");
    assert_eq!(plan.copies[0].to.id, "c");
    m.check().expect("invariants");
}

#[test]
fn a_doubted_replica_counts_only_once_no_delete_of_it_runs() {
    let now = Instant::now();
    let mut m = three_at_factor_three(now);
    let b = m.server_no("b").expect("b");
    m.doubt_replica("x", b);
    assert!(m.is_doubted("x", b));
    let mut r = rep("x", 10);
    r.replication = 3;
    r.replica_id = 101;
    let mut still = hb("b", true, vec![r.clone()], &[], 1);
    still.deleting = vec!["x".into()];
    let out = apply(&mut m, still, now);
    assert!(out.send_full_report, "asked again after the delete");
    assert!(m.is_doubted("x", b));
    assert!(!m.chunk("x").expect("x").holds(b), "not counted meanwhile");
    apply(&mut m, hb("b", true, vec![r], &[], 1), now);
    assert!(!m.is_doubted("x", b));
    assert!(
        m.chunk("x").expect("x").holds(b),
        "its server still holds it"
    );
}

#[test]
fn a_replica_its_server_reports_suspect_counts_for_no_delete() {
    let now = Instant::now();
    let mut m = three_at_factor_three(now);
    let a = m.server_no("a").expect("a");
    let mut r = rep("x", 10);
    r.replication = 3;
    r.replica_id = 100;
    r.suspect = true;
    apply(&mut m, hb("a", true, vec![r], &[], 1), now);
    assert!(m.is_suspect("x", a));
    let due = m.verifications_due();
    assert_eq!(due.len(), 1, "verified again by this master");
    assert_eq!(due[0].server.id, "a");
    let b = m.server_no("b").expect("b");
    assert!(m.source_deletable("x", b).is_err(), "a does not count");
}

#[test]
fn a_damaged_copy_delete_names_the_replica_the_verdict_named_even_when_the_view_dropped_it() {
    let now = Instant::now();
    let mut m = three_at_factor_three(now);
    let a = m.server_no("a").expect("a");
    m.report_corruption("x", "a").expect("reported");
    // A heartbeat drops a's copy before the verdict arrives: the view no
    // longer names it (0 would mean "whatever is held").
    apply(&mut m, hb("a", false, vec![], &["x"], 0), now);
    assert_eq!(m.replica_id("x", a), 0);
    let verdict = VerifyOutcome::Corrupt {
        detail: "bad crc".into(),
        replica: 100,
    };
    m.verified("x", a, &verdict, None);
    assert_eq!(
        m.damaged_replica("x", a),
        100,
        "the verdict's replica, never 0"
    );
    let nameless = VerifyOutcome::Corrupt {
        detail: "bad crc".into(),
        replica: 0,
    };
    let b = m.server_no("b").expect("b");
    m.report_corruption("x", "b").expect("reported");
    m.verified("x", b, &nameless, None);
    let plan = m.start_repairs(now, 10);
    assert!(
        plan.damaged.iter().all(|(_, s)| s.id != "b"),
        "a damaged copy with no identity is never deleted"
    );
}

#[test]
fn a_copy_answer_older_than_the_last_applied_report_does_not_bring_a_replica_back() {
    let now = Instant::now();
    let mut m = three_at_factor_three(now);
    let c = m.server_no("c").expect("c");
    // c reports x gone at stamp 5; a copy answer stamped 4 arrives late.
    let mut gone = hb("c", false, vec![], &["x"], 0);
    gone.stamp = Some(Stamp {
        incarnation: 1,
        seq: 5,
    });
    apply(&mut m, gone, now);
    assert!(!m.chunk("x").expect("x").holds(c));
    let plan = m.start_repairs(now, 10);
    let t = plan.copies.first().expect("a repair").clone();
    let late = Some(Stamp {
        incarnation: 1,
        seq: 4,
    });
    m.record_copy_of(&t, late, 777);
    assert!(
        !m.chunk("x").expect("x").holds(t.to.no),
        "the report stamped after the answer says what is held"
    );
    let fresh = Some(Stamp {
        incarnation: 1,
        seq: 6,
    });
    m.record_copy_of(&t, fresh, 777);
    assert_eq!(m.replica_id("x", t.to.no), 777);
}

#[test]
fn a_lost_chunk_is_not_redefined_by_a_mismatched_copy_heard_first() {
    // Seed 422: x (factor 1) on a; a's copy turns into other bytes, so x is
    // lost; a's odd copy, reported again, must not become x, or the real
    // copy b brings back would be deleted as the mismatched one.
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let mut good = rep("x", 10);
    good.replica_id = 100;
    apply(&mut m, hb("a", true, vec![good.clone()], &[], 1), now);
    let mut odd = rep("x", 17);
    odd.replica_id = 200;
    apply(&mut m, hb("a", false, vec![odd.clone()], &[], 1), now);
    assert!(m.chunk("x").is_none());
    assert!(m.lost_chunks().contains_key("x"), "remembered as lost");
    apply(&mut m, hb("a", false, vec![odd], &[], 1), now);
    assert!(m.chunk("x").is_none(), "the odd copy is not the chunk");
    good.replica_id = 300;
    apply(&mut m, hb("b", true, vec![good], &[], 1), now);
    let b = m.server_no("b").expect("b");
    assert_eq!(m.chunk("x").map(|c| c.size), Some(10), "the real chunk");
    assert_eq!(m.replica_id("x", b), 300);
    assert!(!m.lost_chunks().contains_key("x"));
    let plan = m.start_repairs(now, 10);
    assert!(
        plan.damaged.iter().all(|(_, s)| s.id != "b"),
        "the real copy is never deleted as mismatched"
    );
    m.check().expect("invariants");
}

#[test]
fn a_late_report_of_a_dead_run_brings_no_replica_back() {
    // Seed 17907: a full report of an earlier run, held up on the way,
    // arrived after the newer run had gone silent (it crashed); applied,
    // it counted a replica lost since.
    let t0 = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let run = |incarnation, seq| Some(Stamp { incarnation, seq });
    let mut old = hb("a", true, vec![rep("x", 10)], &[], 1);
    old.stamp = run(3, 1);
    apply(&mut m, old.clone(), t0);
    assert!(m.chunk("x").is_some());
    let mut newer = hb("a", true, vec![], &[], 0);
    newer.stamp = run(4, 1);
    apply(&mut m, newer, t0);
    assert!(m.chunk("x").is_none(), "the newer run lost it");
    let later = t0 + MetaSettings::default().heartbeat_timeout * 2;
    m.sweep_liveness(later);
    let out = apply(&mut m, old.clone(), later);
    assert!(out.stale, "ignored, although the newer run went silent");
    assert!(!out.revived && !m.server_by_id("a").expect("a").alive);
    assert!(m.chunk("x").is_none(), "the late list is not applied");
    // Seed 27308: a second late report of the same dead run, which the
    // first one had made the run whose reports count.
    let out = apply(&mut m, old, later);
    assert!(out.stale);
    assert!(m.chunk("x").is_none(), "nor the second one");
    let mut newest = hb("a", true, vec![], &[], 0);
    newest.stamp = run(5, 0);
    assert!(!apply(&mut m, newest, later).stale, "a newer run counts");
    m.check().expect("invariants");
}

#[test]
fn a_whole_verdict_older_than_the_last_report_clears_no_suspect_mark() {
    // Seed 30778: a verdict of the server's previous run, held up on the
    // way, cleared the suspect mark its new run had reported after a read
    // found rot; a trim then relied on the rotten copy.
    let now = Instant::now();
    let mut m = three_at_factor_three(now);
    let a = m.server_no("a").expect("a");
    m.report_corruption("x", "a").expect("reported");
    let mut r = rep("x", 10);
    r.replication = 3;
    r.replica_id = 100;
    r.suspect = true;
    let mut report = hb("a", true, vec![r], &[], 1);
    report.stamp = Some(Stamp {
        incarnation: 2,
        seq: 1,
    });
    apply(&mut m, report, now);
    let late = Some(Stamp {
        incarnation: 1,
        seq: 11,
    });
    m.verified("x", a, &VerifyOutcome::Whole, late);
    assert!(m.is_suspect("x", a), "the late verdict clears nothing");
    assert_eq!(m.verifications_due().len(), 1, "verified again");
    let fresh = Some(Stamp {
        incarnation: 2,
        seq: 2,
    });
    m.verified("x", a, &VerifyOutcome::Whole, fresh);
    assert!(!m.is_suspect("x", a));
}

#[test]
fn a_replica_a_delta_reports_being_deleted_counts_for_nothing() {
    // Seed 80432: while a delete of x ran on c, c's copy turned into other
    // bytes; the delta listing it was dropped (a delete runs), and the
    // master went on counting the whole replica it had replaced.
    let now = Instant::now();
    let mut m = three_at_factor_three(now);
    let c = m.server_no("c").expect("c");
    let mut odd = rep("x", 11);
    odd.replication = 3;
    odd.replica_id = 900;
    let mut delta = hb("c", false, vec![odd], &[], 1);
    delta.deleting = vec!["x".into()];
    let out = apply(&mut m, delta, now);
    assert!(out.send_full_report, "asked for a full report");
    assert!(!m.chunk("x").expect("x").holds(c), "counted for nothing");
    assert!(m.is_doubted("x", c));
}

#[test]
fn a_report_older_than_one_applied_says_it_was_ignored() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let mut newer = hb("a", true, vec![], &[], 0);
    newer.stamp = Some(Stamp {
        incarnation: 1,
        seq: 5,
    });
    assert!(!apply(&mut m, newer, now).stale);
    let mut late = hb("a", true, vec![rep("x", 10)], &[], 1);
    late.stamp = Some(Stamp {
        incarnation: 1,
        seq: 4,
    });
    let out = apply(&mut m, late, now);
    assert!(out.stale && !out.send_full_report);
    assert!(m.chunk("x").is_none());
}

#[test]
fn a_delta_of_another_run_than_the_last_full_report_is_not_applied() {
    // Seed 107589: a fresh master's first report was a late full one of
    // the server's previous run; the current run's deltas build on what
    // the master's previous process had, not on it.
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    let mut late = hb("a", true, vec![rep("x", 10)], &[], 1);
    late.stamp = Some(Stamp {
        incarnation: 2,
        seq: 0,
    });
    apply(&mut m, late, now);
    let mut delta = hb("a", false, vec![], &[], 1);
    delta.stamp = Some(Stamp {
        incarnation: 3,
        seq: 3,
    });
    assert!(apply(&mut m, delta, now).send_full_report);
    let mut full = hb("a", true, vec![], &[], 0);
    full.stamp = Some(Stamp {
        incarnation: 3,
        seq: 3,
    });
    apply(&mut m, full, now);
    assert!(
        m.chunk("x").is_none(),
        "the current run's full report counts"
    );
}

#[test]
fn a_source_the_master_no_longer_counts_is_not_deleted() {
    // Seed 38051: a move's copy answer reached a master frozen meanwhile;
    // the source's copy had vanished and a report said so, yet the source
    // delete went out naming replica 0 ("whatever is held"), was held up
    // 13 s, and removed a repair copy that had landed there since.
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        let mut r = rep("x", 10);
        r.replica_id = 100 + i as u64;
        apply(&mut m, hb(id, true, vec![r], &[], 1), now);
    }
    let (a, b) = (m.server_no("a").expect("a"), m.server_no("b").expect("b"));
    m.source_deletable("x", a).expect("b and c stay");
    apply(&mut m, hb("a", true, vec![], &[], 0), now);
    let why = m.source_deletable("x", a).expect_err("nothing to name");
    assert!(why.contains("no longer holds"), "{why}");
    m.doubt_replica("x", b);
    let why = m
        .source_deletable("x", b)
        .expect_err("a doubted source waits");
    assert!(why.contains("no longer holds"), "{why}");
    m.source_deletable("x", m.server_no("c").expect("c"))
        .expect_err("c is the last one counted");
}
