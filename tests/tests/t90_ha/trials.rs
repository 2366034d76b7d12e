//! Seeded trials on one cluster (two masters, four chunk servers whose
//! migration bandwidth makes a 1 MiB copy last about a quarter second).
//! Each trial writes four chunks (factor 2) on two servers, asks the leader
//! to rebalance, and once a copy runs (plus a seeded delay) SIGKILLs or
//! SIGSTOPs the leader, etcd or a chunk server, and brings it back (starts
//! it again, or SIGCONT) after a seeded while. Then the recovery invariant
//! of t70: a leader, every server alive in its view, every chunk on exactly
//! its factor of live servers which alone hold its file, every replica
//! whole, no temp file. The trial's chunks are deleted after.
//!
//! The fault's kind follows the seed round robin, so any six consecutive
//! seeds try all six kinds; the moment and the length are seeded, and so is
//! the victim chunk server, on turns a holder of the chunks (a copy's
//! source), on turns another server (a copy's likely target). A pause is
//! long (past the lease for the leader and etcd, past
//! `--heartbeat-timeout` for a chunk server, so a failover or a dead server
//! follows) two turns in three, short (within it) otherwise.
//!
//! `KEEL_FAULT_TRIALS=N` runs seeds 1..=N (default 20); `KEEL_FAULT_SEED=S`
//! replays one; a failure names its seed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keel_proto::v1::{ListServersRequest, RebalanceRunRequest};
use keel_tests::chunks::{pattern, write};
use keel_tests::faults::{self, Known, Rng, converge, quick_master};
use keel_tests::ha::{Frozen, HaCluster, list_servers};

use super::{LEASE, RECOVERY, cluster, healed, wait_copying};

const SERVERS: [&str; 4] = ["cs1", "cs2", "cs3", "cs4"];
const DEFAULT_TRIALS: u64 = 20;

/// `--heartbeat-timeout` of the test masters (`keel_tests::cluster::MASTER_TIMINGS`).
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(3);

/// What goes wrong in one trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    KillLeader,
    StopLeader,
    KillEtcd,
    StopEtcd,
    KillChunkServer(usize),
    StopChunkServer(usize),
}

impl Fault {
    /// The kind for `seed`: seeds 1, 7, 13, … kill the leader, 2, 8, … stop
    /// it, and so on.
    fn for_seed(seed: u64, victim: usize) -> Self {
        match seed.wrapping_sub(1) % 6 {
            0 => Fault::KillLeader,
            1 => Fault::StopLeader,
            2 => Fault::KillEtcd,
            3 => Fault::StopEtcd,
            4 => Fault::KillChunkServer(victim),
            _ => Fault::StopChunkServer(victim),
        }
    }

    /// The kind without its victim, for the per-kind count.
    fn kind(self) -> &'static str {
        match self {
            Fault::KillLeader => "KillLeader",
            Fault::StopLeader => "StopLeader",
            Fault::KillEtcd => "KillEtcd",
            Fault::StopEtcd => "StopEtcd",
            Fault::KillChunkServer(_) => "KillChunkServer",
            Fault::StopChunkServer(_) => "StopChunkServer",
        }
    }

    /// For a pause: the time past which its victim is given up on (the
    /// leader's lease, which etcd's freeze also lets run out on resume, or
    /// the heartbeat timeout).
    fn limit(self) -> Option<Duration> {
        match self {
            Fault::StopLeader | Fault::StopEtcd => Some(LEASE),
            Fault::StopChunkServer(_) => Some(HEARTBEAT_TIMEOUT),
            _ => None,
        }
    }
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
        let turn = seed.wrapping_sub(1) / 6;
        // A chunk server victim alternates between a copy's source (a
        // holder) and a server that may be its target.
        let pick = r.range(0, 2) as usize;
        let victim = if turn.is_multiple_of(2) {
            [a, b][pick]
        } else {
            (0..4)
                .filter(|s| ![a, b].contains(s))
                .nth(pick)
                .unwrap_or(0)
        };
        let fault = Fault::for_seed(seed, victim);
        let delay = Duration::from_millis(r.range(0, 500));
        let ms = |d: Duration| d.as_millis() as u64;
        let down = match fault.limit() {
            None => r.range(200, 3500),
            // The same kind comes back every six seeds: its second turn
            // of every three is short.
            Some(limit) if turn % 3 == 1 => r.range(200, ms(limit) - 500),
            // A second past the limit: time for etcd to expire the lease
            // or the master to mark the server dead, on a loaded machine.
            Some(limit) => r.range(ms(limit) + 1000, ms(limit) + 3000),
        };
        Trial {
            seed,
            holders: [a, b],
            fault,
            delay,
            down: Duration::from_millis(down),
        }
    }

    /// Whether a pause outlasts what its victim is allowed.
    fn past_limit(&self) -> bool {
        self.fault.limit().is_some_and(|l| self.down > l)
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
        Fault::StopLeader => drop(freeze(c.masters[leader].pid(), t.down).await?),
        Fault::KillEtcd => {
            c.etcd.kill9();
            tokio::time::sleep(t.down).await;
            c.etcd.start_again().await?;
        }
        Fault::StopEtcd => drop(freeze(c.etcd.pid(), t.down).await?),
        Fault::KillChunkServer(i) => {
            let id = SERVERS[i];
            c.cluster.cs(id).kill9();
            tokio::time::sleep(t.down).await;
            c.cluster.cs(id).start_again()?;
        }
        Fault::StopChunkServer(i) => {
            let frozen = freeze(c.cluster.cs(SERVERS[i]).pid(), t.down).await?;
            // Checked before the thaw: a server frozen past the heartbeat
            // timeout must be dead in the leader's view by now.
            let alive = list_servers(&c.masters[leader].url())
                .await
                .is_some_and(|r| r.servers.iter().any(|s| s.id == SERVERS[i] && s.state == 1));
            anyhow::ensure!(
                !(t.past_limit() && alive),
                "{} frozen {:?} is still alive to the leader",
                SERVERS[i],
                t.down
            );
            drop(frozen);
        }
    }
    Ok(())
}

