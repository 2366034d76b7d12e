//! [`RecentP99`]: the p99 of client read service times over the last
//! [`WINDOW`], in constant memory whatever the read rate.
//!
//! The window is a ring of [`SLOTS`] slots of [`SLOT`] each, every slot a
//! histogram with [`PER_OCTAVE`] buckets per doubling of the time; a slot is
//! cleared when the ring comes back to it. So the p99 covers the slot being
//! filled plus the ones before it, between `WINDOW - SLOT` and `WINDOW`, and
//! is rounded up to its bucket's upper bound (at most 9 % above the exact
//! value): a tail estimate for the master, never an under-estimate.

use std::time::{Duration, Instant};

/// How far back the p99 looks (about; see the module doc).
pub const WINDOW: Duration = Duration::from_secs(30);

/// One slot of the ring.
pub const SLOT: Duration = Duration::from_secs(5);

/// Slots in the ring.
pub const SLOTS: usize = (WINDOW.as_secs() / SLOT.as_secs()) as usize;

/// Buckets per doubling: 2^(1/8) ≈ 1.09 between bucket bounds.
pub const PER_OCTAVE: usize = 8;

/// Buckets from 1 µs up: 30 doublings reach about 18 minutes, far beyond any
/// read's first frame; longer times fall into the last bucket.
const BUCKETS: usize = 30 * PER_OCTAVE;

/// One slot: which `SLOT`-long stretch it counts, and its histogram.
#[derive(Debug, Clone)]
struct Slot {
    /// Slot number since `origin`; `None` while unused.
    epoch: Option<u64>,
    /// Samples per bucket.
    counts: Box<[u32; BUCKETS]>,
}

/// Client read service times of the last [`WINDOW`].
#[derive(Debug, Clone)]
pub struct RecentP99 {
    /// Slot numbers count from here.
    origin: Instant,
    /// The ring.
    slots: Vec<Slot>,
}

impl Default for RecentP99 {
    fn default() -> Self {
        RecentP99::new(Instant::now())
    }
}

impl RecentP99 {
    /// An empty window whose slots count from `origin`.
    pub fn new(origin: Instant) -> Self {
        let slot = Slot {
            epoch: None,
            counts: Box::new([0; BUCKETS]),
        };
        RecentP99 {
            origin,
            slots: vec![slot; SLOTS],
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.origin);
        (since.as_nanos() / SLOT.as_nanos()) as u64
    }

    /// Records one service time measured at `now`.
    pub fn record(&mut self, now: Instant, service: Duration) {
        let epoch = self.epoch(now);
        let slot = &mut self.slots[(epoch % SLOTS as u64) as usize];
        if slot.epoch != Some(epoch) {
            slot.counts.fill(0);
            slot.epoch = Some(epoch);
        }
        let b = &mut slot.counts[bucket(service)];
        *b = b.saturating_add(1);
    }

    /// The p99 of the samples in the window at `now` (rounded up to its
    /// bucket), or `None` without samples.
    pub fn p99(&self, now: Instant) -> Option<Duration> {
        let epoch = self.epoch(now);
        let mut counts = [0u64; BUCKETS];
        for s in &self.slots {
            // Only the current slot and the ones before it in the ring.
            if s.epoch
                .is_some_and(|e| e <= epoch && epoch - e < SLOTS as u64)
            {
                for (total, &n) in counts.iter_mut().zip(s.counts.iter()) {
                    *total += u64::from(n);
                }
            }
        }
        let n: u64 = counts.iter().sum();
        if n == 0 {
            return None;
        }
        // Nearest rank: the smallest time at or above 99 % of the samples.
        let rank = (n * 99).div_ceil(100);
        let mut seen = 0;
        for (i, &c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(upper_bound(i));
            }
        }
        Some(upper_bound(BUCKETS - 1))
    }
}

/// The bucket of `d`: bucket `i` holds times up to `2^((i + 1) / 8)` µs.
fn bucket(d: Duration) -> usize {
    let micros = d.as_secs_f64() * 1e6;
    if micros <= 1.0 {
        return 0;
    }
    let i = (micros.log2() * PER_OCTAVE as f64).ceil() as usize;
    i.saturating_sub(1).min(BUCKETS - 1)
}

/// The largest time bucket `i` holds.
fn upper_bound(i: usize) -> Duration {
    Duration::from_secs_f64(2f64.powf((i + 1) as f64 / PER_OCTAVE as f64) / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// `d` rounded up to its bucket is at or above it and within 9 %.
    fn near(got: Duration, want: Duration) -> bool {
        got >= want && got.as_secs_f64() <= want.as_secs_f64() * 1.091
    }

    #[test]
    fn buckets_bound_their_samples() {
        for micros in [1u64, 2, 3, 17, 999, 1000, 1001, 123_456, 20_000_000] {
            let d = Duration::from_micros(micros);
            let up = upper_bound(bucket(d));
            assert!(near(up, d) || micros <= 1, "{d:?} -> {up:?}");
        }
        assert_eq!(bucket(Duration::ZERO), 0);
        assert_eq!(bucket(Duration::from_secs(1 << 20)), BUCKETS - 1);
    }

    #[test]
    fn p99_sees_the_slow_tail() {
        let t0 = Instant::now();
        let mut w = RecentP99::new(t0);
        assert_eq!(w.p99(t0), None);
        for i in 0..1000u32 {
            let slow = i % 50 == 0; // 2 %
            w.record(t0 + MS * i, if slow { 100 * MS } else { MS });
        }
        let p = w.p99(t0 + Duration::from_secs(1)).expect("samples");
        assert!(near(p, 100 * MS), "{p:?}");
        // Only 1 % slow: the p99 is the fast time.
        let mut w = RecentP99::new(t0);
        for i in 0..1000u32 {
            w.record(t0, if i < 10 { 100 * MS } else { MS });
        }
        assert!(near(w.p99(t0).expect("samples"), MS));
    }

    #[test]
    fn old_samples_leave_the_window() {
        let t0 = Instant::now();
        let mut w = RecentP99::new(t0);
        for _ in 0..100 {
            w.record(t0, 500 * MS);
        }
        // 20 s later: still inside; fast samples now are outnumbered.
        let t20 = t0 + Duration::from_secs(20);
        for _ in 0..50 {
            w.record(t20, MS);
        }
        assert!(near(w.p99(t20).expect("samples"), 500 * MS));
        // Past the window: the slow slot is gone, the fast one remains.
        let t31 = t0 + Duration::from_secs(31);
        assert!(near(w.p99(t31).expect("samples"), MS));
        // Long idle: nothing at all, and a reused slot starts empty.
        let t60 = t0 + Duration::from_secs(60);
        assert_eq!(w.p99(t60), None);
        w.record(t60, 3 * MS);
        assert!(near(w.p99(t60).expect("samples"), 3 * MS));
    }
}
