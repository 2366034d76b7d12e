//! How running copies share the servers' migration bandwidth.
//!
//! A chunk server draws every migration byte, in and out together, from one
//! token bucket (`chunkserver/src/throttle.rs`): the source draws as it reads
//! and the target as it writes, so a copy runs at the pace of the tighter of
//! its two buckets. Copies sharing a bucket share it; a copy held back by its
//! other end leaves the rest of the bucket to the others. That is max-min
//! fairness, computed here by progressive filling: raise every copy's rate
//! together, and freeze the copies of each server as its bucket fills.

/// Rates, in bytes per second, of copies given as `(from, to)` server
/// positions, with `bandwidth[s]` the budget of server `s` (0 = unlimited).
/// A copy between two unlimited servers gets `f64::INFINITY`.
pub fn fair_rates(copies: &[(usize, usize)], bandwidth: &[u64]) -> Vec<f64> {
    let mut rate = vec![f64::INFINITY; copies.len()];
    let mut frozen = vec![false; copies.len()];
    let mut left: Vec<f64> = bandwidth
        .iter()
        .map(|&b| if b == 0 { f64::INFINITY } else { b as f64 })
        .collect();
    loop {
        // The server whose bucket fills first as all unfrozen rates rise.
        let mut users = vec![0usize; bandwidth.len()];
        for (i, &(from, to)) in copies.iter().enumerate() {
            if !frozen[i] {
                users[from] += 1;
                if to != from {
                    users[to] += 1;
                }
            }
        }
        let bottleneck = (0..bandwidth.len())
            .filter(|&s| users[s] > 0 && left[s].is_finite())
            .map(|s| (left[s] / users[s] as f64, s))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let Some((level, server)) = bottleneck else {
            return rate;
        };
        for (i, &(from, to)) in copies.iter().enumerate() {
            if !frozen[i] && (from == server || to == server) {
                frozen[i] = true;
                rate[i] = level.max(0.0);
                for s in [from, to] {
                    left[s] -= rate[i];
                }
                if from == to {
                    left[from] += rate[i];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fair_rates;

    #[test]
    fn one_copy_runs_at_the_slower_end() {
        assert_eq!(fair_rates(&[(0, 1)], &[10, 4]), vec![4.0]);
        assert_eq!(fair_rates(&[(0, 1)], &[10, 0]), vec![10.0]);
        assert_eq!(fair_rates(&[(0, 1)], &[0, 0]), vec![f64::INFINITY]);
    }

    #[test]
    fn a_shared_source_is_split_and_leftovers_go_to_the_others() {
        // Two copies out of server 0 (10/s); one target is slow (2/s), so
        // the other copy gets the remaining 8.
        assert_eq!(fair_rates(&[(0, 1), (0, 2)], &[10, 2, 100]), vec![2.0, 8.0]);
        // Equal ends: an even split.
        assert_eq!(fair_rates(&[(0, 1), (0, 2)], &[10, 10, 10]), vec![5.0, 5.0]);
    }

    #[test]
    fn no_bucket_is_overdrawn() {
        let copies = [(0, 1), (0, 2), (3, 1), (2, 3), (4, 0)];
        let bw = [12, 7, 5, 9, 0];
        let r = fair_rates(&copies, &bw);
        for (s, &b) in bw.iter().enumerate() {
            let used: f64 = copies
                .iter()
                .zip(&r)
                .filter(|((f, t), _)| *f == s || *t == s)
                .map(|(_, r)| r)
                .sum();
            assert!(
                b == 0 || used <= b as f64 + 1e-9,
                "server {s}: {used} > {b}"
            );
        }
        assert!(r.iter().all(|x| *x > 0.0 && x.is_finite()));
    }
}
