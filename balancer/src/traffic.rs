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

/// The most reads/s a rate may claim. Far above what one server can serve,
/// yet small enough that the sum over any cluster stays finite: one server
/// reporting 1e308 would otherwise make the mean infinite and turn the load
/// band off for everyone.
pub const MAX_READS_PER_SEC: f64 = 1e9;

/// The most bytes/s a rate may claim (a petabyte per second), for the same
/// reason as [`MAX_READS_PER_SEC`].
pub const MAX_BYTES_PER_SEC: f64 = 1e15;

/// A reported reads/s as the balancer trusts it: NaN, infinite or negative
/// counts as 0, and it is capped at [`MAX_READS_PER_SEC`].
pub fn sane_rate(reads_per_sec: f64) -> f64 {
    clamp(reads_per_sec, MAX_READS_PER_SEC)
}

/// `rate` when finite and positive, at most `max`; else +0.0.
fn clamp(rate: f64, max: f64) -> f64 {
    // Written so that NaN and -0.0 both come out as +0.0.
    if rate.is_finite() && rate > 0.0 {
        rate.min(max)
    } else {
        0.0
    }
}

/// A replica read at `rate` leaves a server read at `from` for one read at
/// `to`: the source loses the rate (never below 0), the target gains it. The
/// one rule every projection of a move uses, so the planner, the model,
/// predictions and the master's view of finished moves agree.
pub fn carry(from: &mut f64, to: &mut f64, rate: f64) {
    *from = (*from - rate).max(0.0);
    *to += rate;
}

/// [`carry`] on the reads/s of `reads`, indexed by server; nothing happens
/// when `from` or `to` is out of range or both are the same server.
pub fn carry_reads(reads: &mut [f64], from: usize, to: usize, rate: f64) {
    if let Ok([f, t]) = reads.get_disjoint_mut([from, to]) {
        carry(f, t, rate);
    }
}

