//! A delete whose reply is lost. The source of a move deletes its replica,
//! then dies before its answer reaches the master (a relay in front of it
//! holds the answer back until the kill). The master must not take the
//! failed call as "the replica is still there": trimming would then see one
//! replica too many and delete the only real one, on the target. The chunk
//! must stay whole on the target, at its factor, after the source returns.
//! Found by the seeded crash trials of `t70` (seed 3 of one run).

use std::time::Duration;

use anyhow::{Context, Result};
use keel_proto::v1::MoveOutcome;
use keel_tests::chunks::{pattern, write};
use keel_tests::faults::{self, Known, Relay, converge};
use keel_tests::{Cluster, CsOpts, cs, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_delete_reply_never_costs_the_last_replica() -> Result<()> {
    let relay = Relay::start().await?;
    let mut c = Cluster::new()?;
    c.start_master(&["--maintenance-interval", "200ms"])?;
    let src = CsOpts {
        bandwidth: Some("4MiB".into()),
        extra: vec!["--advertise".into(), relay.url()],
        ..CsOpts::default()
    };
    let src_addr = c.add_chunkserver("cs1", src)?.addr;
    relay.forward_to(src_addr);
    c.add_chunkserver("cs2", CsOpts::default())?;
    c.wait_alive(2).await?;

    // The target is the fuller server, so a trim of the moved chunk would
    // pick the target's replica.
    let data = pattern(72, 2 << 20);
    let filler = pattern(73, 8 << 20);
    write(&c.cs("cs1").url(), "x", &data, 1).await?;
    write(&c.cs("cs2").url(), "filler", &filler, 1).await?;
    let known = [Known::of("x", &data, 1), Known::of("filler", &filler, 1)];
    let shared: &Cluster = &c;
    converge(
        "chunks placed",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || faults::placement_ok(shared, &known),
    )
    .await?;

    let exec = faults::execute_in_background(&c.master_url(), "x", "cs1", "cs2");
    // Once the copy streams, the target's connection to the source exists;
    // the master's next connection to the source (its delete) loses replies.
    let dst_dir = c.data_dir("cs2");
    wait_until("the copy to stream", Duration::from_secs(20), || {
        let dir = dst_dir.clone();
        async move { !cs::temp_files(&dir).is_empty() }
    })
    .await?;
    relay.hold_replies(true);
    let src_dir = c.data_dir("cs1");
    wait_until(
        "the source to delete its replica",
        Duration::from_secs(20),
        || {
            let dir = src_dir.clone();
            async move { !cs::chunk_files(&dir).contains(&"x".to_owned()) }
        },
    )
    .await?;
    c.cs("cs1").kill9();
    let r = tokio::time::timeout(Duration::from_secs(60), exec)
        .await
        .context("execute hung")???;
    let res = r.results.first().context("one result")?;
    assert_eq!(res.outcome, MoveOutcome::Done as i32, "{r:?}");

    // A few maintenance passes while the source is down, then it returns.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    relay.hold_replies(false);
    c.cs("cs1").start_again()?;
    let shared: &Cluster = &c;
    let healed = converge(
        "x whole on the target",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || faults::placement_ok(shared, &known),
    )
    .await;
    let (lost, bad) = faults::verify_bytes(shared, &known).await;
    assert_eq!(lost, 0, "bytes lost: {bad:?}");
    healed?;
    assert!(bad.is_empty(), "{bad:?}");
    Ok(())
}
