//! Failover time, run by `scripts/bench-failover.sh` (ignored in the normal
//! test run). Each round writes chunks unevenly, starts a rebalance, and
//! SIGKILLs the leader while it copies; it times the kill → a new leader,
//! → its first copy, and → the first `AllocateChunk` a client (trying each
//! master, as keelctl does) gets served. Then the old master comes back as a
//! standby and the cluster heals. Prints the median and max of each against
//! the lease, and each master's resident memory (a standby's cost).
//!
//! `KEEL_BENCH_ROUNDS` (default 10) and `KEEL_BENCH_LEASE` (default 2s).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keel_proto::v1::{AllocateChunkRequest, RebalanceRunRequest};
use keel_tests::faults::{self, quick_master};
use keel_tests::ha::HaCluster;

use super::{RECOVERY, cluster, healed, wait_copying, write_chunks};

const SERVERS: [&str; 4] = ["cs1", "cs2", "cs3", "cs4"];

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Tries every master until one places chunk `id`.
async fn allocate_anywhere(c: &HaCluster, id: &str) -> bool {
    for m in &c.masters {
        let ask = async {
            let mut m = quick_master(&m.url()).await.ok()?;
            let req = AllocateChunkRequest {
                chunk: id.into(),
                size: 1,
                replication: 1,
                on: vec![],
            };
            m.allocate_chunk(req).await.ok()
        };
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(1), ask).await {
            return true;
        }
    }
    false
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn summary(name: &str, mut v: Vec<Duration>, lease: &str) {
    v.sort();
    let median = v[v.len() / 2];
    let max = v[v.len() - 1];
    eprintln!("{name:<34} median {median:>8.2?}  max {max:>8.2?}  (lease {lease})");
}

/// One round: returns (new leader, first copy, client served) after the kill.
async fn round(c: &mut HaCluster, r: usize) -> Result<[Duration; 3]> {
    let known = write_chunks(c, &format!("bench{r}-"), 8, 1 << 20, &["cs1", "cs2"]).await?;
    let leader = c.wait_leader(None, RECOVERY).await?;
    let url = c.masters[leader].url();
    faults::converge("chunks seen", RECOVERY, Duration::from_millis(50), || {
        faults::placement_ok_at(&c.cluster, &url, &known)
    })
    .await?;
    quick_master(&url)
        .await?
        .rebalance_run(RebalanceRunRequest {})
        .await?;
    wait_copying(c, leader, super::status(c, leader).await?.done, RECOVERY).await?;
    let mut done_before = Vec::new();
    for i in 0..c.masters.len() {
        done_before.push(super::status(c, i).await.map_or(0, |s| s.done));
    }
    let killed = Instant::now();
    c.masters[leader].kill9();
    let next = c.wait_leader(Some(leader), RECOVERY).await?;
    let elected = killed.elapsed();
    let mut served = None;
    let mut copied = None;
    while served.is_none() || copied.is_none() {
        anyhow::ensure!(killed.elapsed() < RECOVERY, "no recovery in round {r}");
        if served.is_none() && allocate_anywhere(c, &format!("probe{r}")).await {
            served = Some(killed.elapsed());
        }
        if copied.is_none()
            && super::status(c, next)
                .await
                .is_ok_and(|s| s.running > 0 || s.done > done_before[next] || !s.copies.is_empty())
        {
            copied = Some(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.masters[leader].start_again()?;
    healed(c, &known).await?;
    let term = keel_tests::ha::list_servers(&c.masters[next].url())
        .await
        .context("the leader answers")?
        .term;
    for k in &known {
        faults::delete_everywhere_at(&c.cluster, &k.id, term).await?;
    }
    Ok([
        elected,
        copied.unwrap_or_default(),
        served.unwrap_or_default(),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-failover.sh"]
async fn failover_time() -> Result<()> {
    let rounds: usize = env_or("KEEL_BENCH_ROUNDS", "10").parse()?;
    let lease = env_or("KEEL_BENCH_LEASE", "2s");
    let flags = ["--threshold-pct", "1", "--leader-lease", &lease];
    let mut c = cluster(2, &flags, &SERVERS, "4MiB").await?;
    let mut times: [Vec<Duration>; 3] = Default::default();
    for r in 0..rounds {
        let t = round(&mut c, r).await?;
        eprintln!(
            "round {r}: new leader {:?}, first copy {:?}, client served {:?}",
            t[0], t[1], t[2]
        );
        for (v, d) in times.iter_mut().zip(t) {
            v.push(d);
        }
    }
    let [elected, copied, served] = times;
    summary("killed -> new leader", elected, &lease);
    summary("killed -> first copy by new leader", copied, &lease);
    summary("killed -> AllocateChunk served", served, &lease);
    for m in &c.masters {
        if let Some(pid) = m.pid() {
            eprintln!("{}: resident {} KiB", m.name, rss_kib(pid));
        }
    }
    Ok(())
}
