//! The leader SIGKILLed while it copies — during a rebalance, a repair and a
//! drain: a standby leads and copies again within lease + one heartbeat
//! interval + [`FAILOVER_MARGIN`] (etcd's lease sweep and a loaded machine),
//! the work finishes, and every chunk is whole on exactly its factor of
//! servers.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use keel_proto::v1::{
    DrainServerRequest, ListServersRequest, RebalanceRunRequest, ServerState, UndrainServerRequest,
};
use keel_tests::faults::{Known, quick_master};
use keel_tests::ha::HaCluster;
use keel_tests::master::wait_used;
use keel_tests::wait_until;

use super::{
    FAILOVER_MARGIN, HEARTBEAT, LEASE, RECOVERY, cluster, healed, wait_copying, write_chunks,
};

const SERVERS: [&str; 4] = ["cs1", "cs2", "cs3", "cs4"];

/// Kills the leader once it copies; returns the new leader and how long
/// from the kill to its first copy.
async fn kill_leader_while_copying(c: &mut HaCluster) -> Result<(usize, Duration)> {
    let leader = c.leader().await.context("a leader")?;
    wait_copying(c, leader, 0, Duration::from_secs(20)).await?;
    let killed = Instant::now();
    c.masters[leader].kill9();
    let next = c.wait_leader(Some(leader), RECOVERY).await?;
    wait_copying(c, next, 0, RECOVERY).await?;
    let took = killed.elapsed();
    let bound = LEASE + HEARTBEAT + FAILOVER_MARGIN;
    ensure!(
        took <= bound,
        "the new leader copied {took:?} after the kill, more than {bound:?}"
    );
    c.masters[leader].start_again()?;
    Ok((next, took))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_goes_on_after_the_leader_is_killed() -> Result<()> {
    let mut c = cluster(2, &["--threshold-pct", "1"], &SERVERS, "2MiB").await?;
    let known = write_chunks(&c, "b", 10, 1 << 20, &["cs1", "cs2"]).await?;
    let leader = c.leader().await.context("a leader")?;
    for m in &c.masters {
        wait_used(&m.url(), 20 << 20, RECOVERY).await?;
    }
    let mut m = quick_master(&c.masters[leader].url()).await?;
    let run = m.rebalance_run(RebalanceRunRequest {}).await?.into_inner();
    ensure!(run.enqueued > 0, "moves planned: {run:?}");
    let (next, took) = kill_leader_while_copying(&mut c).await?;
    eprintln!("rebalance: killed -> new leader {next} copying in {took:?}");
    wait_until("balanced again", RECOVERY, || async {
        super::status(&c, next)
            .await
            .is_ok_and(|s| s.balanced && s.pending == 0 && s.running == 0)
    })
    .await?;
    healed(&c, &known).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repair_goes_on_after_the_leader_is_killed() -> Result<()> {
    let mut c = cluster(2, &[], &SERVERS, "2MiB").await?;
    let known = write_chunks(&c, "r", 8, 1 << 20, &["cs1", "cs2"]).await?;
    // cs2 loses its replicas: stopped, files removed, started again.
    c.cluster.cs("cs2").stop();
    let chunks = c.cluster.data_dir("cs2").join("chunks");
    for e in std::fs::read_dir(&chunks)? {
        std::fs::remove_file(e?.path())?;
    }
    c.cluster.cs("cs2").start_again()?;
    let (next, took) = kill_leader_while_copying(&mut c).await?;
    eprintln!("repair: killed -> new leader {next} copying in {took:?}");
    healed(&c, &known).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_goes_on_after_the_leader_is_killed() -> Result<()> {
    let mut c = cluster(2, &[], &SERVERS, "2MiB").await?;
    let known: Vec<Known> = write_chunks(&c, "d", 8, 1 << 20, &["cs1", "cs2"]).await?;
    let leader = c.leader().await.context("a leader")?;
    for m in &c.masters {
        wait_used(&m.url(), 16 << 20, RECOVERY).await?;
    }
    let mut m = quick_master(&c.masters[leader].url()).await?;
    m.drain_server(DrainServerRequest {
        server: "cs1".into(),
    })
    .await?;
    let (next, took) = kill_leader_while_copying(&mut c).await?;
    eprintln!("drain: killed -> new leader {next} copying in {took:?}");
    let url = c.masters[next].url();
    wait_until("cs1 drained", RECOVERY, || async {
        let Ok(mut m) = quick_master(&url).await else {
            return false;
        };
        let Ok(l) = m.list_servers(ListServersRequest {}).await else {
            return false;
        };
        l.into_inner()
            .servers
            .iter()
            .any(|s| s.id == "cs1" && s.state == ServerState::Drained as i32)
    })
    .await?;
    let mut m = quick_master(&url).await?;
    m.undrain_server(UndrainServerRequest {
        server: "cs1".into(),
    })
    .await?;
    healed(&c, &known).await
}
