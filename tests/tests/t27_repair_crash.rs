//! Seeded crash trials of repairs and drains. One cluster (a master and four
//! chunk servers whose migration bandwidth makes a 2–3 MiB copy last about
//! half a second) runs trial after trial: each writes two chunks (factor 2)
//! on two servers, then either loses one replica of each (its server is
//! stopped, the files removed, the server started again: a repair) or drains
//! one holder (a drain), and SIGKILLs the copy's source, its target or the
//! master while the copy runs (or after a seeded delay), keeps it down for a
//! seeded while and starts it again. Then, within a deadline: a drained
//! server turns `drained` and is undrained; every chunk is on exactly its
//! factor of live servers, exactly those hold its file, every replica reads
//! back with its original CRC32C, and no data dir holds a temp file. The
//! trial's chunks are then deleted.
//!
//! `KEEL_FAULT_TRIALS=N` runs seeds 1..=N (default 12); `KEEL_FAULT_SEED=S`
//! replays one. A failure names its seed.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_proto::v1::{
    DrainServerRequest, ListServersRequest, RebalanceStatusRequest, ServerState,
    UndrainServerRequest,
};
use keel_tests::chunks::{pattern, write};
use keel_tests::faults::{self, Known, Rng, converge};
use keel_tests::{Cluster, CsOpts};

const SERVERS: [&str; 4] = ["cs1", "cs2", "cs3", "cs4"];
const DEFAULT_TRIALS: u64 = 12;
const RECOVERY: Duration = Duration::from_secs(40);

async fn start_cluster() -> Result<Cluster> {
    let mut c = Cluster::new()?;
    c.start_master(&[
        "--maintenance-interval",
        "200ms",
        "--re-replicate-after",
        "1h",
    ])?;
    for id in SERVERS {
        let opts = CsOpts {
            bandwidth: Some("4MiB".into()),
            ..CsOpts::default()
        };
        c.add_chunkserver(id, opts)?;
    }
    c.wait_alive(SERVERS.len()).await?;
    Ok(c)
}

/// What one trial does.
#[derive(Debug)]
struct Trial {
    seed: u64,
    drain: bool,
    holders: [&'static str; 2],
    /// 0: the copy's source, 1: its target, 2: the master.
    victim: u64,
    /// Kill this long after the first copy is seen running (0: at once).
    delay: Duration,
    down: Duration,
}

impl Trial {
    fn new(seed: u64) -> Self {
        let mut r = Rng::new(seed);
        let a = r.range(0, 3) as usize;
        let b = (a + 1 + r.range(0, 2) as usize) % 4;
        Trial {
            seed,
            drain: r.chance(1, 2),
            holders: [SERVERS[a], SERVERS[b]],
            victim: r.range(0, 3),
            delay: Duration::from_millis(r.range(0, 400)),
            down: Duration::from_millis(r.range(0, 2000)),
        }
    }

