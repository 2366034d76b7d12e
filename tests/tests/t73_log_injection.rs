//! Log injection: request fields that end up in daemon logs (chunk ids,
//! server ids, copy sources, corruption details) carrying a newline and a
//! forged log line. Whatever the daemons answer, no forged line may appear
//! at the start of a line in any log — operators and log shippers read
//! those lines (a forged `grpc listening addr=` line would mislead anyone
//! looking for a daemon's address there).

use std::time::Duration;

use anyhow::Result;
use keel_proto::v1::{
    AllocateChunkRequest, CopyChunkRequest, DeleteChunkRequest, HeartbeatRequest,
    LocateChunkRequest, ReadChunkRequest, ReportCorruptionRequest, StatChunkRequest,
};
use keel_tests::chunks::{pattern, write};
use keel_tests::cs::{header, write_frames};
use keel_tests::faults::{Known, converge, placement_ok, quick_chunkserver, quick_master};
use keel_tests::{Cluster, CsOpts};

/// A value that ends a log line and forges the next one.
fn forged(n: usize) -> String {
    format!("x\nFORGED-{n} INFO keel: grpc listening addr=127.0.0.1:9")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_fields_cannot_forge_log_lines() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    for id in ["cs1", "cs2"] {
        c.add_chunkserver(id, CsOpts::default())?;
    }
    c.wait_alive(2).await?;
    let data = pattern(73, 64 << 10);
    write(&c.cs("cs1").url(), "good", &data, 1).await?;
    let known = [Known::of("good", &data, 1)];
    converge(
        "good placed",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || placement_ok(&c, &known),
    )
    .await?;
    let (murl, cs1, cs2) = (c.master_url(), c.cs("cs1").url(), c.cs("cs2").url());
    let mut m = quick_master(&murl).await?;
    let mut s = quick_chunkserver(&cs1).await?;
    let mut n = 0;
    let mut next = || {
        n += 1;
        forged(n)
    };

    // Answers do not matter here (t71 checks them); only the logs do.
    let _ = m
        .locate_chunk(LocateChunkRequest {
            chunk: next(),
            rack: Default::default(),
        })
        .await;
    let _ = m
        .allocate_chunk(AllocateChunkRequest {
            chunk: next(),
            size: 1,
            replication: 1,
            on: vec![],
        })
        .await;
    let _ = m
        .allocate_chunk(AllocateChunkRequest {
            chunk: "fresh".into(),
            size: 1,
            replication: 1,
            on: vec![next()],
        })
        .await;
    let _ = m
        .heartbeat(HeartbeatRequest {
            id: next(),
            address: cs1.clone(),
            full_report: true,
            ..Default::default()
        })
        .await;
    let _ = m
        .heartbeat(HeartbeatRequest {
            id: "cs9".into(),
            address: format!("{cs1}{}", next()),
            full_report: true,
            ..Default::default()
        })
        .await;
    let _ = m
        .report_corruption(ReportCorruptionRequest {
            chunk: next(),
            server: "cs1".into(),
            detail: next(),
        })
        .await;
    let _ = m
        .report_corruption(ReportCorruptionRequest {
            chunk: "good".into(),
            server: "cs2".into(),
            detail: next(),
        })
        .await;
    // A report about a real holder is logged with its detail.
    let _ = m
        .report_corruption(ReportCorruptionRequest {
            chunk: "good".into(),
            server: "cs1".into(),
            detail: next(),
        })
        .await;
    let _ = write_frames(
        &cs1,
        Some(header(&next(), b"data", 1)),
        vec![b"data".to_vec()],
    )
    .await;
    let _ = s.stat_chunk(StatChunkRequest { chunk: next() }).await;
    let _ = s
        .delete_chunk(DeleteChunkRequest {
            chunk: next(),
            term: 0,
            ..Default::default()
        })
        .await;
    let _ = keel_tests::cs::read_raw(&cs1, &next(), false).await;
    let _ = s
        .read_chunk(ReadChunkRequest {
            chunk: next(),
            migration: true,
        })
        .await;
    for (chunk, source_id, address) in [
        (next(), "cs2".to_owned(), cs2.clone()),
        ("nope".to_owned(), next(), cs2.clone()),
        (
            "nope".to_owned(),
            "cs2".to_owned(),
            format!("http://127.0.0.1:1/{}", next()),
        ),
        ("nope".to_owned(), "cs2".to_owned(), next()),
    ] {
        let req = CopyChunkRequest {
            chunk,
            source_id,
            source_address: address,
            ..Default::default()
        };
        let _ = s.copy_chunk(req).await;
    }

    let mut forged_lines = vec![];
    for d in c.master.iter().chain(c.chunkservers.values()) {
        for line in d.log_text().lines().filter(|l| l.starts_with("FORGED")) {
            forged_lines.push(format!("{}: {line}", d.name));
        }
    }
    assert!(
        forged_lines.is_empty(),
        "{} of {n} forged lines made it into the logs:\n{}",
        forged_lines.len(),
        forged_lines.join("\n")
    );
    Ok(())
}
