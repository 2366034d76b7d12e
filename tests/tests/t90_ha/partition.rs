//! The leader cut off from etcd (every master reaches etcd through a relay
//! that stalls one process's connections, see t75): it steps down before
//! its lease runs out (seen directly in etcd: the leader key it created is
//! deleted only after it stopped leading), so the two never lead at once;
//! the other master takes over; healing the link makes the old one a
//! standby.
//!
//! A replica found corrupt while no master leads (etcd down): the chunk
//! server keeps the report and the next leader takes it and replaces the copy.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use keel_proto::etcd::etcdserverpb::RangeRequest;
use keel_proto::etcd::etcdserverpb::kv_client::KvClient;
use keel_proto::v1::ListServersRequest;
use keel_tests::CsOpts;
use keel_tests::chunks::{read, rot};
use keel_tests::faults::{self, converge, quick_channel, quick_master};
use keel_tests::ha::{HaCluster, list_servers};

use super::{LEASE, RECOVERY, cluster, write_chunks};

/// Whether master `i` says it leads (false when it does not answer).
async fn leads(c: &HaCluster, i: usize) -> bool {
    list_servers(&c.masters[i].url())
        .await
        .is_some_and(|r| r.answered_by_leader)
}

/// Whether the leader key etcd holds is still the one created at `term`
/// (asked of etcd itself, not through the relay); true when etcd does not
/// answer, which the caller then asks again.
async fn key_held(etcd: &mut KvClient<tonic::transport::Channel>, term: u64) -> bool {
    let req = RangeRequest {
        key: b"/keel/leader".to_vec(),
        ..RangeRequest::default()
    };
    match etcd.range(req).await {
        Ok(r) => r
            .into_inner()
            .kvs
            .first()
            .is_some_and(|kv| u64::try_from(kv.create_revision) == Ok(term)),
        Err(_) => true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_from_etcd_steps_down_before_another_leads() -> Result<()> {
    let (mut c, relay) = HaCluster::start_behind_relay(2, &[]).await?;
    c.add_chunkserver("cs1", CsOpts::default())?;
    for i in 0..2 {
        c.wait_alive(i, 1).await?;
    }
    let old = c.wait_leader(None, RECOVERY).await?;
    let other = 1 - old;
    let pid = c.masters[old].pid().context("running")?;
    let term = list_servers(&c.masters[old].url())
        .await
        .context("the leader answers")?
        .term;
    let mut etcd = KvClient::new(quick_channel(&c.etcd.url()).await?);
    ensure!(key_held(&mut etcd, term).await, "the key is the leader's");

    let cut = Instant::now();
    relay.cut_from(pid);
    let (mut stepped_down, mut took_over, mut lease_gone) = (None, None, None);
    while (stepped_down.is_none() || took_over.is_none() || lease_gone.is_none())
        && cut.elapsed() < RECOVERY
    {
        // The masters first, then etcd: a leader seen leading after its
        // key was seen gone led past its lease, however slow the polls.
        let (a, b) = (leads(&c, old).await, leads(&c, other).await);
        ensure!(
            !(a && b),
            "two leaders at once, {:?} after the cut",
            cut.elapsed()
        );
        if let Some(gone) = lease_gone {
            ensure!(
                !a,
                "still leading {:?} after the cut, its key gone since {gone:?}",
                cut.elapsed()
            );
        }
        if !a && stepped_down.is_none() {
            stepped_down = Some(cut.elapsed());
        }
        if b && took_over.is_none() {
            took_over = Some(cut.elapsed());
        }
        if lease_gone.is_none() && !key_held(&mut etcd, term).await {
            lease_gone = Some(cut.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let down = stepped_down.context("the cut-off leader never stepped down")?;
    let over = took_over.context("no master took over")?;
    let gone = lease_gone.context("the cut-off leader's key never went")?;
    eprintln!(
        "cut from etcd: stepped down after {down:?}, its lease ran out after {gone:?}, other leads after {over:?}"
    );
    ensure!(
        down <= gone,
        "stepped down at {down:?}, after its lease ran out at {gone:?}"
    );
    ensure!(
        down < over,
        "stepped down at {down:?}, after the other led at {over:?}"
    );
    // Its last acknowledged keep-alive was sent before the cut, so its
    // deadline (3/4 of the lease after that) falls within 3/4 of the lease
    // after the cut (seen: about 1.5 s); the rest is for asking it on a
    // loaded machine. The order against etcd above is the guarantee.
    ensure!(
        down < LEASE + Duration::from_millis(500),
        "stepped down only after {down:?}"
    );
    ensure!(over >= LEASE / 2, "the other led after only {over:?}");

    relay.heal_from(pid);
    let url = c.masters[other].url();
    tokio::time::sleep(LEASE).await;
    ensure!(leads(&c, other).await, "the new leader keeps leading");
    ensure!(!leads(&c, old).await, "the healed master stands by");
    let mut m = quick_master(&c.masters[old].url()).await?;
    let r = m.list_servers(ListServersRequest {}).await?.into_inner();
    ensure!(r.leader == url, "the healed master names the leader: {r:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corruption_found_while_no_master_leads_reaches_the_next_leader() -> Result<()> {
    let mut c = cluster(2, &[], &["cs1", "cs2", "cs3"], "64MiB").await?;
    let known = write_chunks(&c, "r", 1, 256 << 10, &["cs1", "cs2"]).await?;
    let leader = c.leader().await.context("a leader")?;
    let url = c.masters[leader].url();
    let every = Duration::from_millis(100);
    converge("r0 placed", RECOVERY, every, || {
        faults::placement_ok_at(&c.cluster, &url, &known)
    })
    .await?;

    c.etcd.kill9();
    let since = Instant::now();
    while leads(&c, 0).await || leads(&c, 1).await {
        ensure!(
            since.elapsed() < LEASE * 2,
            "a master still leads without etcd"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rot(&c.cluster.data_dir("cs1").join("chunks").join("r0"))?;
    let err = read(&c.cluster.chunkservers["cs1"].url(), "r0")
        .await
        .expect_err("a rotted copy never reads whole");
    eprintln!("read of the rotted copy: {err:#}");
    // Both masters refuse the report now; it must wait for a leader.
    tokio::time::sleep(LEASE).await;
    c.etcd.start_again().await?;

    let next = c.wait_leader(None, RECOVERY).await?;
    let url = c.masters[next].url();
    converge("r0 whole on cs2 and cs3", RECOVERY, every, || async {
        faults::placement_ok_at(&c.cluster, &url, &known).await?;
        match faults::holders_on_disk(&c.cluster, "r0").as_slice() {
            [a, b] if a == "cs2" && b == "cs3" => Ok(()),
            other => Err(format!("r0 on {other:?}")),
        }
    })
    .await?;
    let (lost, bad) = faults::verify_bytes(&c.cluster, &known).await;
    ensure!(lost == 0 && bad.is_empty(), "lost {lost} bytes: {bad:?}");
    Ok(())
}
