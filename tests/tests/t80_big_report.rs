//! Big servers register, and the master bounds what one client costs (real
//! master process, a test client playing the chunk servers): a full report
//! of 5,000,000 chunks sent in pages registers within a bounded time and
//! memory (no page is slow: the master records each page as it comes) and
//! the server stays alive; a page lost in the middle makes the
//! master ask again and forget nothing; a report with bad entries registers
//! every good one, names the bad ones and logs each; new server ids beyond
//! `--max-servers` and allocations beyond `--max-pending-allocations` get
//! RESOURCE_EXHAUSTED.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use keel_proto::v1::master_client::MasterClient;
use keel_proto::v1::{
    AllocateChunkRequest, ChunkReplica, HeartbeatRequest, HeartbeatResponse, ListServersRequest,
    LocateChunkRequest, ServerInfo, ServerState,
};
use keel_tests::Cluster;
use tonic::Code;
use tonic::transport::Channel;

/// Chunks of the big server.
const BIG: u64 = 5_000_000;
/// Replicas per page, as a chunk server pages its reports.
const PAGE: u64 = 100_000;

fn replica(chunk: String, i: u64) -> ChunkReplica {
    ChunkReplica {
        chunk,
        size: 1000,
        crc32c: i as u32,
        replication: 1,
        reads: 0,
        ..Default::default()
    }
}

fn report(id: &str, chunks: Vec<ChunkReplica>, chunk_count: u64) -> HeartbeatRequest {
    HeartbeatRequest {
        id: id.into(),
        address: "http://127.0.0.1:1".into(),
        capacity_bytes: 1 << 50,
        used_bytes: chunk_count * 1000,
        full_report: true,
        chunks,
        chunk_count,
        ..Default::default()
    }
}

fn paged(mut hb: HeartbeatRequest, report_id: u64, page: u32, last: bool) -> HeartbeatRequest {
    hb.report_id = report_id;
    hb.page = page;
    hb.last_page = last;
    hb
}

fn delta(id: &str, chunk_count: u64) -> HeartbeatRequest {
    HeartbeatRequest {
        full_report: false,
        ..report(id, vec![], chunk_count)
    }
}

async fn beat(m: &mut MasterClient<Channel>, hb: HeartbeatRequest) -> Result<HeartbeatResponse> {
    let mut req = tonic::Request::new(hb);
    req.set_timeout(Duration::from_secs(120));
    Ok(m.heartbeat(req).await?.into_inner())
}

async fn server(m: &mut MasterClient<Channel>, id: &str) -> Result<ServerInfo> {
    let servers = m
        .list_servers(ListServersRequest {})
        .await?
        .into_inner()
        .servers;
    servers
        .into_iter()
        .find(|s| s.id == id)
        .ok_or_else(|| anyhow::anyhow!("{id} is not listed"))
}

fn alive(s: &ServerInfo) -> bool {
    s.state == ServerState::Alive as i32
}

