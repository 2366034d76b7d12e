//! Watching a copy from the outside while it runs: a thread that samples
//! something every few milliseconds (resident memory from `/proc`, the size
//! of the target's temp file), and what the samples say afterwards.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Samples a value on a thread of its own until finished.
pub struct Sampler<T> {
    /// Set to stop the thread.
    stop: Arc<AtomicBool>,
    /// The thread; returns (seconds since start, value) pairs.
    thread: JoinHandle<Vec<(f64, T)>>,
}

impl<T: Send + 'static> Sampler<T> {
    /// Calls `probe` now and then every `every` until [`Sampler::finish`].
    pub fn start(every: Duration, mut probe: impl FnMut() -> T + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut out = vec![];
            while !flag.load(Ordering::Relaxed) {
                out.push((start.elapsed().as_secs_f64(), probe()));
                std::thread::sleep(every);
            }
            out.push((start.elapsed().as_secs_f64(), probe()));
            out
        });
        Sampler { stop, thread }
    }

    /// Stops sampling and returns every sample.
    pub fn finish(self) -> Result<Vec<(f64, T)>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("sampler thread panicked"))
    }
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(&format!("{field}:")))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time of a process, seconds of user + system time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    /// Its own threads.
    pub own: f64,
    /// Its children that it has waited for.
    pub children: f64,
}

/// CPU times of process `pid` (a number, or `self`) from `/proc/<pid>/stat`.
pub fn cpu_times(pid: &str) -> Result<CpuTimes> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat(&stat).with_context(|| format!("unexpected /proc/{pid}/stat: {stat:?}"))
}

fn parse_stat(stat: &str) -> Option<CpuTimes> {
    // Fields after the parenthesised command name start with the 3rd; utime,
    // stime, cutime and cstime are the 14th to 17th.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // CLK_TCK is 100 on every Linux this runs on.
    let tick = |i: usize| f.get(i).map(|t| t / 100.0);
    Some(CpuTimes {
        own: tick(0)? + tick(1)?,
        children: tick(2)? + tick(3)?,
    })
}

/// Total size of the regular files directly in `dir` (0 if unreadable).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

/// Samples the bytes under `dir` (the target's `tmp/` during a copy).
pub fn watch_dir(dir: PathBuf, every: Duration) -> Sampler<u64> {
    Sampler::start(every, move || dir_bytes(&dir))
}

/// What a series of (seconds, bytes written so far) samples of one transfer says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Bytes per second between the samples where 10 % and 90 % of `total`
    /// had been written: the rate without the start (initial burst) or the
    /// end.
    pub steady: f64,
    /// Longest time between two samples that saw no growth while the
    /// transfer was under way.
    pub longest_stall: f64,
}

/// Reads `samples` of a transfer of `total` bytes; `None` if it never passed 90 %.
pub fn progress(samples: &[(f64, u64)], total: u64) -> Option<Progress> {
    let at = |frac: f64| {
        samples
            .iter()
            .find(|(_, b)| *b as f64 >= frac * total as f64)
            .copied()
    };
    let (t10, b10) = at(0.1)?;
    let (t90, b90) = at(0.9)?;
    let steady = (b90 - b10) as f64 / (t90 - t10).max(1e-9);
    let mut longest_stall = 0f64;
    let mut since = None;
    for w in samples.windows(2) {
        let ((t0, b0), (t1, b1)) = (w[0], w[1]);
        let under_way = b0 > 0 && b0 < total;
        if under_way && b1 == b0 {
            let from = *since.get_or_insert(t0);
            longest_stall = longest_stall.max(t1 - from);
        } else {
            since = None;
        }
    }
    Some(Progress {
        steady,
        longest_stall,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_and_stalls() {
        // 100 bytes: 10 per tick, stuck for three ticks at 50.
        let s = [
            (0.0, 0),
            (1.0, 10),
            (2.0, 20),
            (3.0, 30),
            (4.0, 40),
            (5.0, 50),
            (6.0, 50),
            (7.0, 50),
            (8.0, 50),
            (9.0, 60),
            (10.0, 70),
            (11.0, 80),
            (12.0, 90),
            (13.0, 100),
        ];
        let p = progress(&s, 100).expect("passed 90 %");
        assert_eq!(p.steady, 80.0 / 11.0);
        assert_eq!(p.longest_stall, 3.0);
        assert_eq!(progress(&s[..5], 100), None);
    }

    #[test]
    fn cpu_times_from_stat() {
        let stat = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 150 50 300 100 20 0 1 0";
        assert_eq!(
            parse_stat(stat),
            Some(CpuTimes {
                own: 2.0,
                children: 4.0
            })
        );
        assert!(cpu_times("self").is_ok());
    }
}
