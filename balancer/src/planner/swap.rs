//! Swaps: a hot chunk goes to a cool server that has no room for it under
//! its capacity aim (or leaves a hot server that would drop below its lower
//! aim without it), and in the same plan a cold chunk leaves that cool
//! server, for the hot server or any server with room, so that both end
//! inside their capacity aims. Phase 4 makes them where a plain move cannot:
//! onto servers that would otherwise stay cold, then onto any cool server
//! while the source stays above the load aim.
//!
//! The queue runs a plan's moves concurrently, in no fixed order, so the
//! limits hold in every order, not only the planned one (cold chunk first).
//! A server's fullest moment is when all of its incoming moves are done and
//! none of its outgoing ones, its emptiest the reverse; the planner keeps,
//! per server, the bytes the plan moves onto and off it:
//! - at the end, every server lies within its capacity aims and under its
//!   free-space floor, as after any move;
//! - a server that starts the pass inside the band and under its floor
//!   takes, for load, only what keeps its start plus all its incoming bytes
//!   within the band's upper edge and the floor ([`Planner::headroom`]),
//!   plain moves and swaps alike;
//! - no server gives, for load, what would take its start less all its
//!   outgoing bytes below the band's lower edge (or its start, if lower;
//!   [`Planner::footroom`]);
//! - a server that starts over the band is shedding for capacity in the
//!   same plan; it may take a hot chunk (plainly or in a swap) up to the
//!   band's upper edge from where the plan leaves it. Should it land before
//!   its capacity moves leave, it holds those bytes beyond its start for a
//!   while, never past its floor: the queue starts a copy only when the
//!   target's live free space allows ([`crate::admission`]), so there the
//!   copy waits for the moves out.
//!
//! The cold chunks that leave are those their server's hot list leaves out,
//! not busy and not cooling after an earlier move for load, the smallest
//! that makes room: a swap moves few bytes beyond the hot chunk's. They are
//! moves for load (`reason` `load`), so they cool like the hot chunk: not
//! moved for load again, and moved for capacity only after every other
//! candidate of their server (`shed.rs`), so no pass sends them straight back.

use std::collections::BTreeSet;

use super::Planner;
use crate::ids::{ChunkIdx, ServerIdx};
use crate::plan::MoveReason;
use crate::space::utilization_pct;

/// Cold chunks tried per swap, smallest that makes room first: a few, in
/// case replicas or racks rule out every receiver for one of them.
const COLD_TRIES: usize = 8;

/// Cold chunks of each server that may leave it in a swap, smallest first
/// (then least read, then by index); listed for every server in one scan
/// of the replicas the first time a swap needs them, once per phase.
#[derive(Debug, Default)]
pub(super) struct ColdStock(Option<Vec<Vec<u32>>>);

