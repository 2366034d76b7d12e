//! One round: the idle phase (balancer paused), the rebalance phase (until
//! the cluster is balanced and the queue idle) under the same load, and the
//! read-back of every chunk. With `--alternate SECS` the balancer is paused
//! and resumed every SECS instead, so both columns sample the same stretch
//! of time on a machine whose other load comes and goes.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_proto::v1::master_client::MasterClient;
use keel_proto::v1::{RebalancePauseRequest, RebalanceResumeRequest};
use keel_tests::load::{self, Load, LoadOpts, Percentiles, Poll, Verified, Watch};
use keel_tests::{Cluster, master_client, wait_until};
use tonic::transport::Channel;

use crate::Opts;
use crate::cluster::{self, SIZES, Usage};
use crate::report::{MIB, busy};

/// Longest a rebalance may take before the round is given up.
const REBALANCE_LIMIT: Duration = Duration::from_secs(600);
/// How often the move queue is polled.
const POLL: Duration = Duration::from_millis(250);
/// How often the rebalance is checked for its end.
const CHECK: Duration = Duration::from_secs(1);
/// Reads before the idle phase starts, so every client has its channels.
const WARM_UP_READS: u64 = 100;

/// What one round measured.
pub struct Round {
    /// Reads that started while the balancer was paused and no move ran.
    pub idle: Percentiles,
    /// Reads that started while moves were running.
    pub moving: Percentiles,
    /// Seconds in which moves were running.
    pub move_secs: f64,
    /// Bytes moved in the round.
    pub moved_bytes: u64,
    /// Moves done in the round.
    pub moves: u64,
    /// CPU use while paused (`.0`) and while the balancer ran (`.1`).
    pub cpu: (Share, Share),
    /// What the clients did, over the whole round.
    pub report: load::Report,
    /// The read-back of every chunk.
    pub verified: Verified,
    /// Load averages and CPU pressure at the end of the rebalance.
    pub machine: String,
}

/// CPU use over some stretches of time.
#[derive(Debug, Clone, Default)]
pub struct Share {
    /// Wall seconds.
    pub secs: f64,
    /// CPU seconds per process, in [`Usage::procs`] order.
    pub procs: Vec<(String, f64)>,
    /// Seconds in which some task waited for a CPU.
    pub waited: f64,
}

impl Share {
    /// Adds the stretch from `a` to `b`.
    fn add(&mut self, a: &Usage, b: &Usage) {
        self.secs += (b.at - a.at).as_secs_f64();
        self.waited += b.waited - a.waited;
        if self.procs.is_empty() {
            self.procs = a.procs.iter().map(|p| (p.0.clone(), 0.0)).collect();
        }
        for ((sum, x), y) in self.procs.iter_mut().zip(&a.procs).zip(&b.procs) {
            sum.1 += y.1 - x.1;
        }
    }
}

impl Round {
    /// Failed reads and writes, and chunks lost, bad or below their factor.
    pub fn trouble(&self) -> usize {
        let v = &self.verified;
        self.report.failed_reads.len()
            + self.report.failed_writes.len()
            + v.lost.len()
            + v.bad.len()
            + v.short.len()
    }

    /// MiB per second moved while the balancer ran (resumed until balanced,
    /// or paused again).
    pub fn move_rate(&self) -> f64 {
        self.moved_bytes as f64 / MIB / self.cpu.1.secs.max(1e-9)
    }
}

/// Runs round `no` on a fresh cluster.
pub async fn run(opts: &Opts, no: usize, cs_flags: &[String]) -> Result<Round> {
    let (mut fresh, chunks) = cluster::start(opts, no, cs_flags).await?;
    let url = fresh.0.master_url();
    let watch = Watch::start(&url, POLL);
    let load_opts = LoadOpts {
        clients: opts.clients,
        write_one_in: opts.write_one_in,
        sizes: SIZES,
        ops_per_sec: opts.rate,
        seed: no as u64,
        ..LoadOpts::default()
    };
    let mut clients = Load::start(&url, load_opts, chunks);
    let timeline = phases(opts, no, &fresh.0, &clients, &watch).await?;
    clients.stop().await;
    eprintln!("round {no}: reading every chunk back");
    let verified = clients.verify_all(Duration::from_secs(60)).await?;
    let round = measure(&timeline, &clients, &watch.polls(), verified)?;
    if round.trouble() > 0 {
        // Keep the daemons' logs and data dirs for a look at what went wrong.
        fresh.0.dir.disable_cleanup(true);
        let dir = fresh.0.dir.path().display();
        eprintln!("round {no}: failures; keeping {dir}");
    }
    Ok(round)
}

/// How often an unloaded rebalance is polled: often, since the first and
/// last polls with moves running bound its time.
const UNLOADED_POLL: Duration = Duration::from_millis(50);

