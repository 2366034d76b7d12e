//! A replica under verification when the leader dies: its chunk server keeps
//! the suspect mark (in its data dir) and reports it, so the next leader
//! counts the copy for nothing until it has verified it itself, then repairs
//! the chunk; nothing is lost.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use keel_proto::v1::ExplainChunkRequest;
use keel_tests::chunks::rot;
use keel_tests::faults::quick_master;
use keel_tests::ha::HaCluster;
use keel_tests::{CsOpts, cs, wait_until};

use super::{RECOVERY, healed, write_chunks};

/// How long cs1 holds every verification: past the leader's kill and the
/// next leader's first look at the chunk.
const HOLD_VERIFY_MS: &str = "15000";

/// Whether master `i` shows `chunk`'s replica on `server` with `health`.
async fn health_is(c: &HaCluster, i: usize, chunk: &str, server: &str, health: &str) -> bool {
    let Ok(mut m) = quick_master(&c.masters[i].url()).await else {
        return false;
    };
    let req = ExplainChunkRequest {
        chunk: chunk.into(),
    };
    m.explain_chunk(req).await.is_ok_and(|e| {
        e.into_inner()
            .replicas
            .iter()
            .any(|r| r.server == server && r.health == health)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_corruption_mark_survives_a_leader_kill() -> Result<()> {
    let mut c = HaCluster::start(2, &[]).await?;
    let opts = || CsOpts {
        capacity: "64MiB".into(),
        ..CsOpts::default()
    };
    c.cluster
        .envs
        .push(("KEEL_TEST_HOLD_VERIFY_MS".into(), HOLD_VERIFY_MS.into()));
    c.add_chunkserver("cs1", opts())?;
    c.cluster.envs.clear();
    for id in ["cs2", "cs3"] {
        c.add_chunkserver(id, opts())?;
    }
    for i in 0..2 {
        c.wait_alive(i, 3).await?;
    }
    let leader = c.wait_leader(None, Duration::from_secs(20)).await?;
    let known = write_chunks(&c, "v", 1, 1 << 20, &["cs1", "cs2"]).await?;
    healed(&c, &known).await?;

    rot(&c.cluster.data_dir("cs1").join("chunks").join("v0"))?;
    let r = cs::read_raw(&c.cluster.chunkservers["cs1"].url(), "v0", false).await?;
    ensure!(r.error.is_some(), "the read of the rotted copy must fail");
    // The leader asks cs1 to verify; cs1 marks the copy on disk and holds.
    let mark = c.cluster.data_dir("cs1").join("suspect").join("v0");
    wait_until("cs1 to mark v0 suspect", Duration::from_secs(20), || {
        let mark = mark.clone();
        async move { mark.exists() }
    })
    .await?;
    c.masters[leader].kill9();
    let next = c.wait_leader(Some(leader), RECOVERY).await?;
    // The next leader never heard the report, yet counts the copy for
    // nothing: cs1 reports it suspect.
    wait_until(
        "the next leader to see cs1's copy as under verification",
        Duration::from_secs(10),
        || health_is(&c, next, "v0", "cs1", "verifying"),
    )
    .await
    .context("the suspect mark did not reach the next leader")?;
    c.masters[leader].start_again()?;
    // The held verification ends: the copy is found corrupt and moved
    // aside, its mark with it; the chunk is repaired elsewhere.
    let copy = c.cluster.data_dir("cs1").join("chunks").join("v0");
    wait_until("cs1's copy and mark to go", RECOVERY, || {
        let (copy, mark) = (copy.clone(), mark.clone());
        async move { !copy.exists() && !mark.exists() }
    })
    .await?;
    healed(&c, &known).await
}
