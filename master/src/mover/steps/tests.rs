//! The exact requests each machine sends, in order, and what it records.

use std::time::Instant;

use tonic::Code;

use super::*;
use crate::meta::tests::{apply, hb, rep};
use crate::meta::{CopyClass, Deletion, Meta, MetaSettings, Verify};
use crate::mover::{CONFIRM_WITHIN, MoveDone, MoveError};

const TERM: u64 = 7;
const MIN_RATE: u64 = 1 << 20;

/// `x` (10 bytes, factor 2) on a, b and c with replicas 100, 101, 102;
/// d holds nothing.
fn cluster(now: Instant) -> Meta {
    let mut m = Meta::new(MetaSettings::default());
    for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
        let mut r = rep("x", 10);
        r.replication = 2;
        r.replica_id = 100 + i as u64;
        apply(&mut m, hb(id, true, vec![r], &[], 1), now);
    }
    apply(&mut m, hb("d", true, Vec::new(), &[], 0), now);
    m
}

fn addr(m: &Meta, id: &str) -> ServerAddr {
    let no = m.server_no(id).expect("known server");
    ServerAddr {
        no,
        id: id.into(),
        address: format!("http://{id}:1"),
    }
}

/// The `StatChunk` answer of a holder that keeps what the master counts.
fn holds(m: &Meta, server: &ServerAddr) -> Reply {
    Reply::Stat(StatReply {
        header: Some((10, 10 ^ 0xabc)),
        replica: m.replica_id("x", server.no),
        deleting: false,
        suspect: false,
        stamp: None,
    })
}

