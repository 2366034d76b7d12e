//! Seeded trials on one cluster (two masters, four chunk servers whose
//! migration bandwidth makes a 1 MiB copy last about a quarter second).
//! Each trial writes four chunks (factor 2) on two servers, asks the leader
//! to rebalance, and once a copy runs (plus a seeded delay) SIGKILLs the
//! leader, SIGSTOPs it for a seeded while, SIGKILLs etcd, or SIGKILLs a chunk
//! server, and brings it back after a seeded while. Then the recovery
//! invariant of t70: a leader, every server alive in its view, every chunk on
//! exactly its factor of live servers which alone hold its file, every
//! replica whole, no temp file. The trial's chunks are deleted after.
//!
//! `KEEL_FAULT_TRIALS=N` runs seeds 1..=N (default 20); `KEEL_FAULT_SEED=S`
//! replays one; a failure names its seed.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keel_proto::v1::{ListServersRequest, RebalanceRunRequest};
use keel_tests::chunks::{pattern, write};
use keel_tests::faults::{self, Known, Rng, converge, quick_master};
use keel_tests::ha::{HaCluster, signal_pid};

use super::{RECOVERY, cluster, healed, wait_copying};

const SERVERS: [&str; 4] = ["cs1", "cs2", "cs3", "cs4"];
const DEFAULT_TRIALS: u64 = 20;

/// What goes wrong in one trial.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillLeader,
    StopLeader,
    KillEtcd,
    KillChunkServer(usize),
}

#[derive(Debug)]
struct Trial {
    seed: u64,
    holders: [usize; 2],
    fault: Fault,
    /// After the first copy is seen.
    delay: Duration,
    /// How long the victim stays down (or frozen).
    down: Duration,
}

impl Trial {
    fn new(seed: u64) -> Self {
        let mut r = Rng::new(seed);
        let a = r.range(0, 3) as usize;
        let b = (a + 1 + r.range(0, 2) as usize) % 4;
        let fault = match r.range(0, 4) {
            0 => Fault::KillLeader,
            1 => Fault::StopLeader,
            2 => Fault::KillEtcd,
            _ => Fault::KillChunkServer(r.range(0, 4) as usize),
        };
        Trial {
            seed,
            holders: [a, b],
            fault,
            delay: Duration::from_millis(r.range(0, 500)),
            down: Duration::from_millis(r.range(200, 3500)),
        }
    }
}

async fn leader_term(c: &HaCluster) -> Result<(usize, u64)> {
    let i = c.wait_leader(None, RECOVERY).await?;
    let mut m = quick_master(&c.masters[i].url()).await?;
    let t = m
        .list_servers(ListServersRequest {})
        .await?
        .into_inner()
        .term;
    Ok((i, t))
}

async fn inflict(c: &mut HaCluster, t: &Trial, leader: usize) -> Result<()> {
    match t.fault {
        Fault::KillLeader => {
            c.masters[leader].kill9();
            tokio::time::sleep(t.down).await;
            c.masters[leader].start_again()?;
        }
        Fault::StopLeader => {
            let pid = c.masters[leader].pid().context("running")?;
            signal_pid(pid, libc::SIGSTOP);
            tokio::time::sleep(t.down).await;
            signal_pid(pid, libc::SIGCONT);
        }
        Fault::KillEtcd => {
            c.etcd.kill9();
            tokio::time::sleep(t.down).await;
            c.etcd.start_again().await?;
        }
        Fault::KillChunkServer(i) => {
            let id = SERVERS[i];
            c.cluster.cs(id).kill9();
            tokio::time::sleep(t.down).await;
            c.cluster.cs(id).start_again()?;
        }
    }
    Ok(())
}

async fn run_trial(c: &mut HaCluster, t: &Trial) -> Result<()> {
    let mut known = vec![];
    for i in 0..4u64 {
        let id = format!("t{}-{i}", t.seed);
        let data = pattern(t.seed * 10 + i, (1 << 20) - (i as usize) * 4096);
        for h in t.holders {
            write(&c.cluster.chunkservers[SERVERS[h]].url(), &id, &data, 2).await?;
        }
        known.push(Known::of(&id, &data, 2));
    }
    let (leader, _) = leader_term(c).await?;
    let url = c.masters[leader].url();
    converge(
        "trial chunks seen",
        RECOVERY,
        Duration::from_millis(50),
        || faults::placement_ok_at(&c.cluster, &url, &known),
    )
    .await?;
    let mut m = quick_master(&url).await?;
    let done = super::status(c, leader).await?.done;
    m.rebalance_run(RebalanceRunRequest {}).await?;
    if wait_copying(c, leader, done, Duration::from_secs(5))
        .await
        .is_ok()
    {
        tokio::time::sleep(t.delay).await;
    }
    inflict(c, t, leader).await?;
    healed(c, &known).await?;
    let (_, term) = leader_term(c).await?;
    for k in &known {
        faults::delete_everywhere_at(&c.cluster, &k.id, term).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_faults_of_leaders_etcd_and_chunk_servers_lose_nothing() -> Result<()> {
    let mut c = cluster(2, &["--threshold-pct", "1"], &SERVERS, "4MiB").await?;
    let started = Instant::now();
    let seeds = faults::trial_seeds(DEFAULT_TRIALS);
    for seed in &seeds {
        let t = Trial::new(*seed);
        let began = Instant::now();
        run_trial(&mut c, &t)
            .await
            .with_context(|| format!("trial {t:?} failed; replay with KEEL_FAULT_SEED={seed}"))?;
        eprintln!(
            "trial {seed} ({:?}) healed in {:?}",
            t.fault,
            began.elapsed()
        );
    }
    eprintln!("{} trials in {:?}", seeds.len(), started.elapsed());
    Ok(())
}
