//! Replica identities, suspect marks and running deletes in the store.

use std::sync::Arc;

use keel_proto::chunk_id::ChunkId;

use crate::chunk_file::ChunkMeta;
use crate::error::{Error, Purpose};
use crate::store::{Store, Verdict, append};

fn id(s: &str) -> ChunkId {
    ChunkId::new(s).expect("valid id")
}

fn put(store: &Arc<Store>, name: &str, data: &[u8]) -> u64 {
    let meta = ChunkMeta {
        size: data.len() as u64,
        crc32c: crc32c::crc32c(data),
        replication: 3,
    };
    let res = store
        .reserve(&id(name), data.len() as u64, Purpose::Copy)
        .expect("reserve");
    let mut temp = store.create_temp(&res, meta).expect("temp");
    append(&mut temp, &id(name), data).expect("append");
    store.commit(res, temp).expect("commit");
    store.entry(name).expect("indexed").replica
}

fn damage(dir: &std::path::Path, name: &str) {
    let path = dir.join("chunks").join(name);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[100] ^= 0xff;
    std::fs::write(&path, bytes).expect("write");
}

#[test]
fn a_delete_meant_for_the_damaged_copy_leaves_the_new_whole_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), "cs1", Some(10_000)).expect("open");
    let old = put(&store, "a", &[7; 300]);
    damage(dir.path(), "a");
    assert!(matches!(store.verify(&id("a")), Ok(Verdict::Corrupt(_))));
    // The repair lands on this same server: a new file, a new identity.
    let new = put(&store, "a", &[7; 300]);
    assert_ne!(old, new);
    let (freed, _, trash) = store.delete_replica(&id("a"), old).expect("delete");
    assert_eq!((freed, trash), (0, None), "only the damaged copy went");
    assert!(!dir.path().join("damaged").join("a").exists());
    assert_eq!(store.entry("a").expect("kept").replica, new);
    let again = store.delete_replica(&id("a"), old);
    assert!(
        matches!(&again, Err(e @ Error::OtherReplica { .. }) if e.code() == tonic::Code::NotFound),
        "the replica meant is gone: {again:?}"
    );
    let other = store.delete_replica(&id("a"), new + 1);
    assert!(
        matches!(other, Err(Error::OtherReplica { held, .. }) if held == new),
        "{other:?}"
    );
    drop(store);
    let store = Store::open(dir.path(), "cs1", Some(10_000)).expect("reopen");
    assert_eq!(
        store.entry("a").expect("kept").replica,
        new,
        "kept in the file"
    );
    assert!(put(&store, "b", &[1; 10]) > new, "identities never repeat");
    assert_eq!(store.delete_replica(&id("a"), new).expect("delete").0, 300);
}

#[test]
fn a_suspect_mark_survives_a_restart_until_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), "cs1", Some(10_000)).expect("open");
    let replica = put(&store, "a", &[7; 300]);
    assert_eq!(store.mark_suspect(&id("a")).expect("mark"), replica);
    drop(store);
    let store = Store::open(dir.path(), "cs1", Some(10_000)).expect("reopen");
    let listed = store.report(true).chunks;
    assert!(
        listed.iter().any(|(c, e)| c == "a" && e.suspect),
        "{listed:?}"
    );
    assert!(matches!(store.verify(&id("a")), Ok(Verdict::Whole(_))));
    assert!(!store.entry("a").expect("a").suspect);
    drop(store);
    let store = Store::open(dir.path(), "cs1", Some(10_000)).expect("reopen");
    assert!(!store.entry("a").expect("a").suspect, "cleared for good");
    // A mark whose replica went is dropped at start-up.
    store.mark_suspect(&id("a")).expect("mark");
    store.delete(&id("a")).expect("delete");
    drop(store);
    Store::open(dir.path(), "cs1", Some(10_000)).expect("reopen");
    assert_eq!(
        std::fs::read_dir(dir.path().join("suspect"))
            .expect("ls")
            .count(),
        0
    );
}

#[test]
fn reports_list_the_deletes_still_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), "cs1", Some(10_000)).expect("open");
    put(&store, "a", &[7; 30]);
    let running = store.begin_delete(&id("a"));
    assert!(store.is_deleting("a"));
    assert_eq!(store.report(false).deleting, ["a".to_owned()]);
    drop(running);
    assert!(!store.is_deleting("a") && store.report(true).deleting.is_empty());
}

#[test]
fn a_doubt_shows_at_once_and_its_durable_mark_still_follows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), "cs1", Some(10_000)).expect("open");
    put(&store, "a", &[7; 300]);
    store.doubt(&id("a"));
    assert!(
        store.entry("a").expect("a").suspect,
        "suspect before any disk write"
    );
    // The durable mark is written although the index already says suspect.
    store.mark_suspect(&id("a")).expect("mark");
    drop(store);
    let store = Store::open(dir.path(), "cs1", Some(10_000)).expect("reopen");
    assert!(
        store.entry("a").expect("a").suspect,
        "the mark outlived the restart"
    );
}
