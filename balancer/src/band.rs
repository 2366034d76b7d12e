//! The band `average ± threshold` turned into byte bounds per server, with
//! the exact comparison of [`crate::load::position`], so that the planner's
//! arithmetic in bytes and the percentage check can never disagree.

use crate::model::Server;
use crate::space::fill_limit;
use crate::space::utilization_pct;

/// Byte bounds of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bounds {
    /// Most bytes the server may hold and not be overloaded.
    pub hi_edge: u64,
    /// Fewest bytes the server may hold and not be underloaded.
    pub lo_edge: u64,
    /// Where an overloaded server is brought down to: the upper edge less the margin.
    pub hi_aim: u64,
    /// Where an underloaded server is brought up to: the lower edge plus the margin.
    pub lo_aim: u64,
    /// The server's share at the cluster average.
    pub average: u64,
    /// Most bytes it may hold as a target (free-space floor).
    pub limit: u64,
}

/// The band for one planning pass.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Band {
    /// Capacity-weighted average utilization of live servers, percent.
    pub average: f64,
    /// Half-width in percentage points.
    pub threshold: f64,
    /// How far inside the edges the planner aims, percentage points.
    pub margin: f64,
    /// Free-space floor of targets, percent of capacity.
    pub min_free_pct: f64,
}

impl Band {
    /// Byte bounds of `server` (its `used` is not looked at).
    pub fn bounds(&self, server: &Server) -> Bounds {
        let (a, t, m, c) = (self.average, self.threshold, self.margin, server.capacity);
        if c == 0 {
            return Bounds {
                hi_edge: 0,
                lo_edge: 0,
                hi_aim: 0,
                lo_aim: 0,
                average: 0,
                limit: 0,
            };
        }
        let hi_edge = max_at_most(c, a + t);
        let lo_edge = min_at_least(c, a - t);
        Bounds {
            hi_edge,
            lo_edge,
            hi_aim: max_at_most(c, a + (t - m)).max(lo_edge),
            lo_aim: min_at_least(c, a - (t - m)).min(hi_edge),
            average: max_at_most(c, a).max(lo_edge).min(hi_edge),
            limit: fill_limit(server.capacity, self.min_free_pct),
        }
    }
}

/// Steps of one byte that correct a float estimate. The estimate is off by
/// at most a byte or two below 2^53 bytes; above that one byte no longer
/// changes the percentage and the estimate stands.
const FIX_STEPS: usize = 8;

/// The largest `u` with `utilization_pct(u, capacity) <= pct` (0 if none).
fn max_at_most(capacity: u64, pct: f64) -> u64 {
    let fits = |u: u64| utilization_pct(u, capacity) <= pct;
    let guess = (pct.max(0.0) / 100.0 * capacity as f64).floor();
    let mut u = if guess >= u64::MAX as f64 {
        u64::MAX
    } else {
        guess as u64
    };
    for _ in 0..FIX_STEPS {
        if u > 0 && !fits(u) {
            u -= 1;
        } else if u < u64::MAX && fits(u + 1) {
            u += 1;
        } else {
            break;
        }
    }
    u
}

/// The smallest `u` with `utilization_pct(u, capacity) >= pct`.
fn min_at_least(capacity: u64, pct: f64) -> u64 {
    let fits = |u: u64| utilization_pct(u, capacity) >= pct;
    let guess = (pct.max(0.0) / 100.0 * capacity as f64).ceil();
    let mut u = if guess >= u64::MAX as f64 {
        u64::MAX
    } else {
        guess as u64
    };
    for _ in 0..FIX_STEPS {
        if u < u64::MAX && !fits(u) {
            u += 1;
        } else if u > 0 && fits(u - 1) {
            u -= 1;
        } else {
            break;
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Position, position};

    fn server(capacity: u64) -> Server {
        Server {
            id: "s".into(),
            rack: None,
            capacity,
            used: 0,
            incoming: 0,
            alive: true,
            reads: crate::ReadRate::default(),
        }
    }

    #[test]
    fn bounds_agree_with_the_percentage_check() {
        for capacity in [1, 3, 7, 100, 999, 1 << 40, (1 << 40) + 12345] {
            for average in [0.0, 12.5, 33.333333, 50.0, 71.1] {
                let band = Band {
                    average,
                    threshold: 20.0,
                    margin: 1.0,
                    min_free_pct: 10.0,
                };
                let b = band.bounds(&server(capacity));
                let at = |u| position(utilization_pct(u, capacity), average, 20.0);
                assert_ne!(at(b.hi_edge), Position::Over);
                assert_eq!(at(b.hi_edge + 1), Position::Over);
                assert_ne!(at(b.lo_edge), Position::Under);
                if b.lo_edge > 0 {
                    assert_eq!(at(b.lo_edge - 1), Position::Under);
                }
                // With a tiny capacity no byte count lies in the band at all.
                if b.lo_edge <= b.hi_edge {
                    assert!(b.lo_edge <= b.lo_aim && b.lo_aim <= b.average);
                    assert!(b.average <= b.hi_aim && b.hi_aim <= b.hi_edge);
                }
            }
        }
    }

    #[test]
    fn the_seed_band_in_bytes() {
        let band = Band {
            average: 50.0,
            threshold: 20.0,
            margin: 0.5,
            min_free_pct: 10.0,
        };
        let b = band.bounds(&server(1000));
        assert_eq!(
            (b.lo_edge, b.lo_aim, b.average, b.hi_aim, b.hi_edge),
            (300, 305, 500, 695, 700)
        );
        assert_eq!(b.limit, 900);
    }
}
