//! Partitions during a move. Every daemon is reached through a relay
//! ([`keel_tests::faults::Net`]) that can stall one process's connections
//! to it, the way a network that drops packets stalls TCP, so a chunk server
//! can be cut off from the master while its peers still reach it, or from
//! its peers while the master still reaches it.
//!
//! In every case: a move is reported done only when the target holds the
//! chunk whole (its file committed, bytes intact); a move that is not done
//! leaves the source's replica in place; no move stays stuck for longer than
//! its deadlines; and once the network heals the cluster returns to exactly
//! the chunk's factor on the servers the master names, with no temp files and
//! no byte lost.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_proto::v1::{ListServersRequest, MoveOutcome, MoveResult, ServerState};
use keel_tests::chunks::{pattern, write};
use keel_tests::faults::{self, Known, Net, converge};
use keel_tests::{Cluster, CsOpts, cs, master_client, wait_until};

const MIB: usize = 1 << 20;

/// A `RebalanceExecute` of one move, running.
type Execution = tokio::task::JoinHandle<Result<keel_proto::v1::RebalanceExecuteResponse>>;

/// The moved chunk: 6 MiB at 1 MiB/s streams for about six seconds.
const SIZE: usize = 6 * MIB;

/// How long a move may take to fail when its source cannot be reached: each
/// of its two attempts notices the silent link by unanswered keep-alive pings
/// (5 s + 5 s), not at the copy's deadline (36 s here). Generous, for a busy
/// machine; before keep-alives the same moves took 72 s.
const STALL_BOUND: Duration = Duration::from_secs(50);

/// A master (short heartbeat timeout, one retry per move, frequent
/// maintenance) and three chunk servers, each behind a relay; chunk `x`
/// (factor 1) is on cs1, a small chunk on each of the others.
async fn cluster() -> Result<(Cluster, Net, Vec<Known>)> {
    let mut c = Cluster::new()?;
    let mut net = Net::start_master(
        &mut c,
        &[
            "--move-retries",
            "1",
            "--maintenance-interval",
            "200ms",
            "--heartbeat-timeout",
            "2s",
        ],
    )
    .await?;
    for id in ["cs1", "cs2", "cs3"] {
        let opts = CsOpts {
            bandwidth: Some("1MiB".into()),
            ..CsOpts::default()
        };
        net.add_chunkserver(&mut c, id, opts).await?;
    }
    c.wait_alive(3).await?;
    let mut known = vec![];
    let x = pattern(75, SIZE);
    write(&c.cs("cs1").url(), "x", &x, 1).await?;
    known.push(Known::of("x", &x, 1));
    for (i, id) in ["cs2", "cs3"].into_iter().enumerate() {
        let name = format!("small-{id}");
        let data = pattern(750 + i as u64, 64 << 10);
        write(&c.cs(id).url(), &name, &data, 1).await?;
        known.push(Known::of(&name, &data, 1));
    }
    converge(
        "chunks placed",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || faults::placement_ok(&c, &known),
    )
    .await?;
    Ok((c, net, known))
}

/// Starts `RebalanceExecute` of x from cs1 to cs2 in the background.
fn execute_move(c: &Cluster) -> Execution {
    faults::execute_in_background(&c.master_url(), "x", "cs1", "cs2")
}

/// Waits until cs2 is receiving x.
async fn streaming(c: &Cluster) -> Result<()> {
    cs::wait_temp_bytes(&c.data_dir("cs2"), MIB as u64).await
}

/// Whether `server`'s data dir holds x committed and intact (read from the
/// server's real address, past any partition).
async fn holds_x(c: &Cluster, server: &str, known: &Known) -> bool {
    if !cs::chunk_files(&c.data_dir(server)).contains(&known.id) {
        return false;
    }
    match keel_tests::chunks::read(&c.chunkservers[server].url(), &known.id).await {
        Ok(d) => d.len() as u64 == known.size && crc32c::crc32c(&d) == known.crc32c,
        Err(_) => false,
    }
}

