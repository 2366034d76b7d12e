//! One token bucket per server for all migration traffic, in and out together.
//!
//! The bucket is governor's GCRA (generic cell rate algorithm). Governor
//! fixes a limiter's quota when it is built, while `--migrate-bandwidth auto`
//! (see [`auto`]) changes the rate every few seconds; so the quota counts
//! time, not bytes: one cell is one nanosecond of the bucket, and `n` bytes
//! at `r` bytes per second cost `n / r` seconds of cells. Governor's state
//! (the theoretical arrival time of the cells granted so far) then means the
//! same at every rate: a rate change only reprices the requests to come. It
//! neither loses the bucket's state (a drained bucket stays drained) nor
//! grants a burst (as a limiter rebuilt for the new rate would, starting
//! full). Rebuilding limiters around one shared state store was the other
//! way; each limiter counts from its own start instant, so the state would
//! need translating at every swap.
//!
//! The bucket holds [`WINDOW`] of traffic at any rate: large enough that a
//! late timer wake-up is made up by the next request instead of being lost
//! (a one-frame bucket undershoots the rate by up to 15 %), small enough that
//! the initial burst barely shows over a transfer. Requests larger than the
//! bucket are split (governor refuses them whole).

pub mod auto;

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Time of traffic the bucket holds.
pub const WINDOW: Duration = Duration::from_millis(100);
/// One cell of the quota: a nanosecond of the bucket's time.
const CELL: Duration = Duration::from_nanos(1);
/// Cells the bucket holds: [`WINDOW`] in nanoseconds (fits a `u32`).
const BURST_CELLS: u32 = WINDOW.as_nanos() as u32;

/// A shared bandwidth budget; `consume` waits until the bytes may pass.
#[derive(Debug)]
pub struct Throttle {
    /// The current rate, bytes per second (0 = unlimited).
    bytes_per_sec: AtomicU64,
    /// The bucket, counting nanoseconds of traffic at the current rate.
    bucket: DefaultDirectRateLimiter,
    /// Nanoseconds transfers have waited for the bucket, in all.
    waited_nanos: AtomicU64,
}

/// Bytes that fit the bucket at `rate` bytes per second (at least one).
fn burst_bytes(rate: u64) -> u64 {
    let per_window = u128::from(rate) * WINDOW.as_nanos() / 1_000_000_000;
    u64::try_from(per_window).unwrap_or(u64::MAX).max(1)
}

/// Cells `n` bytes cost at `rate`, rounded up, within one bucket.
fn cost(n: u64, rate: u64) -> NonZeroU32 {
    let nanos = (u128::from(n) * 1_000_000_000).div_ceil(u128::from(rate.max(1)));
    let cells = u32::try_from(nanos).unwrap_or(BURST_CELLS).min(BURST_CELLS);
    NonZeroU32::new(cells).unwrap_or(NonZeroU32::MIN)
}

impl Throttle {
    /// A bucket refilling at `bytes_per_sec`; `0` means unlimited.
    pub fn new(bytes_per_sec: u64) -> Self {
        let burst = NonZeroU32::new(BURST_CELLS).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(CELL)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        Throttle {
            bytes_per_sec: AtomicU64::new(bytes_per_sec),
            bucket: RateLimiter::direct(quota),
            waited_nanos: AtomicU64::new(0),
        }
    }

    /// The current rate in bytes per second (0 = unlimited).
    pub fn bytes_per_sec(&self) -> u64 {
        self.bytes_per_sec.load(Ordering::Relaxed)
    }

    /// Changes the rate; the bucket's state carries over (see the module doc).
    pub fn set_rate(&self, bytes_per_sec: u64) {
        self.bytes_per_sec.store(bytes_per_sec, Ordering::Relaxed);
    }

    /// Time transfers have waited for the bucket since the server started.
    pub fn waited(&self) -> Duration {
        Duration::from_nanos(self.waited_nanos.load(Ordering::Relaxed))
    }

    /// Waits until `bytes` may pass, drawing from the shared bucket.
    pub async fn consume(&self, bytes: usize) {
        let started = Instant::now();
        let mut left = bytes as u64;
        while left > 0 {
            let rate = self.bytes_per_sec();
            if rate == 0 {
                break;
            }
            let n = left.min(burst_bytes(rate));
            left -= n;
            // `cost` never exceeds the bucket, so governor's only refusal
            // (more cells than the bucket holds) cannot happen.
            let _ = self.bucket.until_n_ready(cost(n, rate)).await;
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
        // 640 KiB/s with a 64 KiB bucket: a 384 KiB request takes ~0.5 s, not an error.
        let t = Throttle::new(640 * 1024);
        let start = Instant::now();
        t.consume(384 * 1024).await;
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

    #[tokio::test]
    async fn a_rate_change_grants_no_burst() {
        // Drain the bucket at 1 MiB/s, then raise the rate eightfold: the
        // next bucketful (800 KiB, 98 ms at 8 MiB/s) waits for its own time.
        // A bucket that started afresh at the new rate would let it pass at
        // once.
        let t = Throttle::new(1 << 20);
        t.consume(256 * 1024).await;
        t.set_rate(8 << 20);
        let start = Instant::now();
        t.consume(800 * 1024).await;
        let e = start.elapsed();
        assert!(
            e >= Duration::from_millis(75) && e < Duration::from_secs(1),
            "{e:?}"
        );
        // And a fresh bucket does pass it at once, or the above proves nothing.
        let fresh = Throttle::new(8 << 20);
        let start = Instant::now();
        fresh.consume(800 * 1024).await;
        assert!(start.elapsed() < Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_lower_rate_applies_to_the_next_request() {
        // 8 MiB/s down to 1 MiB/s: 512 KiB more take ~0.5 s less what the
        // bucket held at the switch (never more than its 100 ms).
        let t = Throttle::new(8 << 20);
        t.consume(1 << 20).await;
        t.set_rate(1 << 20);
        let start = Instant::now();
        t.consume(512 * 1024).await;
        let e = start.elapsed().as_secs_f64();
        assert!((0.38..0.9).contains(&e), "elapsed {e:.3} s");
    }

    #[test]
    fn costs_are_time_and_fit_the_bucket() {
        // 512 KiB at 64 MiB/s: 7.8125 ms.
        assert_eq!(cost(512 * 1024, 64 << 20).get(), 7_812_500);
        assert_eq!(burst_bytes(64 << 20), 6_710_886);
        // Above 4 GiB/s: still representable, a bucketful is 100 ms.
        let fast = 10u64 << 30;
        assert_eq!(cost(burst_bytes(fast), fast).get(), BURST_CELLS);
        assert_eq!(cost(1, 1).get(), BURST_CELLS, "split before it gets here");
        assert_eq!(burst_bytes(1), 1);
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
