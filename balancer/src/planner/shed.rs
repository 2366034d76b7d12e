//! How one source sheds chunks: its chunks ordered coldest first, the ones
//! that fit what is left to shed moved first, then the smallest one that
//! finishes the job; each to the best target its replicas and racks allow.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::Planner;
use crate::admission::{CopyClass, Endpoint, MoveFacts, admit};
use crate::band::Bounds;
use crate::ids::{ChunkIdx, ServerIdx};
use crate::plan::{MoveReason, PlannedMove};
use crate::targets::Targets;
use crate::traffic::carry_reads;

/// What one source still has to shed, in bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChunkFit {
    /// Bytes still wanted off the source.
    pub left: u64,
    /// Most bytes it may still lose (down to its lower aim).
    pub budget: u64,
}

impl ChunkFit {
    /// Whether a chunk of `size` bytes fits both.
    pub fn fits(&self, size: u64) -> bool {
        size > 0 && size <= self.left && size <= self.budget
    }

    /// Counts a chunk of `size` bytes as shed.
    pub fn take(&mut self, size: u64) {
        self.left -= size;
        self.budget -= size;
    }
}

/// Order of a source's chunks when it sheds: cooling or not, reads, size
/// (largest first), index.
type ShedKey = (bool, u64, Reverse<u64>, u32);

/// Up to this many racks, a chunk whose rack rule binds looks for targets
/// rack by rack; beyond, it scans all servers and skips the few in racks it
/// may not use.
const MAX_RACK_LIST: u32 = 8;

