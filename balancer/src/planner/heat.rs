//! Phase 4 of the planner, and the load half of every move: servers hot by
//! reads/s give their hot chunks to the coolest servers that can take them.
//!
//! Rules every move for load keeps, beside the admission rule:
//! - only chunks reported hot ([`crate::Heat`]) move for load, and not while
//!   they cool down after an earlier move for load ([`crate::InFlight::is_cooling`]);
//! - the target ends at most [`LOAD_AIM_FRACTION`] of the band's half-width
//!   above the mean, so a move never makes a server hot, and noise in the
//!   measured rates does not send the chunk on again;
//! - the target ends no hotter than the source it leaves, so the pair never
//!   swaps places and the next pass has no reason to move the chunk back;
//! - the source does not turn cold, nor drop below where the capacity phases
//!   bring an underloaded server up to (`lo_aim`); the target stays under
//!   where they bring an overloaded one down to (`hi_aim`) and its free-space
//!   floor, so that one write does not start capacity moves back;
//! - whatever order the plan's moves finish in, a target that starts the
//!   pass inside the capacity band stays inside it and under its floor, and
//!   a source stays above the band's lower edge (headroom and footroom,
//!   `swap.rs`);
//! - chunks are taken densest first (reads/s per byte), so the source cools
//!   with the fewest bytes moved;
//! - where no plain move fits for bytes, a swap may (`swap.rs`): the hot
//!   chunk goes in and a cold chunk of the target goes out, in one plan.
//!
//! Any other move of a hot replica (for capacity) obeys the same limits on
//! its target's reads/s (at most the aim, no hotter than the source it
//! leaves), so a capacity move never sets up a move for load back.

use std::collections::BTreeSet;

use super::Planner;
use super::shed::ChunkFit;
use super::swap::{ColdStock, cool_enough};
use crate::ids::{ChunkIdx, ServerIdx};
use crate::model::ClusterView;
use crate::plan::{MoveReason, PlannedMove};
use crate::targets::Targets;
use crate::traffic::{
    LoadPosition, carry_reads, load_position, load_slack, mean_reads_per_sec, sane_rate,
};

/// Where a hot source is brought down to, and the most a target may reach,
/// as a share of the band's half-width above the mean. Halfway: the rates
/// are decayed averages that wander, and a server left just inside the
/// edge would be hot again after the next burst.
pub const LOAD_AIM_FRACTION: f64 = 0.5;

/// The load band of one planning pass, in reads/s.
#[derive(Debug, Clone, Copy)]
pub(super) struct LoadBand {
    /// Mean reads/s of the live servers (moves between them keep it).
    mean: f64,
    /// Half-width of the band.
    slack: f64,
}

impl LoadBand {
    /// The band, when balancing by load is on and something is hot.
    pub fn new(view: &ClusterView, reads: &[f64], threshold_pct: f64) -> Option<Self> {
        if threshold_pct <= 0.0 || view.heat.is_empty() {
            return None;
        }
        let mean = mean_of_live(view, reads);
        Some(Self {
            mean,
            slack: load_slack(mean, threshold_pct),
        })
    }

    /// Where sources are brought down to and targets may rise to.
    fn aim(&self) -> f64 {
        self.mean + self.slack * LOAD_AIM_FRACTION
    }

    /// Where a cold server is brought up to, and the least a donor may
    /// keep: the mirror of [`LoadBand::aim`].
    fn cold_aim(&self) -> f64 {
        self.mean - self.slack * LOAD_AIM_FRACTION
    }

    /// Below this a server is cold.
    fn cold_edge(&self) -> f64 {
        self.mean - self.slack
    }

    /// Above this a server is hot.
    fn hot_edge(&self) -> f64 {
        self.mean + self.slack
    }
}

/// Mean of `reads` over the live servers of `view`.
fn mean_of_live(view: &ClusterView, reads: &[f64]) -> f64 {
    mean_reads_per_sec(
        (0..view.servers.len())
            .filter(|&i| view.servers[i].alive)
            .map(|i| reads[i]),
    )
}

/// Counts `mv`'s replica rate as moved in `reads`, when it has not moved yet.
pub(super) fn project(view: &ClusterView, reads: &mut [f64], mv: &PlannedMove) {
    if view.get_chunk(mv.chunk).is_some_and(|c| c.is_on(mv.from)) {
        let rate = sane_rate(view.heat.get(mv.from, mv.chunk).reads_per_sec);
        carry_reads(reads, mv.from.0 as usize, mv.to.0 as usize, rate);
    }
}