/// A rebalance with no client at all: bytes moved and the seconds they took,
/// from the last poll before any move ran to the first poll after the last
/// one that saw a move running (so the wait for the first balancer pass is
/// left out, and both ends err on the slow side by up to one poll).
pub async fn unloaded(opts: &Opts, no: usize, cs_flags: &[String]) -> Result<(u64, f64)> {
    let (fresh, _chunks) = cluster::start(opts, no, cs_flags).await?;
    let url = fresh.0.master_url();
    let mut m = master_client(&url).await?;
    let watch = Watch::start(&url, UNLOADED_POLL);
    let start = Instant::now();
    m.rebalance_resume(RebalanceResumeRequest {}).await?;
    while keel_tests::master::balanced_and_idle(&mut m)
        .await
        .is_none()
    {
        if start.elapsed() > REBALANCE_LIMIT {
            bail!("round {no}: not balanced after {REBALANCE_LIMIT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
    let polls = watch.polls();
    let busy = |p: &Poll| p.running > 0 || p.done > 0;
    let first = polls.iter().position(busy).context("no move ran")?;
    let last = polls.iter().rposition(|p| p.running > 0).unwrap_or(first);
    let from = polls[first.saturating_sub(1)].at.max(start);
    let end = polls.get(last + 1).unwrap_or(&polls[last]);
    Ok((end.bytes_moved, (end.at - from).as_secs_f64().max(1e-3)))
}

/// When measuring began, and the CPU use while paused and while running.
struct Timeline {
    from: Instant,
    cpu: (Share, Share),
    machine: String,
}

/// Paused and running stretches until the cluster is balanced and the
/// queue idle: one idle phase of `--secs` and then the whole rebalance, or
/// stretches of `--alternate` seconds each.
async fn phases(
    opts: &Opts,
    no: usize,
    c: &Cluster,
    clients: &Load,
    watch: &Watch,
) -> Result<Timeline> {
    let url = c.master_url();
    let mut m = master_client(&url).await?;
    wait_until("the clients to read", Duration::from_secs(30), || {
        let n = clients.report().reads;
        async move { n >= WARM_UP_READS }
    })
    .await?;
    let (idle_len, run_len) = match opts.alternate {
        0 => (opts.secs, REBALANCE_LIMIT.as_secs()),
        n => (n, n),
    };
    let (from, mut resumed) = (Instant::now(), None::<Instant>);
    let (mut idle, mut busy_share) = (Share::default(), Share::default());
    eprintln!("round {no}: idle {idle_len} s, then moves");
    loop {
        let before = cluster::usage(c);
        tokio::time::sleep(Duration::from_secs(idle_len)).await;
        let paused_until = cluster::usage(c);
        idle.add(&before, &paused_until);
        m.rebalance_resume(RebalanceResumeRequest {}).await?;
        let resumed_at = *resumed.get_or_insert_with(Instant::now);
        let done = run_for(no, &mut m, Duration::from_secs(run_len), clients, watch).await;
        busy_share.add(&paused_until, &cluster::usage(c));
        if done {
            break;
        }
        if resumed_at.elapsed() > REBALANCE_LIMIT {
            bail!("round {no}: not balanced {REBALANCE_LIMIT:?} after the first resume");
        }
        m.rebalance_pause(RebalancePauseRequest {}).await?;
    }
    Ok(Timeline {
        from,
        cpu: (idle, busy_share),
        machine: busy(),
    })
}

/// Lets the balancer run for up to `len`; true once the cluster is balanced
/// and the queue idle. Asks the master once a second, on one connection, so
/// the bench adds little to the master's work while moves run.
async fn run_for(
    no: usize,
    m: &mut MasterClient<Channel>,
    len: Duration,
    clients: &Load,
    watch: &Watch,
) -> bool {
    let until = Instant::now() + len;
    let mut shown = Instant::now();
    while Instant::now() < until {
        if keel_tests::master::balanced_and_idle(m).await.is_some() {
            return true;
        }
        if shown.elapsed() >= Duration::from_secs(2) {
            progress(no, clients, &watch.polls());
            shown = Instant::now();
        }
        let left = until.saturating_duration_since(Instant::now());
        tokio::time::sleep(CHECK.min(left)).await;
    }
    false
}

/// Splits the samples into idle and moving and adds up the moves.
fn measure(t: &Timeline, clients: &Load, polls: &[Poll], verified: Verified) -> Result<Round> {
    // Nothing moves before the first resume, and the watch polled on after
    // the queue went idle: the last poll holds the round's totals.
    let last = polls.last().context("no status poll")?;
    let from = |spans: Vec<(Instant, Instant)>| -> Vec<(Instant, Instant)> {
        spans.into_iter().filter(|s| s.0 >= t.from).collect()
    };
    let (idle, moving) = (
        from(load::idle_spans(polls)),
        from(load::moving_spans(polls)),
    );
    Ok(Round {
        idle: clients.percentiles(|s| load::within(&idle, s.at)),
        moving: clients.percentiles(|s| load::within(&moving, s.at)),
        move_secs: moving.iter().map(|s| (s.1 - s.0).as_secs_f64()).sum(),
        moved_bytes: last.bytes_moved,
        moves: last.done,
        cpu: t.cpu.clone(),
        report: clients.report(),
        verified,
        machine: t.machine.clone(),
    })
}

/// One line on stderr: where the rebalance and the load are.
fn progress(no: usize, clients: &Load, polls: &[Poll]) {
    let (Some(p), r) = (polls.last(), clients.report()) else {
        return;
    };
    eprintln!(
        "round {no}: {} moves done, {} running, {} pending, {:.0} MiB moved; \
         {} reads, {} writes, {} failed; {}",
        p.done,
        p.running,
        p.pending,
        p.bytes_moved as f64 / MIB,
        r.reads,
        r.writes,
        r.failed_reads.len() + r.failed_writes.len(),
        busy()
    );
}