impl Planner<'_> {
    /// Bytes server `s` may take for load (see the module doc).
    pub(super) fn headroom(&self, s: usize) -> u64 {
        let b = &self.bounds[s];
        let top = b.hi_edge.min(b.limit);
        if self.start[s] <= top {
            top.saturating_sub(self.start[s] + self.incoming[s])
        } else {
            top.saturating_sub(self.used[s])
        }
    }

    /// Bytes server `s` may give for load (see the module doc).
    pub(super) fn footroom(&self, s: usize) -> u64 {
        let bottom = self.bounds[s].lo_edge.min(self.start[s]);
        self.start[s]
            .saturating_sub(self.outgoing[s])
            .saturating_sub(bottom)
    }

    /// Plans hot chunk `c` from `d` to `t` as a swap, when `t` lacks room
    /// for it under its upper aim or `d` would drop below its lower aim
    /// without it: cold bytes leave `t` first, for `d` when `d` needs them,
    /// else for `d` or any server with room. The caller has checked the
    /// reads/s; this checks bytes, replicas and racks. Whether it was
    /// planned.
    pub(super) fn swap_in(&mut self, d: usize, t: usize, c: u32, stock: &mut ColdStock) -> bool {
        let size = self.table.size(c as usize);
        let (bd, bt) = (self.bounds[d], self.bounds[t]);
        let need_t = (self.used[t] + size).saturating_sub(bt.hi_aim.min(bt.limit));
        let need_d = bd.lo_aim.saturating_sub(self.used[d] - size);
        if (need_t == 0 && need_d == 0)
            || size > self.headroom(t)
            || size > self.footroom(d)
            || !self.admits(c as usize, ServerIdx(d as u32), ServerIdx(t as u32))
        {
            return false;
        }
        // `t` must end at or above its lower aim and keep its footroom.
        let most = (self.used[t] + size)
            .saturating_sub(bt.lo_aim)
            .min(self.footroom(t));
        let least = need_t.max(need_d);
        for (_, k) in self.cold_candidates(t, least, most, stock) {
            if let Some(x) = self.cold_receiver(k, t, d, size, need_d > 0) {
                self.record(k, t, ServerIdx(x as u32), MoveReason::Load);
                self.record(c, d, ServerIdx(t as u32), MoveReason::Load);
                self.note_swap(c, d, t, k, x);
                return true;
            }
        }
        false
    }

    /// Up to [`COLD_TRIES`] cold chunks of `t` of `need` to `most` bytes,
    /// smallest first, that may leave it now.
    fn cold_candidates(
        &self,
        t: usize,
        need: u64,
        most: u64,
        stock: &mut ColdStock,
    ) -> Vec<(u64, u32)> {
        let lists = stock.0.get_or_insert_with(|| self.cold_lists());
        let list = &lists[t];
        let size = |k: u32| self.table.size(k as usize);
        let from = list.partition_point(|&k| size(k) < need);
        list[from..]
            .iter()
            .map(|&k| (size(k), k))
            .take_while(|&(size, _)| size <= most)
            .filter(|&(_, k)| !self.is_busy(k as usize) && !self.in_flight.is_cooling(ChunkIdx(k)))
            .take(COLD_TRIES)
            .collect()
    }

    /// For each server, the chunks on it that its hot list leaves out,
    /// smallest first (then least read, then by index).
    fn cold_lists(&self) -> Vec<Vec<u32>> {
        let table = self.table;
        let mut lists = vec![Vec::new(); self.view.servers.len()];
        for k in (0..table.len()).filter(|&k| table.size(k) > 0) {
            for s in table.replicas(k) {
                if self.heat_rate(s.0 as usize, k as u32) == 0.0 {
                    lists[s.0 as usize].push(k as u32);
                }
            }
        }
        for list in &mut lists {
            list.sort_unstable_by_key(|&k| (table.size(k as usize), table.reads(k as usize), k));
        }
        lists
    }

    /// Where cold chunk `k` can go from `t` while a hot chunk of `hot`
    /// bytes leaves `d`: `d` itself if it has room once the hot chunk is
    /// gone, else (unless `only_d`) the least utilized server with room.
    /// Room means under the capacity aim and the floor at the end, and
    /// within the headroom of the module doc.
    fn cold_receiver(&self, k: u32, t: usize, d: usize, hot: u64, only_d: bool) -> Option<usize> {
        let size = self.table.size(k as usize);
        let fits = |x: usize| {
            let b = &self.bounds[x];
            let gone = if x == d { hot } else { 0 };
            x != t
                && self.used[x] - gone + size <= b.hi_aim.min(b.limit)
                && size <= self.headroom(x)
                && self.admits(k as usize, ServerIdx(t as u32), ServerIdx(x as u32))
        };
        if fits(d) {
            return Some(d);
        }
        if only_d {
            return None;
        }
        let util = |x: usize| utilization_pct(self.used[x], self.view.servers[x].capacity);
        let mut others: Vec<usize> = self.live().filter(|&x| x != d).collect();
        others.sort_by(|&a, &b| util(a).total_cmp(&util(b)).then(a.cmp(&b)));
        others.into_iter().find(|&x| fits(x))
    }

    /// Says what a swap does, for operators.
    fn note_swap(&mut self, c: u32, d: usize, t: usize, k: u32, x: usize) {
        let id = |s: usize| &self.view.servers[s].id;
        let line = format!(
            "swap: {} takes hot {} from {} after giving cold {} to {} (no room under its capacity aim otherwise)",
            id(t),
            self.table.id(c as usize),
            id(d),
            self.table.id(k as usize),
            id(x)
        );
        self.notes.swap(line);
    }
}

/// The servers of `order` (coolest first, as `(key, index)`) other than
/// `src` that may take a chunk read at `rate` from `src` on the load rules
/// of `heat.rs`, given each server's reads/s in `reads`: at most `aim`
/// after, and no hotter than `src` is left.
pub(super) fn cool_enough(
    order: &BTreeSet<(u64, u32)>,
    reads: &[f64],
    src: usize,
    rate: f64,
    aim: f64,
) -> Vec<usize> {
    order
        .iter()
        .map(|&(_, t)| t as usize)
        .filter(|&t| t != src)
        .take_while(|&t| reads[t] + rate <= aim)
        .filter(|&t| reads[t] + rate <= reads[src] - rate)
        .collect()
}
