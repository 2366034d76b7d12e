//! The prediction's timeline: the state after every event, and the same
//! resampled into even steps for people. Between two events every rate is
//! constant, so bytes done grow linearly and the resampling is exact.

use std::time::Duration;

/// The rebalance at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelinePoint {
    /// Time since the start.
    pub at: Duration,
    /// Bytes transferred so far, including copies part-way through.
    pub bytes_done: u64,
    /// Moves holding a slot.
    pub running: usize,
}

/// `points` (in time order) at `0, step, 2·step, …` and at `end`.
pub fn resample(points: &[TimelinePoint], step: Duration, end: Duration) -> Vec<TimelinePoint> {
    let step = step.max(Duration::from_millis(1));
    let mut out = Vec::new();
    let mut at = Duration::ZERO;
    loop {
        out.push(at_instant(points, at.min(end)));
        if at >= end {
            return out;
        }
        at += step;
    }
}

/// The state at `at`: the last event at or before it, bytes interpolated
/// towards the next event.
fn at_instant(points: &[TimelinePoint], at: Duration) -> TimelinePoint {
    let after = points.partition_point(|p| p.at <= at);
    let Some(prev) = after.checked_sub(1).map(|i| points[i]) else {
        return TimelinePoint {
            at,
            bytes_done: 0,
            running: 0,
        };
    };
    let bytes_done = match points.get(after) {
        Some(next) if next.at > prev.at => {
            let f = (at - prev.at).as_secs_f64() / (next.at - prev.at).as_secs_f64();
            let span = next.bytes_done.saturating_sub(prev.bytes_done) as f64;
            prev.bytes_done + (f * span) as u64
        }
        _ => prev.bytes_done,
    };
    TimelinePoint {
        at,
        bytes_done,
        running: prev.running,
    }
}

/// A round step that cuts `eta` into at most about `rows` steps: 1, 2 or
/// 5 times a power of ten seconds (at least 100 ms).
pub fn nice_step(eta: Duration, rows: u32) -> Duration {
    let want = eta.as_secs_f64() / f64::from(rows.max(1));
    let mut unit = 0.1;
    loop {
        for m in [1.0, 2.0, 5.0] {
            if unit * m >= want {
                return Duration::from_secs_f64(unit * m);
            }
        }
        unit *= 10.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ms: u64, bytes: u64, running: usize) -> TimelinePoint {
        TimelinePoint {
            at: Duration::from_millis(ms),
            bytes_done: bytes,
            running,
        }
    }

    #[test]
    fn steps_interpolate_bytes_and_hold_running() {
        let pts = [p(0, 0, 2), p(1000, 100, 1), p(3000, 300, 0)];
        let t = resample(&pts, Duration::from_millis(500), Duration::from_secs(3));
        let got: Vec<(u64, usize)> = t.iter().map(|x| (x.bytes_done, x.running)).collect();
        assert_eq!(
            got,
            [
                (0, 2),
                (50, 2),
                (100, 1),
                (150, 1),
                (200, 1),
                (250, 1),
                (300, 0)
            ]
        );
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(
            nice_step(Duration::from_secs(10), 20),
            Duration::from_millis(500)
        );
        assert_eq!(
            nice_step(Duration::from_secs(90), 20),
            Duration::from_secs(5)
        );
        assert_eq!(nice_step(Duration::ZERO, 20), Duration::from_millis(100));
    }
}
