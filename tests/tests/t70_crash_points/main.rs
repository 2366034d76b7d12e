//! Seeded crash trials of the move protocol. One cluster (a master and three
//! chunk servers whose migration bandwidth makes a 2–4 MiB copy last about a
//! second) runs trial after trial: each writes two chunks with known CRC32C,
//! starts a `RebalanceExecute` of one or two moves, and SIGKILLs the source,
//! the target or the master at a seeded point — while the bytes stream, just
//! after the target commits, just after the source deletes, or after a
//! seeded delay — keeps it down for a seeded while, and starts it again.
//! Then, within a deadline: every chunk (the trial's, and chunks written at
//! the start that no trial moves) is located on exactly its factor of live
//! servers, exactly those servers hold its file, each replica reads back with
//! its original CRC32C, no data dir holds a temp file, and a later move runs
//! to completion with the move queue empty afterwards. The trial's chunks
//! are then deleted, so the next trial starts from a verified, known state.
//!
//! `KEEL_FAULT_TRIALS=N` runs seeds 1..=N (default 50); `KEEL_FAULT_SEED=S`
//! replays trial S alone on a fresh cluster. A failure names its seed and
//! its kill point; the summary counts trials, survivals and bytes lost.

mod plan;
mod points;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_proto::v1::{
    Move, MoveOutcome, RebalanceExecuteRequest, RebalanceExecuteResponse, RebalanceStatusRequest,
};
use keel_tests::chunks::{pattern, write};
use keel_tests::faults::{self, Known, converge};
use keel_tests::{Cluster, CsOpts};

use crate::plan::{Plan, SERVERS, Victim};

/// Trials when `KEEL_FAULT_TRIALS` is not set.
const DEFAULT_TRIALS: u64 = 50;
/// `--migrate-bandwidth` of each chunk server: a 2–4 MiB copy takes 0.5–1 s.
const BANDWIDTH: &str = "4MiB";
/// Time allowed for the cluster to heal after the victim is back.
const RECOVERY: Duration = Duration::from_secs(30);
/// Longest a `RebalanceExecute` may take (retries and backoff included).
const EXECUTE_LIMIT: Duration = Duration::from_secs(90);

/// Counts over all trials.
#[derive(Default)]
struct Tally {
    run: u64,
    survived: u64,
    bytes_lost: u64,
    /// Kill points observed before the kill (the rest fired after the move ended).
    points_reached: u64,
    /// Where the first move was when its victim died, seen on disk.
    phases: BTreeMap<&'static str, u64>,
    /// First moves that completed, failed, or whose request died with the master.
    first_moves: BTreeMap<&'static str, u64>,
}

/// Chunks written once at the start that no trial moves, plus the probe
/// chunk that each trial's closing move carries to the next server.
fn resident() -> Vec<(Known, Vec<u8>, Vec<&'static str>)> {
    let a = pattern(1, 512 << 10);
    let b = pattern(2, 300 << 10);
    let p = pattern(3, 128 << 10);
    vec![
        (Known::of("keep-a", &a, 2), a, vec!["cs1", "cs2"]),
        (Known::of("keep-b", &b, 1), b, vec!["cs3"]),
        (Known::of("probe", &p, 1), p, vec!["cs1"]),
    ]
}

async fn start_cluster() -> Result<(Cluster, Vec<Known>)> {
    let mut c = Cluster::new()?;
    c.start_master(&["--maintenance-interval", "200ms"])?;
    for id in SERVERS {
        let opts = CsOpts {
            bandwidth: Some(BANDWIDTH.into()),
            ..CsOpts::default()
        };
        c.add_chunkserver(id, opts)?;
    }
    c.wait_alive(SERVERS.len()).await?;
    let mut known = vec![];
    for (k, data, on) in resident() {
        for s in on {
            write(&c.chunkservers[s].url(), &k.id, &data, k.replication).await?;
        }
        known.push(k);
    }
    placed(&c, &known, "resident chunks placed").await?;
    Ok((c, known))
}

/// Waits until [`faults::placement_ok`] holds for `known`.
async fn placed(c: &Cluster, known: &[Known], what: &str) -> Result<()> {
    let every = Duration::from_millis(50);
    converge(what, RECOVERY, every, || faults::placement_ok(c, known)).await
}

async fn execute(url: String, moves: Vec<Move>) -> Result<RebalanceExecuteResponse, tonic::Status> {
    let mut m = faults::quick_master(&url)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    m.rebalance_execute(RebalanceExecuteRequest { moves })
        .await
        .map(|r| r.into_inner())
}

/// The closing move: the probe chunk goes to the next server and the queue is
/// empty afterwards, so nothing is left stuck (busy marks, slots, retries).
async fn probe_move(c: &Cluster) -> Result<()> {
    let url = c.master_url();
    let from = faults::holders_on_disk(c, "probe");
    let [from] = from.as_slice() else {
        bail!("probe on {from:?}")
    };
    let next = SERVERS.iter().position(|s| s == from).context("holder")? + 1;
    let mv = Move {
        chunk: "probe".into(),
        from: from.clone(),
        to: SERVERS[next % SERVERS.len()].into(),
    };
    let r = execute(url.clone(), vec![mv]).await?;
    let res = r.results.first().context("a result")?;
    if (r.moved, res.outcome, res.error.as_str()) != (1, MoveOutcome::Done as i32, "") {
        bail!("the closing move did not complete cleanly: {r:?}");
    }
    let mut m = faults::quick_master(&url).await?;
    let q = m.rebalance_status(RebalanceStatusRequest {}).await?;
    let q = q.into_inner();
    if (q.pending, q.running) != (0, 0) {
        bail!("the move queue did not drain: {q:?}");
    }
    Ok(())
}