/// Awaits the move's result, with a bound that proves it did not hang.
async fn result_within(exec: Execution, limit: Duration) -> Result<(MoveResult, Duration)> {
    let start = Instant::now();
    let mut r = tokio::time::timeout(limit, exec)
        .await
        .with_context(|| format!("the move was still running after {limit:?}"))???;
    Ok((r.results.remove(0), start.elapsed()))
}

/// The state of `server` in the master's view.
async fn state_of(c: &Cluster, server: &str) -> Result<i32> {
    let mut m = master_client(&c.master_url()).await?;
    let servers = m.list_servers(ListServersRequest {}).await?.into_inner();
    servers
        .servers
        .iter()
        .find(|s| s.id == server)
        .map(|s| s.state)
        .with_context(|| format!("{server} unknown to the master"))
}

/// Heals the network and waits for the recovery invariant: every server
/// alive, every chunk at its factor on exactly the servers the master names,
/// bytes intact, no temp files.
async fn heals(c: &Cluster, net: &Net, known: &[Known]) -> Result<()> {
    net.heal();
    let healed = converge(
        "the cluster to heal",
        Duration::from_secs(40),
        Duration::from_millis(100),
        || faults::placement_ok(c, known),
    )
    .await;
    let (lost, bad) = faults::verify_bytes(c, known).await;
    assert_eq!(lost, 0, "bytes lost: {bad:?}");
    assert!(bad.is_empty(), "bad replicas: {bad:?}");
    healed
}

/// The target is cut off from the master while it streams. It finishes the
/// copy from its peer, but its answer cannot reach the master, so the move
/// is not done and the source keeps its replica; the master stops waiting
/// once the target is declared dead, not at the copy's far deadline. After
/// the heal the master learns of the extra replica and trims one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_cut_from_master_mid_copy() -> Result<()> {
    let (c, net, known) = cluster().await?;
    let exec = execute_move(&c);
    streaming(&c).await?;
    net.cut_from_master(&c, "cs2")?;

    let (r, took) = result_within(exec, Duration::from_secs(60)).await?;
    assert_eq!(r.outcome, MoveOutcome::Failed as i32, "{r:?}");
    assert!(
        took < Duration::from_secs(20),
        "the master waited {took:?} on a target it had declared dead"
    );
    assert!(holds_x(&c, "cs1", &known[0]).await, "the source lost x");
    assert_eq!(state_of(&c, "cs2").await?, ServerState::Dead as i32);
    // The target was never cut from its peer: it completes the copy.
    wait_until("cs2 to commit x", Duration::from_secs(30), || {
        holds_x(&c, "cs2", &known[0])
    })
    .await?;
    assert!(holds_x(&c, "cs1", &known[0]).await, "the source lost x");

    heals(&c, &net, &known).await
}

/// The source is cut off from the master while the target streams from it.
/// The target still reaches the source, finishes, and answers the master:
/// the move is done with the bytes on the target. The source's delete cannot
/// reach it; its extra replica is trimmed once the network heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_cut_from_master_mid_copy() -> Result<()> {
    let (c, net, known) = cluster().await?;
    let exec = execute_move(&c);
    streaming(&c).await?;
    net.cut_from_master(&c, "cs1")?;

    let (r, _) = result_within(exec, Duration::from_secs(60)).await?;
    assert!(
        holds_x(&c, "cs2", &known[0]).await,
        "the move ended as {r:?} without x whole on the target"
    );
    assert_eq!(r.outcome, MoveOutcome::Done as i32, "{r:?}");
    assert_eq!(state_of(&c, "cs1").await?, ServerState::Dead as i32);

    heals(&c, &net, &known).await
}

