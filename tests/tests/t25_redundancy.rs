//! Redundancy end to end, with real processes: every way a replica can be
//! lost ends with its chunk back at its factor, and a false corruption
//! report deletes nothing.
//!
//! - A disk wiped under the same server id: repaired at once (the master's
//!   `--re-replicate-after` is an hour here, so only the full report can
//!   trigger it).
//! - Every replica of a healthy chunk reported corrupt: each server verifies
//!   its copy, nothing is deleted.
//! - A chunk file removed by hand, a chunk file damaged while its server was
//!   down, a write that reached only one of three servers: all repaired.
//! - The master killed mid-repair: the restarted master finds the shortfall
//!   again from heartbeats alone and finishes.
//! - A corruption report racing the trim of an excess replica: the two
//!   copies left are whole ones, whichever way the race goes.
//! - An excess replica trimmed under the rack rule: the only copy in its
//!   rack stays even on the fullest server.
//! - A heartbeat built before a delete and delivered after it (replayed
//!   here with the server's own incarnation and an earlier sequence number):
//!   the deleted replica does not come back, and nothing is trimmed for it.

use std::time::Duration;

use anyhow::{Context, Result};
use keel_proto::v1::{
    ChunkReplica, ExplainChunkRequest, HeartbeatRequest, HeartbeatStamp, ListServersRequest,
    ReportCorruptionRequest, VerifyChunkRequest,
};
use keel_tests::chunks::{pattern, read, rot, write};
use keel_tests::master::{locate, status};
use keel_tests::{Cluster, CsOpts, cs, wait_until};

const NO_GRACE_REPAIR: &[&str] = &["--re-replicate-after", "1h"];

async fn cluster(servers: &[&str], master: &[&str], cs: CsOpts) -> Result<Cluster> {
    let mut c = Cluster::new()?;
    c.start_master(master)?;
    for s in servers {
        c.add_chunkserver(s, cs.clone())?;
    }
    c.wait_alive(servers.len()).await?;
    Ok(c)
}

/// Writes chunk `id` (factor `replication`) to each of `on`.
async fn put(
    c: &mut Cluster,
    id: &str,
    seed: u64,
    replication: u32,
    on: &[&str],
) -> Result<Vec<u8>> {
    let data = pattern(seed, 200_000 + seed as usize * 1000);
    for s in on {
        write(&c.cs(s).url(), id, &data, replication).await?;
    }
    Ok(data)
}

/// Servers holding a replica of `chunk` that the master sees alive.
async fn live_holders(url: &str, chunk: &str) -> Vec<String> {
    let replicas = locate(url, chunk).await.ok().flatten().unwrap_or_default();
    replicas
        .into_iter()
        .filter(|(_, alive)| *alive)
        .map(|(s, _)| s)
        .collect()
}

/// Waits until every chunk has exactly `n` live replicas, each of which its
/// server really holds (a restarted server is listed until it reports).
async fn wait_factor(c: &Cluster, chunks: &[&str], n: usize, timeout: Duration) -> Result<()> {
    let url = c.master_url();
    let urls: std::collections::BTreeMap<String, String> = c
        .chunkservers
        .iter()
        .map(|(id, d)| (id.clone(), d.url()))
        .collect();
    let (url, urls) = (&url, &urls);
    wait_until(
        &format!("{chunks:?} at {n} live replicas"),
        timeout,
        || async move {
            for ch in chunks {
                let held = live_holders(url, ch).await;
                if held.len() != n {
                    return false;
                }
                for s in held {
                    if cs::stat(&urls[&s], ch).await.is_err() {
                        return false;
                    }
                }
            }
            true
        },
    )
    .await
}

