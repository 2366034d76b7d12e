//! When a background pass may move for read load: only on rates that have
//! settled, and only for an imbalance that lasts.
//!
//! Chunk servers report decayed averages (time constant τ, a minute), so a
//! server's reported reads/s lags its chunks: for minutes after copies take
//! chunks off it, it still shows their reads, and a server that took them
//! lacks them. Load seen across a capacity rebalance is mostly that lag, and
//! moving for it moves the same load twice, then back (t76's churn). So a
//! background pass holds a server's hot chunks from load moves, in the
//! order checked:
//!
//! 1. **moving**: a copy into or out of it is queued or running;
//! 2. **settling**: a copy into or out of it ended less than the settle time
//!    (τ) ago;
//! 3. **dwelling**: it has not been hot at every background pass for the
//!    dwell (`--load-dwell`) yet; a pass that sees it inside or cold starts
//!    the count again. A server above the mean may also give to a server
//!    that has been cold for the dwell.
//!
//! Together with the planner's aim (a source is cooled to half the band's
//! slack above the mean, not to the edge) this is the hysteresis between
//! entering and leaving "hot". An operator's pass (`RebalanceRun`, and the
//! dry run that predicts it) is not held: the operator asked for it now.
//!
//! The state is a few timestamps per server; time comes in as an argument
//! (the queue's clock).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use keel_balancer::{ClusterView, load};

/// Why a background pass does not move a server's hot chunks for load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Copies into or out of it are queued or running.
    Moving,
    /// A copy into or out of it ended this long ago, within the settle time.
    Settling {
        /// Since the copy ended.
        ago: Duration,
    },
    /// Hot at every pass for this long, less than the dwell.
    Dwelling {
        /// Since the first pass of the streak.
        hot_for: Duration,
    },
    /// Neither hot for the dwell nor giving to a server cold for the dwell.
    Quiet,
}

/// What [`LoadGate::observe`] decided for one background pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Held {
    /// Servers whose hot chunks do not move for load in this pass.
    pub servers: BTreeMap<String, Hold>,
    /// Why each hot server is held, for the plan's notes.
    pub notes: Vec<String>,
}

/// The dwell and settle state of the servers, by id.
#[derive(Debug, Clone)]
pub struct LoadGate {
    /// `--load-dwell`.
    dwell: Duration,
    /// How long after a copy a server's rates are trusted again.
    settle: Duration,
    /// First pass of each server's current streak of hot passes.
    hot_since: BTreeMap<String, Duration>,
    /// The same for cold.
    cold_since: BTreeMap<String, Duration>,
    /// When a copy into or out of each server last ended (within `settle`).
    changed: BTreeMap<String, Duration>,
}

impl LoadGate {
    /// A gate holding load moves until a server is hot for `dwell` and its
    /// copies ended `settle` ago.
    pub fn new(dwell: Duration, settle: Duration) -> Self {
        LoadGate {
            dwell,
            settle,
            hot_since: BTreeMap::new(),
            cold_since: BTreeMap::new(),
            changed: BTreeMap::new(),
        }
    }

    /// `--load-dwell`.
    pub fn dwell(&self) -> Duration {
        self.dwell
    }

    /// A copy into or out of `server` ended at `now`.
    pub fn changed(&mut self, server: &str, now: Duration) {
        if !self.settle.is_zero() {
            self.changed.insert(server.to_owned(), now);
        }
    }

    /// Records where each live server of `view` lies against the load band
    /// at a background pass at `now`, and says whose hot chunks the pass
    /// holds. `copying`: servers with a copy queued or running into or out
    /// of them. `view` is the one the pass plans on (finished load moves
    /// already corrected for).
    pub fn observe(
        &mut self,
        view: &ClusterView,
        threshold_pct: f64,
        copying: &BTreeSet<String>,
        now: Duration,
    ) -> Held {
        let report = load::check(view, 0.0, threshold_pct);
        let ids = |l: &[load::ServerLoad]| -> BTreeSet<String> {
            l.iter().map(|s| s.server.clone()).collect()
        };
        let (hot, cold) = (ids(&report.hot), ids(&report.cold));
        streak(&mut self.hot_since, &hot, now);
        streak(&mut self.cold_since, &cold, now);
        let settle = self.settle;
        self.changed
            .retain(|_, at| now.saturating_sub(*at) < settle);
        let lasted = |since: &Duration| now.saturating_sub(*since) >= self.dwell;
        let cold_lasted = self.cold_since.values().any(lasted);
        let mean = report.average_reads_per_sec;
        let mut held = Held::default();
        for s in view.servers.iter().filter(|s| s.alive) {
            let since = self.hot_since.get(&s.id);
            let hold = if copying.contains(&s.id) {
                Hold::Moving
            } else if let Some(at) = self.changed.get(&s.id) {
                Hold::Settling {
                    ago: now.saturating_sub(*at),
                }
            } else if since.is_some_and(lasted) || (cold_lasted && s.reads.reads_per_sec > mean) {
                continue;
            } else if let Some(t) = since {
                Hold::Dwelling {
                    hot_for: now.saturating_sub(*t),
                }
            } else {
                Hold::Quiet
            };
            if hot.contains(&s.id) {
                held.notes.push(self.note(&s.id, hold));
            }
            held.servers.insert(s.id.clone(), hold);
        }
        held
    }

