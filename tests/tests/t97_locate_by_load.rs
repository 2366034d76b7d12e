//! LocateChunk follows read load: a real master and three chunk servers
//! each holding a replica of one chunk (factor 3). A client reads the chunk
//! hundreds of times straight from `cs1`, bypassing LocateChunk. Within a
//! few heartbeats the master lists `cs1` last (it was first, by id, while
//! nobody read), `ListServers` and `RebalanceCheck` call it hot, and the
//! master's `/metrics` show its read rate. The order itself is unit-tested
//! in the master (`meta::reads`).

use std::time::Duration;

use anyhow::{Context, Result};
use keel_proto::v1::{ListServersRequest, RebalanceCheckRequest};
use keel_tests::chunks::{pattern, read, write};
use keel_tests::master::{at, metric, metric_of, wait_located};
use keel_tests::{Cluster, CsOpts, wait_until};

const SIZE: usize = 4096;
/// About 400 / 60 ≈ 6.7 reads/s on `cs1` with the chunk server's one-minute
/// time constant: the mean is about 2.2, the band's step the 2 reads/s
/// noise floor, so `cs1` sits three steps above its idle peers and is hot.
const READS: usize = 400;
const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_holder_clients_hammer_is_listed_last_and_called_hot() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    for id in ["cs1", "cs2", "cs3"] {
        c.add_chunkserver(id, CsOpts::default())?;
    }
    c.wait_alive(3).await?;
    let master = c.master_url();
    let data = pattern(97, SIZE);
    for id in ["cs1", "cs2", "cs3"] {
        write(&c.cs(id).url(), "hot", &data, 3).await?;
    }
    let idle = at(&[("cs1", true), ("cs2", true), ("cs3", true)]);
    wait_located(&master, "hot", idle, WITHIN).await?;

    let cs1 = c.cs("cs1").url();
    for _ in 0..READS {
        anyhow::ensure!(read(&cs1, "hot").await? == data, "read back other bytes");
    }
    let hot_last = at(&[("cs2", true), ("cs3", true), ("cs1", true)]);
    wait_located(&master, "hot", hot_last, WITHIN).await?;

    let mut m = c.master_client().await?;
    let servers = m.list_servers(ListServersRequest {}).await?.into_inner();
    let row = |id: &str| servers.servers.iter().find(|s| s.id == id).cloned();
    let one = row("cs1").context("cs1 listed")?;
    anyhow::ensure!(
        one.load == "hot" && one.reads_per_sec > 4.0 && one.read_bytes_per_sec > 0.0,
        "cs1: {one:?}"
    );
    let two = row("cs2").context("cs2 listed")?;
    anyhow::ensure!(two.load != "hot" && two.reads_per_sec < 1.0, "cs2: {two:?}");

    let check = m
        .rebalance_check(RebalanceCheckRequest {})
        .await?
        .into_inner();
    let hot: Vec<&str> = check.hot.iter().map(|s| s.server.as_str()).collect();
    anyhow::ensure!(
        hot == ["cs1"] && !check.load_balanced && check.load_threshold_pct == 25.0,
        "check: {check:?}"
    );

    let http = c
        .master
        .as_ref()
        .and_then(|d| d.http_addr)
        .context("master's http address")?;
    let series = "keel_server_reads_per_second{server=\"cs1\"}";
    wait_until(
        "cs1's read rate on the master's /metrics",
        WITHIN,
        || async {
            metric_of(http, series)
                .await
                .ok()
                .flatten()
                .is_some_and(|v| v > 4.0)
        },
    )
    .await?;
    let (_, body) = keel_tests::master::http_get(http, "/metrics").await?;
    anyhow::ensure!(metric(&body, "keel_servers_hot") == Some(1.0), "{body}");
    Ok(())
}
