//! One token bucket per server for all migration traffic, in and out together.
//!
//! Cells are KiB, so rates above 4 GiB/s stay representable in governor's
//! `u32` cell counts. The bucket holds about 100 ms of traffic (between 64 KiB
//! and 16 MiB): large enough that a late timer wake-up is made up by the next
//! request instead of being lost (a one-frame bucket undershoots the rate by up
//! to 15 %), small enough that the initial burst barely shows over a transfer.
//! Requests larger than the bucket are split, because governor refuses them
//! outright.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Bytes per cell.
const CELL: u64 = 1024;
/// Bucket size as a fraction of one second of traffic.
const BURST_FRACTION: u64 = 10;
/// Smallest bucket.
const MIN_BURST: u64 = 64 * 1024;
/// Largest bucket.
const MAX_BURST: u64 = 16 << 20;

/// A shared bandwidth budget; `consume` waits until the bytes may pass.
#[derive(Debug)]
pub struct Throttle {
    /// `None` when unlimited.
    limiter: Option<DefaultDirectRateLimiter>,
    /// Bucket size in cells; no single wait asks for more.
    burst_cells: u32,
    /// The configured rate, bytes per second (0 = unlimited).
    bytes_per_sec: u64,
    /// Nanoseconds transfers have waited for the bucket, in all.
    waited_nanos: AtomicU64,
}

impl Throttle {
    /// A bucket refilling at `bytes_per_sec`; `0` means unlimited.
    pub fn new(bytes_per_sec: u64) -> Self {
        let burst = (bytes_per_sec / BURST_FRACTION).clamp(MIN_BURST, MAX_BURST);
        let burst_cells = u32::try_from(burst / CELL).unwrap_or(u32::MAX).max(1);
        let limiter = (bytes_per_sec > 0)
            .then(|| Duration::from_secs_f64(CELL as f64 / bytes_per_sec as f64))
            .and_then(Quota::with_period)
            .zip(NonZeroU32::new(burst_cells))
            .map(|(q, b)| RateLimiter::direct(q.allow_burst(b)));
        Throttle {
            limiter,
            burst_cells,
            bytes_per_sec,
            waited_nanos: AtomicU64::new(0),
        }
    }

    /// The configured rate in bytes per second (0 = unlimited).
    pub fn bytes_per_sec(&self) -> u64 {
        self.bytes_per_sec
    }

    /// Time transfers have waited for the bucket since the server started.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited_nanos.load(Ordering::Relaxed))
    }

    /// Waits until `bytes` may pass, drawing from the shared bucket.
    pub async fn consume(&self, bytes: usize) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        let started = std::time::Instant::now();
        let mut cells = (bytes as u64).div_ceil(CELL);
        while cells > 0 {
            let n = cells.min(u64::from(self.burst_cells));
            cells -= n;
            let Some(n) = u32::try_from(n).ok().and_then(NonZeroU32::new) else {
                continue;
            };
            // `n` never exceeds the burst, so this cannot report
            // InsufficientCapacity; if it ever did, letting bytes through
            // beats stalling a transfer forever.
            let _ = limiter.until_n_ready(n).await;
        }
        let waited = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.waited_nanos.fetch_add(waited, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn unlimited_never_waits() {
        let t = Throttle::new(0);
        let start = Instant::now();
        t.consume(1 << 30).await;
        assert!(start.elapsed() < Duration::from_millis(50));
    }

    #[tokio::test]
    async fn requests_above_the_burst_are_split() {
        // 64 KiB/s with a 64 KiB bucket: a 96 KiB request takes ~0.5 s, not an error.
        let t = Throttle::new(64 * 1024);
        let start = Instant::now();
        t.consume(96 * 1024).await;
        let e = start.elapsed();
        assert!(
            e >= Duration::from_millis(400) && e < Duration::from_millis(900),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn concurrent_users_share_one_budget() {
        // 8 MiB/s; two tasks push 4 MiB each in 512 KiB frames: ~1 s minus the
        // 0.1 s initial bucket.
        let t = Arc::new(Throttle::new(8 << 20));
        let start = Instant::now();
        let tasks: Vec<_> = (0..2)
            .map(|_| {
                let t = Arc::clone(&t);
                tokio::spawn(async move {
                    for _ in 0..8 {
                        t.consume(512 * 1024).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        let e = start.elapsed().as_secs_f64();
        assert!((0.85..1.1).contains(&e), "elapsed {e:.3} s");
    }

    /// Measures the steady rate over 10 s at the default 64 MiB/s:
    /// `cargo test -p keel-chunkserver -- --ignored --nocapture throttle_precision`.
    #[tokio::test]
    #[ignore = "takes 10 s; run to measure the throttle's precision"]
    async fn throttle_precision() {
        let rate = 64u64 << 20;
        let t = Throttle::new(rate);
        let frame = 512 * 1024;
        let start = Instant::now();
        let mut sent = 0u64;
        while start.elapsed() < Duration::from_secs(10) {
            t.consume(frame).await;
            sent += frame as u64;
        }
        let measured = sent as f64 / start.elapsed().as_secs_f64();
        let err = (measured / rate as f64 - 1.0) * 100.0;
        eprintln!("set {rate} B/s, measured {measured:.0} B/s ({err:+.2} %)");
        assert!(err.abs() < 2.0);
    }
}