/// Every live holder serves the same bytes.
async fn check_bytes(c: &mut Cluster, chunk: &str, data: &[u8]) -> Result<()> {
    let url = c.master_url();
    for s in live_holders(&url, chunk).await {
        let got = read(&c.cs(&s).url(), chunk)
            .await
            .with_context(|| format!("{chunk} on {s}"))?;
        anyhow::ensure!(got == data, "{chunk} on {s} differs");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_disk_is_repaired_without_waiting_for_the_grace_period() -> Result<()> {
    let mut c = cluster(&["cs1", "cs2", "cs3"], NO_GRACE_REPAIR, CsOpts::default()).await?;
    let ids: Vec<String> = (0..6).map(|i| format!("w{i}")).collect();
    let mut data = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        data.push(put(&mut c, id, i as u64, 2, &["cs1", "cs3"]).await?);
    }
    let names: Vec<&str> = ids.iter().map(String::as_str).collect();
    wait_factor(&c, &names, 2, Duration::from_secs(20)).await?;

    // A replaced disk: same id, empty data dir.
    c.cs("cs3").stop();
    std::fs::remove_dir_all(c.data_dir("cs3"))?;
    c.cs("cs3").start_again()?;

    wait_factor(&c, &names, 2, Duration::from_secs(30)).await?;
    for (id, d) in ids.iter().zip(&data) {
        check_bytes(&mut c, id, d).await?;
    }
    wait_until("the counts to settle", Duration::from_secs(10), || async {
        status(&c.master_url())
            .await
            .is_ok_and(|s| s.under_replicated == 0 && s.repairs_done >= 6)
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn false_reports_on_every_replica_delete_nothing() -> Result<()> {
    let mut c = cluster(&["cs1", "cs2", "cs3"], &[], CsOpts::default()).await?;
    let data = put(&mut c, "f", 7, 3, &["cs1", "cs2", "cs3"]).await?;
    wait_factor(&c, &["f"], 3, Duration::from_secs(20)).await?;

    let mut m = c.master_client().await?;
    for s in ["cs1", "cs2", "cs3"] {
        m.report_corruption(ReportCorruptionRequest {
            chunk: "f".into(),
            server: s.into(),
            detail: "a client says so".into(),
        })
        .await?;
    }
    // Each server rereads its copy and finds it whole.
    wait_until(
        "every replica verified whole",
        Duration::from_secs(20),
        || {
            let mut m = m.clone();
            async move {
                let Ok(e) = m
                    .explain_chunk(ExplainChunkRequest { chunk: "f".into() })
                    .await
                else {
                    return false;
                };
                let e = e.into_inner();
                e.jobs.is_empty()
                    && e.replicas.len() == 3
                    && e.replicas.iter().all(|r| r.health == "whole" && r.counted)
            }
        },
    )
    .await?;
    for s in ["cs1", "cs2", "cs3"] {
        let path = c.data_dir(s).join("chunks").join("f");
        anyhow::ensure!(path.exists(), "{} is gone", path.display());
    }
    check_bytes(&mut c, "f", &data).await?;
    anyhow::ensure!(status(&c.master_url()).await?.under_replicated == 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_damaged_and_partial_replicas_are_repaired() -> Result<()> {
    let cs = CsOpts {
        extra: vec!["--scrub-interval".into(), "500ms".into()],
        ..CsOpts::default()
    };
    let mut c = cluster(&["cs1", "cs2", "cs3", "cs4"], NO_GRACE_REPAIR, cs).await?;
    let url = c.master_url();
    let v = put(&mut c, "v", 1, 2, &["cs1", "cs2"]).await?;
    let d = put(&mut c, "d", 2, 2, &["cs1", "cs2"]).await?;
    wait_factor(&c, &["v", "d"], 2, Duration::from_secs(20)).await?;

    // Removed by hand: the scrub notices, the master repairs.
    std::fs::remove_file(c.data_dir("cs1").join("chunks").join("v"))?;
    // Damaged while its server was down (cut short: the start-up scan refuses it).
    c.cs("cs2").stop();
    let path = c.data_dir("cs2").join("chunks").join("d");
    let len = std::fs::metadata(&path)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)?
        .set_len(len - 1)?;
    c.cs("cs2").start_again()?;
    // A write that reached one of its three servers.
    let p = put(&mut c, "p", 3, 3, &["cs4"]).await?;

    wait_factor(&c, &["v", "d"], 2, Duration::from_secs(30)).await?;
    wait_factor(&c, &["p"], 3, Duration::from_secs(30)).await?;
    anyhow::ensure!(
        !live_holders(&url, "v").await.contains(&"cs1".to_string()) || {
            c.data_dir("cs1").join("chunks").join("v").exists()
        }
    );
    check_bytes(&mut c, "v", &v).await?;
    check_bytes(&mut c, "d", &d).await?;
    check_bytes(&mut c, "p", &p).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_mid_repair_finds_the_shortfall_again() -> Result<()> {
    // Slow copies, so the master dies while some are still to do.
    let cs = CsOpts {
        bandwidth: Some("1MiB".into()),
        ..CsOpts::default()
    };
    let mut c = cluster(&["cs1", "cs2", "cs3"], NO_GRACE_REPAIR, cs).await?;
    let ids: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    let mut data = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        data.push(put(&mut c, id, 10 + i as u64, 2, &["cs1", "cs2"]).await?);
    }
    let names: Vec<&str> = ids.iter().map(String::as_str).collect();
    wait_factor(&c, &names, 2, Duration::from_secs(20)).await?;

    c.cs("cs2").stop();
    std::fs::remove_dir_all(c.data_dir("cs2"))?;
    c.cs("cs2").start_again()?;
    wait_until("a first repair", Duration::from_secs(30), || async {
        status(&c.master_url())
            .await
            .is_ok_and(|s| s.repairs_done >= 1)
    })
    .await?;
    let master = c.master.as_mut().context("master")?;
    master.kill9();
    master.start_again()?;
    c.wait_alive(3).await?;

    wait_factor(&c, &names, 2, Duration::from_secs(60)).await?;
    for (id, d) in ids.iter().zip(&data) {
        check_bytes(&mut c, id, d).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_racing_a_trim_leaves_the_whole_replicas() -> Result<()> {
    let servers = ["cs1", "cs2", "cs3"];
    let mut c = cluster(
        &servers,
        &["--maintenance-interval", "100ms"],
        CsOpts::default(),
    )
    .await?;
    let url = c.master_url();
    let mut m = c.master_client().await?;
    for (round, victim) in servers.into_iter().enumerate() {
        // Factor 2 on three servers: one replica is excess and a trim is
        // being decided while one copy rots and a client reports it.
        let id = format!("t{round}");
        let data = put(&mut c, &id, round as u64, 2, &servers).await?;
        let (url_ref, id_ref) = (&url, &id);
        wait_until(
            "the master to know the chunk",
            Duration::from_secs(10),
            || async move { !live_holders(url_ref, id_ref).await.is_empty() },
        )
        .await?;
        // The trim may have taken the victim's copy already: then the report
        // names a copy that is gone, which must change nothing either.
        let file = c.data_dir(victim).join("chunks").join(&id);
        if file.exists() {
            rot(&file)?;
        }
        let report = m
            .report_corruption(ReportCorruptionRequest {
                chunk: id.clone(),
                server: victim.into(),
                detail: "a read failed its checksum".into(),
            })
            .await;
        // Refused only when the trim took the victim's copy first.
        if let Err(s) = report {
            anyhow::ensure!(s.code() == tonic::Code::NotFound, "report refused: {s}");
        }
        let (url, id_ref) = (&url, &id);
        wait_until(
            &format!("{id} settled on two whole replicas without {victim}"),
            Duration::from_secs(30),
            || {
                let mut m = m.clone();
                async move {
                    let held = live_holders(url, id_ref).await;
                    let quiet = m
                        .explain_chunk(ExplainChunkRequest {
                            chunk: id_ref.clone(),
                        })
                        .await
                        .is_ok_and(|e| e.into_inner().jobs.is_empty());
                    quiet && held.len() == 2 && !held.iter().any(|s| s == victim)
                }
            },
        )
        .await?;
        check_bytes(&mut c, &id, &data).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_built_before_a_delete_cannot_bring_the_replica_back() -> Result<()> {
    let servers = ["cs1", "cs2"];
    let mut c = cluster(
        &servers,
        &["--maintenance-interval", "100ms"],
        CsOpts::default(),
    )
    .await?;
    let url = c.master_url();
    // Factor 1 on both servers: the master trims one copy.
    let data = put(&mut c, "s", 1, 1, &servers).await?;
    let (u, id) = (&url, "s");
    wait_until(
        "the excess copy trimmed",
        Duration::from_secs(20),
        || async move { live_holders(u, id).await.len() == 1 },
    )
    .await?;
    let survivor = live_holders(&url, "s").await.remove(0);
    let victim = servers
        .into_iter()
        .find(|s| *s != survivor)
        .context("two servers")?;
    anyhow::ensure!(
        cs::stat(&c.cs(victim).url(), "s").await.is_err(),
        "the trim deleted it"
    );

    // The victim's incarnation, and a chunk it keeps, from its own answer.
    let keep = put(&mut c, "keep", 2, 1, &[victim]).await?;
    let mut vc = keel_tests::chunkserver_client(&c.cs(victim).url()).await?;
    let verified = vc
        .verify_chunk(VerifyChunkRequest {
            chunk: "keep".into(),
        })
        .await?
        .into_inner();
    let stamp = verified.stamp.context("a stamped answer")?;
    anyhow::ensure!(
        stamp.seq > 1,
        "the writes and the delete advanced the sequence"
    );

    // A full report from before the delete (sequence 1 of the same run)
    // still lists `s`: delivered late, it must change nothing.
    let mut m = c.master_client().await?;
    let me = m
        .list_servers(ListServersRequest {})
        .await?
        .into_inner()
        .servers
        .into_iter()
        .find(|s| s.id == victim)
        .context("victim listed")?;
    let header = cs::stat(&c.cs(&survivor).url(), "s")
        .await?
        .header
        .context("a header")?;
    let replica = |chunk: &str, size: u64, crc32c: u32| ChunkReplica {
        chunk: chunk.into(),
        size,
        crc32c,
        replication: 1,
        reads: 0,
        ..Default::default()
    };
    let keep_header = verified.header.context("a header")?;
    m.heartbeat(HeartbeatRequest {
        id: victim.into(),
        address: me.address,
        capacity_bytes: me.capacity_bytes,
        used_bytes: header.size + keep_header.size,
        full_report: true,
        chunks: vec![
            replica("s", header.size, header.crc32c),
            replica("keep", keep_header.size, keep_header.crc32c),
        ],
        chunk_count: 2,
        stamp: Some(HeartbeatStamp {
            incarnation: stamp.incarnation,
            seq: 1,
        }),
        ..Default::default()
    })
    .await?;

    // Through many maintenance passes: `s` stays on the survivor alone.
    for _ in 0..20 {
        let held = live_holders(&url, "s").await;
        anyhow::ensure!(held == [survivor.clone()], "s is listed on {held:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(read(&c.cs(&survivor).url(), "s").await? == data);
    anyhow::ensure!(read(&c.cs(victim).url(), "keep").await? == keep);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trim_never_takes_the_only_copy_in_a_rack() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&["--maintenance-interval", "100ms"])?;
    for (s, rack) in [("cs1", "r1"), ("cs2", "r1"), ("cs3", "r2")] {
        let opts = CsOpts {
            rack: Some(rack.into()),
            ..CsOpts::default()
        };
        c.add_chunkserver(s, opts)?;
    }
    c.wait_alive(3).await?;
    // cs3 is the fullest, so a trim by utilization alone would pick it.
    for i in 0..4 {
        put(&mut c, &format!("filler{i}"), 50 + i, 1, &["cs3"]).await?;
    }
    // Factor 2 on all three, as an interrupted move within r1 leaves it.
    let ids: Vec<String> = (0..4).map(|i| format!("r{i}")).collect();
    let mut data = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        data.push(put(&mut c, id, i as u64, 2, &["cs1", "cs2", "cs3"]).await?);
    }
    let names: Vec<&str> = ids.iter().map(String::as_str).collect();
    wait_factor(&c, &names, 2, Duration::from_secs(20)).await?;
    let url = c.master_url();
    for (id, d) in ids.iter().zip(&data) {
        let held = live_holders(&url, id).await;
        anyhow::ensure!(
            held.iter().any(|s| s == "cs3"),
            "{id}: r2's only copy was trimmed; left on {held:?}"
        );
        check_bytes(&mut c, id, d).await?;
    }
    Ok(())
}
