//! `--ready-file`: both daemons write `{"grpc": ADDR, "http": ADDR|null}`
//! once serving, with the addresses they bound (port 0 resolved), `http`
//! null on a chunk server without `--http-listen`; `KEEL_READY_FILE` works
//! as the flag does; a file that cannot be written stops the daemon with a
//! sentence naming it.

use std::time::Duration;

use anyhow::{Context, Result};
use keel_launch::{Process, Spec};
use keel_tests::master::http_get;
use keel_tests::{Cluster, CsOpts, bin, cs};
use serde_json::{Value, json};

/// The ready file beside a daemon's log, as the harness asks for it.
fn ready_json(c: &Cluster, name: &str) -> Result<Value> {
    let path = c.dir.path().join(format!("{name}.ready"));
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    Ok(serde_json::from_str(&text)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_daemons_write_the_addresses_they_serve_on() -> Result<()> {
    let mut c = Cluster::new()?;
    let m = c.start_master(&[])?;
    let (grpc, http) = (m.addr, m.http_addr.context("master http")?);
    assert_ne!(grpc.port(), 0, "port 0 is resolved");
    assert_eq!(
        ready_json(&c, "master")?,
        json!({"grpc": grpc.to_string(), "http": http.to_string()})
    );
    assert_eq!(http_get(http, "/healthz").await?.0, 200);

    c.add_chunkserver("cs1", CsOpts::default())?;
    let cs1 = c.cs("cs1").addr;
    assert_eq!(
        ready_json(&c, "cs1")?,
        json!({"grpc": cs1.to_string(), "http": null})
    );
    cs::status(&c.cs("cs1").url()).await?;

    let with_http = CsOpts {
        extra: vec!["--http-listen".into(), "127.0.0.1:0".into()],
        ..CsOpts::default()
    };
    c.add_chunkserver("cs2", with_http)?;
    let http = c.cs("cs2").http_addr.context("cs2 http")?;
    assert_eq!(ready_json(&c, "cs2")?["http"], json!(http.to_string()));
    assert_eq!(http_get(http, "/healthz").await?.0, 200);
    c.wait_alive(2).await?;

    // A restart writes the file again, on the same ports.
    c.cs("cs1").restart()?;
    assert_eq!(c.cs("cs1").addr, cs1);
    assert_eq!(ready_json(&c, "cs1")?["grpc"], json!(cs1.to_string()));
    Ok(())
}

#[test]
fn the_environment_names_the_file_too() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("from-env.ready");
    let spec = Spec::new("master", bin("keel-master"), dir.path().join("m.log"))
        .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .env("KEEL_READY_FILE", &path);
    let mut p = Process::spawn(&spec)?;
    let ready = p.wait_ready_at(&path, Duration::from_secs(20))?;
    assert_ne!(ready.grpc.port(), 0);
    assert!(ready.http.is_some());
    Ok(())
}

#[test]
fn an_unwritable_ready_file_stops_the_daemon() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let spec = Spec::new("cs1", bin("keel-chunkserver"), dir.path().join("cs1.log")).args([
        "--id",
        "cs1",
        "--listen",
        "127.0.0.1:0",
        "--master",
        cs::NO_MASTER,
        "--data-dir",
        data.to_str().context("utf-8 path")?,
        "--ready-file",
        "/nonexistent-keel-dir/cs1.ready",
    ]);
    let mut p = Process::spawn(&spec)?;
    let status = p.wait_exit(Duration::from_secs(20)).context("it exits")?;
    assert!(!status.success(), "{status}");
    // The whole log: with RUST_BACKTRACE set a backtrace follows the error.
    let log = std::fs::read_to_string(p.log_path())?;
    assert!(
        log.contains("cannot write the ready file /nonexistent-keel-dir/cs1.ready"),
        "{log}"
    );
    Ok(())
}