/// Mean of `reads_per_sec` (each cleaned by [`sane_rate`]); 0 for none.
pub fn mean_reads_per_sec(reads_per_sec: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = reads_per_sec
        .into_iter()
        .fold((0.0, 0usize), |(sum, n), r| (sum + sane_rate(r), n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// How many standard errors a replica's rate must stand above its server's
/// average chunk before it counts as hot for a load move. Three: among the
/// 64 replicas a server lists out of hundreds read alike, the top ones
/// stand one or two errors above the rest by chance alone.
pub const HOT_CHUNK_SIGMAS: f64 = 3.0;

/// Whether a replica read at `rate` reads/s stands out from a server whose
/// chunks read at `chunk_mean` reads/s on average, given rates decayed
/// with time constant `tau_secs`: `rate − chunk_mean ≥ 3 σ`, where
/// `σ = √(rate / 2τ)` is the standard error of such an average over
/// independent (Poisson) reads.
///
/// A server's hot list is its top 64 replicas. Under uniform readers those
/// are the chunks that drew a few more reads by chance: moving one takes
/// along the average rate, not the listed one, so it is a capacity move by
/// another name and cools nothing. Only replicas that stand out carry
/// their load with them.
pub fn stands_out(rate: f64, chunk_mean: f64, tau_secs: f64) -> bool {
    let (rate, mean) = (sane_rate(rate), sane_rate(chunk_mean));
    if rate <= 0.0 || !(tau_secs.is_finite() && tau_secs > 0.0) {
        return false;
    }
    rate - mean >= HOT_CHUNK_SIGMAS * (rate / (2.0 * tau_secs)).sqrt()
}

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

    /// The rate as the balancer trusts it: each figure finite, not
    /// negative and under its cap ([`MAX_READS_PER_SEC`],
    /// [`MAX_BYTES_PER_SEC`]).
    pub fn sanitized(self) -> Self {
        Self {
            reads_per_sec: sane_rate(self.reads_per_sec),
            bytes_per_sec: clamp(self.bytes_per_sec, MAX_BYTES_PER_SEC),
        }
    }

    /// [`carry`] for both figures: a replica read at `rate` leaves `from`
    /// for `to`.
    pub fn carry(from: &mut ReadRate, to: &mut ReadRate, rate: ReadRate) {
        carry(
            &mut from.reads_per_sec,
            &mut to.reads_per_sec,
            rate.reads_per_sec,
        );
        carry(
            &mut from.bytes_per_sec,
            &mut to.bytes_per_sec,
            rate.bytes_per_sec,
        );
    }

    /// The rate scaled by `factor` (e.g. the share of a moved replica's past
    /// reads still in a decayed average).
    pub fn scaled(self, factor: f64) -> Self {
        Self::new(self.reads_per_sec * factor, self.bytes_per_sec * factor)
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

impl LoadPosition {
    /// The word operators see: `hot`, `cold` or `inside`.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadPosition::Hot => "hot",
            LoadPosition::Cold => "cold",
            LoadPosition::Inside => "inside",
        }
    }

    /// The position [`LoadPosition::as_str`] names; `None` for any other
    /// word (e.g. the empty `load` of a master that predates read load).
    pub fn parse(word: &str) -> Option<Self> {
        [LoadPosition::Hot, LoadPosition::Cold, LoadPosition::Inside]
            .into_iter()
            .find(|p| p.as_str() == word)
    }
}

impl std::fmt::Display for LoadPosition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
    fn rates_are_cleaned_and_capped() {
        assert_eq!(sane_rate(f64::NAN), 0.0);
        assert_eq!(sane_rate(-3.0), 0.0);
        assert_eq!(sane_rate(f64::INFINITY), 0.0);
        assert_eq!(sane_rate(1e308), MAX_READS_PER_SEC);
        assert_eq!(sane_rate(12.5), 12.5);
        assert!(sane_rate(-0.0).is_sign_positive());
        let r = ReadRate::new(1e300, 1e300).sanitized();
        assert_eq!(r, ReadRate::new(MAX_READS_PER_SEC, MAX_BYTES_PER_SEC));
        assert_eq!(
            ReadRate::new(f64::NAN, -1.0).sanitized(),
            ReadRate::default()
        );
    }

    #[test]
    fn mean_of_huge_rates_stays_finite_and_the_band_works() {
        let mean = mean_reads_per_sec([1e308, 1e308, 0.0, 0.0]);
        assert!(mean.is_finite());
        assert_eq!(mean_reads_per_sec([]), 0.0);
        assert_eq!(mean_reads_per_sec([1.0, 3.0, f64::NAN]), 4.0 / 3.0);
        assert_eq!(
            load_position(sane_rate(1e308), mean, 25.0),
            LoadPosition::Hot
        );
        assert_eq!(load_position(0.0, mean, 25.0), LoadPosition::Cold);
    }

    #[test]
    fn a_moved_rate_leaves_its_source_for_its_target() {
        let mut reads = vec![10.0, 1.0];
        carry_reads(&mut reads, 0, 1, 4.0);
        assert_eq!(reads, [6.0, 5.0]);
        carry_reads(&mut reads, 0, 1, 100.0);
        assert_eq!(reads, [0.0, 105.0]);
        carry_reads(&mut reads, 1, 1, 1.0);
        carry_reads(&mut reads, 0, 7, 1.0);
        assert_eq!(reads, [0.0, 105.0]);
        let (mut a, mut b) = (ReadRate::new(5.0, 50.0), ReadRate::default());
        ReadRate::carry(&mut a, &mut b, ReadRate::new(2.0, 80.0).scaled(0.5));
        assert_eq!((a, b), (ReadRate::new(4.0, 10.0), ReadRate::new(1.0, 40.0)));
    }

    #[test]
    fn a_replica_is_hot_only_when_it_stands_out_of_the_noise() {
        // t76's uniform readers: 400 chunks at 12 reads/s, the listed top
        // at 0.03–0.1 reads/s, all noise.
        let mean = 12.0 / 400.0;
        assert!(!stands_out(0.1, mean, 60.0));
        assert!(!stands_out(0.03, mean, 60.0));
        // t98's hot set: 10 chunks with two thirds of 150 reads/s on a
        // server of 64 chunks.
        assert!(stands_out(100.0 / 10.0 * 0.5, 150.0 / 64.0, 60.0));
        // The threshold: 3 σ with σ = √(r / 2τ).
        // At a mean of 1 and τ = 60 s: 1.3 − 1 < 3 √(1.3 / 120) ≈ 0.312,
        // 1.35 − 1 > 3 √(1.35 / 120) ≈ 0.318.
        assert!(!stands_out(1.3, 1.0, 60.0));
        assert!(stands_out(1.35, 1.0, 60.0));
        // Nonsense reads as not hot.
        assert!(!stands_out(f64::NAN, 0.0, 60.0));
        assert!(!stands_out(5.0, 0.0, 0.0));
    }

    #[test]
    fn positions_have_words() {
        assert_eq!(LoadPosition::Hot.as_str(), "hot");
        assert_eq!(LoadPosition::Cold.as_str(), "cold");
        assert_eq!(LoadPosition::Inside.to_string(), "inside");
        for p in [LoadPosition::Hot, LoadPosition::Cold, LoadPosition::Inside] {
            assert_eq!(LoadPosition::parse(p.as_str()), Some(p));
        }
        assert_eq!(LoadPosition::parse(""), None);
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
