//! Operating the balancer: `rebalance plan` is a dry run (the JSON shape
//! keelctl documents, the same answer twice, nothing moves); pause holds
//! every new move back across background passes (each pending move waits
//! with reason "paused", the gauges show them) while a running move
//! finishes, and resume drains the queue; a move whose target dies is
//! retried, then given up (cancelled once the master holds the target dead,
//! or dropped as failed after its retries, whichever comes first), while the
//! other moves complete, the source keeps its replica, and the next pass
//! plans without the dead server.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keel_proto::v1::{QueuedMoveState, RebalanceStatusResponse};
use keel_tests::chunks::{pattern, read};
use keel_tests::keelctl::json;
use keel_tests::master::{locate, metric_of, servers, status, view};
use keel_tests::{Cluster, CsOpts, wait_until};

/// How the cluster of a test starts.
struct Setup<'a> {
    /// Extra master flags.
    master: &'a [&'a str],
    /// Server ids; each has 10 000 KiB and the first gets every chunk.
    servers: &'a [&'a str],
    /// `--migrate-bandwidth` of every server.
    bandwidth: Option<&'a str>,
    /// Chunks of 1000 KiB put on the first server.
    chunks: usize,
    /// Pause the balancer before the chunks are put.
    paused: bool,
}

async fn cluster(setup: Setup<'_>) -> Result<(Cluster, Vec<String>)> {
    let Setup {
        master,
        servers: ids,
        bandwidth,
        chunks: n,
        paused,
    } = setup;
    let mut c = Cluster::new()?;
    c.start_master(master)?;
    for id in ids {
        let opts = CsOpts {
            capacity: "10000KiB".into(),
            bandwidth: bandwidth.map(Into::into),
            ..CsOpts::default()
        };
        c.add_chunkserver(id, opts)?;
    }
    c.wait_alive(ids.len()).await?;
    if paused {
        json(&c, &["--json", "rebalance", "pause"]);
    }
    let dir = tempfile::tempdir()?;
    let mut chunks = Vec::new();
    for i in 0..n {
        let chunk = format!("ops-{i:02}");
        let path = dir.path().join(&chunk);
        std::fs::write(&path, pattern(500 + i as u64, 1000 * 1024))?;
        let path = path.to_str().context("utf-8")?;
        json(
            &c,
            &[
                "--json",
                "put",
                &chunk,
                path,
                "--on",
                ids[0],
                "--replication",
                "1",
            ],
        );
        chunks.push(chunk);
    }
    Ok((c, chunks))
}

