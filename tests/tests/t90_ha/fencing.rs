//! A leader frozen with SIGSTOP in the middle of a rebalance, past its
//! lease: a standby is elected at a higher term and every chunk server
//! learns it from its heartbeat answers (and keeps it in `TERM`). A delete
//! carrying the old term is refused with FAILED_PRECONDITION. The old
//! leader, resumed, finds itself deposed, and its moves that were waiting
//! to delete their sources delete nothing; nothing is lost.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use keel_proto::v1::{DeleteChunkRequest, ListServersRequest, RebalanceRunRequest};
use keel_tests::faults::{quick_chunkserver, quick_master};
use keel_tests::ha::{list_servers, signal_pid};
use keel_tests::master::wait_used;
use keel_tests::wait_until;

use super::{LEASE, RECOVERY, cluster, healed, wait_copying, write_chunks};

const SERVERS: [&str; 4] = ["cs1", "cs2", "cs3", "cs4"];

/// The term kept in a chunk server's data dir.
fn kept_term(c: &keel_tests::ha::HaCluster, id: &str) -> u64 {
    std::fs::read_to_string(c.cluster.data_dir(id).join("TERM"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_is_fenced_when_it_wakes() -> Result<()> {
    let mut c = cluster(2, &["--threshold-pct", "1"], &SERVERS, "2MiB").await?;
    let known = write_chunks(&c, "f", 10, 1 << 20, &["cs1", "cs2"]).await?;
    for m in &c.masters {
        wait_used(&m.url(), 20 << 20, RECOVERY).await?;
    }
    let old = c.leader().await.context("a leader")?;
    let mut m = quick_master(&c.masters[old].url()).await?;
    let old_term = m
        .list_servers(ListServersRequest {})
        .await?
        .into_inner()
        .term;
    m.rebalance_run(RebalanceRunRequest {}).await?;
    wait_copying(&c, old, 0, Duration::from_secs(20)).await?;

    let pid = c.masters[old].pid().context("running")?;
    signal_pid(pid, libc::SIGSTOP);
    let next = c.wait_leader(Some(old), RECOVERY).await;
    let next = match next {
        Ok(n) => n,
        Err(e) => {
            signal_pid(pid, libc::SIGCONT);
            return Err(e);
        }
    };
    let mut n = quick_master(&c.masters[next].url()).await?;
    let new_term = n
        .list_servers(ListServersRequest {})
        .await?
        .into_inner()
        .term;
    ensure!(
        new_term > old_term,
        "terms grow: {old_term} then {new_term}"
    );
    let learned = wait_until(
        "every chunk server keeps the new term",
        RECOVERY,
        || async { SERVERS.iter().all(|s| kept_term(&c, s) == new_term) },
    )
    .await;
    if let Err(e) = learned {
        signal_pid(pid, libc::SIGCONT);
        return Err(e);
    }

    // A delete under the old term: refused, the replica stays.
    let mut cs = quick_chunkserver(&c.cluster.chunkservers["cs1"].url()).await?;
    let refused = cs
        .delete_chunk(DeleteChunkRequest {
            chunk: "f0".into(),
            term: old_term,
        })
        .await
        .expect_err("a deposed term deletes nothing");
    ensure!(
        refused.code() == tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    ensure!(refused.message().contains("term"), "{refused:?}");

    // The old leader wakes with moves half done; they must not delete.
    let woke = Instant::now();
    signal_pid(pid, libc::SIGCONT);
    let old_url = c.masters[old].url();
    wait_until("the old leader knows it is deposed", LEASE * 2, || async {
        list_servers(&old_url)
            .await
            .is_some_and(|r| !r.answered_by_leader && r.term == new_term)
    })
    .await?;
    eprintln!(
        "resumed leader saw it was deposed within {:?}",
        woke.elapsed()
    );
    // Restart the chunk servers' terms survive: TERM is on disk.
    c.cluster.cs("cs3").stop();
    c.cluster.cs("cs3").start_again()?;
    ensure!(kept_term(&c, "cs3") == new_term, "TERM survives a restart");
    let mut cs3 = quick_chunkserver(&c.cluster.chunkservers["cs3"].url()).await?;
    let refused = cs3
        .delete_chunk(DeleteChunkRequest {
            chunk: "f1".into(),
            term: old_term,
        })
        .await
        .expect_err("still fenced after a restart");
    ensure!(
        refused.code() == tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    healed(&c, &known).await
}
