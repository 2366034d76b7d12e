//! Deterministic tools for tests and the benchmark: a seeded random number
//! generator, cluster generators and Zipf-like read traffic for them, and a
//! simulation that drains the move queue against a view with injected
//! failures, checking every invariant at every step. Everything is driven
//! by a seed; nothing reads a clock.

mod drain;
mod generate;
mod heat;

pub use drain::{FailureModel, SimConfig, SimReport, simulate};
pub use generate::{RandomSpec, SkewSpec, random_cluster, skewed_cluster};
pub use heat::{HeatSpec, hot_set, refresh_reads, zipf_heat};

/// SplitMix64: small, fast and good enough for generating test clusters.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi` (`lo` when `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo;
        if span == u64::MAX {
            return self.next_u64();
        }
        lo + ((u128::from(self.next_u64()) * u128::from(span + 1)) >> 64) as u64
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn ranges_stay_inside_and_seeds_replay() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        for _ in 0..1000 {
            let x = a.range(3, 9);
            assert!((3..=9).contains(&x));
            assert_eq!(x, b.range(3, 9));
        }
        assert_eq!(a.range(5, 5), 5);
        assert!((0.0..1.0).contains(&a.unit()));
    }
}
