//! Double faults with the real binaries: every destructive step names
//! exactly the replica it destroys.
//!
//! - Three servers at factor 3, one copy rotted and read back: the repair
//!   can only go back onto the same server, and the delete of the damaged
//!   copy must not take the new one with it (exactly one repair).
//! - A copy whose size or checksum disagree with its chunk's is deleted once
//!   the chunk is whole elsewhere, and replaced.
//! - A delete held past the master's deadline, then a copy back onto the
//!   same server: the copy must not take the doomed replica for its own.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use keel_proto::v1::{MoveOutcome, RebalanceStatusRequest};
use keel_tests::chunks::{pattern, rot, write};
use keel_tests::faults::{self, Known, converge};
use keel_tests::{Cluster, CsOpts, cs, master, wait_until};

const EVERY: Duration = Duration::from_millis(100);

/// Three servers with one chunk (1 MiB, factor 3) on each.
async fn three_at_factor_three(chunk: &str, seed: u64) -> Result<(Cluster, Known)> {
    let mut c = Cluster::new()?;
    c.start_master(&["--maintenance-interval", "200ms"])?;
    for id in ["cs1", "cs2", "cs3"] {
        c.add_chunkserver(id, CsOpts::default())?;
    }
    c.wait_alive(3).await?;
    let data = pattern(seed, 1 << 20);
    for s in ["cs1", "cs2", "cs3"] {
        write(&c.chunkservers[s].url(), chunk, &data, 3).await?;
    }
    let known = Known::of(chunk, &data, 3);
    let k = [known.clone()];
    converge("placed", Duration::from_secs(30), EVERY, || {
        faults::placement_ok(&c, &k)
    })
    .await?;
    Ok((c, known))
}

async fn repairs_done(c: &Cluster) -> Result<u64> {
    let mut m = c.master_client().await?;
    Ok(m.rebalance_status(RebalanceStatusRequest {})
        .await?
        .into_inner()
        .repairs_done)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_copy_read_back_is_repaired_once_and_the_new_copy_stays() -> Result<()> {
    let (c, known) = three_at_factor_three("c", 28).await?;
    let cs1_chunk = c.data_dir("cs1").join("chunks").join("c");
    rot(&cs1_chunk)?;
    // The read fails its check; cs1 reports the copy, the master has it
    // verified, and repairs it from cs2 or cs3 onto cs1 (no other room).
    let r = cs::read_raw(&c.chunkservers["cs1"].url(), "c", false).await?;
    ensure!(r.error.is_some(), "the read of the rotted copy must fail");
    let k = [known.clone()];
    converge(
        "c whole at 3 again",
        Duration::from_secs(60),
        EVERY,
        || async {
            faults::placement_ok(&c, &k).await?;
            let damaged = cs::files_under(&c.data_dir("cs1").join("damaged"));
            match repairs_done(&c).await {
                Ok(1) if damaged.is_empty() => Ok(()),
                Ok(n) => Err(format!("{n} repairs, damaged copies {damaged:?}")),
                Err(e) => Err(format!("{e:#}")),
            }
        },
    )
    .await?;
    // Several maintenance passes later the new copy is still there: the
    // delete meant for the damaged copy did not take it.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        ensure!(
            cs1_chunk.exists(),
            "cs1's new copy was deleted as the corrupt one"
        );
        tokio::time::sleep(EVERY).await;
    }
    assert_eq!(repairs_done(&c).await?, 1, "exactly one repair");
    faults::placement_ok(&c, &k)
        .await
        .map_err(anyhow::Error::msg)?;
    let (lost, bad) = faults::verify_bytes(&c, &k).await;
    assert_eq!((lost, bad.len()), (0, 0), "{bad:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatched_copy_is_replaced() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&["--maintenance-interval", "200ms"])?;
    for id in ["cs1", "cs2", "cs3"] {
        c.add_chunkserver(id, CsOpts::default())?;
    }
    c.wait_alive(3).await?;
    let data = pattern(281, 1 << 20);
    for s in ["cs1", "cs2"] {
        write(&c.chunkservers[s].url(), "m", &data, 3).await?;
    }
    wait_until(
        "m known on two servers",
        Duration::from_secs(20),
        || async {
            master::locate(&c.master_url(), "m")
                .await
                .is_ok_and(|r| r.is_some_and(|r| r.len() == 2))
        },
    )
    .await?;
    // Another chunk under the same id on cs3: whole by its own header, but
    // its size and checksum disagree with m's.
    let other = pattern(282, (1 << 20) - 7);
    write(&c.chunkservers["cs3"].url(), "m", &other, 3).await?;
    let k = [Known::of("m", &data, 3)];
    converge(
        "m whole on all three",
        Duration::from_secs(60),
        EVERY,
        || faults::placement_ok(&c, &k),
    )
    .await?;
    let (lost, bad) = faults::verify_bytes(&c, &k).await;
    assert_eq!((lost, bad.len()), (0, 0), "{bad:?}");
    Ok(())
}

/// How long cs1 holds every delete: past the master's 10 s deadline.
const HOLD: Duration = Duration::from_secs(14);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_held_past_its_deadline_then_a_copy_back_loses_nothing() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&["--maintenance-interval", "200ms"])?;
    c.envs.push((
        "KEEL_TEST_HOLD_DELETE_MS".into(),
        HOLD.as_millis().to_string(),
    ));
    c.add_chunkserver("cs1", CsOpts::default())?;
    c.envs.clear();
    c.add_chunkserver("cs2", CsOpts::default())?;
    c.wait_alive(2).await?;
    let data = pattern(283, 1 << 20);
    write(&c.chunkservers["cs1"].url(), "d", &data, 1).await?;
    let known = [Known::of("d", &data, 1)];
    converge("d placed", Duration::from_secs(20), EVERY, || {
        faults::placement_ok(&c, &known)
    })
    .await?;

    // cs1 → cs2: the copy lands, cs1's delete outlives the master's deadline.
    let held_from = Instant::now();
    let first = faults::execute_in_background(&c.master_url(), "d", "cs1", "cs2")
        .await
        .context("join")??;
    let r = first.results.first().context("a result")?;
    assert_eq!(r.outcome, MoveOutcome::Done as i32, "{first:?}");
    ensure!(
        c.data_dir("cs1").join("chunks").join("d").exists(),
        "cs1's delete was to be held: {first:?}"
    );
    // Straight back: cs1 still holds d, its delete about to land.
    let back = faults::execute_in_background(&c.master_url(), "d", "cs2", "cs1")
        .await
        .context("join")??;
    // Once the held delete has ended, d must still be whole somewhere.
    let left = HOLD.saturating_sub(held_from.elapsed());
    tokio::time::sleep(left + Duration::from_secs(1)).await;
    converge(
        "d whole after the hold",
        Duration::from_secs(60),
        EVERY,
        || faults::placement_ok(&c, &known),
    )
    .await
    .with_context(|| format!("the move back answered {back:?}"))?;
    let (lost, bad) = faults::verify_bytes(&c, &known).await;
    assert_eq!((lost, bad.len()), (0, 0), "{bad:?}; move back: {back:?}");
    Ok(())
}
