//! What the zoo measures: a daemon's file descriptors, resident memory and
//! threads from `/proc`, sampled for their peak while a case runs, and a
//! well-behaved client's latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tokio::task::JoinHandle;

/// One look at a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Open file descriptors.
    pub fds: usize,
    /// Resident memory, KiB.
    pub rss_kib: u64,
    /// Threads.
    pub threads: u64,
}

impl Usage {
    /// The larger of each field.
    fn max(self, o: Usage) -> Usage {
        Usage {
            fds: self.fds.max(o.fds),
            rss_kib: self.rss_kib.max(o.rss_kib),
            threads: self.threads.max(o.threads),
        }
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} fds, {:.1} MiB, {} threads",
            self.fds,
            self.rss_kib as f64 / 1024.0,
            self.threads
        )
    }
}

/// The usage of process `pid` now.
pub fn usage(pid: u32) -> Result<Usage> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Usage {
        fds,
        rss_kib: field("VmRSS:"),
        threads: field("Threads:"),
    })
}

/// How much a case may add to a daemon's usage over its `before`.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// File descriptors.
    pub fds: usize,
    /// Resident memory, MiB.
    pub rss_mib: u64,
    /// Threads.
    pub threads: u64,
}

impl Bounds {
    /// Whether `now` stays within these bounds over `before`.
    pub fn check(&self, what: &str, before: Usage, now: Usage) -> Result<()> {
        let fail = || format!("{what}: before {before}; now {now}");
        ensure!(
            now.fds <= before.fds + self.fds,
            "{}: more than {} fds over",
            fail(),
            self.fds
        );
        ensure!(
            now.rss_kib <= before.rss_kib + self.rss_mib * 1024,
            "{}: more than {} MiB over",
            fail(),
            self.rss_mib
        );
        ensure!(
            now.threads <= before.threads + self.threads,
            "{}: more than {} threads over",
            fail(),
            self.threads
        );
        Ok(())
    }
}

/// Samples a process every 50 ms, keeping the peak.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Usage>,
}

impl Sampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut peak = Usage::default();
            while !flag.load(Ordering::Relaxed) {
                if let Ok(u) = usage(pid) {
                    peak = peak.max(u);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            peak
        });
        Sampler { stop, task }
    }

    /// Stops and returns the peak.
    pub async fn peak(self) -> Result<Usage> {
        self.stop.store(true, Ordering::Relaxed);
        Ok(self.task.await?)
    }
}

/// Sorted latencies' 99th percentile.
pub fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99 / 100).min(sorted.len().saturating_sub(1))]
}

/// Below this, a p99 is taken as this: on a loaded 2-core machine the
/// scheduler alone moves single calls by several milliseconds.
pub const P99_FLOOR: Duration = Duration::from_millis(25);

/// Checks a p99 during a case against twice the idle one (floored).
pub fn check_p99(what: &str, idle: Duration, during: Duration) -> Result<()> {
    let limit = 2 * idle.max(P99_FLOOR);
    ensure!(
        during <= limit,
        "{what}: the well-behaved client's p99 went from {idle:?} idle to {during:?}, above {limit:?}"
    );
    Ok(())
}

/// One operation of a well-behaved client, timed.
pub type Op = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>
        + Send
        + Sync,
>;

/// Makes a well-behaved client's [`Op`] (its connection included).
pub type MakeOp = Box<
    dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Op>> + Send>> + Send,
>;

/// Where the client's thread answers.
type Replies = std::sync::mpsc::Receiver<Result<Vec<Duration>>>;

/// What the client's thread is asked.
enum Ask {
    /// `n` back-to-back latencies.
    Sample(usize, std::sync::mpsc::Sender<Result<Vec<Duration>>>),
    /// Latencies until the flag is set.
    Run(
        Arc<AtomicBool>,
        std::sync::mpsc::Sender<Result<Vec<Duration>>>,
    ),
}

/// A well-behaved client on a thread and runtime of its own, connection
/// included, so the attackers' tasks in this process cannot delay it: what
/// it measures is the daemon.
pub struct Good {
    asks: tokio::sync::mpsc::UnboundedSender<Ask>,
    running: Option<(Arc<AtomicBool>, Replies)>,
}

impl Good {
    /// Starts the client's thread; `make` connects it.
    pub fn new(make: MakeOp) -> Result<Self> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Ask>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::spawn(move || {
            rt.block_on(async move {
                let op = make().await;
                while let Some(ask) = rx.recv().await {
                    let (reply, r) = match (&op, ask) {
                        (Err(e), Ask::Sample(_, r) | Ask::Run(_, r)) => {
                            (r, Err(anyhow::anyhow!("connecting: {e}")))
                        }
                        (Ok(op), Ask::Sample(n, r)) => (r, times(op, |done| done >= n).await),
                        (Ok(op), Ask::Run(stop, r)) => {
                            (r, times(op, |_| stop.load(Ordering::Relaxed)).await)
                        }
                    };
                    let _ = reply.send(r);
                }
            });
        });
        Ok(Good {
            asks: tx,
            running: None,
        })
    }

    /// The p99 of `n` back-to-back calls (the idle baseline).
    pub fn idle_p99(&self, n: usize) -> Result<Duration> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.asks
            .send(Ask::Sample(n, tx))
            .map_err(|_| anyhow::anyhow!("client thread gone"))?;
        Ok(p99(&rx.recv()??))
    }

    /// Starts calling until [`Good::finish`].
    pub fn start(&mut self) -> Result<()> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        self.asks
            .send(Ask::Run(Arc::clone(&stop), tx))
            .map_err(|_| anyhow::anyhow!("client thread gone"))?;
        self.running = Some((stop, rx));
        Ok(())
    }

    /// Stops; the p99 since [`Good::start`] and the number of calls.
    pub async fn finish(&mut self) -> Result<(Duration, usize)> {
        let (stop, rx) = self
            .running
            .take()
            .ok_or_else(|| anyhow::anyhow!("not started"))?;
        stop.store(true, Ordering::Relaxed);
        let got = tokio::task::spawn_blocking(move || rx.recv()).await??;
        let got = got?;
        Ok((p99(&got), got.len()))
    }
}

/// Latencies of `op`, called back to back (5 ms apart) until `enough`
/// says so; sorted.
async fn times(op: &Op, enough: impl Fn(usize) -> bool) -> Result<Vec<Duration>> {
    let mut out = vec![];
    while !enough(out.len()) {
        let t = Instant::now();
        op().await?;
        out.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    out.sort();
    Ok(out)
}

/// Prints one case's figures in the table `docs/security.md` carries.
pub fn figures(
    case: &str,
    before: Usage,
    during: Usage,
    after: Usage,
    idle: Duration,
    busy: Duration,
) {
    println!(
        "FIGURES | {case} | {before} | {during} | {after} | {:.1} ms | {:.1} ms |",
        idle.as_secs_f64() * 1e3,
        busy.as_secs_f64() * 1e3
    );
}
