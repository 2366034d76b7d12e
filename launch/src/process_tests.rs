//! The launcher's promises, kept with stand-in daemons (shell scripts): the
//! ready file is what is waited on, a daemon that dies or stays silent is
//! reported with its log, and every way out stops the child.

use super::*;

/// A script that logs a line, then (unless `silent`) writes its ready file
/// and sleeps until stopped.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

const READY: &str = "echo starting >&2\n\
    while [ $# -gt 0 ]; do [ \"$1\" = --ready-file ] && f=$2; shift; done\n\
    printf '{\"grpc\":\"127.0.0.1:1\",\"http\":null}' > \"$f.tmp\" && mv \"$f.tmp\" \"$f\"\n\
    exec sleep 120\n";

/// Whether process `pid` exists (stopped children are reaped, so a gone
/// child leaves no zombie that would still count).
fn alive(pid: u32) -> bool {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).expect("pid")).expect("pid");
    rustix::process::test_kill_process(pid).is_ok()
}

#[test]
fn waits_on_the_ready_file_and_drop_stops_the_child() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = Spec::new(
        "cs1",
        script(dir.path(), "d", READY),
        dir.path().join("cs1.log"),
    )
    .keel_daemon();
    // A stale file from an earlier run must not count.
    std::fs::write(dir.path().join("cs1.ready"), "{\"grpc\":\"127.0.0.1:9\"}").expect("stale");
    let (p, ready) = Process::start(&spec).expect("ready");
    assert_eq!(ready.grpc, "127.0.0.1:1".parse().expect("addr"));
    assert_eq!(ready.http, None);
    assert_eq!(p.tail(5), "starting");
    let pid = p.pid().expect("running");
    assert!(alive(pid));
    drop(p);
    assert!(!alive(pid), "sleep stops on SIGTERM");
}

#[test]
fn an_early_exit_is_reported_with_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = "echo 'cannot bind 127.0.0.1:7000' >&2\nexit 3\n";
    let spec = Spec::new(
        "master",
        script(dir.path(), "d", body),
        dir.path().join("m.log"),
    )
    .keel_daemon();
    let err = Process::start(&spec).expect_err("it exits").to_string();
    assert!(
        err.starts_with("master exited (exit status: 3) before it was ready"),
        "{err}"
    );
    assert!(err.ends_with("cannot bind 127.0.0.1:7000"), "{err}");
}

#[tokio::test]
async fn a_silent_daemon_times_out_and_can_be_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let body = "trap '' TERM\necho 'still thinking' >&2\nwhile :; do sleep 1; done\n";
    let spec = Spec::new(
        "cs2",
        script(dir.path(), "d", body),
        dir.path().join("cs2.log"),
    )
    .keel_daemon()
    .env("KEEL_X", "1");
    let mut p = Process::spawn(&spec).expect("spawned");
    let err = p
        .wait_ready_async(Duration::from_millis(300))
        .await
        .expect_err("silent");
    assert!(matches!(err, LaunchError::Timeout { .. }), "{err}");
    assert!(err.to_string().ends_with("still thinking"), "{err}");
    assert!(
        p.stop(Duration::from_millis(200)),
        "SIGTERM is ignored: killed"
    );
    assert!(!p.is_running());
}

#[test]
fn flags_can_be_changed_for_a_restart() {
    let mut spec = Spec::new("m", "/bin/true", "/tmp/m.log").args(["--listen", "127.0.0.1:0"]);
    spec.set_flag("--listen", "127.0.0.1:7000");
    assert!(spec.has_arg("127.0.0.1:7000") && !spec.has_arg("127.0.0.1:0"));
    spec.set_flag("--absent", "x");
    assert!(!spec.has_arg("x"));
}