async fn status_is(url: &str, cond: impl Fn(&RebalanceStatusResponse) -> bool) -> bool {
    status(url).await.is_ok_and(|s| cond(&s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_is_a_dry_run() -> Result<()> {
    let (c, chunks) = cluster(Setup {
        master: &[],
        servers: &["cs1", "cs2", "cs3"],
        bandwidth: None,
        chunks: 7,
        paused: false,
    })
    .await?;
    let url = c.master_url();
    let names: Vec<&str> = chunks.iter().map(String::as_str).collect();
    let before = view(&url, &names).await?;

    let plan = json(&c, &["--json", "rebalance", "plan"]);
    let moves = plan["moves"].as_array().context("moves")?;
    assert!(!moves.is_empty(), "{plan}");
    for m in moves {
        let keys: BTreeSet<&str> = m
            .as_object()
            .context("move")?
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            BTreeSet::from(["chunk", "from", "to", "bytes", "reason"]),
            "{m}"
        );
        // Nothing reads these chunks: every move is for capacity.
        assert_eq!(m["reason"], "capacity", "{m}");
        assert_eq!(m["from"], "cs1", "{m}");
        assert_eq!(m["bytes"], 1000 * 1024, "{m}");
    }
    let sum: u64 = moves.iter().filter_map(|m| m["bytes"].as_u64()).sum();
    assert_eq!(plan["bytes"].as_u64(), Some(sum), "{plan}");
    assert!(plan["lower_bound_bytes"].as_u64() <= Some(sum), "{plan}");
    assert_eq!(plan["reaches_band"], true, "{plan}");
    assert!(plan["average_utilization_pct"].is_f64(), "{plan}");
    assert_eq!(
        json(&c, &["--json", "rebalance", "plan"]),
        plan,
        "deterministic"
    );

    assert_eq!(view(&url, &names).await?, before, "a plan changes nothing");
    let s = status(&url).await?;
    assert_eq!((s.pending, s.running, s.done), (0, 0, 0), "{s:?}");
    let http = c
        .master
        .as_ref()
        .and_then(|d| d.http_addr)
        .context("http")?;
    assert_eq!(metric_of(http, "keel_moves_done_total").await?, Some(0.0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_holds_new_moves_across_passes_and_resume_drains() -> Result<()> {
    let (c, _) = cluster(Setup {
        master: &["--balance-interval", "1s"],
        servers: &["cs1", "cs2", "cs3", "cs4"],
        bandwidth: Some("1MiB"),
        chunks: 9,
        paused: true,
    })
    .await?;
    let url = c.master_url();
    // Background passes do not plan while paused (their plan would be stale
    // by the time it ran); an operator's run still queues, and the moves wait.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        status(&url).await?.pending,
        0,
        "a paused balancer planned in the background"
    );
    let (code, _, err) = c.keelctl(&["rebalance", "run"])?;
    assert_eq!(code, 0, "{err}");
    wait_until("the run to queue moves", Duration::from_secs(10), || {
        status_is(&url, |s| s.pending >= 2)
    })
    .await?;

    // Two more background passes: nothing starts, every move says why.
    let watch_until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < watch_until {
        let s = status(&url).await?;
        assert!(s.paused && s.running == 0 && s.done == 0, "{s:?}");
        for m in s
            .moves
            .iter()
            .filter(|m| m.state == QueuedMoveState::Pending as i32)
        {
            assert_eq!(m.waiting_reason, "paused", "{m:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s = status(&url).await?;
    let http = c
        .master
        .as_ref()
        .and_then(|d| d.http_addr)
        .context("http")?;
    assert_eq!(
        metric_of(http, "keel_moves_pending").await?,
        Some(s.pending as f64)
    );
    let age = metric_of(http, "keel_oldest_pending_move_age_seconds").await?;
    assert!(age > Some(2.0), "oldest pending age {age:?}");
    let (code, text, err) = c.keelctl(&["rebalance", "status"])?;
    assert_eq!(code, 0, "{err}");
    assert!(text.starts_with("balancer paused"), "{text}");
    let rows = text.lines().filter(|l| l.starts_with("ops-"));
    assert!(
        rows.clone().count() >= 2 && rows.clone().all(|l| l.ends_with("paused")),
        "{text}"
    );

    // Resume, then pause while a move runs: it finishes, nothing new starts.
    json(&c, &["--json", "rebalance", "resume"]);
    wait_until("a move to run", Duration::from_secs(10), || {
        status_is(&url, |s| s.running >= 1)
    })
    .await?;
    let during = json(&c, &["--json", "rebalance", "pause"]);
    let (done, running) = (
        during["done"].as_u64().context("done")?,
        during["running"].as_u64().context("running")?,
    );
    wait_until(
        "the running moves to finish",
        Duration::from_secs(20),
        || status_is(&url, |s| s.running == 0),
    )
    .await?;
    let s = status(&url).await?;
    assert_eq!(
        s.done + s.failed,
        done + running,
        "only the running moves ended: {s:?}"
    );
    assert!(s.pending >= 1, "the rest waits: {s:?}");

    json(&c, &["--json", "rebalance", "resume"]);
    wait_until("the queue to drain", Duration::from_secs(40), || {
        status_is(&url, |s| s.pending == 0 && s.running == 0)
    })
    .await?;
    let s = status(&url).await?;
    assert_eq!(s.failed, 0, "{s:?}");
    let check = json(&c, &["--json", "rebalance", "check"]);
    assert_eq!(check["balanced"], true, "{check}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_to_a_dead_target_are_retried_then_given_up_and_the_rest_complete() -> Result<()> {
    let (mut c, _) = cluster(Setup {
        master: &[],
        servers: &["cs1", "cs2", "cs3"],
        bandwidth: None,
        chunks: 8,
        paused: true,
    })
    .await?;
    let url = c.master_url();
    let run = json(&c, &["--json", "rebalance", "run"]);
    assert!(run["enqueued"].as_u64() >= Some(2), "{run}");
    let queued = status(&url).await?.moves;
    let to = |server: &str| -> Vec<String> {
        queued
            .iter()
            .filter(|m| m.to == server)
            .map(|m| m.chunk.clone())
            .collect()
    };
    let (to_cs2, to_cs3) = (to("cs2"), to("cs3"));
    assert!(!to_cs2.is_empty() && !to_cs3.is_empty(), "{queued:?}");

    c.cs("cs3").kill9();
    json(&c, &["--json", "rebalance", "resume"]);
    wait_until(
        "a move to cs3 to be retried",
        Duration::from_secs(10),
        || {
            status_is(&url, |s| {
                s.moves
                    .iter()
                    .any(|m| m.to == "cs3" && m.retries >= 1 && !m.last_error.is_empty())
            })
        },
    )
    .await?;
    wait_until("the queue to settle", Duration::from_secs(40), || {
        status_is(&url, |s| s.pending == 0 && s.running == 0)
    })
    .await?;

    let s = status(&url).await?;
    eprintln!(
        "dead target: {} moves to cs2 done; of {} to cs3, {} failed after retries, the rest cancelled",
        s.done,
        to_cs3.len(),
        s.failed
    );
    assert_eq!(
        s.done,
        to_cs2.len() as u64,
        "the moves to cs2 completed: {s:?}"
    );
    assert!(s.failed <= to_cs3.len() as u64, "{s:?}");
    let cs2 = c.cs("cs2").url();
    for chunk in &to_cs2 {
        assert_eq!(
            locate(&url, chunk).await?,
            Some(vec![("cs2".into(), true)]),
            "{chunk}"
        );
        read(&cs2, chunk).await?;
    }
    let cs1 = c.cs("cs1").url();
    for chunk in &to_cs3 {
        assert_eq!(
            locate(&url, chunk).await?,
            Some(vec![("cs1".into(), true)]),
            "{chunk} kept on its source"
        );
        read(&cs1, chunk).await?;
    }
    let http = c
        .master
        .as_ref()
        .and_then(|d| d.http_addr)
        .context("http")?;
    assert_eq!(
        metric_of(http, "keel_moves_failed_total").await?,
        Some(s.failed as f64)
    );
    let rows = servers(&url).await?;
    assert!(rows.iter().any(|r| r.id == "cs3" && !r.alive), "{rows:?}");

    // The next pass plans around the dead server.
    let (code, out, err) = c.keelctl(&[
        "--json",
        "rebalance",
        "run",
        "--wait",
        "--wait-timeout",
        "40s",
        "--poll-interval",
        "100ms",
    ])?;
    assert_eq!(code, 0, "run --wait: {out} {err}");
    let check = json(&c, &["--json", "rebalance", "check"]);
    assert_eq!(check["balanced"], true, "{check}");
    Ok(())
}
