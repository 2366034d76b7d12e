//! Failover time and the cost of a standby, run by
//! `scripts/bench-failover.sh` (ignored in the normal test run).
//!
//! `failover_time`: each round writes chunks unevenly, starts a rebalance,
//! and SIGKILLs the leader while it copies; it times the kill → a new
//! leader, → its first copy, and → the first `AllocateChunk` a client
//! (trying each master, as keelctl does) gets served. Then the old master
//! comes back as a standby and the cluster heals. Prints the median and max
//! of each against the lease, and each master's resident memory.
//!
//! `standby_cost`: two masters, each behind a relay that counts what it is
//! sent, four chunk servers holding `KEEL_BENCH_CHUNKS` chunks. For
//! `KEEL_BENCH_WINDOW` it counts the heartbeat RPCs and bytes each master
//! receives and answers, and the CPU time of every process; then again with
//! the standby gone (its address refuses connections), which isolates what
//! it costs the chunk servers and etcd; then it times the standby's return
//! until it counts every replica again (the full reports it is sent).
//!
//! `KEEL_BENCH_ROUNDS` (default 10), `KEEL_BENCH_LEASE` (default 2s),
//! `KEEL_BENCH_CHUNKS` (default 2000), `KEEL_BENCH_WINDOW` (default 10s).

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures::StreamExt;
use keel_proto::v1::{AllocateChunkRequest, RebalanceRunRequest};
use keel_tests::CsOpts;
use keel_tests::chunks::{pattern, write};
use keel_tests::faults::{self, Traffic, quick_master};
use keel_tests::ha::HaCluster;
use keel_tests::master::wait_used;

use super::{RECOVERY, cluster, healed, wait_copying, write_chunks};