impl Planner<'_> {
    /// Each of `sources` in turn sheds down to `goal(bounds)` (never below
    /// its lower aim) into `targets`, until the targets are full.
    pub(super) fn shed_all(
        &mut self,
        sources: &[usize],
        mut targets: Targets,
        goal: fn(&Bounds) -> u64,
    ) {
        let mut lists = self.chunks_on(sources);
        for &s in sources {
            if targets.is_empty() {
                break;
            }
            let b = self.bounds[s];
            let want = self.used[s].saturating_sub(goal(&b));
            let budget = self.used[s].saturating_sub(b.lo_aim);
            let candidates = std::mem::take(&mut lists[s]);
            self.shed(s, &candidates, want, budget, &mut targets);
        }
    }

    /// The movable chunks on each of `sources` (index = server).
    fn chunks_on(&self, sources: &[usize]) -> Vec<Vec<u32>> {
        let mut lists = vec![Vec::new(); self.view.servers.len()];
        let mut is_source = vec![false; self.view.servers.len()];
        sources.iter().for_each(|&s| is_source[s] = true);
        for c in 0..self.table.len() {
            if self.is_busy(c) {
                continue;
            }
            for s in self.table.replicas(c) {
                if is_source[s.0 as usize] {
                    lists[s.0 as usize].push(c as u32);
                }
            }
        }
        lists
    }

    /// `chunks` coldest first, then largest first, then by index, as a
    /// heap: built in linear time, and a source usually sheds a small share
    /// of its chunks, so only those are ever put in order. Chunks kept from
    /// load moves ([`crate::InFlight::is_cooling`]: cooling after one, the
    /// cold halves of swaps among them, or held by the caller) come after
    /// all others, so that capacity does not send them straight back.
    fn coldest_first(&self, chunks: &[u32]) -> BinaryHeap<Reverse<ShedKey>> {
        let t = self.table;
        chunks
            .iter()
            .map(|&c| {
                let cooling = self.in_flight.is_cooling(ChunkIdx(c));
                let (reads, size) = (t.reads(c as usize), t.size(c as usize));
                Reverse((cooling, reads, Reverse(size), c))
            })
            .collect()
    }

    /// Moves chunks off `src`: its hot chunks first when it is also hot
    /// (see `heat.rs`), then coldest first, until `want` bytes are gone,
    /// taking only chunks that fit what is left; then, if still short, the
    /// smallest chunk that finishes it. Never more than `budget` bytes in all.
    /// Chunks cooling after a move for load go last at each step.
    fn shed(
        &mut self,
        src: usize,
        candidates: &[u32],
        want: u64,
        budget: u64,
        targets: &mut Targets,
    ) {
        let mut fit = ChunkFit { left: want, budget };
        self.shed_hot_first(src, &mut fit, targets);
        let mut coldest = self.coldest_first(candidates);
        while let Some(Reverse((_, _, _, c))) = coldest.pop() {
            if fit.left == 0 || targets.is_empty() {
                return;
            }
            let size = self.table.size(c as usize);
            if !fit.fits(size) || self.is_busy(c as usize) {
                continue;
            }
            if self.place(c, src, targets, MoveReason::Capacity) {
                fit.take(size);
            }
        }
        let ChunkFit { left, budget } = fit;
        if left == 0 {
            return;
        }
        // Cooling chunks last here too (see `coldest_first`).
        let mut bigger: Vec<_> = candidates
            .iter()
            .map(|&c| {
                let cooling = self.in_flight.is_cooling(ChunkIdx(c));
                (cooling, self.table.size(c as usize), c)
            })
            .filter(|&(_, size, c)| size > left && size <= budget && !self.is_busy(c as usize))
            .collect();
        bigger.sort_unstable();
        for (_, _, c) in bigger {
            if self.place(c, src, targets, MoveReason::Capacity) {
                return;
            }
        }
    }

    /// Whether the one admission rule lets chunk `c` move from `from` to
    /// `t`, with the loads as planned so far.
    pub(super) fn admits(&self, c: usize, from: ServerIdx, t: ServerIdx) -> bool {
        let view = self.view;
        let replicas = self.table.replicas(c);
        let rack = |s: ServerIdx| view.servers[s.0 as usize].rack.as_deref();
        let end = |s: ServerIdx| Endpoint {
            alive: view.servers[s.0 as usize].alive,
            rack: rack(s),
            holds: replicas.contains(&s),
            ..Endpoint::default()
        };
        let facts = MoveFacts {
            class: CopyClass::Balance,
            bytes: self.table.size(c),
            busy: false,
            same_server: t == from,
            from: end(from),
            to: end(t),
            others: replicas.iter().filter(|&&s| s != from).map(|&s| rack(s)),
            to_capacity: view.servers[t.0 as usize].capacity,
            to_committed: self.used[t.0 as usize]
                .saturating_add(view.servers[t.0 as usize].incoming),
            min_free_pct: self.band.min_free_pct,
        };
        admit(&facts).is_ok()
    }

    /// Plans a move of chunk `c` off `src` to the best allowed target; a
    /// hot replica only to a target its reads leave inside the load band.
    pub(super) fn place(
        &mut self,
        c: u32,
        src: usize,
        targets: &mut Targets,
        reason: MoveReason,
    ) -> bool {
        let i = c as usize;
        let from = ServerIdx(src as u32);
        let size = self.table.size(i);
        let cap = self.load_cap(src, c);
        let allowed = |t: ServerIdx| self.takes_reads(t, cap) && self.admits(i, from, t);
        let racks = allowed_racks(&self.rack_of, self.racks, self.table.replicas(i), from);
        let to = match targets.pick(size, racks.as_deref(), allowed) {
            Ok(to) => to,
            Err(had_room) => {
                // A refusal for load is not a placement problem: the
                // chunk is tried again later or stays.
                if had_room && cap.is_none() {
                    let id = &self.view.servers[src].id;
                    self.notes.unplaced(self.table.id(i), id);
                }
                return false;
            }
        };
        let t = to.0 as usize;
        targets.remove(to, &self.bounds[t], self.used[t]);
        self.record(c, src, to, reason);
        targets.insert(to, &self.bounds[t], self.used[t]);
        true
    }

    /// Adds the move of chunk `c` from `src` to `to` to the plan: bytes and
    /// reads follow it, and the chunk is busy for the rest of the pass.
    pub(super) fn record(&mut self, c: u32, src: usize, to: ServerIdx, reason: MoveReason) {
        let (i, t) = (c as usize, to.0 as usize);
        let size = self.table.size(i);
        let rate = self.heat_rate(src, c);
        self.used[t] += size;
        self.used[src] -= size;
        self.incoming[t] += size;
        self.outgoing[src] += size;
        carry_reads(&mut self.reads, src, t, rate);
        self.busy[i / 64] |= 1 << (i % 64);
        self.moves.push(PlannedMove {
            chunk: ChunkIdx(c),
            from: ServerIdx(src as u32),
            to,
            bytes: size,
            reason,
        });
    }
}

