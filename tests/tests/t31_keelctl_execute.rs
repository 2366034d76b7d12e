//! `keelctl rebalance execute --move CHUNK:FROM:TO` against a real cluster: a
//! valid move relocates the chunk (JSON `moved` and `bytes_transferred`, the
//! bytes readable from the target afterwards), and a move the master refuses
//! prints its reason and exits non-zero while valid moves beside it still run.

use std::time::Duration;

use anyhow::{Context, Result};
use keel_proto::v1::LocateChunkRequest;
use keel_tests::chunks::pattern;
use keel_tests::keelctl::ctl;
use keel_tests::{Cluster, CsOpts, wait_until};
use serde_json::Value;

/// Ids of the servers the master lists for `chunk`.
async fn replicas(c: &Cluster, chunk: &str) -> Result<Vec<String>> {
    let req = LocateChunkRequest {
        chunk: chunk.into(),
        rack: Default::default(),
    };
    let resp = c
        .master_client()
        .await?
        .locate_chunk(req)
        .await?
        .into_inner();
    let mut ids: Vec<String> = resp.replicas.into_iter().map(|r| r.id).collect();
    ids.sort();
    Ok(ids)
}

/// Three servers; chunks `c1` and `c2` pinned to cs1 with one replica each.
async fn setup(data: &[u8]) -> Result<(Cluster, tempfile::TempDir)> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    for id in ["cs1", "cs2", "cs3"] {
        c.add_chunkserver(id, CsOpts::default())?;
    }
    c.wait_alive(3).await?;
    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src");
    std::fs::write(&src, data)?;
    let src = src.to_str().context("utf-8 path")?;
    for chunk in ["c1", "c2"] {
        let (code, out, err) = ctl(
            &c,
            &["put", chunk, src, "--on", "cs1", "--replication", "1"],
        );
        assert_eq!(code, 0, "put {chunk}: {out} {err}");
    }
    for chunk in ["c1", "c2"] {
        wait_until(
            &format!("{chunk} located on cs1"),
            Duration::from_secs(20),
            || async { replicas(&c, chunk).await.ok() == Some(vec!["cs1".to_owned()]) },
        )
        .await?;
    }
    Ok((c, dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_moves_a_chunk() -> Result<()> {
    let data = pattern(7, 2 * keel_proto::FRAME_BYTES + 99);
    let (c, dir) = setup(&data).await?;

    let (code, out, err) = ctl(
        &c,
        &["rebalance", "execute", "--move", "c1:cs1:cs2", "--json"],
    );
    assert_eq!(code, 0, "execute: {out} {err}");
    let v: Value = serde_json::from_str(&out)?;
    assert_eq!(v["moved"], 1, "{v}");
    assert_eq!(
        v["bytes_transferred"].as_u64(),
        Some(data.len() as u64),
        "{v}"
    );
    assert_eq!(v["results"][0]["outcome"], "done", "{v}");
    assert_eq!(v["results"][0]["move"]["chunk"], "c1", "{v}");
    assert_eq!(replicas(&c, "c1").await?, ["cs2"]);

    // The moved bytes are intact and served by the target.
    let dst = dir.path().join("dst");
    let dst_s = dst.to_str().context("utf-8")?;
    let (code, out, err) = ctl(&c, &["--json", "get", "c1", dst_s]);
    assert_eq!(code, 0, "get: {out} {err}");
    let got: Value = serde_json::from_str(&out)?;
    assert_eq!(got["server"], "cs2");
    assert_eq!(std::fs::read(&dst)?, data);

    // Human output: one row per move and a summary.
    let (code, out, err) = ctl(&c, &["rebalance", "execute", "--move", "c2:cs1:cs3"]);
    assert_eq!(code, 0, "execute c2: {out} {err}");
    assert!(out.contains("c2") && out.contains("done"), "{out}");
    assert!(out.contains("moved 1 of 1 chunk"), "{out}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_move_prints_its_reason_and_fails() -> Result<()> {
    let data = pattern(8, 4096);
    let (c, _dir) = setup(&data).await?;

    // cs2 does not hold c1: refused, nothing changes.
    let (code, out, err) = ctl(&c, &["rebalance", "execute", "--move", "c1:cs2:cs3"]);
    assert_eq!(code, 1, "stdout {out:?} stderr {err:?}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("keelctl: "), "{err:?}");
    assert!(err.contains("c1"), "the reason names the move: {err:?}");
    assert_eq!(replicas(&c, "c1").await?, ["cs1"]);

    // One valid and one invalid move: the valid one runs, the exit is 1.
    let (code, out, err) = ctl(
        &c,
        &[
            "--json",
            "rebalance",
            "execute",
            "--move",
            "c2:cs1:cs2",
            "--move",
            "c1:cs1:cs1",
        ],
    );
    assert_eq!(code, 1, "stdout {out:?} stderr {err:?}");
    let v: Value = serde_json::from_str(&out)?;
    assert_eq!(v["moved"], 1, "{v}");
    let results = v["results"].as_array().context("results")?;
    let outcome = |chunk: &str| {
        results
            .iter()
            .find(|r| r["move"]["chunk"] == chunk)
            .map(|r| {
                (
                    r["outcome"].clone(),
                    r["error"].as_str().unwrap_or("").to_owned(),
                )
            })
    };
    let (o1, why) = outcome("c1").context("result for c1")?;
    assert_ne!(o1, "done");
    assert!(!why.is_empty(), "a refused move carries a reason");
    assert!(err.contains(&why), "stderr repeats the reason: {err:?}");
    assert_eq!(outcome("c2").map(|r| r.0), Some(Value::from("done")));
    assert_eq!(replicas(&c, "c2").await?, ["cs2"]);
    assert_eq!(replicas(&c, "c1").await?, ["cs1"]);
    Ok(())
}