    fn chunks(&self) -> [String; 2] {
        [0, 1].map(|i| format!("t{}-{i}", self.seed))
    }
}

/// Waits for a repair or drain copy to run; returns (source, target).
async fn running_copy(url: &str) -> Result<Option<(String, String)>> {
    let mut m = faults::quick_master(url).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let s = m
            .rebalance_status(RebalanceStatusRequest {})
            .await?
            .into_inner();
        if let Some(c) = s.copies.first() {
            return Ok(Some((c.from.clone(), c.to.clone())));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(None)
}

async fn server_state(url: &str, id: &str) -> Result<i32, String> {
    let mut m = faults::quick_master(url).await.map_err(|e| e.to_string())?;
    let l = m
        .list_servers(ListServersRequest {})
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    l.servers
        .iter()
        .find(|s| s.id == id)
        .map(|s| s.state)
        .ok_or_else(|| format!("{id} unknown"))
}

/// Runs one trial; returns the bytes lost and whether a copy was seen
/// running (and so its victim killed).
async fn run_trial(c: &mut Cluster, t: &Trial) -> Result<(u64, bool)> {
    let url = c.master_url();
    let mut known = vec![];
    for (i, id) in t.chunks().iter().enumerate() {
        let data = pattern(t.seed * 10 + i as u64, 2 << 20 | (i << 19));
        for s in t.holders {
            write(&c.chunkservers[s].url(), id, &data, 2).await?;
        }
        known.push(Known::of(id, &data, 2));
    }
    converge(
        "trial chunks placed",
        RECOVERY,
        Duration::from_millis(50),
        || faults::placement_ok(c, &known),
    )
    .await?;
    let lose = t.holders[1];
    if t.drain {
        let mut m = faults::quick_master(&url).await?;
        m.drain_server(DrainServerRequest {
            server: lose.into(),
        })
        .await?;
    } else {
        c.cs(lose).stop();
        for id in t.chunks() {
            std::fs::remove_file(c.data_dir(lose).join("chunks").join(id))?;
        }
        c.cs(lose).start_again()?;
    }
    let copying = running_copy(&url).await?;
    let killed = copying.is_some();
    if let Some((from, to)) = copying {
        tokio::time::sleep(t.delay).await;
        let victim = match t.victim {
            0 => Some(from),
            1 => Some(to),
            _ => None,
        };
        let daemon = match &victim {
            Some(id) => c.chunkservers.get_mut(id).context("victim")?,
            None => c.master.as_mut().context("master")?,
        };
        daemon.kill9();
        tokio::time::sleep(t.down).await;
        daemon.start_again()?;
    }
    if t.drain {
        converge(
            "the drain to finish",
            RECOVERY,
            Duration::from_millis(100),
            || async {
                match server_state(&url, lose).await {
                    Ok(s) if s == ServerState::Drained as i32 => Ok(()),
                    Ok(s) => Err(format!("{lose} in state {s}")),
                    Err(e) => Err(e),
                }
            },
        )
        .await?;
        let mut m = faults::quick_master(&url).await?;
        m.undrain_server(UndrainServerRequest {
            server: lose.into(),
        })
        .await?;
    }
    converge(
        "the factor restored",
        RECOVERY,
        Duration::from_millis(100),
        || faults::placement_ok(c, &known),
    )
    .await?;
    let (lost, bad) = faults::verify_bytes(c, &known).await;
    if !bad.is_empty() {
        bail!("bad replicas: {bad:?}");
    }
    for id in t.chunks() {
        faults::delete_everywhere(c, &id).await?;
    }
    Ok((lost, killed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repairs_and_drains_survive_a_kill_anywhere() -> Result<()> {
    let mut c = start_cluster().await?;
    let (mut run, mut lost) = (0, 0);
    // Kills mid-copy of the source, the target and the master.
    let mut kills = [0u32; 3];
    for seed in faults::trial_seeds(DEFAULT_TRIALS) {
        let t = Trial::new(seed);
        let (l, killed) = run_trial(&mut c, &t)
            .await
            .with_context(|| format!("trial {t:?} (replay: KEEL_FAULT_SEED={seed})"))?;
        run += 1;
        lost += l;
        if killed {
            kills[t.victim as usize] += 1;
        }
    }
    eprintln!(
        "repair and drain trials: {run} run, {run} survived, {lost} bytes lost; \
         killed mid-copy: {} sources, {} targets, {} masters",
        kills[0], kills[1], kills[2]
    );
    anyhow::ensure!(lost == 0);
    // Every trial's copy is seen running (a copy of 2–3 MiB at the
    // cluster's 4 MiB/s runs for over half a second; the poll is every
    // 20 ms): a trial that killed nothing would test nothing.
    let killed: u32 = kills.iter().sum();
    anyhow::ensure!(
        u64::from(killed) * 4 >= run * 3,
        "only {killed} of {run} trials saw a copy running to kill into"
    );
    Ok(())
}
