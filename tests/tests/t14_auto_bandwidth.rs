//! `--migrate-bandwidth auto`: a chunk server lowers its migration rate while
//! its clients are slower than `--client-latency-target` and raises it again
//! once they are quiet. The target here (1 µs) is below what any real read
//! takes, so every client read counts as slow: while a client reads in a
//! loop, the rate falls from the ceiling (`--migrate-bandwidth-max 64MiB`)
//! towards the floor (a thirty-second of it, never zero); once the client stops
//! it climbs back to the ceiling. Checked on the chunk server's `/metrics`
//! and on what the master lists from its heartbeats (`ListServers`, which
//! `keelctl servers --json` prints). Bounds are loose so a loaded machine
//! does not make it flake: the controller needs only a handful of samples.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use keel_proto::v1::ListServersRequest;
use keel_tests::chunks::{pattern, read, write};
use keel_tests::master::metric_of;
use keel_tests::{Cluster, CsOpts, master_client, wait_until};

const MAX: f64 = (64u64 << 20) as f64;
const RATE: &str = "keel_chunkserver_migrate_bandwidth_bytes_per_second";

/// The rate cs1 last reported to the master.
async fn listed_rate(master: &str) -> Result<u64> {
    let mut m = master_client(master).await?;
    let servers = m.list_servers(ListServersRequest {}).await?.into_inner();
    servers
        .servers
        .iter()
        .find(|s| s.id == "cs1")
        .map(|s| s.migrate_bandwidth_bytes_per_second)
        .context("cs1 not listed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_falls_under_client_load_and_recovers_when_quiet() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    let opts = CsOpts {
        bandwidth: Some("auto".into()),
        extra: [
            "--migrate-bandwidth-max",
            "64MiB",
            "--client-latency-target",
            "0.001ms",
            "--http-listen",
            "127.0.0.1:0",
        ]
        .map(String::from)
        .to_vec(),
        ..CsOpts::default()
    };
    c.add_chunkserver("cs1", opts)?;
    c.wait_alive(1).await?;
    let (master, url) = (c.master_url(), c.cs("cs1").url());
    let http = c.cs("cs1").http_addr.context("cs1 http address")?;
    write(&url, "hot", &pattern(14, 64 << 10), 1).await?;

    // Quiet: at the ceiling, and the master hears it.
    let gauge = || async move { metric_of(http, RATE).await.ok().flatten().unwrap_or(-1.0) };
    wait_until(
        "the rate at the ceiling",
        Duration::from_secs(10),
        || async { gauge().await == MAX },
    )
    .await?;
    wait_until(
        "the master to list the ceiling",
        Duration::from_secs(10),
        || {
            let m = master.clone();
            async move { listed_rate(&m).await.ok() == Some(64 << 20) }
        },
    )
    .await?;

    // A client reading in a loop: every read is over the target.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stop, url) = (Arc::clone(&stop), url.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _ = read(&url, "hot").await;
            }
        })
    };
    let low = MAX / 4.0;
    let fell = wait_until("the rate to fall", Duration::from_secs(20), || async {
        (0.0..=low).contains(&gauge().await)
    })
    .await;
    let listed_low = wait_until(
        "the master to list a lower rate",
        Duration::from_secs(10),
        || {
            let m = master.clone();
            async move { listed_rate(&m).await.is_ok_and(|r| (r as f64) <= MAX / 2.0) }
        },
    )
    .await;
    let under_load = gauge().await;
    stop.store(true, Ordering::Relaxed);
    reader.await?;
    fell?;
    listed_low?;
    assert!(
        under_load >= MAX / 32.0,
        "never below the floor (max / 32), never zero: {under_load}"
    );

    // Quiet again: back to the ceiling, step by step.
    wait_until("the rate to recover", Duration::from_secs(20), || async {
        gauge().await == MAX
    })
    .await?;
    wait_until(
        "the master to list the ceiling again",
        Duration::from_secs(10),
        || {
            let m = master.clone();
            async move { listed_rate(&m).await.ok() == Some(64 << 20) }
        },
    )
    .await?;
    Ok(())
}