const SERVERS: [&str; 4] = ["cs1", "cs2", "cs3", "cs4"];

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// Tries every master until one places chunk `id`.
async fn allocate_anywhere(c: &HaCluster, id: &str) -> bool {
    for m in &c.masters {
        let ask = async {
            let mut m = quick_master(&m.url()).await.ok()?;
            let req = AllocateChunkRequest {
                chunk: id.into(),
                size: 1,
                replication: 1,
                on: vec![],
            };
            m.allocate_chunk(req).await.ok()
        };
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(1), ask).await {
            return true;
        }
    }
    false
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn summary(name: &str, mut v: Vec<Duration>, lease: &str) {
    v.sort();
    let median = (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2;
    let max = v[v.len() - 1];
    eprintln!("{name:<34} median {median:>8.2?}  max {max:>8.2?}  (lease {lease})");
}

/// One round: returns (new leader, first copy, client served) after the kill.
async fn round(c: &mut HaCluster, r: usize) -> Result<[Duration; 3]> {
    let known = write_chunks(c, &format!("bench{r}-"), 8, 1 << 20, &["cs1", "cs2"]).await?;
    let leader = c.wait_leader(None, RECOVERY).await?;
    let url = c.masters[leader].url();
    faults::converge("chunks seen", RECOVERY, Duration::from_millis(50), || {
        faults::placement_ok_at(&c.cluster, &url, &known)
    })
    .await?;
    quick_master(&url)
        .await?
        .rebalance_run(RebalanceRunRequest {})
        .await?;
    wait_copying(c, leader, super::status(c, leader).await?.done, RECOVERY).await?;
    let mut done_before = Vec::new();
    for i in 0..c.masters.len() {
        done_before.push(super::status(c, i).await.map_or(0, |s| s.done));
    }
    let killed = Instant::now();
    c.masters[leader].kill9();
    let next = c.wait_leader(Some(leader), RECOVERY).await?;
    let elected = killed.elapsed();
    let mut served = None;
    let mut copied = None;
    while served.is_none() || copied.is_none() {
        anyhow::ensure!(killed.elapsed() < RECOVERY, "no recovery in round {r}");
        if served.is_none() && allocate_anywhere(c, &format!("probe{r}")).await {
            served = Some(killed.elapsed());
        }
        if copied.is_none()
            && super::status(c, next)
                .await
                .is_ok_and(|s| s.running > 0 || s.done > done_before[next] || !s.copies.is_empty())
        {
            copied = Some(killed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.masters[leader].start_again()?;
    healed(c, &known).await?;
    let term = keel_tests::ha::list_servers(&c.masters[next].url())
        .await
        .context("the leader answers")?
        .term;
    for k in &known {
        faults::delete_everywhere_at(&c.cluster, &k.id, term).await?;
    }
    Ok([
        elected,
        copied.unwrap_or_default(),
        served.unwrap_or_default(),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-failover.sh"]
async fn failover_time() -> Result<()> {
    let rounds: usize = env_or("KEEL_BENCH_ROUNDS", "10").parse()?;
    let lease = env_or("KEEL_BENCH_LEASE", "2s");
    let flags = ["--threshold-pct", "1", "--leader-lease", &lease];
    let mut c = cluster(2, &flags, &SERVERS, "4MiB").await?;
    let mut times: [Vec<Duration>; 3] = Default::default();
    for r in 0..rounds {
        let t = round(&mut c, r).await?;
        eprintln!(
            "round {r}: new leader {:?}, first copy {:?}, client served {:?}",
            t[0], t[1], t[2]
        );
        for (v, d) in times.iter_mut().zip(t) {
            v.push(d);
        }
    }
    let [elected, copied, served] = times;
    summary("killed -> new leader", elected, &lease);
    summary("killed -> first copy by new leader", copied, &lease);
    summary("killed -> AllocateChunk served", served, &lease);
    for m in &c.masters {
        if let Some(pid) = m.pid() {
            eprintln!("{}: resident {} KiB", m.name, rss_kib(pid));
        }
    }
    Ok(())
}

/// CPU time (user and system) process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which may hold spaces: state is the
    // first of them, utime the 12th, stime the 13th, both in clock ticks.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    // SAFETY: sysconf reads a constant of the system; no memory is touched.
    #[allow(unsafe_code)]
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(fields.iter().sum::<u64>() * 1000 / hz)
}

/// The processes whose CPU time a window adds up.
struct Pids {
    leader: u32,
    standby: Option<u32>,
    etcd: u32,
    chunkservers: Vec<u32>,
}

impl Pids {
    fn of(c: &HaCluster, leader: usize, standby: usize) -> Result<Self> {
        let chunkservers = c.cluster.chunkservers.values().filter_map(|d| d.pid());
        Ok(Pids {
            leader: c.masters[leader].pid().context("the leader runs")?,
            standby: c.masters[standby].pid(),
            etcd: c.etcd.pid().context("etcd runs")?,
            chunkservers: chunkservers.collect(),
        })
    }

    /// CPU time of the leader, the standby, etcd and all chunk servers.
    fn cpu(&self) -> [Duration; 4] {
        [
            cpu_time(self.leader),
            self.standby.map_or(Duration::ZERO, cpu_time),
            cpu_time(self.etcd),
            self.chunkservers.iter().map(|p| cpu_time(*p)).sum(),
        ]
    }
}

/// What one measuring window saw: CPU per process group, and the traffic
/// through each master's relay.
struct Window {
    secs: f64,
    cpu: [Duration; 4],
    traffic: Vec<Traffic>,
}

impl Window {
    async fn measure(c: &HaCluster, pids: &Pids, length: Duration) -> Window {
        let fronts = |c: &HaCluster| -> Vec<Traffic> {
            (0..c.masters.len())
                .map(|i| c.front(i).map(|f| f.traffic()).unwrap_or_default())
                .collect()
        };
        let (t0, cpu0, traffic0) = (Instant::now(), pids.cpu(), fronts(c));
        tokio::time::sleep(length).await;
        let (cpu1, traffic1) = (pids.cpu(), fronts(c));
        Window {
            secs: t0.elapsed().as_secs_f64(),
            cpu: std::array::from_fn(|i| cpu1[i].saturating_sub(cpu0[i])),
            traffic: traffic1
                .into_iter()
                .zip(traffic0)
                .map(|(a, b)| a - b)
                .collect(),
        }
    }

    /// Percent of one core used by group `i` (leader, standby, etcd, chunk servers).
    fn core_pct(&self, i: usize) -> f64 {
        100.0 * self.cpu[i].as_secs_f64() / self.secs
    }

    fn print_heartbeats(&self, who: &str, i: usize) {
        let t = self.traffic[i];
        let per_sec = |n: u64| n as f64 / self.secs;
        eprintln!(
            "standby-cost {who:<8} receives {:.1} RPC/s, {:.0} B/s in, {:.0} B/s out ({:.0} B in per RPC)",
            per_sec(t.requests),
            per_sec(t.bytes_in),
            per_sec(t.bytes_out),
            t.bytes_in as f64 / t.requests.max(1) as f64,
        );
    }
}

/// Writes `n` chunks of 4 KiB, factor 1, round robin over the servers,
/// eight at a time; returns the bytes written.
async fn fill(c: &HaCluster, n: usize) -> Result<u64> {
    let urls: Vec<String> = SERVERS
        .iter()
        .map(|id| c.cluster.chunkservers[*id].url())
        .collect();
    let writes = (0..n).map(|i| {
        let url = urls[i % urls.len()].clone();
        async move {
            let data = pattern(i as u64, 4096);
            write(&url, &format!("standby-{i:06}"), &data, 1).await
        }
    });
    let mut done = futures::stream::iter(writes).buffer_unordered(8);
    while let Some(r) = done.next().await {
        r?;
    }
    Ok(n as u64 * 4096)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: scripts/bench-failover.sh"]
async fn standby_cost() -> Result<()> {
    let chunks: usize = env_or("KEEL_BENCH_CHUNKS", "2000").parse()?;
    let window = Duration::from_secs(env_or("KEEL_BENCH_WINDOW", "10").parse()?);
    let lease = env_or("KEEL_BENCH_LEASE", "2s");
    let mut c = HaCluster::start_fronted(2, &["--leader-lease", &lease]).await?;
    for id in SERVERS {
        c.add_chunkserver(id, CsOpts::default())?;
    }
    let leader = c.wait_leader(None, RECOVERY).await?;
    let standby = 1 - leader;
    let bytes = fill(&c, chunks).await?;
    for m in &c.masters {
        wait_used(&m.url(), bytes, RECOVERY).await?;
    }
    // Past the writes' delta reports, into the steady state.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pids = Pids::of(&c, leader, standby)?;
    let with = Window::measure(&c, &pids, window).await;
    let rss = [rss_kib(pids.leader), pids.standby.map_or(0, rss_kib)];

    c.masters[standby].kill9();
    c.close_front(standby);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let without = Window::measure(&c, &pids, window).await;

    c.reopen_front(standby).await?;
    let back = Instant::now();
    c.masters[standby].start_again()?;
    wait_used(&c.masters[standby].url(), bytes, RECOVERY).await?;
    let joined = back.elapsed();
    let join = c.front(standby).map(|f| f.traffic()).unwrap_or_default();

    eprintln!(
        "standby-cost {} chunk servers heartbeating every 300 ms, {chunks} chunks, windows of {window:?}",
        SERVERS.len()
    );
    with.print_heartbeats("standby", standby);
    with.print_heartbeats("leader", leader);
    eprintln!(
        "standby-cost CPU (% of a core)  with standby: leader {:.1}, standby {:.1}, etcd {:.1}, chunk servers {:.1}",
        with.core_pct(0),
        with.core_pct(1),
        with.core_pct(2),
        with.core_pct(3)
    );
    eprintln!(
        "standby-cost CPU (% of a core)  without:      leader {:.1}, etcd {:.1}, chunk servers {:.1}",
        without.core_pct(0),
        without.core_pct(2),
        without.core_pct(3)
    );
    eprintln!(
        "standby-cost resident  leader {} KiB, standby {} KiB",
        rss[0], rss[1]
    );
    eprintln!(
        "standby-cost rejoin    counts every replica {joined:.2?} after start; sent {} RPCs, {} B in, {} B out meanwhile",
        join.requests, join.bytes_in, join.bytes_out
    );
    Ok(())
}