/// Deletes the trial's chunks and waits until the master forgets them.
async fn clean_up(c: &Cluster, p: &Plan) -> Result<()> {
    for ch in &p.chunks {
        faults::delete_everywhere(c, &ch.known.id).await?;
    }
    let url = c.master_url();
    let every = Duration::from_millis(50);
    converge("trial chunks forgotten", RECOVERY, every, || async {
        for ch in &p.chunks {
            match keel_tests::master::locate(&url, &ch.known.id).await {
                Ok(None) => {}
                other => return Err(format!("{} still located: {other:?}", ch.known.id)),
            }
        }
        Ok(())
    })
    .await
}

/// How the first move's request ended: done, failed (with its reason), or
/// cut off with the master.
fn first_move(
    p: &Plan,
    answer: Result<RebalanceExecuteResponse, tonic::Status>,
) -> Result<(&'static str, String)> {
    Ok(match answer {
        Ok(r) => match r.results.first() {
            Some(m) if m.outcome == MoveOutcome::Done as i32 => ("done", m.error.clone()),
            Some(m) if !m.error.is_empty() => ("failed", m.error.clone()),
            _ => bail!("a move neither done nor explained: {r:?}"),
        },
        Err(s) if p.victim == Victim::Master => ("cut off", s.message().to_owned()),
        Err(s) => bail!("RebalanceExecute failed while the master stayed up: {s:?}"),
    })
}

/// Runs one trial; returns what happened, in a line.
async fn trial(c: &mut Cluster, resident: &[Known], p: &Plan, tally: &mut Tally) -> Result<String> {
    for ch in &p.chunks {
        for s in &ch.holders {
            let url = c.chunkservers[*s].url();
            write(&url, &ch.known.id, &ch.data, ch.known.replication).await?;
        }
    }
    let mut known: Vec<Known> = resident.to_vec();
    known.extend(p.chunks.iter().map(|ch| ch.known.clone()));
    placed(c, &known, "trial chunks placed").await?;

    let ended = Arc::new(AtomicBool::new(false));
    let exec = tokio::spawn({
        let (url, moves, ended) = (c.master_url(), p.moves.clone(), Arc::clone(&ended));
        async move {
            let r = execute(url, moves).await;
            ended.store(true, Ordering::SeqCst);
            r
        }
    });
    if points::reach(c, p, ended).await? {
        tally.points_reached += 1;
    }
    let at = points::phase(c, &p.moves[0]);
    points::kill(c, p)?;
    *tally.phases.entry(at).or_default() += 1;
    tokio::time::sleep(p.downtime).await;
    points::start_again(c, p)?;
    let answer = tokio::time::timeout(EXECUTE_LIMIT, exec)
        .await
        .context("RebalanceExecute hung")??;
    let (first, why) = first_move(p, answer)?;
    *tally.first_moves.entry(first).or_default() += 1;

    let healing = Instant::now();
    let healed = placed(c, &known, "recovery").await;
    let (lost, bad) = faults::verify_bytes(c, &known).await;
    tally.bytes_lost += lost;
    healed?;
    if !bad.is_empty() {
        bail!("bad replicas after recovery: {bad:?}");
    }
    let healed_ms = healing.elapsed().as_millis();
    probe_move(c).await?;
    clean_up(c, p).await?;
    Ok(format!(
        "killed {at}; first move {first} {why:?}; whole {healed_ms} ms after the request ended"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_crash_point_leaves_whole_chunks() -> Result<()> {
    let started = Instant::now();
    let (mut c, resident) = start_cluster().await?;
    let mut tally = Tally::default();
    let mut failure = None;
    for seed in faults::trial_seeds(DEFAULT_TRIALS) {
        let p = Plan::new(seed);
        tally.run += 1;
        match trial(&mut c, &resident, &p, &mut tally).await {
            Ok(line) => {
                tally.survived += 1;
                eprintln!("{}: {line}", p.describe());
            }
            Err(e) => {
                let replay = format!("replay with KEEL_FAULT_SEED={}", p.seed);
                failure = Some(format!("{}: {e:#}\n{replay}", p.describe()));
                break;
            }
        }
    }
    eprintln!(
        "first moves: {:?}; kill points reached before the move ended: {}; {:.0} s",
        tally.first_moves,
        tally.points_reached,
        started.elapsed().as_secs_f64()
    );
    eprintln!("kills by phase of the first move: {:?}", tally.phases);
    eprintln!(
        "crash trials: {} run, {} survived, {} bytes lost",
        tally.run, tally.survived, tally.bytes_lost
    );
    if let Some(f) = failure {
        panic!("{f}");
    }
    assert_eq!(tally.bytes_lost, 0);
    Ok(())
}
