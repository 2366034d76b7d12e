//! Store behaviour across reservations, commits, deletes and restarts.

use std::sync::Arc;

use keel_proto::chunk_id::ChunkId;

use crate::chunk_file::ChunkMeta;
use crate::error::{Error, Purpose};
use crate::store::{Store, Verdict, append};

fn id(s: &str) -> ChunkId {
    ChunkId::new(s).expect("valid id")
}

fn meta(data: &[u8]) -> ChunkMeta {
    ChunkMeta {
        size: data.len() as u64,
        crc32c: crc32c::crc32c(data),
        replication: 2,
    }
}

fn put(store: &Arc<Store>, name: &str, data: &[u8]) -> Result<ChunkMeta, Error> {
    let res = store.reserve(&id(name), data.len() as u64, Purpose::Write)?;
    let mut temp = store.create_temp(&res, meta(data))?;
    append(&mut temp, &id(name), data)?;
    store.commit(res, temp)
}

#[test]
fn accounting_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), "cs1", Some(1000)).expect("open");
    put(&store, "a", &[1; 100]).expect("a");
    put(&store, "b", &[2; 250]).expect("b");
    assert_eq!(store.delete(&id("a")).expect("delete").0, 100);
    assert!(matches!(
        store.delete(&id("a")),
        Err(Error::NotFound { .. })
    ));
    let before = store.totals();
    assert_eq!((before.used, before.chunks, before.reserved), (250, 1, 0));
    drop(store);
    let store = Store::open(dir.path(), "cs1", Some(1000)).expect("reopen");
    assert_eq!(store.totals(), before);
    assert_eq!(store.entry("b").expect("b").meta, meta(&[2; 250]));
}

#[test]
fn reservations_prevent_overcommit_and_are_released() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), "cs1", Some(1000)).expect("open");
    let r1 = store.reserve(&id("x"), 600, Purpose::Write).expect("x");
    let err = store
        .reserve(&id("y"), 500, Purpose::Write)
        .expect_err("overcommit");
    assert!(matches!(err, Error::NoSpace { reserved: 600, .. }), "{err}");
    assert!(matches!(
        store.reserve(&id("x"), 1, Purpose::Copy),
        Err(Error::InFlight {
            attempt: Purpose::Copy,
            ..
        })
    ));
    drop(r1);
    assert_eq!(store.totals().reserved, 0);
    let mut r2 = store.reserve(&id("y"), 0, Purpose::Copy).expect("y");
    assert!(r2.resize(1001).is_err());
    r2.resize(900).expect("resize");
    assert_eq!(store.totals().reserved, 900);
}

#[test]
fn failed_writes_leave_no_file_and_no_reservation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), "cs1", Some(1000)).expect("open");
    let res = store.reserve(&id("c"), 4, Purpose::Write).expect("reserve");
    let mut temp = store.create_temp(&res, meta(b"abcd")).expect("temp");
    append(&mut temp, &id("c"), b"abce").expect("append");
    let err = store.commit(res, temp).expect_err("checksum");
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
    assert_eq!(store.totals().reserved, 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp"))
            .expect("ls")
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("chunks"))
            .expect("ls")
            .count(),
        0
    );
    assert!(matches!(
        put(&store, "c", b"abcd").and_then(|_| put(&store, "c", b"abcd")),
        Err(Error::AlreadyExists { .. })
    ));
}

#[test]
fn deltas_report_changes_until_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), "cs1", Some(1000)).expect("open");
    put(&store, "a", b"1").expect("a");
    put(&store, "b", b"2").expect("b");
    let full = store.report(true);
    assert_eq!(full.chunks.len(), 2);
    store.ack(full.seq);
    assert!(store.report(false).chunks.is_empty());
    store.delete(&id("a")).expect("delete");
    store.open_read(&id("b"), true).expect("read");
    let failed = store.report(false);
    // Not acknowledged: the next delta still carries it.
    let delta = store.report(false);
    assert_eq!(delta.removed, vec!["a".to_owned()]);
    assert_eq!(delta.chunks.len(), 1);
    assert_eq!(delta.chunks[0].1.reads, 1);
    assert_eq!(failed.seq, delta.seq);
    store.ack(delta.seq);
    let after = store.report(false);
    assert!(after.chunks.is_empty() && after.removed.is_empty());
}

