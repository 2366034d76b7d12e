//! `--migrate-bandwidth auto`: the migration rate follows what clients feel.
//!
//! A pure controller, fed with client service times and asked for a rate
//! once per control period; time comes in as an argument. Additive increase,
//! multiplicative decrease, like TCP's congestion control, shaped so the rate
//! settles under the target instead of see-sawing across it (a sawtooth's
//! peaks are exactly the clients' tail). Each decision, in the order checked:
//!
//! 1. **cut**: when the p99 of the samples since the last cut is above the
//!    target (and there are at least [`MIN_SAMPLES`] of them), the rate is
//!    multiplied by `AIM × target / p99`, clamped to
//!    [[`MIN_FACTOR`], [`DECREASE`]]: far over the target it drops at once
//!    to where the clients' latency should fall under the aim, barely over
//!    it loses 30 %. The samples are then dropped, so the next decision
//!    only sees latency measured at the new rate, and no increase follows
//!    for [`HOLD`]: the latency a rate causes shows up about a window later;
//! 2. **hold**: within [`HOLD`] of the last cut, the rate stays;
//! 3. **climb fast** with no client samples at all: `max / QUIET_STEPS`, so
//!    an idle server is back at the ceiling within about 4 s;
//! 4. **climb slowly** when clients are under the aim (`AIM × target`): by
//!    `max / BUSY_STEPS` times the headroom left (`1 − p99 / aim`), so the
//!    nearer the aim, the smaller the step;
//! 5. otherwise (between the aim and the target) the rate stays.
//!
//! Bounds: never above `max`, never below the floor (`max / FLOOR_DIVISOR`):
//! a migration always progresses, so a rebalance or a repair never starves.
//! Samples older than [`WINDOW`] are dropped before each decision, so a few
//! slow requests long ago do not hold the rate down.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Fewest samples a cut needs: one slow request alone is not a trend.
pub const MIN_SAMPLES: usize = 3;
/// The gentlest cut: a p99 barely over the target still costs 30 %.
pub const DECREASE: f64 = 0.7;
/// The deepest single cut, however slow the clients: a quarter of the rate
/// stays, as one window's p99 may be one stall.
pub const MIN_FACTOR: f64 = 0.25;
/// Where the controller aims, as a share of the target: the target bounds
/// a whole phase's tail, so the rate settles with a margin under it.
pub const AIM: f64 = 0.8;
/// The floor is `max / FLOOR_DIVISOR`: 4 MiB/s at a 128 MiB/s ceiling, low
/// enough that a busy server's few moves a second add little, high enough
/// that 1.3 GiB still moves within minutes.
pub const FLOOR_DIVISOR: u64 = 32;
/// Steps from zero to `max` with no client at all.
pub const QUIET_STEPS: u64 = 16;
/// Steps from zero to `max` with clients at no latency: four times as
/// slow as quiet, so the rate creeps up to what clients allow.
pub const BUSY_STEPS: u64 = 64;
/// Oldest sample a decision looks at.
pub const WINDOW: Duration = Duration::from_secs(1);
/// No increase this long after a cut: a window for the new rate's latency
/// to show, and a window for it to be measured.
pub const HOLD: Duration = Duration::from_secs(2);
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

/// What a decision did, in the order the controller checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Clients over the target: the rate was cut.
    Cut,
    /// Within [`HOLD`] of a cut: unchanged.
    Held,
    /// No clients: a fast step up.
    ClimbedQuiet,
    /// Clients under the aim: a step up in proportion to the headroom.
    Climbed,
    /// Clients between the aim and the target: unchanged.
    Kept,
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
    /// What it did.
    pub action: Action,
}

/// The AIMD controller of one chunk server's migration rate.
#[derive(Debug, Clone)]
pub struct Controller {
    settings: Settings,
    rate: u64,
    /// (when, service time), oldest first.
    samples: VecDeque<(Instant, Duration)>,
    last: Option<Decision>,
    /// No increase before this instant (set by a cut).
    hold_until: Option<Instant>,
}

impl Controller {
    /// Starts at the ceiling: an idle server moves at full speed at once.
    pub fn new(settings: Settings) -> Self {
        Controller {
            settings,
            rate: settings.max.max(1),
            samples: VecDeque::new(),
            last: None,
            hold_until: None,
        }
    }

    /// The lowest rate it ever sets: `max / FLOOR_DIVISOR`, at least 1 byte/s.
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
        let action = self.act(now, n, p99);
        let d = Decision {
            rate: self.rate,
            p99,
            samples: n,
            action,
        };
        self.last = Some(d);
        d
    }

    /// Applies the first of the module's five rules that fits.
    fn act(&mut self, now: Instant, n: usize, p99: Option<Duration>) -> Action {
        let (target, max) = (self.settings.target, self.settings.max.max(1));
        let aim = target.mul_f64(AIM);
        match p99 {
            Some(p) if n >= MIN_SAMPLES && p > target => {
                self.samples.clear();
                self.hold_until = Some(now + HOLD);
                let factor = (ratio(aim, p)).clamp(MIN_FACTOR, DECREASE);
                self.rate = ((self.rate as f64 * factor) as u64).max(self.floor());
                Action::Cut
            }
            _ if self.hold_until.is_some_and(|h| now < h) => Action::Held,
            None => {
                self.raise((max / QUIET_STEPS).max(1));
                Action::ClimbedQuiet
            }
            Some(p) if p < aim => {
                let headroom = 1.0 - ratio(p, aim);
                self.raise((((max / BUSY_STEPS) as f64 * headroom) as u64).max(1));
                Action::Climbed
            }
            Some(_) => Action::Kept,
        }
    }

    fn raise(&mut self, step: u64) {
        let max = self.settings.max.max(1);
        self.rate = self.rate.saturating_add(step).min(max);
    }
}

