//! Client load during a rebalance: three chunk servers are loaded unevenly
//! straight to disk while the balancer is paused, two empty servers join,
//! and eight clients read and write without pause — reads of random known
//! chunks through a location cache, writes through `AllocateChunk` to every
//! replica — while the background balancer (`--balance-interval 1s`, a
//! migration bandwidth low enough that moves run most of the time) evens the
//! cluster out. The load runs 60 s (`KEEL_LOAD_SECS`). No read may fail, no
//! write may fail, and every acknowledged chunk must read back whole from
//! every replica at its factor afterwards; the queue ends idle with no
//! failed move. The test also asserts that the rebalance really overlapped
//! the load: moves finished inside the window and were running in at least
//! half of the once-a-second status polls. Latency is printed, not asserted.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keel_proto::v1::{RebalancePauseRequest, RebalanceResumeRequest, RebalanceStatusRequest};
use keel_tests::faults::Rng;
use keel_tests::load::{self, Chunk, Load, LoadOpts, Poll, Watch};
use keel_tests::master::{balanced_and_idle, wait_used};
use keel_tests::{Cluster, CsOpts, master_client, wait_until};

const MIB: usize = 1 << 20;
const KIB: usize = 1 << 10;

/// Capacity of every chunk server.
const CAPACITY: &str = "400MiB";
/// `--migrate-bandwidth` of every chunk server: with two targets taking at
/// most this much each, the preloaded imbalance takes about a minute to move.
const BANDWIDTH: &str = "2MiB";
/// MiB preloaded with one replica on each of the first three servers.
const LAYOUT: [(&str, usize); 3] = [("cs1", 240), ("cs2", 200), ("cs3", 50)];
/// MiB preloaded with two replicas, on cs1 and cs2.
const PAIRED_MIB: usize = 20;
/// The servers that join empty.
const JOINING: [&str; 2] = ["cs4", "cs5"];

/// Chunks of random size (64 KiB–1 MiB) adding up to at least `mib` MiB.
fn chunks_of(rng: &mut Rng, prefix: &str, mib: usize, replication: u32) -> Vec<Chunk> {
    let (mut out, mut bytes) = (vec![], 0);
    while bytes < mib * MIB {
        let len = rng.range(64 * KIB as u64, MIB as u64 + 1) as usize;
        let id = format!("{prefix}-{:04}", out.len());
        out.push(Chunk::new(&id, rng.next_u64(), len, replication));
        bytes += len;
    }
    out
}

/// Writes the uneven layout straight to the first three servers.
async fn preload(c: &Cluster) -> Result<Vec<Chunk>> {
    let mut rng = Rng::new(76);
    let url = |id: &str| c.chunkservers[id].url();
    let mut layout = vec![];
    for (server, mib) in LAYOUT {
        for chunk in chunks_of(&mut rng, server, mib, 1) {
            layout.push((chunk, vec![url(server)]));
        }
    }
    for chunk in chunks_of(&mut rng, "pair", PAIRED_MIB, 2) {
        layout.push((chunk, vec![url("cs1"), url("cs2")]));
    }
    load::preload(layout).await
}

/// How long the clients run.
fn load_secs() -> u64 {
    std::env::var("KEEL_LOAD_SECS").ok().map_or(60, |s| {
        s.trim().parse().expect("KEEL_LOAD_SECS is a number")
    })
}

