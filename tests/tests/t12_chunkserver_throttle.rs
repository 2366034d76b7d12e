//! Migration bandwidth is one budget per server: with `--migrate-bandwidth
//! 4MiB` on source and target, two concurrent copies of 8 MiB chunks take
//! about 16 MiB / 4 MiB/s = 4 s in total. Without a throttle they would take a
//! fraction of a second, with a bucket per copy about 2 s. Client writes and
//! reads on the same servers are not throttled.

use std::time::{Duration, Instant};

use anyhow::Result;
use keel_tests::Cluster;
use keel_tests::chunks::{pattern, read, write};
use keel_tests::cs::{self, no_master};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_share_one_budget() -> Result<()> {
    let mut cluster = Cluster::new()?;
    cluster.add_chunkserver("src", no_master(Some("4MiB"), "1GiB"))?;
    cluster.add_chunkserver("dst", no_master(Some("4MiB"), "1GiB"))?;
    let (src, dst) = (cluster.cs("src").url(), cluster.cs("dst").url());
    let a = pattern(21, 8 << 20);
    let b = pattern(22, 8 << 20);

    // Client traffic: 16 MiB written in well under the 4 s the budget would allow.
    let start = Instant::now();
    write(&src, "a", &a, 1).await?;
    write(&src, "b", &b, 1).await?;
    let writes = start.elapsed();
    assert!(
        writes < Duration::from_secs(3),
        "client writes throttled: {writes:?}"
    );

    let start = Instant::now();
    let (ra, rb) = tokio::join!(
        cs::copy(&dst, "a", "src", &src, None),
        cs::copy(&dst, "b", "src", &src, None)
    );
    let elapsed = start.elapsed().as_secs_f64();
    ra?;
    rb?;
    let rate = 16.0 / elapsed;
    eprintln!("two concurrent 8 MiB copies at 4 MiB/s: {elapsed:.2} s ({rate:.2} MiB/s)");
    assert!(
        (3.2..6.0).contains(&elapsed),
        "two 8 MiB copies at 4 MiB/s took {elapsed:.2} s, expected about 4 s"
    );

    let start = Instant::now();
    assert_eq!(read(&dst, "a").await?, a);
    assert_eq!(read(&dst, "b").await?, b);
    let reads = start.elapsed();
    assert!(
        reads < Duration::from_secs(3),
        "client reads throttled: {reads:?}"
    );
    Ok(())
}
