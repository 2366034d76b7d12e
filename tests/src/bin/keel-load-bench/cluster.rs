//! A fresh cluster for one round, in a temp dir of its own: the master and
//! three chunk servers with default flags except what the bench must set
//! (addresses, data dirs, capacities, a short balancer interval and a narrow
//! band), the preload, and the CPU time each process has used.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keel_proto::v1::RebalancePauseRequest;
use keel_tests::bench::{Fresh, strings};
use keel_tests::faults::Rng;
use keel_tests::load::{self, Chunk};
use keel_tests::{Cluster, Daemon, master_client};

use crate::Opts;

/// The servers preloaded with every chunk, and the one that joins empty.
pub const LOADED: [&str; 2] = ["cs1", "cs2"];
/// The server that joins empty.
pub const JOINING: &str = "cs3";
/// How full the preload leaves the loaded servers: room for the clients'
/// writes above it, and a rebalance of about half a server's capacity.
const PRELOAD_FILL: f64 = 0.5;
/// Smallest and largest chunk, preloaded or written by the clients.
pub const SIZES: (usize, usize) = (64 << 10, 1 << 20);
/// Master flags besides the addresses: passes every second and a band of
/// ±2 points, so the rebalance moves about as much as the preload allows.
const MASTER_FLAGS: [&str; 6] = [
    "--safe-mode",
    "0s",
    "--balance-interval",
    "1s",
    "--threshold-pct",
    "2",
];

/// A fresh cluster with the balancer paused: cs1 and cs2 preloaded with the
/// same chunks, cs3 joined empty. Returns the preloaded chunks.
pub async fn start(opts: &Opts, no: usize, cs_flags: &[String]) -> Result<(Fresh, Vec<Chunk>)> {
    let mut fresh = Fresh::new("keel-load-bench-", &opts.dir)
        .with_context(|| format!("creating a temp dir in {}", opts.dir.display()))?;
    let c = &mut fresh.0;
    let mut args = strings(&["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
    args.extend(strings(&MASTER_FLAGS));
    let log = c.dir.path().join("master.log");
    c.master = Some(Daemon::start(
        "master",
        keel_tests::bench::sibling_bin("keel-master")?,
        args,
        vec![],
        log,
    )?);
    let url = c.master_url();
    let mut m = master_client(&url).await?;
    m.rebalance_pause(RebalancePauseRequest {}).await?;
    let capacity = (opts.data as f64 / PRELOAD_FILL) as u64;
    for id in LOADED {
        add_server(c, id, capacity, cs_flags)?;
    }
    c.wait_alive(LOADED.len()).await?;
    eprintln!(
        "round {no}: preloading {} MiB on cs1 and cs2",
        opts.data >> 20
    );
    let chunks = preload(c, opts.data, no as u64).await?;
    let total: u64 = chunks.iter().map(|k| k.len as u64 * 2).sum();
    keel_tests::master::wait_used(&url, total, Duration::from_secs(60)).await?;
    add_server(c, JOINING, capacity, cs_flags)?;
    c.wait_alive(LOADED.len() + 1).await?;
    Ok((fresh, chunks))
}

/// Starts chunk server `id` with default flags but for its id, address,
/// data dir, capacity and master, and `extra` (the migration bandwidth).
fn add_server(c: &mut Cluster, id: &str, capacity: u64, extra: &[String]) -> Result<()> {
    let data = c.dir.path().join(format!("data-{id}"));
    let mut args = strings(&["--id", id, "--listen", "127.0.0.1:0", "--master"]);
    args.push(c.master_url());
    args.extend(["--data-dir".into(), data.display().to_string()]);
    args.extend(["--capacity".into(), capacity.to_string()]);
    args.extend_from_slice(extra);
    let log = c.dir.path().join(format!("{id}.log"));
    let d = Daemon::start(
        id,
        keel_tests::bench::sibling_bin("keel-chunkserver")?,
        args,
        vec![],
        log,
    )?;
    c.chunkservers.insert(id.to_owned(), d);
    Ok(())
}

/// Chunks of [`SIZES`] adding up to `bytes`, written to both loaded servers.
async fn preload(c: &Cluster, bytes: u64, seed: u64) -> Result<Vec<Chunk>> {
    let mut rng = Rng::new(seed);
    let urls: Vec<String> = LOADED.iter().map(|id| c.chunkservers[*id].url()).collect();
    let (mut layout, mut total) = (vec![], 0u64);
    while total < bytes {
        let len = rng.range(SIZES.0 as u64, SIZES.1 as u64 + 1);
        let id = format!("pre-{:05}", layout.len());
        layout.push((
            Chunk::new(&id, rng.next_u64(), len as usize, 2),
            urls.clone(),
        ));
        total += len;
    }
    load::preload(layout).await
}

/// CPU time used so far by each process and by the machine as a whole.
#[derive(Debug, Clone)]
pub struct Usage {
    /// When it was taken.
    pub at: Instant,
    /// CPU seconds (user + system) of the clients (this process) and of
    /// every daemon, in a fixed order: clients, master, cs1, cs2, cs3.
    pub procs: Vec<(String, f64)>,
    /// Seconds in which some task waited for a CPU (`/proc/pressure/cpu`,
    /// `some total`), whoever's tasks they were.
    pub waited: f64,
}

/// CPU time so far of every process of the round, and of the machine.
pub fn usage(c: &Cluster) -> Usage {
    let mut procs = vec![("clients".to_owned(), cpu_secs("self"))];
    for d in c.master.iter().chain(c.chunkservers.values()) {
        let secs = d.pid().map_or(0.0, |p| cpu_secs(&p.to_string()));
        procs.push((d.name.clone(), secs));
    }
    let pressure = std::fs::read_to_string("/proc/pressure/cpu").unwrap_or_default();
    let waited = pressure
        .lines()
        .find(|l| l.starts_with("some"))
        .and_then(|l| l.split_whitespace().find_map(|f| f.strip_prefix("total=")))
        .and_then(|t| t.parse::<f64>().ok())
        .map_or(0.0, |us| us / 1e6);
    Usage {
        at: Instant::now(),
        procs,
        waited,
    }
}

/// User + system seconds of process `pid` (a number, or `self`), 0 if unknown.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // utime and stime are the 14th and 15th fields, the 12th and 13th after
    // the parenthesised command name; CLK_TCK is 100 on every Linux this runs on.
    let rest = stat.rsplit_once(')').map_or("", |r| r.1);
    let ticks: f64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}
