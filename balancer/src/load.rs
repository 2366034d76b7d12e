//! Utilization maths, the one definition every front door uses:
//! the capacity-weighted average over live servers, and the servers outside
//! the band `average ± threshold` (in percentage points). Beside it, the
//! same report by read load: the servers outside the load band
//! ([`crate::traffic::load_position`]).

use crate::model::ClusterView;
use crate::traffic::{LoadPosition, ReadRate, load_position, mean_reads_per_sec};

/// One server's utilization.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerLoad {
    /// Server id.
    pub server: String,
    /// `100 * used / capacity`.
    pub utilization_pct: f64,
    /// Bytes used.
    pub used: u64,
    /// Capacity in bytes.
    pub capacity: u64,
    /// Its client read rate.
    pub reads: ReadRate,
}

/// Result of a rebalance check.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// `100 * Σ used / Σ capacity` over live servers; 0 with no capacity.
    pub average_utilization_pct: f64,
    /// Band half-width used, in percentage points.
    pub threshold_pct: f64,
    /// Live servers above `average + threshold`, most loaded first.
    pub overloaded: Vec<ServerLoad>,
    /// Live servers below `average - threshold`, least loaded first.
    pub underloaded: Vec<ServerLoad>,
    /// Every live server, in id order.
    pub servers: Vec<ServerLoad>,
    /// Mean reads/s over live servers.
    pub average_reads_per_sec: f64,
    /// Load band half-width used, in percent of the mean; 0: off.
    pub load_threshold_pct: f64,
    /// Live servers above the load band, hottest first.
    pub hot: Vec<ServerLoad>,
    /// Live servers below the load band, coldest first.
    pub cold: Vec<ServerLoad>,
}

impl LoadReport {
    /// True when no live server lies outside the (capacity) band.
    pub fn balanced(&self) -> bool {
        self.overloaded.is_empty() && self.underloaded.is_empty()
    }

    /// True when no live server lies outside the load band.
    pub fn load_balanced(&self) -> bool {
        self.hot.is_empty() && self.cold.is_empty()
    }
}

/// Mean reads/s of the live servers; 0 without any. Each rate is cleaned
/// by [`crate::traffic::sane_rate`] so one absurd report cannot make the
/// mean infinite.
pub fn average_reads_per_sec(view: &ClusterView) -> f64 {
    mean_reads_per_sec(
        view.servers
            .iter()
            .filter(|s| s.alive)
            .map(|s| s.reads.reads_per_sec),
    )
}

/// Capacity-weighted average utilization of the live servers.
pub fn average_utilization_pct(view: &ClusterView) -> f64 {
    average_pct(
        view.servers
            .iter()
            .filter(|s| s.alive)
            .map(|s| (s.used, s.capacity)),
    )
}

/// `100 * Σ used / Σ capacity` over `(used, capacity)` pairs; 0 without capacity.
pub(crate) fn average_pct(servers: impl Iterator<Item = (u64, u64)>) -> f64 {
    let (used, cap) = servers.fold((0u128, 0u128), |(u, c), (used, cap)| {
        (u + u128::from(used), c + u128::from(cap))
    });
    if cap == 0 {
        0.0
    } else {
        100.0 * used as f64 / cap as f64
    }
}

/// Where a utilization lies relative to the band `average ± threshold_pct`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Below `average - threshold`: underloaded.
    Under,
    /// Inside the band, edges included.
    Inside,
    /// Above `average + threshold`: overloaded.
    Over,
}

/// Classifies one utilization; the single comparison every check uses.
pub fn position(utilization_pct: f64, average: f64, threshold_pct: f64) -> Position {
    if utilization_pct > average + threshold_pct {
        Position::Over
    } else if utilization_pct < average - threshold_pct {
        Position::Under
    } else {
        Position::Inside
    }
}

/// Classifies every live server against the band `average ± threshold_pct`,
/// and by reads/s against the load band of `load_threshold_pct` (0: off).
pub fn check(view: &ClusterView, threshold_pct: f64, load_threshold_pct: f64) -> LoadReport {
    let average = average_utilization_pct(view);
    let mut servers: Vec<ServerLoad> = view
        .servers
        .iter()
        .filter(|s| s.alive)
        .map(|s| ServerLoad {
            server: s.id.clone(),
            utilization_pct: s.utilization_pct(),
            used: s.used,
            capacity: s.capacity,
            reads: s.reads,
        })
        .collect();
    servers.sort_by(|a, b| a.server.cmp(&b.server));
    let at = |p: Position| {
        servers
            .iter()
            .filter(move |s| position(s.utilization_pct, average, threshold_pct) == p)
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut overloaded = at(Position::Over);
    let mut underloaded = at(Position::Under);
    overloaded.sort_by(|a, b| b.utilization_pct.total_cmp(&a.utilization_pct));
    underloaded.sort_by(|a, b| a.utilization_pct.total_cmp(&b.utilization_pct));
    let mean = average_reads_per_sec(view);
    let by_load = |p: LoadPosition| {
        servers
            .iter()
            .filter(move |s| load_position(s.reads.reads_per_sec, mean, load_threshold_pct) == p)
            .cloned()
            .collect::<Vec<_>>()
    };
    let rate = |s: &ServerLoad| s.reads.reads_per_sec;
    let mut hot = by_load(LoadPosition::Hot);
    let mut cold = by_load(LoadPosition::Cold);
    hot.sort_by(|a, b| rate(b).total_cmp(&rate(a)));
    cold.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
    LoadReport {
        average_utilization_pct: average,
        threshold_pct,
        overloaded,
        underloaded,
        servers,
        average_reads_per_sec: mean,
        load_threshold_pct,
        hot,
        cold,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's example: equal capacities at 78, 50, 57 and 15 %.
    #[test]
    fn seed_example() {
        let mut v = ClusterView::new();
        for (id, pct) in [("cs1", 78), ("cs2", 50), ("cs3", 57), ("cs4", 15)] {
            let s = v.add_server(id, None, 100, true);
            v.add_chunk(format!("{id}-data"), pct, 0, 1, &[s]);
        }
        let r = check(&v, 20.0, 25.0);
        assert_eq!(r.average_utilization_pct, 50.0);
        assert_eq!(
            r.overloaded
                .iter()
                .map(|s| s.server.as_str())
                .collect::<Vec<_>>(),
            ["cs1"]
        );
        assert_eq!(
            r.underloaded
                .iter()
                .map(|s| s.server.as_str())
                .collect::<Vec<_>>(),
            ["cs4"]
        );
        assert_eq!(r.overloaded[0].utilization_pct, 78.0);
    }

    #[test]
    fn weighted_by_capacity_and_ignores_dead() {
        let mut v = ClusterView::new();
        let a = v.add_server("a", None, 100, true);
        let b = v.add_server("b", None, 300, true);
        let d = v.add_server("d", None, 1000, false);
        v.add_chunk("x", 100, 0, 1, &[a]);
        v.add_chunk("y", 100, 0, 1, &[b]);
        v.add_chunk("z", 1000, 0, 1, &[d]);
        assert_eq!(average_utilization_pct(&v), 50.0);
        assert!(check(&ClusterView::new(), 20.0, 25.0).balanced());
    }
}