/// `a / b`, 1 when `b` is zero.
fn ratio(a: Duration, b: Duration) -> f64 {
    if b.is_zero() {
        1.0
    } else {
        a.as_secs_f64() / b.as_secs_f64()
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

    /// The rate after one cut from `rate` by `factor`.
    fn cut(rate: u64, factor: f64) -> u64 {
        (rate as f64 * factor) as u64
    }

    #[test]
    fn slow_clients_cut_the_rate_multiplicatively_down_to_the_floor() {
        let (mut c, mut t) = controller();
        // 50 ms against a 16 ms aim: × 0.32.
        run(&mut c, &mut t, 1, 10, ms(50));
        assert_eq!(c.rate(), cut(256 * MIB, 0.32));
        assert_eq!(c.last().map(|d| d.action), Some(Action::Cut));
        run(&mut c, &mut t, 1, 10, ms(50));
        assert_eq!(c.rate(), cut(cut(256 * MIB, 0.32), 0.32));
        run(&mut c, &mut t, 40, 10, ms(50));
        assert_eq!(c.rate(), 8 * MIB, "held at the floor, never zero");
        assert_eq!(c.floor(), 8 * MIB);
    }

    #[test]
    fn the_cut_aims_under_the_target_within_its_clamps() {
        let at = |latency: u64| {
            let (mut c, mut t) = controller();
            run(&mut c, &mut t, 1, 10, ms(latency));
            c.rate()
        };
        // 16 ms aim ÷ 25 ms: × 0.64.
        assert_eq!(at(25), cut(256 * MIB, 0.64));
        // Barely over (16 ÷ 21 = 0.76): the gentlest cut, × 0.7.
        assert_eq!(at(21), cut(256 * MIB, DECREASE));
        // Far over (16 ÷ 200 = 0.08): the deepest, × 0.25.
        assert_eq!(at(200), cut(256 * MIB, MIN_FACTOR));
        // At the target, not over it: no cut.
        assert_eq!(at(20), 256 * MIB);
    }

    #[test]
    fn no_increase_for_the_hold_after_a_cut() {
        let (mut c, mut t) = controller();
        run(&mut c, &mut t, 1, 10, ms(200));
        let after_cut = c.rate();
        // Fast clients and then none, for just under the hold: no step up.
        run(&mut c, &mut t, 4, 10, ms(1));
        run(&mut c, &mut t, 3, 0, ms(0));
        assert_eq!(c.rate(), after_cut);
        assert_eq!(c.last().map(|d| d.action), Some(Action::Held));
        // The hold is over: quiet, so the fast step.
        run(&mut c, &mut t, 1, 0, ms(0));
        assert_eq!(c.rate(), after_cut + 16 * MIB);
        assert_eq!(c.last().map(|d| d.action), Some(Action::ClimbedQuiet));
    }

    #[test]
    fn slow_samples_during_the_hold_still_cut() {
        let (mut c, mut t) = controller();
        run(&mut c, &mut t, 1, 10, ms(200));
        run(&mut c, &mut t, 1, 10, ms(200));
        assert_eq!(c.rate(), cut(cut(256 * MIB, 0.25), 0.25));
    }

    /// A controller cut down to the floor, its hold over, and the time.
    fn at_the_floor_after_the_hold() -> (Controller, Instant) {
        let (mut c, mut t) = controller();
        run(&mut c, &mut t, 40, 10, ms(50));
        assert_eq!(c.rate(), 8 * MIB);
        // No decision meanwhile; the cut dropped the slow samples.
        t += HOLD;
        (c, t)
    }

    #[test]
    fn busy_clients_raise_it_in_proportion_to_the_headroom() {
        let step = |latency: Duration| {
            let (mut c, mut t) = at_the_floor_after_the_hold();
            run(&mut c, &mut t, 1, 10, latency);
            (c.rate() - 8 * MIB, c.last().map(|d| d.action))
        };
        // At no latency: a whole busy step, max / 64.
        assert_eq!(step(Duration::ZERO), (4 * MIB, Some(Action::Climbed)));
        // 8 ms is half the 16 ms aim: half a step.
        assert_eq!(step(ms(8)), (2 * MIB, Some(Action::Climbed)));
        // Between the aim and the target: kept.
        assert_eq!(step(ms(18)), (0, Some(Action::Kept)));
        // No client: the quiet step, max / 16, four times the busy one.
        let (mut c, mut t) = at_the_floor_after_the_hold();
        run(&mut c, &mut t, 1, 0, ms(0));
        assert_eq!(c.rate(), 24 * MIB);
    }

    #[test]
    fn quiet_clients_raise_it_again_step_by_step() {
        let (mut c, mut t) = controller();
        run(&mut c, &mut t, 40, 10, ms(50));
        assert_eq!(c.rate(), 8 * MIB);
        // The slow samples are forgotten; the hold passes (7 periods held,
        // the eighth ends it); then quiet steps of max / 16.
        run(&mut c, &mut t, 7, 0, ms(0));
        assert_eq!(c.rate(), 8 * MIB);
        run(&mut c, &mut t, 5, 0, ms(0));
        assert_eq!(c.rate(), 88 * MIB);
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
