//! Repairs: a replica reported corrupt and verified bad by its server stops
//! counting, the chunk is copied from a good replica to a new server, and
//! the bad copy is deleted; a server dead past the grace period
//! (`--re-replicate-after`) has its chunks re-replicated, and when it
//! returns the now excess replica is trimmed, so the chunk ends at exactly
//! its factor.

use std::time::Duration;

use anyhow::Result;
use keel_proto::v1::ReportCorruptionRequest;
use keel_tests::chunks::{pattern, read, rot, write};
use keel_tests::master::{at, locate, wait_located};
use keel_tests::{Cluster, CsOpts, wait_until};

/// How long a repair may take to show in the master's locations.
const LOCATED: Duration = Duration::from_secs(20);

fn not_found(r: Result<Vec<u8>>) -> bool {
    r.err()
        .and_then(|e| e.downcast_ref::<tonic::Status>().map(tonic::Status::code))
        == Some(tonic::Code::NotFound)
}

async fn cluster(extra: &[&str]) -> Result<Cluster> {
    let mut c = Cluster::new()?;
    c.start_master(extra)?;
    for s in ["cs1", "cs2", "cs3"] {
        c.add_chunkserver(s, CsOpts::default())?;
    }
    c.wait_alive(3).await?;
    Ok(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_replica_is_replaced() -> Result<()> {
    let mut c = cluster(&[]).await?;
    let url = c.master_url();
    let data = pattern(3, 500_000);
    for s in ["cs1", "cs2"] {
        write(&c.cs(s).url(), "c", &data, 2).await?;
    }
    wait_located(&url, "c", at(&[("cs1", true), ("cs2", true)]), LOCATED).await?;

    let mut m = c.master_client().await?;
    let report = |chunk: &str, server: &str| ReportCorruptionRequest {
        chunk: chunk.into(),
        server: server.into(),
        detail: "checksum mismatch while reading".into(),
    };
    // The report is a hint: cs1 verifies its copy, which rotted on disk.
    rot(&c.data_dir("cs1").join("chunks").join("c"))?;
    m.report_corruption(report("c", "cs1")).await?;
    wait_located(&url, "c", at(&[("cs2", true), ("cs3", true)]), LOCATED).await?;
    assert!(read(&c.cs("cs3").url(), "c").await? == data);
    let cs1 = c.cs("cs1").url();
    wait_until(
        "the corrupt copy to be deleted",
        Duration::from_secs(10),
        || {
            let cs1 = cs1.clone();
            async move { not_found(read(&cs1, "c").await) }
        },
    )
    .await?;

    let code = |r: Result<_, tonic::Status>| r.err().map(|s| s.code());
    let unknown_server = m.report_corruption(report("c", "cs9")).await;
    assert_eq!(code(unknown_server), Some(tonic::Code::InvalidArgument));
    let unknown_chunk = m.report_corruption(report("nope", "cs1")).await;
    assert_eq!(code(unknown_chunk), Some(tonic::Code::NotFound));
    let bad_id = m.report_corruption(report("../c", "cs1")).await;
    assert_eq!(code(bad_id), Some(tonic::Code::InvalidArgument));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_dead_server_is_re_replicated_then_trimmed_on_return() -> Result<()> {
    let mut c = cluster(&["--re-replicate-after", "1s"]).await?;
    let url = c.master_url();
    let data = pattern(4, 300_000);
    for s in ["cs1", "cs2"] {
        write(&c.cs(s).url(), "r", &data, 2).await?;
    }
    wait_located(&url, "r", at(&[("cs1", true), ("cs2", true)]), LOCATED).await?;

    c.cs("cs2").kill9();
    let want = at(&[("cs1", true), ("cs3", true), ("cs2", false)]);
    wait_located(&url, "r", want, LOCATED).await?;
    assert!(read(&c.cs("cs3").url(), "r").await? == data);

    c.cs("cs2").start_again()?;
    let u = url.clone();
    wait_until(
        "r trimmed back to two live replicas",
        Duration::from_secs(20),
        || {
            let u = u.clone();
            async move {
                locate(&u, "r")
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|r| r.len() == 2 && r.iter().all(|(_, alive)| *alive))
            }
        },
    )
    .await?;
    let mut held = 0;
    for s in ["cs1", "cs2", "cs3"] {
        match read(&c.cs(s).url(), "r").await {
            Ok(bytes) => {
                assert!(bytes == data, "{s} holds other bytes");
                held += 1;
            }
            Err(e) => assert!(not_found(Err(e)), "{s}"),
        }
    }
    assert_eq!(held, 2, "exactly the factor remains on disk");
    Ok(())
}