/// SIGSTOP; SIGCONT after `down` when the result is dropped.
async fn freeze(pid: Option<u32>, down: Duration) -> Result<Frozen> {
    let frozen = Frozen::new(pid.context("the victim is running")?);
    tokio::time::sleep(down).await;
    Ok(frozen)
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
    let (leader, before) = leader_term(c).await?;
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
    // A leader killed, or frozen past its lease, has been replaced.
    let replaced = matches!(t.fault, Fault::KillLeader)
        || matches!(t.fault, Fault::StopLeader) && t.past_limit();
    anyhow::ensure!(
        !replaced || term > before,
        "the leader's term stayed {before} after {:?} for {:?}",
        t.fault,
        t.down
    );
    for k in &known {
        faults::delete_everywhere_at(&c.cluster, &k.id, term).await?;
    }
    Ok(())
}

/// How many trials of each kind ran, and how many of the pauses outlasted
/// their victim's lease or heartbeat timeout.
#[derive(Default)]
struct Tally(BTreeMap<&'static str, (u32, u32)>);

impl Tally {
    fn add(&mut self, t: &Trial) {
        let e = self.0.entry(t.fault.kind()).or_default();
        e.0 += 1;
        e.1 += u32::from(t.past_limit());
    }

    fn get(&self, kind: &str) -> (u32, u32) {
        self.0.get(kind).copied().unwrap_or_default()
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (kind, (n, long)) in &self.0 {
            write!(f, " {kind} {n}")?;
            if kind.starts_with("Stop") {
                write!(f, " ({long} past the limit)")?;
            }
            write!(f, ";")?;
        }
        Ok(())
    }
}

/// The CI seeds try every kind of fault, pauses both within and past
/// their victim's limit, and several leaders frozen past their lease.
#[test]
fn the_default_seeds_try_every_fault() {
    let mut tally = Tally::default();
    for seed in 1..=DEFAULT_TRIALS {
        tally.add(&Trial::new(seed));
    }
    for kind in [
        "KillLeader",
        "StopLeader",
        "KillEtcd",
        "StopEtcd",
        "KillChunkServer",
        "StopChunkServer",
    ] {
        let (n, long) = tally.get(kind);
        assert!(n >= 3, "{kind} tried {n} times:{tally}");
        if kind.starts_with("Stop") {
            assert!(
                long >= 2 && long < n,
                "{kind} past its limit {long} of {n}:{tally}"
            );
        }
    }
    assert!(tally.get("StopLeader").1 >= 3, "{tally}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_faults_of_leaders_etcd_and_chunk_servers_lose_nothing() -> Result<()> {
    let mut c = cluster(2, &["--threshold-pct", "1"], &SERVERS, "4MiB").await?;
    let started = Instant::now();
    let seeds = faults::trial_seeds(DEFAULT_TRIALS);
    let mut tally = Tally::default();
    for seed in &seeds {
        let t = Trial::new(*seed);
        let began = Instant::now();
        run_trial(&mut c, &t)
            .await
            .with_context(|| format!("trial {t:?} failed; replay with KEEL_FAULT_SEED={seed}"))?;
        eprintln!(
            "trial {seed} ({:?} for {:?}) healed in {:?}",
            t.fault,
            t.down,
            began.elapsed()
        );
        tally.add(&t);
    }
    eprintln!("{} trials in {:?}:{tally}", seeds.len(), started.elapsed());
    Ok(())
}
