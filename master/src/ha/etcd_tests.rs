//! The etcd calls against a real, one-member etcd (`/usr/bin/etcd`, or
//! `KEEL_ETCD_BIN`; skipped with a note when there is none): the pause is
//! written only while the leader key is still the writer's, and a watch on
//! the leader key reports its delete.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::etcd::{Campaigned, Etcd};
use super::{OperatorState, leader_key};

/// A running etcd, killed on drop.
struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("bound").port()
}

/// Starts etcd and waits until it grants a lease; `None` without etcd.
async fn etcd() -> Option<(Server, Etcd)> {
    let bin = std::env::var_os("KEEL_ETCD_BIN")
        .map_or_else(|| PathBuf::from("/usr/bin/etcd"), PathBuf::from);
    if !bin.exists() {
        // CI installs etcd: a skip there would hide these tests.
        assert!(
            std::env::var_os("CI").is_none(),
            "no etcd at {} (CI installs etcd-server)",
            bin.display()
        );
        eprintln!("no etcd at {}: skipped", bin.display());
        return None;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new(&bin)
        .args(["--name", "default", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .arg(format!("--initial-cluster=default={peer_url}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd starts");
    let server = Server {
        child,
        url: url.clone(),
        _dir: dir,
    };
    let client = Etcd::new(std::slice::from_ref(&server.url), Duration::from_secs(2)).expect("url");
    // Generous: etcd fsyncs its log on start, slow while the disk is busy.
    let deadline = Instant::now() + Duration::from_secs(60);
    while client.grant(Duration::from_secs(1)).await.is_err() {
        assert!(Instant::now() < deadline, "etcd did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some((server, client))
}

#[tokio::test]
async fn the_pause_is_written_only_under_the_writers_term() {
    let Some((_server, etcd)) = etcd().await else {
        return;
    };
    let key = leader_key("/t");
    let lease = etcd.grant(Duration::from_secs(5)).await.expect("lease");
    let Campaigned::Won { term } = etcd.campaign(&key, "m1", lease.id).await.expect("txn") else {
        panic!("the only candidate wins");
    };
    assert!(
        OperatorState::save_paused(&etcd, "/t", term, true)
            .await
            .expect("txn")
    );
    assert!(OperatorState::load(&etcd, "/t").await.expect("read").paused);
    // Another term (a later leader's key, or a stale one): nothing lands.
    assert!(
        !OperatorState::save_paused(&etcd, "/t", term + 1, false)
            .await
            .expect("txn")
    );
    // The key gone with the lease: the old term writes nothing either.
    etcd.revoke(lease.id).await.expect("revoke");
    assert!(
        !OperatorState::save_paused(&etcd, "/t", term, false)
            .await
            .expect("txn")
    );
    assert!(
        OperatorState::load(&etcd, "/t").await.expect("read").paused,
        "unchanged"
    );
}

#[tokio::test]
async fn a_watch_reports_the_leader_key_deleted() {
    let Some((_server, etcd)) = etcd().await else {
        return;
    };
    let key = leader_key("/w");
    let lease = etcd.grant(Duration::from_secs(5)).await.expect("lease");
    etcd.campaign(&key, "m1", lease.id).await.expect("txn");
    let other = etcd.grant(Duration::from_secs(5)).await.expect("lease");
    let Campaigned::Lost { leader, revision } =
        etcd.campaign(&key, "m2", other.id).await.expect("txn")
    else {
        panic!("the key is taken");
    };
    assert_eq!(leader.map(|(a, _)| a).as_deref(), Some("m1"));
    let mut watch = etcd.watch_deletes(&key, revision + 1).await.expect("watch");
    let revoked = Instant::now();
    etcd.revoke(lease.id).await.expect("revoke");
    let reported = async {
        loop {
            let r = watch.message().await.expect("stream").expect("open");
            if !r.events.is_empty() {
                return r;
            }
        }
    };
    let r = tokio::time::timeout(Duration::from_secs(5), reported)
        .await
        .expect("a delete event");
    assert_eq!(r.events[0].r#type, 1, "a delete: {r:?}");
    eprintln!("delete seen {:?} after the revoke", revoked.elapsed());
    assert!(matches!(
        etcd.campaign(&key, "m2", other.id).await.expect("txn"),
        Campaigned::Won { .. }
    ));
}