    /// Why hot `server` is held, in a sentence.
    fn note(&self, server: &str, hold: Hold) -> String {
        let why = match hold {
            Hold::Moving => "copies into or out of it are under way".to_owned(),
            Hold::Settling { ago } => format!(
                "its chunks last changed {:.0}s ago and its rates lag them for {:.0}s",
                ago.as_secs_f64(),
                self.settle.as_secs_f64()
            ),
            Hold::Dwelling { hot_for } => format!(
                "hot for {:.0}s of the {:.0}s dwell",
                hot_for.as_secs_f64(),
                self.dwell.as_secs_f64()
            ),
            Hold::Quiet => "not hot for the dwell".to_owned(),
        };
        format!("{server} is hot but its chunks do not move for load yet: {why}")
    }
}

/// Keeps the streak start of every server in `now_in`, starting it at
/// `now` for newcomers, and ends every other streak.
fn streak(since: &mut BTreeMap<String, Duration>, now_in: &BTreeSet<String>, now: Duration) {
    since.retain(|id, _| now_in.contains(id));
    for id in now_in {
        since.entry(id.clone()).or_insert(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_balancer::ReadRate;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Servers `a`–`d` reading at `reads`.
    fn view(reads: [f64; 4]) -> ClusterView {
        let mut v = ClusterView::new();
        for (id, r) in ["a", "b", "c", "d"].into_iter().zip(reads) {
            let s = v.add_server(id, None, 100, true);
            v.servers[s.0 as usize].reads = ReadRate::new(r, r * 1000.0);
        }
        v
    }

    fn gate() -> LoadGate {
        LoadGate::new(secs(60), secs(60))
    }

    const HOT_A: [f64; 4] = [200.0, 100.0, 100.0, 100.0];

    #[test]
    fn a_server_hot_at_every_pass_for_the_dwell_is_let_go() {
        let mut g = gate();
        let none = BTreeSet::new();
        for t in [0, 30] {
            let h = g.observe(&view(HOT_A), 25.0, &none, secs(t));
            assert_eq!(h.servers["a"], Hold::Dwelling { hot_for: secs(t) });
            assert_eq!(
                h.notes,
                [format!(
                    "a is hot but its chunks do not move for load yet: hot for {t}s of the 60s dwell"
                )]
            );
        }
        let h = g.observe(&view(HOT_A), 25.0, &none, secs(60));
        assert!(!h.servers.contains_key("a"), "{h:?}");
        assert_eq!(h.servers["b"], Hold::Quiet);
        assert!(h.notes.is_empty());
    }

    #[test]
    fn one_pass_inside_starts_the_dwell_again() {
        let mut g = gate();
        let none = BTreeSet::new();
        g.observe(&view(HOT_A), 25.0, &none, secs(0));
        g.observe(&view([110.0, 100.0, 100.0, 100.0]), 25.0, &none, secs(30));
        let h = g.observe(&view(HOT_A), 25.0, &none, secs(60));
        assert_eq!(h.servers["a"], Hold::Dwelling { hot_for: secs(0) });
        let h = g.observe(&view(HOT_A), 25.0, &none, secs(120));
        assert!(!h.servers.contains_key("a"));
    }

    #[test]
    fn copies_hold_a_server_until_its_rates_settle() {
        let mut g = gate();
        let busy: BTreeSet<String> = ["a".to_owned()].into();
        g.observe(&view(HOT_A), 25.0, &busy, secs(0));
        let h = g.observe(&view(HOT_A), 25.0, &busy, secs(100));
        assert_eq!(h.servers["a"], Hold::Moving);
        assert_eq!(
            h.notes,
            [
                "a is hot but its chunks do not move for load yet: copies into or out of it are under way"
            ]
        );
        g.changed("a", secs(110));
        let none = BTreeSet::new();
        let h = g.observe(&view(HOT_A), 25.0, &none, secs(150));
        assert_eq!(h.servers["a"], Hold::Settling { ago: secs(40) });
        let h = g.observe(&view(HOT_A), 25.0, &none, secs(170));
        assert!(!h.servers.contains_key("a"), "{h:?}");
    }

    #[test]
    fn a_server_cold_for_the_dwell_lets_those_above_the_mean_give() {
        let mut g = gate();
        let none = BTreeSet::new();
        let cold_d = [110.0, 105.0, 100.0, 20.0];
        g.observe(&view(cold_d), 25.0, &none, secs(0));
        let h = g.observe(&view(cold_d), 25.0, &none, secs(60));
        // Mean 83.75: a, b and c are above it, d is not.
        assert_eq!(h.servers.keys().collect::<Vec<_>>(), ["d"]);
    }

    #[test]
    fn with_the_load_band_off_nothing_is_hot() {
        let mut g = gate();
        let h = g.observe(&view(HOT_A), 0.0, &BTreeSet::new(), secs(600));
        assert!(h.notes.is_empty());
        assert_eq!(h.servers.len(), 4);
    }
}
