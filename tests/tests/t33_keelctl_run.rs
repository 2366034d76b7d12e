//! The balancer driven through keelctl on the seed cluster (78/50/57/15 %):
//! `rebalance plan` proposes moves off cs1 and onto cs4 without changing
//! anything, `rebalance run --wait` drains the queue with progress on stderr
//! and leaves the cluster balanced, and `pause`/`status`/`resume` hold moves
//! back and let them go.

use std::time::Duration;

use anyhow::{Context, Result};
use keel_tests::chunks::pattern;
use keel_tests::keelctl::json;
use keel_tests::{Cluster, CsOpts, wait_until};
use serde_json::Value;

/// 10 000 KiB per server: every seed percentage is a whole number of KiB.
const CAPACITY: &str = "10000KiB";

/// Chunks per server (KiB each) adding up to 78 / 50 / 57 / 15 %.
const SEED: [(&str, &[u64]); 4] = [
    ("cs1", &[3000, 2800, 2000]),
    ("cs2", &[3000, 2000]),
    ("cs3", &[3000, 2700]),
    ("cs4", &[1500]),
];

/// The seed cluster, every chunk pinned with one replica and known to the master.
async fn seed_cluster() -> Result<Cluster> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    for (id, _) in SEED {
        let opts = CsOpts {
            capacity: CAPACITY.into(),
            ..CsOpts::default()
        };
        c.add_chunkserver(id, opts)?;
    }
    c.wait_alive(SEED.len()).await?;
    let dir = tempfile::tempdir()?;
    let mut seed = 100;
    for (server, sizes) in SEED {
        for (i, kib) in sizes.iter().enumerate() {
            let chunk = format!("ch_{}{i}", &server[2..]);
            let path = dir.path().join(&chunk);
            std::fs::write(&path, pattern(seed, (*kib * 1024) as usize))?;
            seed += 1;
            let path = path.to_str().context("utf-8")?;
            json(
                &c,
                &[
                    "--json",
                    "put",
                    &chunk,
                    path,
                    "--on",
                    server,
                    "--replication",
                    "1",
                ],
            );
        }
    }
    let check = json(&c, &["--json", "rebalance", "check"]);
    assert_eq!(check["overloaded"][0]["server"], "cs1", "{check}");
    Ok(c)
}

fn queue_idle(status: &Value) -> bool {
    status["pending"] == 0 && status["running"] == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_then_run_wait_balances() -> Result<()> {
    let c = seed_cluster().await?;

    let plan = json(&c, &["--json", "rebalance", "plan"]);
    let moves = plan["moves"].as_array().context("moves")?;
    assert!(!moves.is_empty(), "{plan}");
    let sum: u64 = moves.iter().filter_map(|m| m["bytes"].as_u64()).sum();
    assert_eq!(plan["bytes"].as_u64(), Some(sum), "{plan}");
    for m in moves {
        for key in ["chunk", "from", "to", "bytes"] {
            assert!(m.get(key).is_some(), "{key} missing in {m}");
        }
    }
    assert!(moves.iter().any(|m| m["from"] == "cs1"), "{plan}");
    assert!(moves.iter().any(|m| m["to"] == "cs4"), "{plan}");
    // A dry run changes nothing.
    let status = json(&c, &["--json", "rebalance", "status"]);
    assert!(queue_idle(&status), "{status}");

    let (code, out, err) = c.keelctl(&[
        "--json",
        "rebalance",
        "run",
        "--wait",
        "--wait-timeout",
        "60s",
        "--poll-interval",
        "100ms",
    ])?;
    assert_eq!(code, 0, "run --wait: {out} {err}");
    let run: Value = serde_json::from_str(&out)?;
    assert!(run["enqueued"].as_u64() >= Some(1), "{run}");
    assert!(run["finished"]["done"].as_u64() >= Some(1), "{run}");
    assert_eq!(run["finished"]["failed"], 0, "{run}");
    assert!(err.contains("moves"), "progress on stderr: {err:?}");

    let check = json(&c, &["--json", "rebalance", "check"]);
    assert_eq!(check["balanced"], true, "{check}");
    let status = json(&c, &["--json", "rebalance", "status"]);
    assert!(queue_idle(&status), "{status}");
    assert!(status["done"].as_u64() >= Some(1), "{status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_moves_and_resume_lets_them_go() -> Result<()> {
    let c = seed_cluster().await?;

    let paused = json(&c, &["--json", "rebalance", "pause"]);
    assert_eq!(paused["paused"], true, "{paused}");
    let run = json(&c, &["--json", "rebalance", "run"]);
    assert!(run["enqueued"].as_u64() >= Some(1), "{run}");

    let status = json(&c, &["--json", "rebalance", "status"]);
    assert_eq!(status["paused"], true, "{status}");
    assert_eq!(status["done"], 0, "nothing moves while paused: {status}");
    assert!(status["pending"].as_u64() >= Some(1), "{status}");
    let (code, text, err) = c.keelctl(&["rebalance", "status"])?;
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("balancer paused"), "{text}");
    assert!(text.contains("pending"), "{text}");

    let resumed = json(&c, &["--json", "rebalance", "resume"]);
    assert_eq!(resumed["paused"], false, "{resumed}");
    wait_until("the queue to drain", Duration::from_secs(60), || async {
        let (code, out, _) = c.keelctl(&["--json", "rebalance", "status"]).expect("runs");
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        code == 0 && queue_idle(&v) && v["done"].as_u64() >= Some(1)
    })
    .await?;
    let check = json(&c, &["--json", "rebalance", "check"]);
    assert_eq!(check["balanced"], true, "{check}");
    Ok(())
}
