//! The replication factor comes only from the master.
//!
//! A chunk first seen in a heartbeat takes the factor its replica reports,
//! which a writer chose. So that no writer can raise it, the master remembers
//! the factor of each allocation for as long as its write capability can be
//! used, and a chunk it first sees in a heartbeat gets:
//!
//! 1. at most the factor the master allocated, while it remembers it;
//! 2. otherwise at most `--replication` (a chunk this master never
//!    allocated: written before a restart or failover, or without a
//!    capability by a holder of the cluster token).
//!
//! A lower reported factor is kept: a writer may ask for fewer copies.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use keel_proto::capability::{CAPABILITY_TTL, CLOCK_LEEWAY};

/// How long an allocation's factor is remembered: the life of its
/// capability, the clock leeway, and a minute for the heartbeat that reports
/// the written replica.
pub const REMEMBER: Duration =
    Duration::from_secs(CAPABILITY_TTL.as_secs() + CLOCK_LEEWAY.as_secs() + 60);

/// At most this many factors are remembered (about 10 MB with long ids);
/// past it the oldest go first, and their chunks fall back to rule 2, which
/// errs towards fewer copies, never more.
pub const MAX_REMEMBERED: usize = 65_536;

/// Factors of recent allocations, oldest first.
#[derive(Debug, Default)]
pub struct AllocatedFactors {
    /// Chunk → (factor, number of its allocation).
    by_chunk: HashMap<Box<str>, (u32, u64)>,
    /// Allocations in order, for expiry: (chunk, when, number). An entry
    /// whose number no longer matches `by_chunk` was superseded or adopted.
    order: VecDeque<(Box<str>, Instant, u64)>,
    /// Numbers allocations.
    next: u64,
}

impl AllocatedFactors {
    /// Remembers that `chunk` was allocated with `factor` at `now`.
    pub fn record(&mut self, chunk: &str, factor: u32, now: Instant) {
        self.expire(now);
        self.next += 1;
        self.by_chunk.insert(chunk.into(), (factor, self.next));
        self.order.push_back((chunk.into(), now, self.next));
        // Both bounds: the order also holds superseded entries of ids
        // allocated again, which a loop of retries could pile up.
        while self.by_chunk.len() > MAX_REMEMBERED || self.order.len() > 2 * MAX_REMEMBERED {
            self.pop_oldest();
        }
    }

    /// The factor a chunk first seen with `reported` (0: none) gets, by the
    /// rules in the module docs; `policy` is `--replication`. The chunk's
    /// allocation is forgotten: its factor is now fixed.
    pub fn adopt(&mut self, chunk: &str, reported: u32, policy: u32) -> u32 {
        let reported = if reported == 0 { policy } else { reported };
        let ceiling = match self.by_chunk.remove(chunk) {
            Some((allocated, _)) => allocated,
            None => policy,
        };
        reported.min(ceiling).max(1)
    }

    /// Number of factors remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_chunk.len()
    }

    fn expire(&mut self, now: Instant) {
        while let Some((_, at, _)) = self.order.front() {
            if now.saturating_duration_since(*at) < REMEMBER {
                break;
            }
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((chunk, _, no)) = self.order.pop_front()
            && self.by_chunk.get(&chunk).is_some_and(|(_, n)| *n == no)
        {
            self.by_chunk.remove(&chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reported_factor_never_exceeds_the_allocated_one_or_the_policy() {
        let mut f = AllocatedFactors::default();
        let now = Instant::now();
        f.record("a", 5, now);
        f.record("b", 2, now);
        // Allocated above the policy: kept. Reported above it: cut to it.
        assert_eq!(f.adopt("a", 5, 3), 5);
        assert_eq!(f.adopt("b", 16, 3), 2);
        // Never allocated (or already adopted): at most the policy.
        assert_eq!(f.adopt("a", 5, 3), 3);
        assert_eq!(f.adopt("c", 16, 3), 3);
        // Fewer copies and "no factor" stay as asked.
        assert_eq!(f.adopt("d", 1, 3), 1);
        assert_eq!(f.adopt("e", 0, 3), 3);
    }

    #[test]
    fn allocations_are_forgotten_after_their_capability_and_beyond_the_cap() {
        let mut f = AllocatedFactors::default();
        let t0 = Instant::now();
        f.record("old", 5, t0);
        f.record("new", 5, t0 + REMEMBER);
        assert_eq!(f.len(), 1, "the old allocation expired");
        assert_eq!(f.adopt("old", 5, 3), 3);
        for i in 0..MAX_REMEMBERED + 10 {
            f.record(&format!("c{i}"), 4, t0 + REMEMBER);
        }
        assert_eq!(f.len(), MAX_REMEMBERED);
        assert_eq!(f.adopt("c0", 4, 3), 3, "the oldest went first");
        let last = format!("c{}", MAX_REMEMBERED + 9);
        assert_eq!(f.adopt(&last, 4, 3), 4);
        for _ in 0..3 * MAX_REMEMBERED {
            f.record("again", 4, t0 + REMEMBER);
        }
        assert!(
            f.order.len() <= 2 * MAX_REMEMBERED,
            "retries do not pile up"
        );
        assert_eq!(f.adopt("again", 4, 3), 4);
    }
}
