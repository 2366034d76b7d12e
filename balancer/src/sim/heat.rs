//! Seeded read traffic for a generated cluster: a few hot chunks whose
//! rates follow a Zipf-like law (the k-th hottest reads at `1 / k^s` of the
//! hottest), plus background reads spread evenly over the live servers and
//! reported per server only, as the cold chunks' reads are.

use super::Rng;
use crate::ids::{ChunkIdx, ServerIdx};
use crate::model::ClusterView;
use crate::traffic::ReadRate;

/// How much traffic, and where.
#[derive(Debug, Clone, Copy)]
pub struct HeatSpec {
    /// Client reads/s over the whole cluster, hot and background together.
    pub total_reads_per_sec: f64,
    /// Share of the reads that are background (not on a hot chunk).
    pub background: f64,
    /// Number of hot chunks.
    pub hot_chunks: usize,
    /// Zipf exponent `s`: 0 makes every hot chunk equally hot, 1 is the
    /// classic law.
    pub exponent: f64,
    /// Draw hot chunks among those with a replica on this server, and send
    /// their reads to that replica (a hot set on one node); `None`: any
    /// chunk, its reads split evenly over its live replicas.
    pub on: Option<ServerIdx>,
}

/// Draws the hot chunks of `spec` from `seed`, sets `view.heat` and every
/// server's reads/s (its background share plus its hot replicas' rates),
/// and returns each server's background reads/s (0 for dead servers).
/// Chunks are drawn without repetition; fewer than asked when the view has
/// fewer candidates.
pub fn zipf_heat(seed: u64, view: &mut ClusterView, spec: &HeatSpec) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let live = view.servers.iter().filter(|s| s.alive).count().max(1);
    let per_server = spec.total_reads_per_sec * spec.background.clamp(0.0, 1.0) / live as f64;
    let background: Vec<f64> = view
        .servers
        .iter()
        .map(|s| if s.alive { per_server } else { 0.0 })
        .collect();
    let hot_total = spec.total_reads_per_sec - per_server * live as f64;
    hot_set(
        &mut rng,
        view,
        spec.on,
        spec.hot_chunks,
        hot_total,
        spec.exponent,
    );
    refresh_reads(view, &background);
    background
}

/// Makes `chunks` chunks hot (with a replica on `on` when given, their
/// reads on that replica), drawn with `rng` without repetition, with
/// Zipf-like rates of exponent `exponent` summing to `reads_per_sec`; adds
/// to `view.heat` only (see [`refresh_reads`]). Returns how many chunks it
/// made hot: fewer than asked when fewer qualify.
pub fn hot_set(
    rng: &mut Rng,
    view: &mut ClusterView,
    on: Option<ServerIdx>,
    chunks: usize,
    reads_per_sec: f64,
    exponent: f64,
) -> usize {
    let mut pool: Vec<ChunkIdx> = view
        .chunks()
        .filter(|c| c.size() > 0)
        .filter(|c| on.is_none_or(|s| c.is_on(s)))
        .map(|c| c.idx())
        .collect();
    let n = chunks.min(pool.len());
    let weights: Vec<f64> = (1..=n).map(|k| (k as f64).powf(-exponent)).collect();
    let scale = reads_per_sec / weights.iter().sum::<f64>().max(f64::MIN_POSITIVE);
    for (k, w) in weights.iter().enumerate() {
        // A partial Fisher–Yates shuffle: the k-th draw comes from the rest.
        let j = rng.range(k as u64, pool.len() as u64 - 1) as usize;
        pool.swap(k, j);
        place_rate(view, pool[k], w * scale, on);
    }
    n
}

/// Sets the heat of `chunk` to `rate` reads/s, on `on` or split evenly
/// over its live replicas.
fn place_rate(view: &mut ClusterView, chunk: ChunkIdx, rate: f64, on: Option<ServerIdx>) {
    let c = view.chunk(chunk);
    let size = c.size() as f64;
    let holders: Vec<ServerIdx> = match on {
        Some(s) => vec![s],
        None => c
            .replicas()
            .iter()
            .copied()
            .filter(|&s| view.server(s).alive)
            .collect(),
    };
    let share = rate / holders.len().max(1) as f64;
    for s in holders {
        view.heat.set(s, chunk, ReadRate::new(share, share * size));
    }
}

/// Sets every server's read rate to `background[s]` plus the rates of its
/// hot replicas, as a chunk server would report them.
pub fn refresh_reads(view: &mut ClusterView, background: &[f64]) {
    for (i, s) in view.servers.iter_mut().enumerate() {
        let b = background.get(i).copied().unwrap_or(0.0);
        s.reads = ReadRate::new(b, 0.0);
    }
    let hot: Vec<_> = view.heat.iter().collect();
    for (s, _, rate) in hot {
        let r = &mut view.servers[s.0 as usize].reads;
        r.reads_per_sec += rate.reads_per_sec;
        r.bytes_per_sec += rate.bytes_per_sec;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_sum_to_the_total_and_fall_like_zipf() {
        let mut v = ClusterView::new();
        let a = v.add_server("a", None, 1000, true);
        let b = v.add_server("b", None, 1000, true);
        for i in 0..20 {
            v.add_chunk(format!("c{i}"), 10, 0, 1, &[if i % 2 == 0 { a } else { b }]);
        }
        let spec = HeatSpec {
            total_reads_per_sec: 1000.0,
            background: 0.2,
            hot_chunks: 4,
            exponent: 1.0,
            on: Some(a),
        };
        let bg = zipf_heat(3, &mut v, &spec);
        assert_eq!(bg, vec![100.0, 100.0]);
        let total: f64 = v.servers.iter().map(|s| s.reads.reads_per_sec).sum();
        assert!((total - 1000.0).abs() < 1e-6);
        assert_eq!(v.heat.on(b).count(), 0);
        let mut rates: Vec<f64> = v.heat.on(a).map(|(_, r)| r.reads_per_sec).collect();
        rates.sort_by(|x, y| y.total_cmp(x));
        assert_eq!(rates.len(), 4);
        assert!((rates[0] / rates[1] - 2.0).abs() < 1e-9);
    }
}
