//! `--migrate-bandwidth auto`: the migration rate follows what clients feel.
//!
//! A pure controller, fed with client service times and asked for a rate
//! once per control period; time comes in as an argument. AIMD, like TCP's
//! congestion control:
//!
//! - **decrease**: when the p99 of the samples since the last decision is
//!   above the target (and there are at least [`MIN_SAMPLES`] of them), the
//!   rate is multiplied by [`DECREASE`]. The samples are then dropped, so the
//!   next decision only sees latency measured at the new rate (one decrease
//!   per period at most, and none for the same slow samples twice);
//! - **increase**: otherwise (clients quiet, or under the target), the rate
//!   grows by a fixed step, `max / STEPS`, so from the floor back to the
//!   ceiling takes about `STEPS` periods (~4 s at 250 ms);
//! - **bounds**: never above `max`, never below the floor (`max / 16`): a
//!   migration always progresses, so a rebalance or a repair never starves.
//!
//! Samples older than [`WINDOW`] are dropped before each decision, so a few
//! slow requests long ago do not hold the rate down.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Fewest samples a decrease needs: one slow request alone is not a trend.
pub const MIN_SAMPLES: usize = 3;
/// Factor applied on a decrease.
pub const DECREASE: f64 = 0.7;
/// The floor is `max / FLOOR_DIVISOR`; the increase step is `max / STEPS`.
pub const FLOOR_DIVISOR: u64 = 16;
/// Increase steps from zero to `max`.
pub const STEPS: u64 = 16;
/// Oldest sample a decision looks at.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Most samples kept between decisions (memory bound under heavy load).
const MAX_SAMPLES: usize = 4096;
/// Time between two decisions.
pub const PERIOD: Duration = Duration::from_millis(250);

/// What the controller aims for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Ceiling, bytes per second (`--migrate-bandwidth-max`).
    pub max: u64,
    /// Client p99 service time above which migration slows
    /// (`--client-latency-target`).
    pub target: Duration,
}

/// One decision and what it was based on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The rate from now on, bytes per second.
    pub rate: u64,
    /// p99 of the samples it looked at (`None` when there were none).
    pub p99: Option<Duration>,
    /// Samples it looked at.
    pub samples: usize,
}

/// The AIMD controller of one chunk server's migration rate.
#[derive(Debug, Clone)]
pub struct Controller {
    settings: Settings,
    rate: u64,
    /// (when, service time), oldest first.
    samples: VecDeque<(Instant, Duration)>,
    last: Option<Decision>,
}

impl Controller {
    /// Starts at the ceiling: an idle server moves at full speed at once.
    pub fn new(settings: Settings) -> Self {
        Controller {
            settings,
            rate: settings.max.max(1),
            samples: VecDeque::new(),
            last: None,
        }
    }

    /// The lowest rate it ever sets: `max / 16`, at least 1 byte/s.
    pub fn floor(&self) -> u64 {
        (self.settings.max / FLOOR_DIVISOR).max(1)
    }

    /// The current rate, bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The last decision, if any.
    pub fn last(&self) -> Option<Decision> {
        self.last
    }

    /// Records one client request's service time, measured at `now`.
    pub fn record(&mut self, now: Instant, service: Duration) {
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back((now, service));
    }

    /// Decides the rate for the next period.
    pub fn decide(&mut self, now: Instant) -> Decision {
        while let Some((at, _)) = self.samples.front() {
            if now.saturating_duration_since(*at) <= WINDOW {
                break;
            }
            self.samples.pop_front();
        }
        let n = self.samples.len();
        let p99 = p99(self.samples.iter().map(|s| s.1));
        let slow = n >= MIN_SAMPLES && p99.is_some_and(|p| p > self.settings.target);
        let (floor, max) = (self.floor(), self.settings.max.max(1));
        self.rate = if slow {
            self.samples.clear();
            ((self.rate as f64 * DECREASE) as u64).max(floor)
        } else {
            self.rate.saturating_add((max / STEPS).max(1)).min(max)
        };
        let d = Decision {
            rate: self.rate,
            p99,
            samples: n,
        };
        self.last = Some(d);
        d
    }
}

