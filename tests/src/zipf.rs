//! A seeded Zipf-like popularity: rank `k` (1-based) of `n` is picked with
//! probability proportional to `1 / (k + offset)^exponent`.
//!
//! The offset (Zipf–Mandelbrot's `q`) flattens the head. With `offset` 0
//! and exponent 1 over a few hundred chunks the top chunk alone takes over
//! a tenth of all reads, more than one server's fair share in an
//! eight-server cluster, and no move of a single replica could ever even
//! that out; a small offset keeps the skew (the top tenth of the ranks still
//! take about half the reads) while leaving the load balanceable.

use crate::faults::Rng;

/// Ranks `0..n` drawn with a Zipf-like skew; rank 0 is the most popular.
#[derive(Debug, Clone)]
pub struct Zipf {
    /// Cumulative probabilities of ranks `0..n`, the last one 1.0.
    cdf: Vec<f64>,
}

impl Zipf {
    /// `n` ranks with `exponent` and `offset`; `None` for no ranks or a
    /// negative or non-finite parameter.
    pub fn new(n: usize, exponent: f64, offset: f64) -> Option<Zipf> {
        let sane = |x: f64| x.is_finite() && x >= 0.0;
        if n == 0 || !sane(exponent) || !sane(offset) {
            return None;
        }
        let weights: Vec<f64> = (1..=n)
            .map(|k| (k as f64 + offset).powf(-exponent))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut sum = 0.0;
        let mut cdf: Vec<f64> = weights
            .iter()
            .map(|w| {
                sum += w / total;
                sum
            })
            .collect();
        // Rounding may leave the last sum a hair under 1.
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        Some(Zipf { cdf })
    }

    /// Number of ranks.
    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    /// Always false: a `Zipf` has at least one rank.
    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }

    /// Probability of rank `k` (0-based); 0 outside the ranks.
    pub fn share(&self, k: usize) -> f64 {
        match k {
            0 => self.cdf.first().copied().unwrap_or(0.0),
            _ if k < self.cdf.len() => self.cdf[k] - self.cdf[k - 1],
            _ => 0.0,
        }
    }

    /// One rank drawn with `rng`.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        // 53 random bits: a uniform draw in [0, 1).
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_fall_with_rank_and_add_up() {
        let z = Zipf::new(100, 1.1, 5.0).expect("valid");
        let total: f64 = (0..100).map(|k| z.share(k)).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        assert!((1..100).all(|k| z.share(k) < z.share(k - 1)));
        assert_eq!(z.share(100), 0.0);
        // Exponent 0 is uniform.
        let flat = Zipf::new(4, 0.0, 0.0).expect("valid");
        assert!((flat.share(3) - 0.25).abs() < 1e-12);
    }

    #[test]
    fn samples_follow_the_shares() {
        let z = Zipf::new(50, 1.0, 2.0).expect("valid");
        let mut rng = Rng::new(7);
        let mut counts = [0u32; 50];
        let draws = 200_000;
        for _ in 0..draws {
            counts[z.sample(&mut rng)] += 1;
        }
        for k in [0, 1, 10, 49] {
            let seen = f64::from(counts[k]) / f64::from(draws);
            let want = z.share(k);
            assert!(
                (seen - want).abs() < 0.1 * want + 0.001,
                "rank {k}: {seen} vs {want}"
            );
        }
    }

    #[test]
    fn refuses_nonsense() {
        assert!(Zipf::new(0, 1.0, 0.0).is_none());
        assert!(Zipf::new(3, -1.0, 0.0).is_none());
        assert!(Zipf::new(3, f64::NAN, 0.0).is_none());
        assert!(Zipf::new(3, 1.0, -2.0).is_none());
    }
}