/// Peak resident memory of a process, in MiB (Linux).
fn peak_rss_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_million_chunks_register_and_stay_alive() -> Result<()> {
    let mut cluster = Cluster::new()?;
    // A page takes milliseconds in a release build, but up to seconds in
    // this dev build on a busy machine (one page grows the master's chunk
    // map, rehashing millions of entries): well above the harness's 3 s.
    cluster.start_master(&["--heartbeat-timeout", "30s"])?;
    let pid = cluster.master.as_ref().and_then(|m| m.pid()).unwrap_or(0);
    let mut m = cluster.master_client().await?;

    let started = Instant::now();
    let pages = (BIG / PAGE) as u32;
    let mut slowest = Duration::ZERO;
    for p in 0..pages {
        let first = u64::from(p) * PAGE;
        let chunks = (first..first + PAGE)
            .map(|i| replica(format!("chunk-{i:08}"), i))
            .collect();
        let t = Instant::now();
        let last = p + 1 == pages;
        let r = beat(&mut m, paged(report("big", chunks, BIG), 42, p, last)).await?;
        ensure!(
            !r.send_full_report && r.refused.is_empty(),
            "page {p}: {r:?}"
        );
        slowest = slowest.max(t.elapsed());
        if !last && p % 10 == 0 {
            // Each page counts as a heartbeat, and its replicas are recorded.
            let s = server(&mut m, "big").await?;
            ensure!(
                alive(&s) && s.chunks == first + PAGE,
                "after page {p}: {s:?}"
            );
        }
    }
    let took = started.elapsed();
    let s = server(&mut m, "big").await?;
    assert_eq!(s.chunks, BIG);
    assert!(alive(&s));
    let rss = peak_rss_mib(pid);
    eprintln!(
        "{BIG} chunks in {pages} pages registered in {took:?} (slowest page {slowest:?}); master peak RSS {rss:?} MiB"
    );
    assert!(took < Duration::from_secs(120), "{took:?}");
    if let Some(rss) = rss {
        assert!(rss < 4096, "master peak RSS {rss} MiB");
    }
    let loc = m
        .locate_chunk(LocateChunkRequest {
            chunk: "chunk-04999999".into(),
            rack: Default::default(),
        })
        .await?
        .into_inner();
    assert_eq!(loc.size, 1000);

    // Deltas keep it alive without asking for the whole report again.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let r = beat(&mut m, delta("big", BIG)).await?;
        assert!(!r.send_full_report);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let s = server(&mut m, "big").await?;
    assert!(alive(&s) && s.chunks == BIG, "{s:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_and_bad_reports_forget_nothing() -> Result<()> {
    let mut cluster = Cluster::new()?;
    cluster.start_master(&[])?;
    let mut m = cluster.master_client().await?;
    let chunks = |ids: &[&str]| -> Vec<ChunkReplica> {
        ids.iter().map(|c| replica((*c).into(), 1)).collect()
    };

    // A page lost in the middle: the master asks again and keeps what it had.
    beat(&mut m, report("gap", chunks(&["g1", "g2", "g3"]), 3)).await?;
    let r = beat(
        &mut m,
        paged(report("gap", chunks(&["g1"]), 2), 7, 0, false),
    )
    .await?;
    assert!(!r.send_full_report);
    let r = beat(&mut m, paged(report("gap", chunks(&["g4"]), 2), 7, 2, true)).await?;
    assert!(
        r.send_full_report,
        "a lost page must make the master ask again"
    );
    let s = server(&mut m, "gap").await?;
    assert!(alive(&s) && s.chunks == 3, "{s:?}");
    let missing = m
        .locate_chunk(LocateChunkRequest {
            chunk: "g4".into(),
            rack: Default::default(),
        })
        .await
        .expect_err("g4 came on a broken report");
    assert_eq!(missing.code(), Code::NotFound);
    // The whole report, again: now it replaces the set.
    beat(
        &mut m,
        paged(report("gap", chunks(&["g1"]), 2), 8, 0, false),
    )
    .await?;
    let r = beat(&mut m, paged(report("gap", chunks(&["g4"]), 2), 8, 1, true)).await?;
    assert!(!r.send_full_report);
    assert_eq!(server(&mut m, "gap").await?.chunks, 2);

    // Bad entries are refused alone; the good ones register.
    let mut good: Vec<ChunkReplica> = (0..1000).map(|i| replica(format!("o{i}"), i)).collect();
    good.push(replica("no/slash".into(), 0));
    let mut huge = replica("huge".into(), 0);
    huge.size = u64::MAX;
    good.push(huge);
    let r = beat(&mut m, report("odd", good, 1002)).await?;
    assert!(!r.send_full_report);
    let names: Vec<&str> = r.refused.iter().map(|x| x.chunk.as_str()).collect();
    assert_eq!(names, ["no/slash", "huge"]);
    assert!(r.refused[0].reason.contains("chunk id"), "{:?}", r.refused);
    assert!(
        r.refused[1].reason.contains("largest supported"),
        "{:?}",
        r.refused
    );
    let s = server(&mut m, "odd").await?;
    assert!(alive(&s) && s.chunks == 1000, "{s:?}");
    // The server still counts them: its deltas add up all the same.
    for _ in 0..3 {
        let r = beat(&mut m, delta("odd", 1002)).await?;
        assert!(!r.send_full_report, "a delta asked for a full report again");
    }
    let log = cluster
        .master
        .as_ref()
        .map(|d| d.log_text())
        .unwrap_or_default();
    let line = log
        .lines()
        .find(|l| l.contains("heartbeat entry refused") && l.contains("no/slash"))
        .unwrap_or_else(|| panic!("no log line for the bad entry:\n{log}"));
    assert!(line.contains("odd") && line.contains("chunk id"), "{line}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_ids_and_allocations_are_bounded() -> Result<()> {
    let mut cluster = Cluster::new()?;
    cluster.start_master(&["--max-servers", "3", "--max-pending-allocations", "5"])?;
    let mut m = cluster.master_client().await?;
    for id in ["s1", "s2", "s3"] {
        beat(&mut m, report(id, vec![], 0)).await?;
    }
    let e = m
        .heartbeat(report("s4", vec![], 0))
        .await
        .expect_err("a fourth id");
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    assert!(e.message().contains("--max-servers"), "{}", e.message());
    // Known ids go on.
    beat(&mut m, report("s1", vec![], 0)).await?;
    let listed = m
        .list_servers(ListServersRequest {})
        .await?
        .into_inner()
        .servers;
    assert_eq!(listed.len(), 3);

    let alloc = |chunk: &str| AllocateChunkRequest {
        chunk: chunk.into(),
        size: 1 << 20,
        replication: 1,
        on: vec![],
    };
    for i in 0..5 {
        m.allocate_chunk(alloc(&format!("a{i}"))).await?;
    }
    let e = m
        .allocate_chunk(alloc("a5"))
        .await
        .expect_err("a sixth allocation");
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    assert!(
        e.message().contains("--max-pending-allocations"),
        "{}",
        e.message()
    );
    // Asking again for a pending id replaces it rather than adding one.
    m.allocate_chunk(alloc("a0")).await?;
    Ok(())
}
