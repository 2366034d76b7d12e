//! A replica rotted on disk (one byte flipped, as a failing disk would),
//! end to end through the master: a move whose source copy is corrupt fails
//! without leaving a byte on the target, and a client read of a corrupt
//! copy ends in DATA_LOSS, never in a read that looks whole. Either way the chunk server reports
//! the copy, the master stops counting it, copies the chunk afresh from a
//! healthy replica, deletes the corrupt copy, and the chunk ends at its
//! factor with every replica intact.

use std::time::Duration;

use anyhow::{Context, Result};
use keel_proto::v1::{Move, MoveOutcome, RebalanceExecuteRequest};
use keel_tests::chunks::{pattern, rot, write};
use keel_tests::faults::{self, Known, converge, quick_master};
use keel_tests::{Cluster, CsOpts, cs};
use tonic::Code;

/// Flips one byte in the middle of a chunk file's data.
/// Three servers; chunk `c` (2 MiB, factor 2) on cs1 and cs2, its cs1 copy rotted.
async fn cluster() -> Result<(Cluster, Known, Vec<u8>)> {
    let mut c = Cluster::new()?;
    c.start_master(&["--maintenance-interval", "200ms"])?;
    for id in ["cs1", "cs2", "cs3"] {
        c.add_chunkserver(id, CsOpts::default())?;
    }
    c.wait_alive(3).await?;
    let data = pattern(74, 2 << 20);
    for s in ["cs1", "cs2"] {
        write(&c.cs(s).url(), "c", &data, 2).await?;
    }
    let known = Known::of("c", &data, 2);
    let k = [known.clone()];
    let every = Duration::from_millis(50);
    converge("c placed", Duration::from_secs(20), every, || {
        faults::placement_ok(&c, &k)
    })
    .await?;
    rot(&c.data_dir("cs1").join("chunks").join("c"))?;
    Ok((c, known, data))
}

/// The corrupt copy is gone from cs1, and `c` is whole on cs2 and cs3.
async fn healed(c: &Cluster, known: &Known) -> Result<()> {
    let k = [known.clone()];
    let every = Duration::from_millis(100);
    converge("c whole again", Duration::from_secs(30), every, || async {
        faults::placement_ok(c, &k).await?;
        match faults::holders_on_disk(c, "c").as_slice() {
            [a, b] if a == "cs2" && b == "cs3" => Ok(()),
            other => Err(format!("c on {other:?}")),
        }
    })
    .await?;
    let (lost, bad) = faults::verify_bytes(c, &k).await;
    assert_eq!((lost, bad.len()), (0, 0), "{bad:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_from_a_corrupt_copy_fails_and_the_copy_is_replaced() -> Result<()> {
    let (c, known, _) = cluster().await?;
    let mv = Move {
        chunk: "c".into(),
        from: "cs1".into(),
        to: "cs3".into(),
    };
    let mut m = quick_master(&c.master_url()).await?;
    let r = m
        .rebalance_execute(RebalanceExecuteRequest { moves: vec![mv] })
        .await?
        .into_inner();
    let res = r.results.first().context("a result")?;
    assert_ne!(res.outcome, MoveOutcome::Done as i32, "{r:?}");
    assert!(
        res.error.contains("corrupt") || res.error.contains("DataLoss"),
        "{r:?}"
    );
    healed(&c, &known).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_never_reads_a_corrupt_copy_and_the_copy_is_replaced() -> Result<()> {
    let (c, known, data) = cluster().await?;
    let r = cs::read_raw(&c.chunkservers["cs1"].url(), "c", false).await?;
    let err = r.error.context("the read of the corrupt copy must fail")?;
    assert_eq!(err.code(), Code::DataLoss, "{}", err.message());
    // Frames before the damaged one may have arrived; the stream still
    // ends in DATA_LOSS, so the client never takes them for the chunk.
    assert!(
        r.data.len() < data.len(),
        "every byte of the corrupt copy was sent"
    );
    healed(&c, &known).await
}
