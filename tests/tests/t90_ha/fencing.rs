//! A leader frozen with SIGSTOP in the middle of a rebalance, past its
//! lease: a standby is elected at a higher term and every chunk server
//! learns it from its heartbeat answers (and keeps it in `TERM`). A delete
//! carrying the old term is refused with FAILED_PRECONDITION. The old
//! leader, resumed, finds itself deposed, and its moves that were waiting
//! to delete their sources delete nothing; nothing is lost.
//!
//! An operator's `RebalanceExecute` waiting on a leader that is frozen past
//! its lease and resumed is answered at once with FAILED_PRECONDITION ("no
//! longer the leader"), and the resumed master's queue is empty.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use keel_proto::v1::{
    DeleteChunkRequest, ListServersRequest, Move, RebalanceExecuteRequest, RebalanceRunRequest,
};
use keel_tests::faults::{quick_chunkserver, quick_master};
use keel_tests::ha::{list_servers, signal_pid};
use keel_tests::master::wait_used;
use keel_tests::wait_until;

use super::{LEASE, RECOVERY, cluster, healed, status, wait_copying, write_chunks};

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
            ..Default::default()
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
            ..Default::default()
        })
        .await
        .expect_err("still fenced after a restart");
    ensure!(
        refused.code() == tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    healed(&c, &known).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_waiting_on_a_leader_that_steps_down_is_answered() -> Result<()> {
    // Slow copies and one move per server: most of the request waits queued.
    let limits = ["--max-moves-per-server", "1"];
    let c = cluster(2, &limits, &SERVERS, "1MiB").await?;
    let known = write_chunks(&c, "w", 6, 1 << 20, &["cs1", "cs2"]).await?;
    for m in &c.masters {
        wait_used(&m.url(), 12 << 20, RECOVERY).await?;
    }
    let old = c.leader().await.context("a leader")?;
    let moves = (0..6)
        .map(|i| Move {
            chunk: format!("w{i}"),
            from: "cs1".into(),
            to: if i % 2 == 0 { "cs3" } else { "cs4" }.into(),
        })
        .collect();
    let mut m = quick_master(&c.masters[old].url()).await?;
    let waiting =
        tokio::spawn(async move { m.rebalance_execute(RebalanceExecuteRequest { moves }).await });
    wait_copying(&c, old, 0, Duration::from_secs(20)).await?;
    let s = status(&c, old).await?;
    ensure!(s.pending > 0, "moves wait queued: {s:?}");

    let pid = c.masters[old].pid().context("running")?;
    signal_pid(pid, libc::SIGSTOP);
    let next = c.wait_leader(Some(old), RECOVERY).await;
    signal_pid(pid, libc::SIGCONT);
    let next = next?;
    let woke = Instant::now();
    let answer = tokio::time::timeout(LEASE * 2, waiting)
        .await
        .context("the waiting RebalanceExecute was not answered after the step-down")??;
    let refused = answer.expect_err("a deposed leader cannot report its moves done");
    eprintln!(
        "waiting execute answered {:?} after resuming: {refused:?}",
        woke.elapsed()
    );
    ensure!(
        refused.code() == tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    ensure!(
        refused.message().contains("no longer the leader"),
        "{refused:?}"
    );
    if let Some(h) = refused.metadata().get("keel-leader") {
        ensure!(h.to_str()? == c.masters[next].url(), "{refused:?}");
    }
    let s = status(&c, old).await?;
    ensure!(s.pending == 0, "the deposed master's queue is empty: {s:?}");
    healed(&c, &known).await
}