/// Order key of a server by its reads/s: the bits of a float that is not
/// negative (nor -0.0, nor NaN) sort like the float.
fn key(reads: f64, i: usize) -> (u64, u32) {
    (sane_rate(reads).to_bits(), i as u32)
}

impl Planner<'_> {
    /// Where live server `i` lies against the load band.
    fn load_pos(&self, i: usize, band: &LoadBand) -> LoadPosition {
        load_position(self.reads[i], band.mean, self.load_threshold_pct)
    }

    /// Live servers at `pos` against the load band, hottest first.
    fn at_load(&self, pos: LoadPosition) -> Vec<usize> {
        let Some(band) = self.load else {
            return Vec::new();
        };
        let mut out: Vec<usize> = self
            .live()
            .filter(|&i| self.load_pos(i, &band) == pos)
            .collect();
        out.sort_by(|&a, &b| self.reads[b].total_cmp(&self.reads[a]).then(a.cmp(&b)));
        out
    }

    /// Whether load balancing is on and some live server is outside its band.
    pub(super) fn load_unbalanced(&self) -> bool {
        !self.at_load(LoadPosition::Hot).is_empty() || !self.at_load(LoadPosition::Cold).is_empty()
    }

    /// Whether every live server's reads/s lie inside the load band, as
    /// planned (true with the band off).
    pub(super) fn load_band_reached(&self) -> bool {
        if self.load_threshold_pct <= 0.0 {
            return true;
        }
        let mean = mean_of_live(self.view, &self.reads);
        self.live().all(|i| {
            load_position(self.reads[i], mean, self.load_threshold_pct) == LoadPosition::Inside
        })
    }

    /// Says which servers are hot, and why they will give chunks away.
    pub(super) fn note_hot(&mut self) {
        let Some(band) = self.load else { return };
        let pct = self.load_threshold_pct;
        for i in self.at_load(LoadPosition::Hot) {
            let (id, reads) = (&self.view.servers[i].id, self.reads[i]);
            self.notes.server(format!(
                "{id} is hot: {reads:.1} reads/s against a mean of {:.1} (band ±{pct} %): moving its hottest chunks",
                band.mean
            ));
        }
    }

    /// Says which servers stay outside the load band after the plan.
    pub(super) fn note_load_outside(&mut self) {
        let Some(band) = self.load else { return };
        for (pos, word, edge) in [
            (
                LoadPosition::Hot,
                "hot",
                format!("band up to {:.1}", band.hot_edge()),
            ),
            (
                LoadPosition::Cold,
                "cold",
                format!("band from {:.1}", band.cold_edge()),
            ),
        ] {
            for i in self.at_load(pos) {
                let (id, reads) = (&self.view.servers[i].id, self.reads[i]);
                self.notes
                    .server(format!("{id} stays {word} at {reads:.1} reads/s ({edge})"));
            }
        }
    }

    /// The reported read rate of chunk `c`'s replica on `src`; 0 with load
    /// balancing off.
    pub(super) fn heat_rate(&self, src: usize, c: u32) -> f64 {
        if self.load.is_none() {
            return 0.0;
        }
        sane_rate(
            self.view
                .heat
                .get(ServerIdx(src as u32), ChunkIdx(c))
                .reads_per_sec,
        )
    }

    /// The rate a move of `c` off `src` for capacity carries and the most
    /// reads/s its target may reach: the aim, as for a move for load, and
    /// no more than `src` keeps once the chunk is gone unless the target
    /// stays at or below the mean (then it is neither hot nor a donor, so
    /// no move for load can send the chunk back). `None` when no limit
    /// applies (a cold replica, or no load band).
    pub(super) fn load_cap(&self, src: usize, c: u32) -> Option<(f64, f64)> {
        let band = self.load?;
        let rate = self.heat_rate(src, c);
        let keeps = (self.reads[src] - rate).max(band.mean);
        (rate > 0.0).then(|| (rate, band.aim().min(keeps)))
    }

    /// Whether `t` can take `cap`'s rate and stay under its limit.
    pub(super) fn takes_reads(&self, t: ServerIdx, cap: Option<(f64, f64)>) -> bool {
        cap.is_none_or(|(rate, limit)| self.reads[t.0 as usize] + rate <= limit)
    }

    /// `src`'s hot chunks that may move for load, densest (reads/s per
    /// byte) first: (rate, chunk).
    fn hot_chunks(&self, src: usize) -> Vec<(f64, u32)> {
        let table = self.table;
        let mut out: Vec<(f64, u32)> = self
            .view
            .heat
            .on(ServerIdx(src as u32))
            .filter(|(c, _)| (c.0 as usize) < table.len())
            .map(|(c, r)| (sane_rate(r.reads_per_sec), c.0))
            .filter(|&(rate, c)| {
                let i = c as usize;
                rate > 0.0
                    && table.size(i) > 0
                    && !self.is_busy(i)
                    && !self.in_flight.is_cooling(ChunkIdx(c))
                    && table.replicas(i).contains(&ServerIdx(src as u32))
            })
            .collect();
        let density = |&(rate, c): &(f64, u32)| rate / table.size(c as usize) as f64;
        out.sort_by(|a, b| density(b).total_cmp(&density(a)).then(a.1.cmp(&b.1)));
        out
    }

    /// Phase 2's first step on a source both over its capacity band and
    /// hot: its hot chunks go first, as long as each fits what is left to
    /// shed, so the bytes it must lose anyway cool it too. Each goes to the
    /// coolest of the phase's targets with room for it.
    pub(super) fn shed_hot_first(&mut self, src: usize, fit: &mut ChunkFit, targets: &mut Targets) {
        let Some(band) = self.load else { return };
        if self.load_pos(src, &band) != LoadPosition::Hot {
            return;
        }
        for (rate, c) in self.hot_chunks(src) {
            if self.reads[src] <= band.aim() || fit.left == 0 || targets.is_empty() {
                return;
            }
            let size = self.table.size(c as usize);
            if !fit.fits(size) || self.reads[src] - rate < band.cold_edge() {
                continue;
            }
            let room = |t: usize| targets.room(&self.bounds[t], self.used[t]);
            let Ok(t) = self.coolest(self.by_reads(), src, c, rate, &band, room) else {
                continue;
            };
            targets.remove(ServerIdx(t as u32), &self.bounds[t], self.used[t]);
            self.record(c, src, ServerIdx(t as u32), MoveReason::Load);
            targets.insert(ServerIdx(t as u32), &self.bounds[t], self.used[t]);
            fit.take(size);
        }
    }

    /// Live servers, coolest first.
    fn by_reads(&self) -> BTreeSet<(u64, u32)> {
        self.live().map(|i| key(self.reads[i], i)).collect()
    }

    /// Phase 4 of the module doc: each hot server, hottest first, gives its
    /// densest hot chunks to the coolest servers that can take them: by
    /// plain moves, or by swaps (`swap.rs`) onto servers that would stay
    /// cold for want of room; then, if it is still above the aim, by swaps
    /// onto any server cool enough.
    pub(super) fn cool_hot_servers(&mut self) {
        let Some(band) = self.load else { return };
        let mut order = self.by_reads();
        let mut stock = ColdStock::default();
        for src in self.at_load(LoadPosition::Hot) {
            let mut too_hot = Vec::new();
            for any_swap in [false, true] {
                for (rate, c) in self.hot_chunks(src) {
                    if self.reads[src] <= band.aim() {
                        break;
                    }
                    // A swap may have sent it away as another server's cold chunk.
                    if self.is_busy(c as usize) || self.reads[src] - rate < band.cold_edge() {
                        continue;
                    }
                    let hot = (c, rate);
                    let done = self.cool_one(src, hot, &band, &mut order, &mut stock, any_swap);
                    if done == Err(false) && !any_swap {
                        too_hot.push(hot);
                    }
                }
            }
            // Only worth saying when it is why the source stays hot.
            if self.reads[src] > band.hot_edge() {
                for (c, rate) in too_hot {
                    self.notes.too_hot(self.table.id(c as usize), rate);
                }
            }
        }
    }

    /// Moves hot chunk `c` (read at `rate`) off `src` to the coolest server
    /// of `order` that may take its reads: a plain move where it fits, a
    /// swap where the server is cold (or wherever, with `any_swap`).
    /// `Err(false)` when even the coolest server would end above the aim,
    /// `Err(true)` when cool servers were ruled out by bytes, replicas or
    /// racks.
    fn cool_one(
        &mut self,
        src: usize,
        (c, rate): (u32, f64),
        band: &LoadBand,
        order: &mut BTreeSet<(u64, u32)>,
        stock: &mut ColdStock,
        any_swap: bool,
    ) -> Result<(), bool> {
        let size = self.table.size(c as usize);
        let keeps_band = self.used[src].saturating_sub(size) >= self.bounds[src].lo_aim;
        for t in cool_enough(order, &self.reads, src, rate, band.aim()) {
            let b = &self.bounds[t];
            let room = b.hi_aim.min(b.limit).saturating_sub(self.used[t]);
            let before = [key(self.reads[src], src), key(self.reads[t], t)];
            let to = ServerIdx(t as u32);
            let plain = keeps_band
                && room >= size
                && size <= self.headroom(t)
                && size <= self.footroom(src);
            let planned = if plain && self.admits(c as usize, ServerIdx(src as u32), to) {
                self.record(c, src, to, MoveReason::Load);
                true
            } else if any_swap || self.load_pos(t, band) == LoadPosition::Cold {
                self.swap_in(src, t, c, stock)
            } else {
                false
            };
            if planned {
                before.iter().for_each(|k| _ = order.remove(k));
                order.insert(key(self.reads[src], src));
                order.insert(key(self.reads[t], t));
                return Ok(());
            }
        }
        let coolest = order.iter().map(|&(_, t)| t as usize).find(|&t| t != src);
        Err(coolest.is_some_and(|t| self.reads[t] + rate <= band.aim()))
    }

    /// Phase 4's second half: servers still cold, coldest first, take hot
    /// chunks from the hottest servers above the mean, up to the cold aim,
    /// on the same rules (no donor turns cold or cooler than the target);
    /// by swaps (`swap.rs`) when plain moves leave one cold for want of room.
    pub(super) fn warm_cold_servers(&mut self) {
        let Some(band) = self.load else { return };
        let mut cold = self.at_load(LoadPosition::Cold);
        cold.reverse();
        let mut stock = ColdStock::default();
        for t in cold {
            for swap in [false, true] {
                self.warm(t, &band, swap, &mut stock);
            }
        }
    }

    /// Cold server `t` takes hot chunks from the donors of
    /// [`Planner::warm_cold_servers`] up to the cold aim: by plain moves,
    /// or by swaps.
    fn warm(&mut self, t: usize, band: &LoadBand, swap: bool, stock: &mut ColdStock) {
        let donors: Vec<usize> = self
            .at_load(LoadPosition::Hot)
            .into_iter()
            .chain(self.at_load(LoadPosition::Inside))
            .filter(|&d| self.reads[d] > band.mean)
            .collect();
        for d in donors {
            for (rate, c) in self.hot_chunks(d) {
                if self.reads[t] >= band.cold_aim() {
                    return;
                }
                if self.is_busy(c as usize) || !self.gives_reads(d, t, rate, band) {
                    continue;
                }
                if !swap && self.can_give(d, t, c) {
                    self.record(c, d, ServerIdx(t as u32), MoveReason::Load);
                } else if swap {
                    self.swap_in(d, t, c, stock);
                }
            }
        }
    }

    /// Whether a chunk read at `rate` may move for load from `d` to `t` on
    /// the reads/s rules of the module doc.
    fn gives_reads(&self, d: usize, t: usize, rate: f64, band: &LoadBand) -> bool {
        let (after_d, after_t) = (self.reads[d] - rate, self.reads[t] + rate);
        after_t <= band.aim() && after_d >= band.cold_aim() && after_t <= after_d
    }

    /// Whether chunk `c` may move from `d` to `t` as a plain move on the
    /// byte rules of the module doc and the admission rule.
    fn can_give(&self, d: usize, t: usize, c: u32) -> bool {
        let size = self.table.size(c as usize);
        let (bd, bt) = (&self.bounds[d], &self.bounds[t]);
        self.used[d].saturating_sub(size) >= bd.lo_aim
            && self.used[t] + size <= bt.hi_aim.min(bt.limit)
            && size <= self.headroom(t)
            && size <= self.footroom(d)
            && self.admits(c as usize, ServerIdx(d as u32), ServerIdx(t as u32))
    }

    /// The coolest server of `order` that may take chunk `c` (at `rate`
    /// reads/s) from `src`, stay under the load aim and has `room` for it.
    /// `Err(false)` when even the coolest server would end above the aim,
    /// `Err(true)` when cool servers were ruled out by bytes, replicas or
    /// racks.
    fn coolest(
        &self,
        order: impl IntoIterator<Item = (u64, u32)>,
        src: usize,
        c: u32,
        rate: f64,
        band: &LoadBand,
        room: impl Fn(usize) -> u64,
    ) -> Result<usize, bool> {
        let size = self.table.size(c as usize);
        let mut cool_enough = false;
        for (_, t) in order {
            let t = t as usize;
            if t == src {
                continue;
            }
            if self.reads[t] + rate > band.aim() {
                break;
            }
            cool_enough = true;
            if self.reads[t] + rate > self.reads[src] - rate {
                continue;
            }
            if room(t) >= size
                && self.admits(c as usize, ServerIdx(src as u32), ServerIdx(t as u32))
            {
                return Ok(t);
            }
        }
        Err(cool_enough)
    }
}
