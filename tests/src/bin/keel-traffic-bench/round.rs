//! One design on a fresh cluster: the skewed phase until the master sees
//! node 1 hot, one balancer pass (as `keelctl rebalance run --wait`), the
//! phase after it, and last the baseline phase (the readers on the evenly
//! spread copy of the hot set, which the pass never saw); the readers run
//! throughout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use keel_tests::load::Percentiles;
use keel_tests::master_client;
use keel_tests::readers::{Phase, Read, ReaderOpts, Readers, Served, by_server};
use keel_tests::traffic;

use crate::Opts;
use crate::cluster::{self, HOT_NODE};

/// Reads of the first seconds are not counted: every reader opens a
/// channel to every server then.
const WARM_UP: Duration = Duration::from_secs(2);
/// Reads right after the pass are not counted: a reader may still hold a
/// chunk's old location for its cache's lifetime.
const SETTLE: Duration = Duration::from_secs(3);
/// Longest wait for the master to see node 1 hot.
const HOT_WITHIN: Duration = Duration::from_secs(60);
/// Longest a pass may take.
const PASS_LIMIT: Duration = Duration::from_secs(180);

/// A stretch of time whose reads are counted.
#[derive(Debug, Clone, Copy)]
pub struct Window(pub Instant, pub Instant);

impl Window {
    fn holds(&self, r: &Read) -> bool {
        r.at >= self.0 && r.at < self.1
    }
}

/// What one design measured.
pub struct Round {
    /// `capacity-only` or `traffic-aware`.
    pub design: &'static str,
    /// Every read of the baseline phase, whichever server served it.
    pub baseline: Percentiles,
    /// Reads served per server and their latency, by phase.
    pub served: BTreeMap<Phase, BTreeMap<String, Served>>,
    /// Reads served by every node but node 1, by phase: a baseline taken
    /// in the same seconds as node 1's figure, so the machine's other load
    /// weighs on both alike.
    pub others: BTreeMap<Phase, Percentiles>,
    /// The readers' reads/s per server in each phase.
    pub rates: BTreeMap<Phase, BTreeMap<String, f64>>,
    /// The master's reads/s per server (decayed) at the end.
    pub master_rates: BTreeMap<String, f64>,
    /// Utilization per server after the pass, percent.
    pub utilization: BTreeMap<String, f64>,
    /// Whether capacity was inside its band after the pass.
    pub capacity_balanced: bool,
    /// Planned moves for load and for capacity.
    pub moves: (usize, usize),
    /// Bytes the pass moved.
    pub bytes_moved: u64,
    /// Seconds from the run to the idle queue.
    pub pass_secs: f64,
    /// Reads that failed, refusals seen.
    pub failures: Vec<String>,
    /// RESOURCE_EXHAUSTED answers the readers got (and retried).
    pub refusals: u64,
}

impl Round {
    /// Node 1's read latency in `phase`.
    pub fn node1(&self, phase: Phase) -> Percentiles {
        self.served
            .get(&phase)
            .and_then(|s| s.get(HOT_NODE))
            .map(|s| s.latency)
            .unwrap_or_default()
    }
}

/// Runs one design: `master_flags` select it.
pub async fn run(opts: &Opts, design: &'static str, master_flags: &[String]) -> Result<Round> {
    let (fresh, sets) = cluster::start(opts, design, master_flags).await?;
    let url = fresh.0.master_url();
    let servers = cluster::ids(opts);
    let ropts = ReaderOpts {
        readers: opts.readers,
        ops_per_sec: opts.rate,
        exponent: opts.exponent,
        offset: opts.offset,
        seed: opts.seed,
        ..ReaderOpts::default()
    };
    let mut readers = Readers::start(&url, ropts, sets.skewed, Phase::Before)?;
    let phase_len = Duration::from_secs(opts.secs);
    eprintln!("{design}: skewed reads until the master sees {HOT_NODE} hot");
    let mut m = master_client(&url).await?;
    let before_from = Instant::now() + WARM_UP;
    let pct = keel_balancer::traffic::DEFAULT_LOAD_THRESHOLD_PCT;
    if let Err(e) = traffic::wait_hot(&mut m, HOT_NODE, pct, HOT_WITHIN).await {
        // A master that measures no load at all (one that predates it)
        // still gets its capacity pass measured; any other miss is a failure.
        let rates = traffic::servers(&mut m).await?;
        if rates.values().any(|s| s.reads_per_sec > 0.0) {
            return Err(e);
        }
        eprintln!("{design}: the master reports no read load; going on without it");
    }
    tokio::time::sleep_until((before_from + phase_len).into()).await;
    let before = Window(before_from, Instant::now());

    readers.set_phase(Phase::During);
    eprintln!("{design}: one pass");
    let during_from = Instant::now();
    let pass = traffic::run_pass(&mut m, PASS_LIMIT).await?;
    let during = Window(during_from, Instant::now());
    readers.set_phase(Phase::After);
    eprintln!(
        "{design}: {} moves in {:.1} s; {} s after",
        pass.plan.moves.len(),
        pass.took.as_secs_f64(),
        opts.secs
    );
    let after = window_of(phase_len, SETTLE).await;

    // Last, so that its reads are not in the rates the pass planned on.
    eprintln!("{design}: baseline, {} s on the even copy", opts.secs);
    readers.switch_to(sets.even)?;
    readers.set_phase(Phase::Baseline);
    let base = window_of(phase_len, WARM_UP).await;
    readers.stop().await;

    let check = traffic::check(&mut m).await?;
    let master_rates = traffic::servers(&mut m)
        .await?
        .into_iter()
        .map(|(id, s)| (id, s.reads_per_sec))
        .collect();
    let reads = readers.reads();
    let windows = [
        (Phase::Baseline, base),
        (Phase::Before, before),
        (Phase::During, during),
        (Phase::After, after),
    ];
    Ok(Round {
        design,
        baseline: Percentiles::of(reads.iter().filter(|r| base.holds(r)).map(|r| r.latency)),
        served: windows
            .iter()
            .map(|(p, w)| (*p, by_server(&reads, |r| w.holds(r))))
            .collect(),
        others: windows
            .iter()
            .map(|(p, w)| {
                let other = reads.iter().filter(|r| w.holds(r) && r.server != HOT_NODE);
                (*p, Percentiles::of(other.map(|r| r.latency)))
            })
            .collect(),
        rates: windows
            .iter()
            .map(|(p, w)| (*p, traffic::read_rates(&reads, &servers, w.0, w.1)))
            .collect(),
        master_rates,
        utilization: check
            .servers
            .iter()
            .map(|s| (s.server.clone(), s.utilization_pct))
            .collect(),
        capacity_balanced: check.balanced,
        moves: (pass.moves_for("load"), pass.moves_for("capacity")),
        bytes_moved: pass.status.bytes_moved,
        pass_secs: pass.took.as_secs_f64(),
        failures: readers.failures(),
        refusals: readers.refusals(),
    })
}

/// Waits `skip`, then `len`: the window of the second wait.
async fn window_of(len: Duration, skip: Duration) -> Window {
    tokio::time::sleep(skip).await;
    let from = Instant::now();
    tokio::time::sleep(len).await;
    Window(from, Instant::now())
}
