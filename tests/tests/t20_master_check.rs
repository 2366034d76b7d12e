//! The seed's `rebalance_check` example built for real: four chunk servers of
//! equal capacity filled to 78, 50, 57 and 15 % by writing chunks straight to
//! them; the master learns it all from heartbeats, and `RebalanceCheck` gives
//! an average of 50 with `cs1` overloaded and `cs4` underloaded. Also checks
//! `ListServers`, `/healthz` and the per-server gauges of `/metrics`.

use std::time::Duration;

use anyhow::Result;
use keel_proto::v1::RebalanceCheckRequest;
use keel_tests::master::{http_get, metric, servers};
use keel_tests::{Cluster, CsOpts, chunks, wait_until};

/// Capacity of every server: 10 MB, so 1 % is exactly 100 000 bytes.
const CAPACITY: u64 = 10_000_000;

/// Chunk sizes per server: 78, 50, 57 and 15 % of the capacity.
const LAYOUT: [(&str, &[u64]); 4] = [
    ("cs1", &[4_000_000, 3_800_000]),
    ("cs2", &[5_000_000]),
    ("cs3", &[3_000_000, 2_000_000, 700_000]),
    ("cs4", &[1_500_000]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_through_heartbeats() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    for (id, _) in LAYOUT {
        let opts = CsOpts {
            capacity: CAPACITY.to_string(),
            ..CsOpts::default()
        };
        c.add_chunkserver(id, opts)?;
    }
    c.wait_alive(4).await?;
    for (id, sizes) in LAYOUT {
        let url = c.chunkservers[id].url();
        for (i, size) in sizes.iter().enumerate() {
            let data = chunks::pattern(*size, *size as usize);
            chunks::write(&url, &format!("{id}-{i}"), &data, 1).await?;
        }
    }
    let url = c.master_url();
    wait_until(
        "the master to see every byte",
        Duration::from_secs(15),
        || {
            let url = url.clone();
            async move {
                let Ok(rows) = servers(&url).await else {
                    return false;
                };
                let used: Vec<u64> = rows.iter().map(|s| s.used).collect();
                used == [7_800_000, 5_000_000, 5_700_000, 1_500_000]
            }
        },
    )
    .await?;

    let mut m = c.master_client().await?;
    let r = m
        .rebalance_check(RebalanceCheckRequest {})
        .await?
        .into_inner();
    assert_eq!(r.average_utilization_pct, 50.0);
    assert_eq!(r.threshold_pct, 20.0);
    let over: Vec<(&str, f64)> = r
        .overloaded
        .iter()
        .map(|s| (s.server.as_str(), s.utilization_pct))
        .collect();
    let under: Vec<(&str, f64)> = r
        .underloaded
        .iter()
        .map(|s| (s.server.as_str(), s.utilization_pct))
        .collect();
    assert_eq!(over, [("cs1", 78.0)]);
    assert_eq!(under, [("cs4", 15.0)]);
    assert_eq!(r.servers.len(), 4);
    assert!(!r.balanced);
    assert_eq!(
        (r.overloaded[0].used_bytes, r.overloaded[0].capacity_bytes),
        (7_800_000, CAPACITY)
    );

    let rows = servers(&url).await?;
    let ids: Vec<&str> = rows.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["cs1", "cs2", "cs3", "cs4"]);
    assert_eq!(
        rows.iter().map(|s| s.chunks).collect::<Vec<_>>(),
        [2, 1, 3, 1]
    );
    assert!(rows.iter().all(|s| s.alive && s.capacity == CAPACITY));

    let http = c
        .master
        .as_ref()
        .and_then(|d| d.http_addr)
        .expect("master http address");
    assert_eq!(http_get(http, "/healthz").await?, (200, "ok".to_owned()));
    let (code, body) = http_get(http, "/metrics").await?;
    assert_eq!(code, 200);
    assert_eq!(
        metric(&body, "keel_server_utilization_pct{server=\"cs1\"}"),
        Some(78.0)
    );
    assert_eq!(
        metric(&body, "keel_server_free_bytes{server=\"cs4\"}"),
        Some(8_500_000.0)
    );
    assert_eq!(
        metric(&body, "keel_server_alive{server=\"cs3\"}"),
        Some(1.0)
    );
    assert_eq!(metric(&body, "keel_moves_done_total"), Some(0.0));
    Ok(())
}
