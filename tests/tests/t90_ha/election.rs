//! One leader; standbys answer reads from their own view and refuse changes
//! with the leader's address; `/readyz` and the leader metrics; keelctl finds
//! the leader in a `--master` list; the pause lives in etcd, standbys report
//! it, and it survives a failover.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use keel_proto::v1::{AllocateChunkRequest, ListServersRequest, LocateChunkRequest};
use keel_tests::faults::quick_master;
use keel_tests::keelctl::run as keelctl;
use keel_tests::master::{http_get, metric_of};
use keel_tests::wait_until;

use super::{HEARTBEAT, LEASE, SLACK, cluster, status, write_chunks};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_standbys_that_read_and_redirect() -> Result<()> {
    let c = cluster(2, &[], &["cs1", "cs2", "cs3"], "64MiB").await?;
    let leader = c.leader().await.context("a leader")?;
    let standby = 1 - leader;
    let (lurl, surl) = (c.masters[leader].url(), c.masters[standby].url());
    let known = write_chunks(&c, "e", 1, 10_000, &["cs1", "cs2"]).await?;

    // The standby's own view answers reads.
    let mut s = quick_master(&surl).await?;
    wait_until("the standby locates e0", Duration::from_secs(10), || {
        let mut s = s.clone();
        async move {
            let req = LocateChunkRequest {
                chunk: "e0".into(),
                rack: Default::default(),
            };
            s.locate_chunk(req)
                .await
                .is_ok_and(|r| r.into_inner().replicas.len() == 2)
        }
    })
    .await?;
    let list = s.list_servers(ListServersRequest {}).await?.into_inner();
    ensure!(!list.answered_by_leader && list.leader == lurl, "{list:?}");
    ensure!(list.term > 0, "a term: {list:?}");

    // A change is refused with the leader's address.
    let refused = s
        .allocate_chunk(AllocateChunkRequest {
            chunk: "new".into(),
            size: 10,
            replication: 1,
            on: vec![],
        })
        .await
        .expect_err("a standby places nothing");
    ensure!(
        refused.code() == tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    let header = refused
        .metadata()
        .get("keel-leader")
        .and_then(|v| v.to_str().ok());
    ensure!(header == Some(lurl.as_str()), "{refused:?}");
    let mut l = quick_master(&lurl).await?;
    l.allocate_chunk(AllocateChunkRequest {
        chunk: "new".into(),
        size: 10,
        replication: 1,
        on: vec![],
    })
    .await?;

    // Health and metrics.
    for (i, is_leader) in [(leader, 1.0), (standby, 0.0)] {
        let http = c.masters[i].http_addr.context("http address")?;
        let (code, body) = http_get(http, "/readyz").await?;
        ensure!(code == 200, "/readyz of master {i}: {code} {body}");
        let m = metric_of(http, "keel_master_is_leader").await?;
        ensure!(
            m == Some(is_leader),
            "keel_master_is_leader of master {i}: {m:?}"
        );
        let t = metric_of(http, "keel_master_term").await?;
        ensure!(
            t == Some(list.term as f64),
            "keel_master_term of master {i}: {t:?}"
        );
    }

    // keelctl, given the standby first, finds the leader and names it.
    let both = format!("{surl},{lurl}");
    let (code, out, err) = keelctl(&both, &["servers"])?;
    ensure!(code == 0, "keelctl servers: {err}");
    ensure!(out.contains(&format!("leader: {lurl}")), "{out}");
    let (code, _, err) = keelctl(&both, &["rebalance", "pause"])?;
    ensure!(code == 0, "keelctl rebalance pause through the list: {err}");
    drop(known);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pause_lives_in_etcd_and_survives_a_failover() -> Result<()> {
    let mut c = cluster(2, &[], &["cs1", "cs2"], "64MiB").await?;
    let leader = c.leader().await.context("a leader")?;
    let (code, _, err) = keelctl(&c.master_list(), &["rebalance", "pause"])?;
    ensure!(code == 0, "pause: {err}");
    ensure!(status(&c, leader).await?.paused, "the leader is paused");
    // A standby runs no queue: it reports the pause etcd keeps (as last
    // read, when etcd is slow to answer on a loaded machine).
    let leader_url = c.masters[leader].url();
    wait_until(
        "the standby to report the leader's pause",
        SLACK,
        || async {
            status(&c, 1 - leader)
                .await
                .is_ok_and(|s| s.paused && !s.answered_by_leader && s.leader == leader_url)
        },
    )
    .await?;
    let (code, out, err) = keelctl(&c.masters[1 - leader].url(), &["rebalance", "status"])?;
    ensure!(code == 0, "status on the standby: {err}");
    ensure!(
        out.starts_with("balancer paused") && out.contains("the leader runs the move queue"),
        "{out}"
    );

    let killed = std::time::Instant::now();
    c.masters[leader].kill9();
    // At once, while the standby still names the dead leader: keelctl
    // waits through the election and drains on the new leader.
    let (code, out, err) = keelctl(&c.master_list(), &["server", "drain", "cs2", "--json"])?;
    let drained_after = killed.elapsed();
    ensure!(code == 0, "a drain during the election: {err}");
    ensure!(out.contains("draining"), "{out}");
    ensure!(
        drained_after <= LEASE + HEARTBEAT + SLACK,
        "the drain waited {drained_after:?}"
    );
    let next = c
        .wait_leader(Some(leader), LEASE + HEARTBEAT + SLACK)
        .await?;
    let took = killed.elapsed();
    let (code, _, err) = keelctl(&c.master_list(), &["server", "undrain", "cs2"])?;
    ensure!(code == 0, "undrain: {err}");
    ensure!(
        status(&c, next).await?.paused,
        "the new leader loaded the pause"
    );
    eprintln!("leader killed -> new leader in {took:?} (lease {LEASE:?})");

    // keelctl, with the dead master first in the list, reaches the new one.
    let (code, out, err) = keelctl(&c.master_list(), &["rebalance", "resume"])?;
    ensure!(code == 0, "resume: {err}");
    ensure!(out.contains("resumed"), "{out}");
    ensure!(!status(&c, next).await?.paused, "resumed");
    c.masters[leader].start_again()?;
    c.wait_alive(leader, 2).await?;
    let s = status(&c, leader).await?;
    ensure!(
        !s.answered_by_leader && s.leader == c.masters[next].url(),
        "{s:?}"
    );
    Ok(())
}