/// Starts the cluster, preloads it and lets the empty servers join, with the
/// balancer paused throughout.
async fn imbalanced_cluster() -> Result<(Cluster, Vec<Chunk>)> {
    let mut c = Cluster::new()?;
    c.start_master(&["--balance-interval", "1s", "--threshold-pct", "5"])?;
    let url = c.master_url();
    master_client(&url)
        .await?
        .rebalance_pause(RebalancePauseRequest {})
        .await?;
    let opts = CsOpts {
        capacity: CAPACITY.into(),
        bandwidth: Some(BANDWIDTH.into()),
        ..CsOpts::default()
    };
    for (id, _) in LAYOUT {
        c.add_chunkserver(id, opts.clone())?;
    }
    c.wait_alive(LAYOUT.len()).await?;
    let chunks = preload(&c).await?;
    let total: u64 = chunks
        .iter()
        .map(|k| k.len as u64 * u64::from(k.replication))
        .sum();
    wait_used(&url, total, Duration::from_secs(30)).await?;
    for id in JOINING {
        c.add_chunkserver(id, opts.clone())?;
    }
    c.wait_alive(LAYOUT.len() + JOINING.len()).await?;
    Ok((c, chunks))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_clients_read_and_write_through_a_rebalance() -> Result<()> {
    let (c, chunks) = imbalanced_cluster().await?;
    let url = c.master_url();
    let mut m = master_client(&url).await?;
    let watch = Watch::start(&url, Duration::from_secs(1));
    let opts = LoadOpts {
        clients: 8,
        write_one_in: 8,
        sizes: (64 * KIB, 256 * KIB),
        replication: 2,
        ops_per_sec: 10.0,
        seed: 76,
        prefix: "load".into(),
    };
    let mut clients = Load::start(&url, opts, chunks);
    wait_until("the clients to read", Duration::from_secs(20), || {
        let n = clients.report().reads;
        async move { n >= 8 }
    })
    .await?;

    let window = Duration::from_secs(load_secs());
    let start = Instant::now();
    m.rebalance_resume(RebalanceResumeRequest {}).await?;
    tokio::time::sleep(window).await;
    clients.stop().await;
    let end = Instant::now();
    let report = clients.report();
    wait_until(
        "all servers in the band, queue idle",
        Duration::from_secs(120),
        || async {
            let Ok(mut m) = master_client(&url).await else {
                return false;
            };
            balanced_and_idle(&mut m).await.is_some()
        },
    )
    .await?;
    let after = start.elapsed();
    let verified = clients.verify_all(Duration::from_secs(30)).await?;

    let polls: Vec<Poll> = watch.polls();
    let during: Vec<&Poll> = polls
        .iter()
        .filter(|p| p.at >= start && p.at <= end)
        .collect();
    let moving = during.iter().filter(|p| p.running > 0).count();
    let (first, last) = (
        during.first().context("no status poll in the window")?,
        during.last().context("no status poll in the window")?,
    );
    let spans = load::moving_spans(&polls);
    let lat = clients.percentiles(|s| load::within(&spans, s.at));
    eprintln!(
        "{} reads ({} located again), {} writes in {window:?}; {} moves ({} MiB) in the window, \
         running in {moving} of {} polls; balanced {after:.0?} after resume; \
         reads while moving: {} p50 {:.1?} p99 {:.1?} max {:.1?}; {} chunks verified",
        report.reads,
        report.relocated,
        report.writes,
        last.done - first.done,
        (last.bytes_moved - first.bytes_moved) / MIB as u64,
        during.len(),
        lat.count,
        lat.p50,
        lat.p99,
        lat.max,
        verified.chunks,
    );

    assert!(
        report.failed_reads.is_empty(),
        "{} failed reads: {:?}",
        report.failed_reads.len(),
        report.failed_reads
    );
    assert!(
        report.failed_writes.is_empty(),
        "{} failed writes: {:?}",
        report.failed_writes.len(),
        report.failed_writes
    );
    assert!(report.reads > 0 && report.writes > 0, "{report:?}");
    assert!(
        report.relocated > 0,
        "no read found its chunk moved, so none raced a move: {report:?}"
    );
    assert!(verified.lost.is_empty(), "lost writes: {:?}", verified.lost);
    assert!(verified.bad.is_empty(), "bad replicas: {:?}", verified.bad);
    assert!(
        verified.short.is_empty(),
        "below their factor: {:?}",
        verified.short
    );
    assert!(
        last.done > first.done,
        "no move finished in the window: {during:?}"
    );
    assert!(
        moving * 2 >= during.len(),
        "moves ran in only {moving} of {} polls",
        during.len()
    );
    let s = m
        .rebalance_status(RebalanceStatusRequest {})
        .await?
        .into_inner();
    assert_eq!((s.pending, s.running, s.failed), (0, 0, 0), "{s:?}");
    Ok(())
}
