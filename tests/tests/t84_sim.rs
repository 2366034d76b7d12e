//! `keelctl sim`: the prediction against the real thing. A cluster of four
//! chunk servers throttled to 4 MiB/s, two of them full and two empty; `sim
//! --from-master` predicts the master's plan (moves, bytes, ETA) and
//! `rebalance plan` shows the same ETA; then `rebalance run --wait` executes
//! it and the measured wall time must lie within 15 % of the prediction.
//! Also: a cluster described in a JSON file, and files that are refused.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keel_tests::chunks::pattern;
use keel_tests::keelctl::json;
use keel_tests::{Cluster, CsOpts};
use serde_json::Value;

const MIB: u64 = 1 << 20;
/// Each full server holds this many chunks of `CHUNK` bytes.
const CHUNKS: u64 = 16;
const CHUNK: u64 = 8 * MIB;
/// Slow enough that the run takes about 15 s and per-move overheads (tens
/// of milliseconds) are small beside the transfers.
const BANDWIDTH: &str = "4MiB";

/// cs1 and cs2 half full, cs3 and cs4 empty, every server at 4 MiB/s.
async fn skewed_cluster() -> Result<Cluster> {
    let mut c = Cluster::new()?;
    // The old default limits, set explicitly: the sim must report the
    // master's own, whatever the defaults.
    c.start_master(&[
        "--threshold-pct",
        "5",
        "--max-concurrent-moves",
        "4",
        "--max-moves-per-server",
        "2",
    ])?;
    for id in ["cs1", "cs2", "cs3", "cs4"] {
        let opts = CsOpts {
            capacity: "256MiB".into(),
            bandwidth: Some(BANDWIDTH.into()),
            ..CsOpts::default()
        };
        c.add_chunkserver(id, opts)?;
    }
    c.wait_alive(4).await?;
    let dir = tempfile::tempdir()?;
    for (n, server) in ["cs1", "cs2"].iter().enumerate() {
        for i in 0..CHUNKS {
            let chunk = format!("sim_{server}_{i:02}");
            let path = dir.path().join(&chunk);
            std::fs::write(&path, pattern(n as u64 * 100 + i, CHUNK as usize))?;
            let path = path.to_str().context("utf-8")?;
            let args = ["put", &chunk, path, "--on", server, "--replication", "1"];
            json(&c, &[&["--json"], &args[..]].concat());
        }
    }
    keel_tests::master::wait_used(&c.master_url(), 2 * CHUNKS * CHUNK, Duration::from_secs(20))
        .await?;
    Ok(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prediction_matches_the_real_run_within_15_percent() -> Result<()> {
    let c = skewed_cluster().await?;

    let sim = json(&c, &["--json", "sim", "--from-master"]);
    let moves = sim["move_count"].as_u64().context("move_count")?;
    let bytes = sim["bytes"].as_u64().context("bytes")?;
    let eta = sim["eta_seconds"].as_f64().context("eta")?;
    assert!(moves >= 8 && bytes == moves * CHUNK, "{sim}");
    assert!(sim["lower_bound_bytes"].as_u64() <= Some(bytes), "{sim}");
    // The master's limits and each server's reported rate were used.
    assert_eq!(sim["limits"]["max_concurrent_moves"], 4, "{sim}");
    assert_eq!(sim["limits"]["max_moves_per_server"], 2, "{sim}");
    for s in sim["servers"].as_array().context("servers")? {
        assert_eq!(s["bandwidth_bytes_per_second"], 4 * MIB, "{s}");
    }
    let out: u64 = sim["servers"]
        .as_array()
        .context("servers")?
        .iter()
        .filter_map(|s| s["bytes_out"].as_u64())
        .sum();
    assert_eq!(out, bytes, "{sim}");
    assert_eq!(
        sim["timeline"]
            .as_array()
            .and_then(|t| t.last())
            .map(|l| l["bytes_done"].clone()),
        Some(bytes.into())
    );

    // `rebalance plan` shows the same plan and the same ETA.
    let plan = json(&c, &["--json", "rebalance", "plan"]);
    assert_eq!(
        plan["moves"].as_array().map(Vec::len),
        Some(moves as usize),
        "{plan}"
    );
    assert_eq!(plan["bytes"].as_u64(), Some(bytes), "{plan}");
    let plan_eta = plan["eta_seconds"].as_f64().context("eta_seconds")?;
    assert!(
        (plan_eta - eta).abs() < 1e-6,
        "plan {plan_eta} vs sim {eta}"
    );

    let started = Instant::now();
    let run = json(
        &c,
        &[
            "--json",
            "rebalance",
            "run",
            "--wait",
            "--wait-timeout",
            "120s",
            "--poll-interval",
            "100ms",
        ],
    );
    let measured = started.elapsed().as_secs_f64();
    assert_eq!(run["enqueued"].as_u64(), Some(moves), "{run}");
    assert_eq!(run["bytes"].as_u64(), Some(bytes), "{run}");
    assert_eq!(run["finished"]["failed"], 0, "{run}");
    let ratio = measured / eta;
    // For calibration: each copy's time as the master logged it.
    let log = c.master.as_ref().context("master")?.log_text();
    let secs: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("copy done"))
        .filter_map(|l| {
            l.split("secs=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    eprintln!("copy times as the master logged them: {secs:?}");
    eprintln!(
        "sim vs real: predicted {eta:.2}s, measured {measured:.2}s, ratio {ratio:.3} ({moves} moves, {bytes} bytes)"
    );
    assert!(
        (0.85..=1.15).contains(&ratio),
        "predicted {eta:.2}s, measured {measured:.2}s"
    );
    Ok(())
}

const FILE: &str = r#"{
  "servers": [
    {"id": "a", "capacity": "10GiB", "used": "8GiB", "rack": "r1", "migrate_bandwidth": "50MiB"},
    {"id": "b", "capacity": "10GiB", "used": "5GiB", "rack": "r2"},
    {"id": "c", "capacity": "20GiB", "used": "0", "rack": "r3"}
  ],
  "chunks": {"replication": 1, "sizes": [{"size": "64MiB", "weight": 3}, {"size": "8MiB"}], "seed": 2},
  "policy": {"threshold_pct": 10},
  "limits": {"max_concurrent_moves": 4, "max_moves_per_server": 2, "migrate_bandwidth": "100MiB", "move_overhead": "0s"}
}"#;

/// `keelctl` with no master at all: a file needs none.
fn offline(args: &[&str]) -> Result<(i32, String, String)> {
    let out = std::process::Command::new(keel_tests::bin("keelctl"))
        .args(args)
        .env("KEEL_MASTER", "http://127.0.0.1:9")
        .stdin(std::process::Stdio::null())
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn a_cluster_file_is_simulated_and_bad_files_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let good = dir.path().join("cluster.json");
    std::fs::write(&good, FILE)?;
    let good = good.to_str().context("utf-8")?;
    let (code, out, err) = offline(&["--json", "sim", good])?;
    assert_eq!(code, 0, "{err}");
    let sim: Value = serde_json::from_str(&out)?;
    let bytes = sim["bytes"].as_u64().context("bytes")?;
    let eta = sim["eta_seconds"].as_f64().context("eta")?;
    assert!(
        bytes >= sim["lower_bound_bytes"].as_u64().context("lb")? && bytes > 0,
        "{sim}"
    );
    assert_eq!(sim["reaches_band"], true, "{sim}");
    assert!(
        sim["spread_pct_after"].as_f64() < sim["spread_pct_before"].as_f64(),
        "{sim}"
    );
    // Server a sheds at 50 MiB/s at best: the ETA cannot beat its bytes out.
    let a_out = sim["servers"][0]["bytes_out"].as_u64().context("a out")?;
    assert!(eta >= a_out as f64 / (50 * MIB) as f64 - 1e-6, "{sim}");
    let (code, text, _) = offline(&["sim", good])?;
    assert_eq!(code, 0);
    assert!(
        text.contains("ETA") && text.contains("PROGRESS") && text.contains("50.0 MiB/s"),
        "{text}"
    );

    let bad = dir.path().join("bad.json");
    let cases = [
        ("{\"servers\": [", "not a sim file"),
        (&FILE.replace("\"8GiB\"", "\"80GiB\""), "servers[0].used"),
        (&FILE.replace("\"seed\"", "\"sed\""), "unknown field"),
    ];
    for (text, want) in cases {
        std::fs::write(&bad, text)?;
        let (code, out, err) = offline(&["sim", bad.to_str().context("utf-8")?])?;
        assert_ne!(code, 0, "{want}: {out}");
        assert!(out.is_empty(), "nothing on stdout: {out}");
        assert!(
            err.contains(want) && err.lines().count() == 1,
            "{want:?} not in {err:?}"
        );
    }
    let (code, _, err) = offline(&["sim", "/nonexistent/cluster.json"])?;
    assert_ne!(code, 0);
    assert!(err.contains("cannot read"), "{err}");
    let (code, _, err) = offline(&["sim"])?;
    assert_eq!(code, 2, "a file or --from-master is required: {err}");
    Ok(())
}
