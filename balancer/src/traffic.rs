//! Read traffic as the balancer sees it: each server's read rate, the rate
//! of its hottest replicas, and the load band, the one comparison that says
//! whether a server is hot, cold or inside (every front door and the planner
//! use it).
//!
//! Rates are what the chunk servers measure (decayed averages of client
//! reads; migration reads do not count) and report in their heartbeats: the
//! per-server figures and a bounded list of their hottest replicas, so a
//! replica missing from [`Heat`] reads as cold.
//!
//! Load is counted in reads per second: the seed's promise is about how many
//! requests each server answers, and a hot small chunk loads a server as much
//! as a hot big one.

use std::collections::BTreeMap;

use crate::ids::{ChunkIdx, ServerIdx};

/// Default load band half-width, in percent of the mean reads/s.
pub const DEFAULT_LOAD_THRESHOLD_PCT: f64 = 25.0;

/// Below this many reads/s above the mean, a server is never hot, whatever
/// its ratio to the mean: a nearly idle cluster has nothing to even out, and
/// noise around a tiny mean must not move data.
pub const LOAD_NOISE_FLOOR_READS_PER_SEC: f64 = 2.0;

/// A read rate: decayed averages of client reads.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReadRate {
    /// Reads started per second.
    pub reads_per_sec: f64,
    /// Bytes sent to readers per second.
    pub bytes_per_sec: f64,
}

impl ReadRate {
    /// A rate of `reads_per_sec` reads and `bytes_per_sec` bytes.
    pub fn new(reads_per_sec: f64, bytes_per_sec: f64) -> Self {
        Self {
            reads_per_sec,
            bytes_per_sec,
        }
    }

    /// Whether it is the zero rate.
    pub fn is_idle(&self) -> bool {
        self.reads_per_sec <= 0.0 && self.bytes_per_sec <= 0.0
    }
}

/// The read rates of hot replicas, by server then chunk. Only what the
/// servers reported as their hottest is here; a missing replica is cold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heat {
    /// Rates by (server, chunk); ordered so that iteration is deterministic.
    rates: BTreeMap<(ServerIdx, ChunkIdx), ReadRate>,
}

impl Heat {
    /// No hot replica.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces what `server` reported: its previous entries go, `hot` come.
    pub fn replace(
        &mut self,
        server: ServerIdx,
        hot: impl IntoIterator<Item = (ChunkIdx, ReadRate)>,
    ) {
        self.remove_server(server);
        for (chunk, rate) in hot {
            self.rates.insert((server, chunk), rate);
        }
    }

    /// Forgets everything `server` reported (it died or left).
    pub fn remove_server(&mut self, server: ServerIdx) {
        let keys: Vec<_> = self.on(server).map(|(c, _)| (server, c)).collect();
        for k in keys {
            self.rates.remove(&k);
        }
    }

    /// Sets one replica's rate (simulations and tests).
    pub fn set(&mut self, server: ServerIdx, chunk: ChunkIdx, rate: ReadRate) {
        self.rates.insert((server, chunk), rate);
    }

    /// Forgets one replica's rate (it moved away or was deleted).
    pub fn remove(&mut self, server: ServerIdx, chunk: ChunkIdx) -> Option<ReadRate> {
        self.rates.remove(&(server, chunk))
    }

    /// The rate of `chunk`'s replica on `server`; zero when not reported.
    pub fn get(&self, server: ServerIdx, chunk: ChunkIdx) -> ReadRate {
        self.rates
            .get(&(server, chunk))
            .copied()
            .unwrap_or_default()
    }

    /// The reported replicas of `server` and their rates, in chunk order.
    pub fn on(&self, server: ServerIdx) -> impl Iterator<Item = (ChunkIdx, ReadRate)> + '_ {
        self.rates
            .range((server, ChunkIdx(0))..=(server, ChunkIdx(u32::MAX)))
            .map(|(&(_, c), &r)| (c, r))
    }

    /// Every reported replica: (server, chunk, rate).
    pub fn iter(&self) -> impl Iterator<Item = (ServerIdx, ChunkIdx, ReadRate)> + '_ {
        self.rates.iter().map(|(&(s, c), &r)| (s, c, r))
    }

    /// Number of reported replicas.
    pub fn len(&self) -> usize {
        self.rates.len()
    }

    /// Whether no replica is reported hot.
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }
}

/// Where a server's read load lies relative to the load band.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadPosition {
    /// Below `mean × (1 − threshold)`.
    Cold,
    /// Inside the band, or load balancing is off.
    Inside,
    /// Above `mean × (1 + threshold)` and more than the noise floor above it.
    Hot,
}

/// Classifies one server's reads/s against the band `mean × (1 ± pct/100)`;
/// the single comparison every load check uses. `threshold_pct` ≤ 0 turns
/// load balancing off: everything is inside.
pub fn load_position(reads_per_sec: f64, mean: f64, threshold_pct: f64) -> LoadPosition {
    if threshold_pct <= 0.0 || !reads_per_sec.is_finite() || !mean.is_finite() {
        return LoadPosition::Inside;
    }
    let slack = load_slack(mean, threshold_pct);
    if reads_per_sec > mean + slack {
        LoadPosition::Hot
    } else if reads_per_sec < mean - slack {
        LoadPosition::Cold
    } else {
        LoadPosition::Inside
    }
}

/// Half-width of the load band in reads/s around `mean`: `threshold_pct`
/// percent of it, but never less than the noise floor.
pub fn load_slack(mean: f64, threshold_pct: f64) -> f64 {
    (mean * threshold_pct / 100.0).max(LOAD_NOISE_FLOOR_READS_PER_SEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn band_is_relative_to_the_mean_with_a_noise_floor() {
        assert_eq!(load_position(130.0, 100.0, 25.0), LoadPosition::Hot);
        assert_eq!(load_position(124.0, 100.0, 25.0), LoadPosition::Inside);
        assert_eq!(load_position(70.0, 100.0, 25.0), LoadPosition::Cold);
        // A tiny mean: 3 reads/s against 1 is noise.
        assert_eq!(load_position(2.9, 1.0, 25.0), LoadPosition::Inside);
        assert_eq!(load_position(3.1, 1.0, 25.0), LoadPosition::Hot);
        // Off.
        assert_eq!(load_position(1e6, 1.0, 0.0), LoadPosition::Inside);
    }

    #[test]
    fn heat_replaces_one_servers_report() {
        let mut h = Heat::new();
        let (a, b) = (ServerIdx(0), ServerIdx(1));
        h.replace(a, [(ChunkIdx(1), ReadRate::new(5.0, 50.0))]);
        h.replace(b, [(ChunkIdx(1), ReadRate::new(1.0, 10.0))]);
        h.replace(a, [(ChunkIdx(2), ReadRate::new(7.0, 70.0))]);
        assert_eq!(h.get(a, ChunkIdx(1)), ReadRate::default());
        assert_eq!(h.get(a, ChunkIdx(2)).reads_per_sec, 7.0);
        assert_eq!(h.get(b, ChunkIdx(1)).reads_per_sec, 1.0);
        assert_eq!(h.on(a).count(), 1);
        h.remove_server(b);
        assert_eq!(h.len(), 1);
    }
}