/// The source is cut off from its peers, not from the master: the master
/// sees it alive, but no target can pull from it. Each attempt ends when the
/// target gives up on the silent source, the move fails with the source
/// intact and no temp file left, and the same move succeeds after the heal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_cut_from_peers() -> Result<()> {
    let (c, net, known) = cluster().await?;
    net.cut_from_peers(&c, "cs1")?;
    let (r, took) = result_within(execute_move(&c), Duration::from_secs(90)).await?;
    assert_eq!(r.outcome, MoveOutcome::Failed as i32, "{r:?}");
    assert!(r.error.contains("cs1"), "the error names the source: {r:?}");
    assert!(took < STALL_BOUND, "a failing move took {took:?}");
    assert!(holds_x(&c, "cs1", &known[0]).await, "the source lost x");
    assert_eq!(state_of(&c, "cs1").await?, ServerState::Alive as i32);
    cs::wait_cleaned_up(
        &c.chunkservers["cs2"].url(),
        &c.data_dir("cs2"),
        "failed copy",
    )
    .await?;
    assert!(!holds_x(&c, "cs2", &known[0]).await);
    eprintln!("move from a source its peers cannot reach failed in {took:?}");

    net.heal();
    let (r, _) = result_within(execute_move(&c), Duration::from_secs(60)).await?;
    assert_eq!(r.outcome, MoveOutcome::Done as i32, "{r:?}");
    assert!(holds_x(&c, "cs2", &known[0]).await);
    heals(&c, &net, &known).await
}

/// The source is cut off from its peers while the target streams from it:
/// the stream stalls. The target notices the silent link by its unanswered
/// keep-alive pings, not at the copy's deadline; the retry gets no answer
/// either, and the move fails with the source intact and the partial copy
/// removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_cut_from_peers_mid_copy() -> Result<()> {
    let (c, net, known) = cluster().await?;
    let exec = execute_move(&c);
    streaming(&c).await?;
    net.cut_from_peers(&c, "cs1")?;

    let (r, took) = result_within(exec, Duration::from_secs(120)).await?;
    assert_eq!(r.outcome, MoveOutcome::Failed as i32, "{r:?}");
    assert!(took < STALL_BOUND, "a stalled move took {took:?}");
    assert!(holds_x(&c, "cs1", &known[0]).await, "the source lost x");
    cs::wait_cleaned_up(
        &c.chunkservers["cs2"].url(),
        &c.data_dir("cs2"),
        "stalled copy",
    )
    .await?;
    assert!(!holds_x(&c, "cs2", &known[0]).await);
    eprintln!("move whose source fell silent mid-stream failed in {took:?}");

    heals(&c, &net, &known).await
}

/// The master is cut off from every chunk server for longer than the
/// heartbeat timeout: all are declared dead. Nothing is deleted or moved
/// meanwhile, and after the heal all return with their chunks where they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_isolated() -> Result<()> {
    let (c, net, known) = cluster().await?;
    let before: Vec<Vec<String>> = known
        .iter()
        .map(|k| faults::holders_on_disk(&c, &k.id))
        .collect();
    net.isolate_master(&c)?;
    wait_until("every server dead", Duration::from_secs(20), || async {
        let mut dead = 0;
        for id in ["cs1", "cs2", "cs3"] {
            if state_of(&c, id).await.ok() == Some(ServerState::Dead as i32) {
                dead += 1;
            }
        }
        dead == 3
    })
    .await?;
    // Several maintenance passes with every server dead.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: Vec<Vec<String>> = known
        .iter()
        .map(|k| faults::holders_on_disk(&c, &k.id))
        .collect();
    assert_eq!(
        before, after,
        "chunks changed place while the master was cut off"
    );
    heals(&c, &net, &known).await?;
    let after: Vec<Vec<String>> = known
        .iter()
        .map(|k| faults::holders_on_disk(&c, &k.id))
        .collect();
    if before != after {
        bail!("chunks moved across a partition with no move asked: {before:?} → {after:?}");
    }
    Ok(())
}
