//! The background balancer on a real cluster: four chunk servers of unequal
//! capacity are loaded unevenly while the balancer is paused (passes queue
//! moves, none starts), an empty fifth server joins, and once resumed the
//! background passes (`--balance-interval 1s`) bring all five inside the
//! band. Meanwhile a client reads chunks without pause the way a real client
//! does — `LocateChunk` once, then `ReadChunk` from a live replica it
//! remembers, locating again when that replica has gone — and no read may
//! fail. At the end the queue is
//! idle with nothing failed, every chunk has its replicas and its bytes, and
//! `/metrics` agrees.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_proto::v1::master_client::MasterClient;
use keel_proto::v1::{
    LocateChunkRequest, RebalanceCheckRequest, RebalancePauseRequest, RebalanceResumeRequest,
};
use keel_tests::chunks::{pattern, read, write};
use keel_tests::master::{balanced_and_idle, metric_of, servers, status, wait_used};
use keel_tests::{Cluster, CsOpts, master_client, wait_until};
use tonic::transport::Channel;

const MIB: usize = 1 << 20;

/// (server, capacity, chunks of 1 MiB with one replica).
const LAYOUT: [(&str, &str, usize); 4] = [
    ("cs1", "48MiB", 30),
    ("cs2", "48MiB", 16),
    ("cs3", "64MiB", 10),
    ("cs4", "32MiB", 2),
];
/// Chunks with two replicas, on cs1 and cs2.
const PAIRED: usize = 4;

/// Expected length and CRC32C of every chunk, and its replication.
type Expected = BTreeMap<String, (usize, u32, u32)>;

fn opts(capacity: &str) -> CsOpts {
    CsOpts {
        capacity: capacity.into(),
        // Slow enough that reads overlap copies and deletes.
        bandwidth: Some("4MiB".into()),
        ..CsOpts::default()
    }
}

/// Writes the uneven load straight to the chunk servers.
async fn load(c: &Cluster) -> Result<Expected> {
    let mut expected = Expected::new();
    let mut seed = 1000;
    for (server, _, n) in LAYOUT {
        for i in 0..n {
            let id = format!("{server}-c{i:02}");
            let data = pattern(seed, MIB);
            seed += 1;
            write(&c.chunkservers[server].url(), &id, &data, 1).await?;
            expected.insert(id, (data.len(), crc32c::crc32c(&data), 1));
        }
    }
    for i in 0..PAIRED {
        let id = format!("pair-c{i:02}");
        let data = pattern(seed, MIB);
        seed += 1;
        for server in ["cs1", "cs2"] {
            write(&c.chunkservers[server].url(), &id, &data, 2).await?;
        }
        expected.insert(id, (data.len(), crc32c::crc32c(&data), 2));
    }
    Ok(expected)
}

/// Live replica addresses a client remembers per chunk.
type Locations = BTreeMap<String, Vec<(String, String)>>;

/// Reads `id` as a client would: from the replicas it remembers, locating
/// again when none serves it (a moved chunk answers NOT_FOUND on its old
/// server). `Ok(true)` when it had to locate again.
async fn client_read(
    m: &mut MasterClient<Channel>,
    cache: &mut Locations,
    id: &str,
    want: (usize, u32),
) -> Result<bool> {
    for attempt in 0..10 {
        if attempt > 0 || !cache.contains_key(id) {
            if attempt > 1 {
                // The master hears of a finished move within a heartbeat.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let req = LocateChunkRequest {
                chunk: id.into(),
                ..Default::default()
            };
            let loc = m.locate_chunk(req).await?.into_inner();
            let live = loc.replicas.into_iter().filter(|r| r.alive);
            cache.insert(id.into(), live.map(|r| (r.id, r.address)).collect());
        }
        for (server, address) in &cache[id] {
            if let Ok(data) = read(address, id).await {
                if (data.len(), crc32c::crc32c(&data)) != want {
                    bail!("{id} from {server} has the wrong bytes");
                }
                return Ok(attempt > 0);
            }
        }
    }
    bail!("{id}: no replica served it after locating 10 times")
}

/// Counters of the reading client.
#[derive(Default)]
struct Reads {
    ok: AtomicU64,
    relocated: AtomicU64,
    failed: std::sync::Mutex<Vec<String>>,
}