#[test]
fn a_delete_is_stamped_after_every_report_that_still_lists_the_chunk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), "cs1", Some(1000)).expect("open");
    put(&store, "a", &[1; 10]).expect("a");
    let before = store.report(true);
    assert_eq!(before.chunks.len(), 1);
    let (_, stamp, _) = store.delete(&id("a")).expect("delete");
    assert_eq!(stamp.incarnation, before.stamp.incarnation);
    assert!(before.stamp.seq < stamp.seq, "{before:?} vs {stamp:?}");
    let after = store.report(true);
    assert!(after.chunks.is_empty() && after.stamp.seq >= stamp.seq);
    drop(store);
    let again = Store::open(dir.path(), "cs1", Some(1000)).expect("reopen");
    assert_ne!(again.stamp().incarnation, stamp.incarnation);
}

#[test]
fn verify_tells_whole_from_corrupt_and_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), "cs1", Some(10_000)).expect("open");
    for name in ["ok", "bad", "gone"] {
        put(&store, name, &[7; 300]).expect("put");
    }
    assert!(matches!(store.verify(&id("ok")), Ok(Verdict::Whole(_))));
    // Flip one data byte behind the header of "bad".
    let path = dir.path().join("chunks").join("bad");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[100] ^= 0xff;
    std::fs::write(&path, bytes).expect("write");
    assert!(matches!(store.verify(&id("bad")), Ok(Verdict::Corrupt(_))));
    assert!(dir.path().join("damaged").join("bad").exists());
    assert!(!path.exists());
    std::fs::remove_file(dir.path().join("chunks").join("gone")).expect("rm");
    assert_eq!(store.verify(&id("gone")).expect("verify"), Verdict::Missing);
    let t = store.totals();
    assert_eq!((t.chunks, t.used), (1, 300));
    // The damaged copy is removed by a delete, which then reports nothing freed.
    assert_eq!(store.delete(&id("bad")).expect("delete damaged").0, 0);
    assert!(!dir.path().join("damaged").join("bad").exists());
    assert!(matches!(
        store.delete(&id("bad")),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn vanished_files_are_forgotten_and_reported_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), "cs1", Some(10_000)).expect("open");
    put(&store, "a", &[1; 10]).expect("a");
    put(&store, "b", &[1; 10]).expect("b");
    store.ack(store.report(true).seq);
    std::fs::remove_file(dir.path().join("chunks").join("a")).expect("rm");
    assert_eq!(store.forget_missing(), 1);
    let delta = store.report(false);
    assert_eq!(delta.removed, vec!["a".to_owned()]);
    assert_eq!(store.totals().chunks, 1);
}

#[test]
fn the_drain_mark_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), "cs1", Some(1000)).expect("open");
    assert!(!store.is_draining());
    store.set_draining(true).expect("drain");
    drop(store);
    let store = Store::open(dir.path(), "cs1", Some(1000)).expect("reopen");
    assert!(store.is_draining());
    store.set_draining(false).expect("undrain");
    drop(store);
    assert!(
        !Store::open(dir.path(), "cs1", Some(1000))
            .expect("reopen")
            .is_draining()
    );
}

#[test]
fn a_chunk_leaves_the_read_rates_when_it_leaves_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), "cs1", Some(1000)).expect("open");
    put(&store, "a", &[1; 10]).expect("a");
    put(&store, "b", &[2; 10]).expect("b");
    let now = std::time::Instant::now();
    store.heat.read_started("a", now);
    store.heat.read_started("b", now);
    store.delete(&id("a")).expect("delete");
    // A file removed by hand is forgotten the same way.
    std::fs::remove_file(dir.path().join("chunks").join("b")).expect("remove");
    assert_eq!(store.forget_missing(), 1);
    assert!(store.heat.is_empty());
    assert!(store.heat.server(now).reads_per_sec > 0.0);
}