/// Nearest-rank 99th percentile.
fn p99(xs: impl Iterator<Item = Duration>) -> Option<Duration> {
    let mut v: Vec<Duration> = xs.collect();
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let rank = (v.len() * 99).div_ceil(100);
    Some(v[rank.saturating_sub(1)])
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn controller() -> (Controller, Instant) {
        let c = Controller::new(Settings {
            max: 256 * MIB,
            target: ms(20),
        });
        (c, Instant::now())
    }

    /// Feeds `per_period` samples of `latency` and decides, `periods` times.
    fn run(c: &mut Controller, t: &mut Instant, periods: u32, per_period: u32, latency: Duration) {
        for _ in 0..periods {
            for i in 0..per_period {
                c.record(*t + PERIOD * i / per_period.max(1), latency);
            }
            *t += PERIOD;
            c.decide(*t);
        }
    }

    #[test]
    fn starts_at_the_ceiling_and_stays_there_when_quiet() {
        let (mut c, mut t) = controller();
        assert_eq!(c.rate(), 256 * MIB);
        run(&mut c, &mut t, 10, 0, ms(0));
        assert_eq!(c.rate(), 256 * MIB);
        run(&mut c, &mut t, 10, 20, ms(5));
        assert_eq!(c.rate(), 256 * MIB);
        assert_eq!(c.last().and_then(|d| d.p99), Some(ms(5)));
    }

    #[test]
    fn slow_clients_cut_the_rate_multiplicatively_down_to_the_floor() {
        let (mut c, mut t) = controller();
        run(&mut c, &mut t, 1, 10, ms(50));
        assert_eq!(c.rate(), (256.0 * MIB as f64 * DECREASE) as u64);
        run(&mut c, &mut t, 1, 10, ms(50));
        assert_eq!(c.rate(), (256.0 * MIB as f64 * DECREASE * DECREASE) as u64);
        run(&mut c, &mut t, 40, 10, ms(50));
        assert_eq!(c.rate(), 16 * MIB, "held at the floor, never zero");
        assert_eq!(c.floor(), 16 * MIB);
    }

    #[test]
    fn quiet_clients_raise_it_again_step_by_step() {
        let (mut c, mut t) = controller();
        run(&mut c, &mut t, 40, 10, ms(50));
        assert_eq!(c.rate(), 16 * MIB);
        // The slow samples are forgotten: no more cuts once clients are fast.
        run(&mut c, &mut t, 1, 10, ms(2));
        assert_eq!(c.rate(), 32 * MIB);
        run(&mut c, &mut t, 5, 0, ms(0));
        assert_eq!(c.rate(), 112 * MIB);
        run(&mut c, &mut t, 20, 0, ms(0));
        assert_eq!(c.rate(), 256 * MIB, "bounded by the ceiling");
    }

    #[test]
    fn one_slow_request_or_an_old_one_is_not_a_trend() {
        let (mut c, mut t) = controller();
        c.record(t, ms(500));
        c.record(t, ms(500));
        t += PERIOD;
        assert_eq!(c.decide(t).rate, 256 * MIB, "two samples are too few");
        // Those two are older than the window by the time a third arrives.
        t += WINDOW;
        c.record(t, ms(500));
        t += PERIOD;
        let d = c.decide(t);
        assert_eq!((d.rate, d.samples), (256 * MIB, 1));
    }

    #[test]
    fn the_p99_not_the_mean_decides() {
        let (mut c, mut t) = controller();
        // 1 slow in 100: the p99 is the 99th value, fast.
        for i in 0..100 {
            c.record(t, if i == 0 { ms(900) } else { ms(1) });
        }
        t += PERIOD;
        assert_eq!(c.decide(t).rate, 256 * MIB);
        // 2 slow in 100: the p99 is slow.
        for i in 0..100 {
            c.record(t, if i < 2 { ms(900) } else { ms(1) });
        }
        t += PERIOD;
        assert!(c.decide(t).rate < 256 * MIB);
    }

    #[test]
    fn a_tiny_ceiling_still_moves() {
        let mut c = Controller::new(Settings {
            max: 10,
            target: ms(1),
        });
        let t = Instant::now();
        for _ in 0..10 {
            c.record(t, ms(5));
            c.record(t, ms(5));
            c.record(t, ms(5));
            assert!(c.decide(t).rate >= 1);
        }
        assert_eq!(c.rate(), 1);
    }
}
