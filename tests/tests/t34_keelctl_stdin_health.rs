//! `keelctl put <chunk> -` and `keelctl health` against real daemons: a chunk
//! piped in on standard input is stored on every replica with the right size
//! and CRC32C, reads back byte for byte, and leaves no spool file in the temp
//! dir; `health` answers `SERVING` for the master and a chunk server, and one
//! line with exit 1 for an address where nothing listens.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use keel_tests::chunks::pattern;
use keel_tests::{Cluster, CsOpts, bin};
use serde_json::Value;

/// Runs keelctl against the cluster with `input` on stdin and `TMPDIR` set.
fn ctl_with_stdin(
    c: &Cluster,
    args: &[&str],
    input: &[u8],
    tmpdir: &std::path::Path,
) -> Result<(i32, String, String)> {
    let mut child = Command::new(bin("keelctl"))
        .args(args)
        .env("KEEL_MASTER", c.master_url())
        .env("TMPDIR", tmpdir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let data = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("writer panicked"))??;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_from_stdin_round_trips_and_cleans_up() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    c.add_chunkserver("cs1", CsOpts::default())?;
    c.add_chunkserver("cs2", CsOpts::default())?;
    c.wait_alive(2).await?;

    let spool_dir = tempfile::tempdir()?;
    let data = pattern(34, 3 * 1024 * 1024 + 5);
    let args = ["--json", "put", "piped", "-", "--replication", "2"];
    let (code, out, err) = ctl_with_stdin(&c, &args, &data, spool_dir.path())?;
    assert_eq!(code, 0, "stdout {out:?} stderr {err:?}");
    let v: Value = serde_json::from_str(&out)?;
    assert_eq!(v["size"], data.len() as u64, "{v}");
    assert_eq!(v["crc32c"], crc32c::crc32c(&data), "{v}");
    assert_eq!(v["servers"].as_array().map(Vec::len), Some(2), "{v}");
    let left: Vec<_> = std::fs::read_dir(spool_dir.path())?.collect();
    assert!(left.is_empty(), "spool file left behind: {left:?}");

    let dest = spool_dir.path().join("back");
    let dest_s = dest.to_str().context("utf-8")?;
    let (code, out, err) = c.keelctl(&["get", "piped", dest_s])?;
    assert_eq!(code, 0, "stdout {out:?} stderr {err:?}");
    assert!(
        std::fs::read(&dest)? == data,
        "bytes differ after the round trip"
    );

    // A failed put (unknown pinned server) removes its spool file too.
    let args = ["put", "other", "-", "--on", "cs9"];
    let (code, _, err) = ctl_with_stdin(&c, &args, b"abc", spool_dir.path())?;
    assert_eq!(code, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        std::fs::read_dir(spool_dir.path())?.count(),
        1,
        "only `back`"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_serving_or_one_line() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    c.add_chunkserver("cs1", CsOpts::default())?;

    let (code, out, err) = c.keelctl(&["health"])?;
    assert_eq!((code, out.as_str()), (0, "SERVING\n"), "stderr {err:?}");
    let cs = c.cs("cs1").url();
    let (code, out, err) = c.keelctl(&["health", &cs])?;
    assert_eq!((code, out.as_str()), (0, "SERVING\n"), "stderr {err:?}");
    let (code, out, _) = c.keelctl(&["--json", "health"])?;
    let v: Value = serde_json::from_str(&out)?;
    assert_eq!((code, &v["status"]), (0, &Value::from("SERVING")));

    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let started = std::time::Instant::now();
    let (code, out, err) = c.keelctl(&["health", &closed.to_string()])?;
    assert_eq!(code, 1, "stdout {out:?}");
    assert!(out.is_empty(), "{out:?}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.contains("connection refused"), "{err:?}");
    assert!(started.elapsed().as_secs() < 5, "health must give up fast");
    Ok(())
}
