//! The planner's candidate targets, kept in four orders so that picking a
//! target for a chunk of a given size takes a few steps:
//!
//! 1. underloaded servers whose remaining deficit the chunk fits, largest
//!    deficit first (a byte moved there counts against excess *and* deficit);
//! 2. underloaded servers with room up to their average share;
//! 3. other servers with room up to their average share;
//! 4. any server with room up to the band's upper aim.
//!
//! Every room is also capped by the free-space floor. Each order is scanned
//! from the largest room down and stops at the first room too small, so only
//! servers ruled out by anti-affinity or racks are ever skipped.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use crate::band::Bounds;
use crate::model::ServerIdx;

/// One ordered tier: (room, server), largest room first.
type Tier = BTreeSet<(Reverse<u64>, u32)>;

/// Candidate targets for one planning phase.
#[derive(Debug, Default)]
pub(crate) struct Targets {
    /// Tiers in the order they are tried.
    tiers: [Tier; 4],
    /// Only servers still below their lower aim are targets (filling
    /// underloaded servers from in-band donors).
    only_under: bool,
}

/// The four keys of one server; 0 means "not in this tier".
fn keys(b: &Bounds, used: u64, only_under: bool) -> [u64; 4] {
    let room = |goal: u64| goal.min(b.limit).saturating_sub(used);
    let under = used < b.lo_aim;
    match (under, only_under) {
        (true, _) => [room(b.lo_aim), room(b.average), 0, room(b.hi_aim)],
        (false, false) => [0, 0, room(b.average), room(b.hi_aim)],
        (false, true) => [0; 4],
    }
}

impl Targets {
    /// Targets drawn from `servers`, each at `used[s]` with bounds `bounds[s]`.
    pub fn new(
        servers: impl IntoIterator<Item = ServerIdx>,
        used: &[u64],
        bounds: &[Bounds],
        only_under: bool,
    ) -> Self {
        let mut t = Self {
            tiers: Default::default(),
            only_under,
        };
        for s in servers {
            let i = s.0 as usize;
            t.insert(s, &bounds[i], used[i]);
        }
        t
    }

    /// Adds `s` at `used` bytes to every tier it belongs to.
    pub fn insert(&mut self, s: ServerIdx, b: &Bounds, used: u64) {
        for (tier, key) in self.tiers.iter_mut().zip(keys(b, used, self.only_under)) {
            if key > 0 {
                tier.insert((Reverse(key), s.0));
            }
        }
    }

    /// Removes `s`, which was at `used` bytes, from every tier.
    pub fn remove(&mut self, s: ServerIdx, b: &Bounds, used: u64) {
        for (tier, key) in self.tiers.iter_mut().zip(keys(b, used, self.only_under)) {
            if key > 0 {
                tier.remove(&(Reverse(key), s.0));
            }
        }
    }

    /// Whether no server can take anything more.
    pub fn is_empty(&self) -> bool {
        self.tiers.iter().all(BTreeSet::is_empty)
    }

    /// The first server, tier by tier, with room for `bytes` that `allowed`
    /// accepts. `Err(true)` when some server had room but none was allowed,
    /// `Err(false)` when no server had room.
    pub fn pick(&self, bytes: u64, allowed: impl Fn(ServerIdx) -> bool) -> Result<ServerIdx, bool> {
        let mut had_room = false;
        for tier in &self.tiers {
            for &(Reverse(room), s) in tier {
                if room < bytes {
                    break;
                }
                had_room = true;
                if allowed(ServerIdx(s)) {
                    return Ok(ServerIdx(s));
                }
            }
        }
        Err(had_room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(lo_aim: u64, average: u64, hi_aim: u64, limit: u64) -> Bounds {
        Bounds {
            hi_edge: hi_aim,
            lo_edge: lo_aim,
            hi_aim,
            lo_aim,
            average,
            limit,
        }
    }

    #[test]
    fn prefers_a_deficit_the_chunk_fits_then_room() {
        let b = [
            bounds(30, 50, 70, 90),
            bounds(30, 50, 70, 90),
            bounds(30, 50, 70, 60),
        ];
        // s0 is underloaded by 20, s1 by 5, s2 is in the band with 20 to its average.
        let t = Targets::new([0, 1, 2].map(ServerIdx), &[10, 25, 30], &b, false);
        assert_eq!(t.pick(15, |_| true), Ok(ServerIdx(0)));
        // Too big for any deficit: the most room up to the average.
        assert_eq!(t.pick(25, |_| true), Ok(ServerIdx(0)));
        assert_eq!(t.pick(25, |s| s != ServerIdx(0)), Ok(ServerIdx(1)));
        // Past every average: up to the upper aim, where s2's floor (60) leaves 30.
        let neither = |s| s != ServerIdx(0) && s != ServerIdx(1);
        assert_eq!(t.pick(30, neither), Ok(ServerIdx(2)));
        assert_eq!(t.pick(31, neither), Err(true));
        assert_eq!(t.pick(61, |_| true), Err(false));
        assert_eq!(t.pick(1, |_| false), Err(true));
    }

    #[test]
    fn only_under_drops_servers_that_reach_their_aim() {
        let b = [bounds(30, 50, 70, 90)];
        let mut t = Targets::new([ServerIdx(0)], &[10], &b, true);
        assert_eq!(t.pick(50, |_| true), Ok(ServerIdx(0)));
        t.remove(ServerIdx(0), &b[0], 10);
        t.insert(ServerIdx(0), &b[0], 30);
        assert!(t.is_empty());
    }
}