fn sent(step: MoveStep) -> Request {
    match step {
        MoveStep::Send(r) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

#[test]
fn a_move_copies_records_confirms_then_deletes_the_named_source_under_its_term() {
    let now = Instant::now();
    let mut m = cluster(now);
    let t = m
        .begin_move("x", "a", "d", CopyClass::Operator)
        .expect("gates pass");
    let mut s = MoveSteps::new(t, MIN_RATE);
    let copy = sent(s.next(&mut m, Some(TERM), now));
    assert_eq!(copy.server.id, "d");
    assert_eq!(copy.timeout, copy_deadline(10, MIN_RATE));
    assert!(matches!(copy.rpc, Rpc::Copy { ref source, term: TERM, .. } if source.id == "a"));
    let copied = Reply::Copied {
        size: 10,
        crc32c: 10 ^ 0xabc,
        stamp: None,
        replica: 555,
    };
    assert_eq!(s.answered(&mut m, copied, now), None);
    assert_eq!(
        s.next(&mut m, Some(TERM), now),
        MoveStep::Recorded { existing: false }
    );
    assert_eq!(m.replica_id("x", addr(&m, "d").no), 555, "recorded");
    // Factor 2: two of the replicas that stay are asked, then the delete.
    for _ in 0..2 {
        let ask = sent(s.next(&mut m, Some(TERM), now));
        assert_ne!(ask.server.id, "a");
        assert_eq!(ask.timeout, CONFIRM_WITHIN);
        let reply = holds(&m, &ask.server);
        assert_eq!(s.answered(&mut m, reply, now), Some(true));
    }
    let delete = sent(s.next(&mut m, Some(TERM), now));
    assert_eq!(delete.server.id, "a");
    let rpc = Rpc::Delete {
        chunk: "x".into(),
        replica: 100,
        term: TERM,
    };
    assert_eq!(delete.rpc, rpc, "names the replica and the decision term");
    s.answered(&mut m, Reply::Deleted(None), now);
    let done = MoveDone {
        bytes: 10,
        source_deleted: true,
        note: None,
    };
    assert_eq!(s.next(&mut m, Some(TERM), now), MoveStep::Done(Ok(done)));
    assert!(!m.chunk("x").expect("x").holds(addr(&m, "a").no));
    m.check().expect("invariants");
}

#[test]
fn a_master_deposed_before_the_delete_keeps_the_source() {
    let now = Instant::now();
    let mut m = cluster(now);
    let t = m
        .begin_move("x", "a", "d", CopyClass::Balance)
        .expect("gates pass");
    let mut s = MoveSteps::new(t, MIN_RATE);
    sent(s.next(&mut m, Some(TERM), now));
    let copied = Reply::Copied {
        size: 10,
        crc32c: 10 ^ 0xabc,
        stamp: None,
        replica: 555,
    };
    s.answered(&mut m, copied, now);
    s.next(&mut m, Some(TERM), now);
    for _ in 0..2 {
        let ask = sent(s.next(&mut m, Some(TERM), now));
        let reply = holds(&m, &ask.server);
        s.answered(&mut m, reply, now);
    }
    // Elected again under a later term: no delete decided under 7 goes.
    let MoveStep::Done(Ok(done)) = s.next(&mut m, Some(TERM + 1), now) else {
        panic!("ends without a delete");
    };
    assert!(!done.source_deleted);
    assert!(done.note.expect("note").contains("decided under term 7"));
    assert!(m.chunk("x").expect("x").holds(addr(&m, "a").no));
}

#[test]
fn an_existing_copy_a_delete_may_still_run_on_is_not_accepted() {
    let now = Instant::now();
    let mut m = cluster(now);
    let d = addr(&m, "d");
    let t = m
        .begin_move("x", "a", "d", CopyClass::Repair)
        .expect("gates pass");
    m.doubt_replica("x", d.no);
    let mut s = MoveSteps::new(t, MIN_RATE);
    sent(s.next(&mut m, Some(TERM), now));
    let exists = Reply::Refused {
        code: Code::AlreadyExists,
        message: "exists".into(),
    };
    s.answered(&mut m, exists, now);
    let MoveStep::Done(Err(MoveError::Failed { error, retry })) = s.next(&mut m, Some(TERM), now)
    else {
        panic!("no StatChunk of a doubted copy");
    };
    assert!(retry && error.contains("may still be running"), "{error}");
}

#[test]
fn a_copy_fails_retryably_only_on_transient_answers() {
    let now = Instant::now();
    let mut m = cluster(now);
    let t = m
        .begin_move("x", "a", "d", CopyClass::Repair)
        .expect("gates pass");
    for (reply, retry) in [
        (Reply::TimedOut, true),
        (
            Reply::Refused {
                code: Code::Unavailable,
                message: "down".into(),
            },
            true,
        ),
        (
            Reply::Refused {
                code: Code::DataLoss,
                message: "crc".into(),
            },
            false,
        ),
        (Reply::NotSent("bad address".into()), false),
    ] {
        let mut s = MoveSteps::new(t.clone(), MIN_RATE);
        sent(s.next(&mut m, Some(TERM), now));
        s.answered(&mut m, reply.clone(), now);
        let MoveStep::Done(Err(MoveError::Failed { retry: r, .. })) =
            s.next(&mut m, Some(TERM), now)
        else {
            panic!("{reply:?} ends the attempt");
        };
        assert_eq!(r, retry, "{reply:?}");
    }
    let mut s = MoveSteps::new(t, MIN_RATE);
    assert!(matches!(
        s.next(&mut m, None, now),
        MoveStep::Done(Err(MoveError::Failed { retry: false, .. }))
    ));
}

#[test]
fn a_trim_goes_on_after_a_failed_delete_and_stops_when_deposed() {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    for (i, id) in ["a", "b", "c", "d"].into_iter().enumerate() {
        let mut r = rep("x", 10);
        r.replication = 2;
        r.replica_id = 100 + i as u64;
        apply(&mut m, hb(id, true, vec![r], &[], 1), now);
    }
    let d = Deletion {
        chunk: "x".into(),
        servers: vec![addr(&m, "a"), addr(&m, "b")],
    };
    let mut s = TrimSteps::new(d, TERM);
    for _ in 0..2 {
        let TrimStep::Send(ask) = s.next(&mut m, Some(TERM), now) else {
            panic!("asks a replica that stays");
        };
        let reply = holds(&m, &ask.server);
        assert_eq!(s.answered(&mut m, reply, now), Some(true));
    }
    let TrimStep::Send(del) = s.next(&mut m, Some(TERM), now) else {
        panic!("deletes a");
    };
    assert_eq!(del.server.id, "a");
    s.answered(&mut m, Reply::TimedOut, now);
    let failed = s.next(&mut m, Some(TERM), now);
    assert!(
        matches!(failed, TrimStep::Failed(ref a, ref why) if a.id == "a" && why == "delete timed out")
    );
    assert!(m.is_doubted("x", addr(&m, "a").no));
    // b next: with a doubted only c and d stay; both confirm, then the term has changed.
    for _ in 0..2 {
        let TrimStep::Send(ask) = s.next(&mut m, Some(TERM), now) else {
            panic!("asks a replica that stays");
        };
        let reply = holds(&m, &ask.server);
        s.answered(&mut m, reply, now);
    }
    assert_eq!(s.next(&mut m, None, now), TrimStep::Deposed);
    assert_eq!(s.next(&mut m, Some(TERM), now), TrimStep::Done);
}

#[test]
fn a_damaged_copy_is_deleted_only_under_its_decision_term() {
    let now = Instant::now();
    let mut m = cluster(now);
    let a = addr(&m, "a");
    let mut s = DamagedSteps::new("x", &a, TERM);
    assert!(s.next(&mut m, Some(TERM + 1)).is_err());
    let req = s.next(&mut m, Some(TERM)).expect("sent");
    assert_eq!(req.timeout, SMALL_RPC_TIMEOUT);
    assert!(matches!(req.rpc, Rpc::Delete { term: TERM, .. }));
    assert_eq!(s.answered(&mut m, Reply::Deleted(None)), Ok(()));
}

#[test]
fn a_verification_no_longer_listed_finds_the_replica_missing() {
    let now = Instant::now();
    let mut m = cluster(now);
    m.report_corruption("x", "a").expect("reported");
    let v = Verify {
        chunk: "x".into(),
        server: addr(&m, "a"),
    };
    let s = VerifySteps::new(v, MIN_RATE);
    let req = s.next(&m);
    assert_eq!(req.rpc, Rpc::Verify { chunk: "x".into() });
    assert_eq!(req.timeout, copy_deadline(10, MIN_RATE));
    let gone = Reply::Refused {
        code: Code::NotFound,
        message: "no such chunk".into(),
    };
    assert_eq!(s.answered(&mut m, gone), VerifyOutcome::Missing);
    assert_eq!(
        s.answered(&mut m, Reply::TimedOut),
        VerifyOutcome::Failed("verification timed out".into())
    );
}

#[test]
fn deadline_grows_with_size() {
    assert_eq!(copy_deadline(0, 1 << 20), COPY_MARGIN);
    assert_eq!(
        copy_deadline(64 << 20, 1 << 20),
        COPY_MARGIN + std::time::Duration::from_secs(64)
    );
    assert!(copy_deadline(1 << 40, 0) > std::time::Duration::from_secs(1_000_000));
}

#[test]
fn permanent_errors_are_not_retried() {
    assert!(retryable(Code::Unavailable) && retryable(Code::Aborted));
    for c in [
        Code::NotFound,
        Code::DataLoss,
        Code::FailedPrecondition,
        Code::ResourceExhausted,
        Code::InvalidArgument,
    ] {
        assert!(!retryable(c), "{c:?}");
    }
}