/// The racks a replica on `from` may move to, when that is a short list: a
/// pre-filter for the rack rule ([`crate::racks::move_keeps_racks`]), so
/// that a chunk whose rule binds looks at a few racks' servers instead of
/// all of them. `from`'s own rack plus racks no other replica uses, if
/// `from` alone spans its rack. `None` when any rack will do, or when so
/// many racks qualify that scanning all servers is cheaper. Never rules out
/// a target the rule allows (tested below); the rule itself still runs on
/// every target picked.
fn allowed_racks(
    rack_of: &[Option<u32>],
    racks: u32,
    replicas: &[ServerIdx],
    from: ServerIdx,
) -> Option<Vec<u32>> {
    let own = rack_of[from.0 as usize]?;
    let others: Vec<u32> = replicas
        .iter()
        .filter(|&&s| s != from)
        .filter_map(|s| rack_of[s.0 as usize])
        .collect();
    if others.contains(&own) || racks > MAX_RACK_LIST {
        return None;
    }
    Some(
        (0..racks)
            .filter(|r| *r == own || !others.contains(r))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::racks::move_keeps_racks;

    /// Servers' racks (numbered as the planner numbers them, `None` for
    /// none), the replicas of one chunk, and the position of its source
    /// among them. Up to 12 racks, so both sides of `MAX_RACK_LIST` occur.
    fn cluster() -> impl Strategy<Value = (Vec<Option<u32>>, Vec<usize>, usize)> {
        (1usize..12, 1u32..13).prop_flat_map(|(servers, racks)| {
            let rack_of = prop::collection::vec(prop::option::weighted(0.8, 0..racks), servers);
            let replicas = prop::sample::subsequence((0..servers).collect::<Vec<_>>(), 1..=servers);
            (rack_of, replicas, any::<prop::sample::Index>()).prop_map(|(r, reps, i)| {
                let from = i.index(reps.len());
                (r, reps, from)
            })
        })
    }

    proptest! {
        #[test]
        fn the_prefilter_never_rules_out_a_target_the_rack_rule_allows(
            (rack_of, replicas, from) in cluster(),
        ) {
            let racks = rack_of.iter().flatten().max().map_or(0, |&r| r + 1);
            let replicas: Vec<ServerIdx> = replicas.iter().map(|&s| ServerIdx(s as u32)).collect();
            let from = replicas[from];
            let names: Vec<Option<String>> =
                rack_of.iter().map(|r| r.map(|r| format!("r{r}"))).collect();
            let name = |s: ServerIdx| names[s.0 as usize].as_deref();
            let others = replicas.iter().filter(|&&s| s != from).map(|&s| name(s));
            let list = allowed_racks(&rack_of, racks, &replicas, from);
            for t in (0..rack_of.len() as u32).map(ServerIdx) {
                if replicas.contains(&t) || !move_keeps_racks(others.clone(), name(from), name(t)) {
                    continue;
                }
                let passes = match &list {
                    None => true,
                    Some(list) => rack_of[t.0 as usize].is_some_and(|r| list.contains(&r)),
                };
                prop_assert!(passes, "target {t:?} allowed by the rule, filtered out by {list:?}");
            }
        }
    }

    #[test]
    fn a_source_alone_in_its_rack_lists_its_rack_and_the_unused_ones() {
        // Racks 0, 1, 2, 0: the chunk is on servers 0 (rack 0) and 1 (rack 1).
        let rack_of = [Some(0), Some(1), Some(2), Some(0)];
        let replicas = [ServerIdx(0), ServerIdx(1)];
        assert_eq!(
            allowed_racks(&rack_of, 3, &replicas, ServerIdx(0)),
            Some(vec![0, 2])
        );
        // Rack 0 is also held elsewhere: any rack will do.
        let replicas = [ServerIdx(0), ServerIdx(3)];
        assert_eq!(allowed_racks(&rack_of, 3, &replicas, ServerIdx(0)), None);
    }
}
