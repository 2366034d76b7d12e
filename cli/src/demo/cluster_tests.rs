//! The guard's promises, kept with stand-in daemons (a shell script that
//! writes its ready file and sleeps): every exit path — shutdown, drop,
//! panic — leaves no process and no temp dir; a daemon that dies is noticed.

use super::*;

/// A stand-in daemon: writes its ready file, then sleeps until killed.
fn fake_bins(dir: &Path, exit_at_once: bool) -> Bins {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(if exit_at_once { "dies" } else { "sleeps" });
    let body = if exit_at_once {
        "#!/bin/sh\necho 'cannot bind' >&2\nexit 3\n"
    } else {
        "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = --ready-file ] && f=$2; shift; done\n\
         printf '{\"grpc\":\"127.0.0.1:1\",\"http\":\"127.0.0.1:2\"}' > \"$f.tmp\"\n\
         mv \"$f.tmp\" \"$f\"\nexec sleep 120\n"
    };
    std::fs::write(&path, body).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    Bins {
        master: path.clone(),
        chunkserver: path,
    }
}

/// Whether `pid` is a live process (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// A cluster of a stand-in master and one server; returns it with the pids.
async fn started(bins: Bins) -> (Cluster, Vec<u32>) {
    let mut c = Cluster::new(bins, None).expect("cluster");
    let m = c
        .start_master(ANY_PORT, ANY_PORT, &[])
        .await
        .expect("master");
    assert_eq!(m.addr, "127.0.0.1:1".parse().expect("addr"));
    assert_eq!(m.http, Some("127.0.0.1:2".parse().expect("addr")));
    let m = m.pid;
    let cs = c
        .start_chunkserver("cs1", "http://127.0.0.1:1", &[])
        .await
        .expect("cs1")
        .pid;
    assert!(alive(m) && alive(cs));
    (c, vec![m, cs])
}

#[tokio::test]
async fn shutdown_stops_everything_and_drop_removes_the_dir() {
    let scripts = tempfile::tempdir().expect("tempdir");
    let (mut c, pids) = started(fake_bins(scripts.path(), false)).await;
    let dir = c.dir().to_path_buf();
    assert!(dir.join("cs1.log").exists());
    assert!(c.shutdown().await.is_empty(), "sleep stops on SIGTERM");
    assert!(pids.iter().all(|p| !alive(*p)));
    drop(c);
    assert!(!dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_alone_stops_everything() {
    let scripts = tempfile::tempdir().expect("tempdir");
    let (c, pids) = started(fake_bins(scripts.path(), false)).await;
    let dir = c.dir().to_path_buf();
    drop(c);
    assert!(pids.iter().all(|p| !alive(*p)), "{pids:?}");
    assert!(!dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_stops_everything() {
    let scripts = tempfile::tempdir().expect("tempdir");
    let bins = fake_bins(scripts.path(), false);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let (c, pids) = started(bins).await;
        let _ = tx.send((pids, c.dir().to_path_buf()));
        panic!("something broke mid-demo");
    });
    assert!(task.await.is_err(), "the task panicked");
    let (pids, dir) = rx.await.expect("pids");
    assert!(pids.iter().all(|p| !alive(*p)), "{pids:?}");
    assert!(!dir.exists());
}

#[tokio::test]
async fn a_dying_daemon_is_noticed() {
    let scripts = tempfile::tempdir().expect("tempdir");
    let (mut c, pids) = started(fake_bins(scripts.path(), false)).await;
    let cs1 = rustix::process::Pid::from_raw(i32::try_from(pids[1]).expect("pid")).expect("pid");
    rustix::process::kill_process(cs1, rustix::process::Signal::TERM).expect("SIGTERM");
    let err = tokio::time::timeout(Duration::from_secs(10), c.watch())
        .await
        .expect("noticed in time")
        .expect_err("a daemon died");
    assert!(err.to_string().starts_with("cs1 exited"), "{err}");
    c.shutdown().await;

    let mut c = Cluster::new(fake_bins(scripts.path(), true), None).expect("cluster");
    let err = c
        .start_chunkserver("cs9", "http://127.0.0.1:1", &[])
        .await
        .err()
        .expect("it exits before listening");
    assert!(
        err.to_string()
            .starts_with("cs9 exited (exit status: 3) before it was listening"),
        "{err}"
    );
    assert!(c.log_tails(5).contains("cannot bind"));
}

#[test]
fn busy_ports_fall_back_to_any() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = held.local_addr().expect("addr").to_string();
    assert_eq!(free_or_any(&busy), ANY_PORT);
    drop(held);
    assert_eq!(free_or_any(ANY_PORT), ANY_PORT);
}

#[tokio::test]
async fn a_busy_preferred_port_still_starts_the_master() {
    let scripts = tempfile::tempdir().expect("tempdir");
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = held.local_addr().expect("addr").to_string();
    let mut c = Cluster::new(fake_bins(scripts.path(), false), None).expect("cluster");
    c.start_master(&busy, &busy, &[])
        .await
        .expect("started on any port");
    c.shutdown().await;
}
