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
//! servers ruled out by anti-affinity or racks are ever skipped. The orders
//! are also kept per rack: a chunk that may only go to a few racks looks in
//! those racks alone, instead of skipping every server of the others.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use crate::band::Bounds;
use crate::ids::ServerIdx;

/// One ordered tier: (room, server), largest room first.
type Tier = BTreeSet<(Reverse<u64>, u32)>;

/// Candidate targets for one planning phase.
#[derive(Debug, Default)]
pub(crate) struct Targets {
    /// Tiers in the order they are tried.
    tiers: [Tier; 4],
    /// The same tiers for each rack's servers.
    by_rack: Vec<[Tier; 4]>,
    /// Rack number of each server (index = server), if it has a rack.
    rack_of: Vec<Option<u32>>,
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
    /// Targets drawn from `servers`, each at `used[s]` with bounds
    /// `bounds[s]`, in rack `rack_of[s]` (racks numbered from 0).
    pub fn new(
        servers: impl IntoIterator<Item = ServerIdx>,
        used: &[u64],
        bounds: &[Bounds],
        rack_of: &[Option<u32>],
        only_under: bool,
    ) -> Self {
        let racks = rack_of
            .iter()
            .flatten()
            .max()
            .map_or(0, |&r| r as usize + 1);
        let mut t = Self {
            tiers: Default::default(),
            by_rack: (0..racks).map(|_| Default::default()).collect(),
            rack_of: rack_of.to_vec(),
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
        let rack = self.rack_of[s.0 as usize];
        for (t, key) in keys(b, used, self.only_under).into_iter().enumerate() {
            if key > 0 {
                self.tiers[t].insert((Reverse(key), s.0));
                if let Some(r) = rack {
                    self.by_rack[r as usize][t].insert((Reverse(key), s.0));
                }
            }
        }
    }

    /// Removes `s`, which was at `used` bytes, from every tier.
    pub fn remove(&mut self, s: ServerIdx, b: &Bounds, used: u64) {
        let rack = self.rack_of[s.0 as usize];
        for (t, key) in keys(b, used, self.only_under).into_iter().enumerate() {
            if key > 0 {
                self.tiers[t].remove(&(Reverse(key), s.0));
                if let Some(r) = rack {
                    self.by_rack[r as usize][t].remove(&(Reverse(key), s.0));
                }
            }
        }
    }

    /// Bytes a server with bounds `b` at `used` bytes may still take as a
    /// target of this phase (0: it is no target now).
    pub fn room(&self, b: &Bounds, used: u64) -> u64 {
        keys(b, used, self.only_under)
            .into_iter()
            .max()
            .unwrap_or(0)
    }

    /// Whether no server can take anything more.
    pub fn is_empty(&self) -> bool {
        self.tiers.iter().all(BTreeSet::is_empty)
    }

    /// The first server, tier by tier, with room for `bytes` that `allowed`
    /// accepts; with `racks`, only servers of those racks are looked at
    /// (the one with the most room wins within a tier). `Err(true)` when
    /// some server had room but none was allowed, `Err(false)` when no
    /// server had room.
    pub fn pick(
        &self,
        bytes: u64,
        racks: Option<&[u32]>,
        allowed: impl Fn(ServerIdx) -> bool,
    ) -> Result<ServerIdx, bool> {
        let mut had_room = false;
        for t in 0..self.tiers.len() {
            let best = match racks {
                None => first_fit(&self.tiers[t], bytes, &allowed, &mut had_room),
                Some(racks) => racks
                    .iter()
                    .filter_map(|&r| self.by_rack.get(r as usize))
                    .filter_map(|tiers| first_fit(&tiers[t], bytes, &allowed, &mut had_room))
                    .min(),
            };
            if let Some((_, s)) = best {
                return Ok(ServerIdx(s));
            }
        }
        Err(had_room)
    }
}

/// The first entry of `tier` with room for `bytes` that `allowed` accepts.
fn first_fit(
    tier: &Tier,
    bytes: u64,
    allowed: impl Fn(ServerIdx) -> bool,
    had_room: &mut bool,
) -> Option<(Reverse<u64>, u32)> {
    for &(Reverse(room), s) in tier {
        if room < bytes {
            break;
        }
        *had_room = true;
        if allowed(ServerIdx(s)) {
            return Some((Reverse(room), s));
        }
    }
    None
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
        let t = Targets::new(
            [0, 1, 2].map(ServerIdx),
            &[10, 25, 30],
            &b,
            &[None; 3],
            false,
        );
        assert_eq!(t.pick(15, None, |_| true), Ok(ServerIdx(0)));
        // Too big for any deficit: the most room up to the average.
        assert_eq!(t.pick(25, None, |_| true), Ok(ServerIdx(0)));
        assert_eq!(t.pick(25, None, |s| s != ServerIdx(0)), Ok(ServerIdx(1)));
        // Past every average: up to the upper aim, where s2's floor (60) leaves 30.
        let neither = |s| s != ServerIdx(0) && s != ServerIdx(1);
        assert_eq!(t.pick(30, None, neither), Ok(ServerIdx(2)));
        assert_eq!(t.pick(31, None, neither), Err(true));
        assert_eq!(t.pick(61, None, |_| true), Err(false));
        assert_eq!(t.pick(1, None, |_| false), Err(true));
    }

    #[test]
    fn only_under_drops_servers_that_reach_their_aim() {
        let b = [bounds(30, 50, 70, 90)];
        let mut t = Targets::new([ServerIdx(0)], &[10], &b, &[None], true);
        assert_eq!(t.pick(50, None, |_| true), Ok(ServerIdx(0)));
        t.remove(ServerIdx(0), &b[0], 10);
        t.insert(ServerIdx(0), &b[0], 30);
        assert!(t.is_empty());
    }

    #[test]
    fn a_rack_list_looks_in_those_racks_only() {
        let b = [bounds(30, 50, 70, 90); 3];
        let racks = [Some(0), Some(1), Some(1)];
        let t = Targets::new([0, 1, 2].map(ServerIdx), &[0, 20, 10], &b, &racks, false);
        assert_eq!(t.pick(5, None, |_| true), Ok(ServerIdx(0)));
        assert_eq!(t.pick(5, Some(&[1]), |_| true), Ok(ServerIdx(2)));
        assert_eq!(
            t.pick(5, Some(&[1]), |s| s != ServerIdx(2)),
            Ok(ServerIdx(1))
        );
        assert_eq!(t.pick(5, Some(&[1]), |s| s == ServerIdx(0)), Err(true));
    }
}