/// Reads every chunk in turn until `stop`.
async fn reader(master: String, expected: Arc<Expected>, stop: Arc<AtomicBool>, n: Arc<Reads>) {
    let mut cache = Locations::new();
    let Ok(mut m) = master_client(&master).await else {
        n.failed.lock().expect("lock").push("no master".into());
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        for (id, &(len, crc, _)) in expected.iter() {
            match client_read(&mut m, &mut cache, id, (len, crc)).await {
                Ok(relocated) => {
                    n.ok.fetch_add(1, Ordering::Relaxed);
                    n.relocated
                        .fetch_add(u64::from(relocated), Ordering::Relaxed);
                }
                Err(e) => n.failed.lock().expect("lock").push(e.to_string()),
            }
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_server_is_filled_while_clients_read() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&["--balance-interval", "1s", "--threshold-pct", "10"])?;
    let url = c.master_url();
    let mut m = master_client(&url).await?;
    m.rebalance_pause(RebalancePauseRequest {}).await?;
    for (id, capacity, _) in LAYOUT {
        c.add_chunkserver(id, opts(capacity))?;
    }
    c.wait_alive(LAYOUT.len()).await?;
    let expected = Arc::new(load(&c).await?);
    let total: u64 = expected
        .values()
        .map(|&(len, _, r)| len as u64 * u64::from(r))
        .sum();
    wait_used(&url, total, Duration::from_secs(15)).await?;
    let paused = status(&url).await?;
    assert!(
        paused.paused && paused.done == 0 && paused.running == 0,
        "{paused:?}"
    );

    c.add_chunkserver("cs5", opts("48MiB"))?;
    c.wait_alive(LAYOUT.len() + 1).await?;
    let before = m
        .rebalance_check(RebalanceCheckRequest {})
        .await?
        .into_inner();
    assert!(!before.balanced, "{before:?}");

    let (stop, reads) = (Arc::new(AtomicBool::new(false)), Arc::new(Reads::default()));
    let client = tokio::spawn(reader(
        url.clone(),
        Arc::clone(&expected),
        Arc::clone(&stop),
        Arc::clone(&reads),
    ));
    wait_until("the client to read", Duration::from_secs(10), || {
        let n = reads.ok.load(Ordering::Relaxed);
        async move { n >= 5 }
    })
    .await?;
    let resumed_at = Instant::now();
    m.rebalance_resume(RebalanceResumeRequest {}).await?;
    wait_until(
        "all five servers in the band, queue idle",
        Duration::from_secs(50),
        || async {
            let Ok(mut m) = master_client(&url).await else {
                return false;
            };
            // done > 0: the balancer really moved, not merely found it even.
            balanced_and_idle(&mut m).await.is_some_and(|s| s.done > 0)
        },
    )
    .await?;
    let took = resumed_at.elapsed();
    stop.store(true, Ordering::Relaxed);
    client.await?;

    let failed = reads.failed.lock().expect("lock").clone();
    assert!(failed.is_empty(), "failed reads: {failed:?}");
    let end = status(&url).await?;
    assert_eq!((end.pending, end.running, end.failed), (0, 0, 0), "{end:?}");
    let rows = servers(&url).await?;
    let cs5 = rows.iter().find(|r| r.id == "cs5").context("cs5 listed")?;
    assert!(cs5.used > 0, "the new server got data: {rows:?}");
    let used: u64 = rows.iter().map(|r| r.used).sum();
    assert_eq!(used, total, "every replica still counted once");
    for (id, &(len, crc, replication)) in expected.iter() {
        let loc = m
            .locate_chunk(LocateChunkRequest {
                chunk: id.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        assert_eq!(loc.replicas.len(), replication as usize, "{id}: {loc:?}");
        for r in &loc.replicas {
            let data = read(&r.address, id).await?;
            assert_eq!(
                (data.len(), crc32c::crc32c(&data)),
                (len, crc),
                "{id} on {}",
                r.id
            );
        }
    }
    let http = c
        .master
        .as_ref()
        .and_then(|d| d.http_addr)
        .context("http")?;
    let metric = |name: &'static str| metric_of(http, name);
    assert_eq!(metric("keel_moves_pending").await?, Some(0.0));
    assert_eq!(metric("keel_moves_failed_total").await?, Some(0.0));
    let done_total = metric("keel_moves_done_total").await?.unwrap_or(0.0);
    assert!(done_total >= end.done as f64, "{done_total} < {}", end.done);
    eprintln!(
        "balanced {took:.1?} after resume: {} moves, {} MiB moved; {} reads, {} located again, 0 failed",
        end.done,
        end.bytes_moved / MIB as u64,
        reads.ok.load(Ordering::Relaxed),
        reads.relocated.load(Ordering::Relaxed),
    );
    Ok(())
}
