//! Utilization maths, the one definition every front door uses:
//! the capacity-weighted average over live servers, and the servers outside
//! the band `average ± threshold` (in percentage points).

use crate::model::ClusterView;

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
}

impl LoadReport {
    /// True when no live server lies outside the band.
    pub fn balanced(&self) -> bool {
        self.overloaded.is_empty() && self.underloaded.is_empty()
    }
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

/// Classifies every live server against the band `average ± threshold_pct`.
pub fn check(view: &ClusterView, threshold_pct: f64) -> LoadReport {
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
    LoadReport {
        average_utilization_pct: average,
        threshold_pct,
        overloaded,
        underloaded,
        servers,
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
        let r = check(&v, 20.0);
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
        assert!(check(&ClusterView::new(), 20.0).balanced());
    }
}
