//! The planner: which chunks to move where so that every live server ends
//! inside the band, moving close to the least possible number of bytes.
//!
//! 1. Loads are projected: moves in flight count as done.
//! 2. Each overloaded server (most loaded first) sheds down to just inside
//!    the band's upper edge. Its chunks are tried coldest first, larger
//!    before smaller among equally cold ones, skipping any bigger than what is
//!    left to shed; if the fitting ones are not enough, the smallest chunk
//!    that finishes the job goes too. Targets come from [`Targets`]:
//!    underloaded servers first, then below-average ones, then anyone with
//!    room inside the band.
//! 3. Servers still underloaded are filled from servers above the average
//!    (most loaded first), each giving at most its surplus above the average.
//! 4. With a load band ([`Policy::load_threshold_pct`] above 0) and some
//!    replicas reported hot, servers still hot by reads/s give their hot
//!    chunks to the coolest servers that stay well inside the load band and
//!    inside the capacity band; then servers still cold take hot chunks
//!    from servers above the mean (`heat.rs`). Where a cool server has no
//!    room for a hot chunk, a swap makes it: the hot chunk in, a cold chunk
//!    of that server out, in the same plan (`swap.rs`). A source that is
//!    both over its capacity band and hot already sheds its hot chunks first
//!    in phase 2, so that the bytes it must lose anyway also cool it.
//!
//! Without heat, or with the load band off, phase 4 and the hot-first
//! shedding do nothing and the plan is the byte planner's alone.
//!
//! Only chunks on sources are ever sorted, so a pass costs one scan of the
//! replicas per phase plus O(k log k) for the k chunks of the sources.

mod heat;
mod shed;
mod swap;

use std::collections::BTreeMap;

use crate::band::{Band, Bounds};
use crate::chunks::ChunkTable;
use crate::ids::ServerIdx;
use crate::load::{Position, average_pct, position};
use crate::model::ClusterView;
use crate::notes::Notes;
use crate::plan::{InFlight, Plan, PlannedMove, Policy};
use crate::space::utilization_pct;
use crate::targets::Targets;
use crate::traffic::sane_rate;
use heat::LoadBand;

/// Plans moves that bring every live server of `view` inside the band of
/// `policy`, leaving the chunks of `in_flight` alone and counting their moves
/// as done. Deterministic: the same input gives the same plan.
pub fn plan(view: &ClusterView, policy: &Policy, in_flight: &InFlight) -> Plan {
    Planner::new(view, policy, in_flight).run(in_flight)
}

/// State of one planning pass.
struct Planner<'a> {
    /// The cluster.
    view: &'a ClusterView,
    /// Its chunk columns.
    table: &'a ChunkTable,
    /// The band, in percent.
    band: Band,
    /// Bytes per server as planned so far (in-flight moves included).
    used: Vec<u64>,
    /// Byte bounds per server.
    bounds: Vec<Bounds>,
    /// One bit per chunk: in flight, or already moved by this plan.
    busy: Vec<u64>,
    /// Rack number of each server, racks numbered in name order.
    rack_of: Vec<Option<u32>>,
    /// Number of distinct racks.
    racks: u32,
    /// Moves planned so far.
    moves: Vec<PlannedMove>,
    /// Explanations.
    notes: Notes,
    /// The load band, when balancing by load: the threshold is above 0 and
    /// some replica is reported hot (without heat nothing can move for load).
    load: Option<LoadBand>,
    /// Load band half-width in percent; 0: off.
    load_threshold_pct: f64,
    /// Reads/s per server as planned so far: a replica moved, in flight or
    /// by this plan, takes its reported rate with it.
    reads: Vec<f64>,
    /// Chunks in flight or cooling after a move for load.
    in_flight: &'a InFlight,
    /// Bytes per server when the pass began (in-flight moves included):
    /// with `incoming` and `outgoing`, what a server can hold at worst
    /// while this plan's moves finish in any order (`swap.rs`).
    start: Vec<u64>,
    /// Bytes this plan moves onto each server.
    incoming: Vec<u64>,
    /// Bytes this plan moves off each server.
    outgoing: Vec<u64>,
}

impl<'a> Planner<'a> {
    fn new(view: &'a ClusterView, policy: &Policy, in_flight: &'a InFlight) -> Self {
        let table = &view.chunks;
        let mut used: Vec<u64> = view.servers.iter().map(|s| s.used).collect();
        let mut busy = vec![0u64; table.len().div_ceil(64)];
        for chunk in in_flight.chunks().filter(|c| (c.0 as usize) < table.len()) {
            busy[chunk.0 as usize / 64] |= 1 << (chunk.0 % 64);
        }
        let mut reads: Vec<f64> = view
            .servers
            .iter()
            .map(|s| sane_rate(s.reads.reads_per_sec))
            .collect();
        for mv in in_flight.moves() {
            project(view, &mut used, mv);
            heat::project(view, &mut reads, mv);
        }
        let live = || view.servers.iter().zip(&used).filter(|(s, _)| s.alive);
        let threshold = policy.threshold_pct.max(0.0);
        let band = Band {
            average: average_pct(live().map(|(s, &u)| (u, s.capacity))),
            threshold,
            margin: if policy.margin_pct.is_finite() {
                policy.margin_pct.clamp(0.0, threshold / 2.0)
            } else {
                0.0
            },
            min_free_pct: policy.min_free_pct,
        };
        let bounds = view.servers.iter().map(|s| band.bounds(s)).collect();
        let rack_of = number_racks(view);
        let racks = rack_of.iter().flatten().max().map_or(0, |&r| r + 1);
        let load_threshold_pct = if policy.load_threshold_pct.is_finite() {
            policy.load_threshold_pct.max(0.0)
        } else {
            0.0
        };
        let load = LoadBand::new(view, &reads, load_threshold_pct);
        let servers = view.servers.len();
        Self {
            start: used.clone(),
            incoming: vec![0; servers],
            outgoing: vec![0; servers],
            view,
            table,
            band,
            used,
            bounds,
            busy,
            rack_of,
            racks,
            moves: Vec::new(),
            notes: Notes::default(),
            load,
            load_threshold_pct,
            reads,
            in_flight,
        }
    }

    fn run(mut self, in_flight: &InFlight) -> Plan {
        let lower_bound_bytes = self.lower_bound();
        if self.outside().next().is_none() && !self.load_unbalanced() {
            self.notes.push("cluster balanced".to_owned());
            return self.finish(lower_bound_bytes);
        }
        if !in_flight.is_empty() {
            let n = in_flight.len();
            self.notes.push(format!(
                "{n} chunks already queued or moving were left alone"
            ));
        }
        self.note_dead_and_full();
        self.note_hot();
        self.drain_overloaded();
        self.fill_underloaded();
        self.cool_hot_servers();
        self.warm_cold_servers();
        self.finish(lower_bound_bytes)
    }

    /// Where live server `i` lies now.
    fn position(&self, i: usize) -> Position {
        let capacity = self.view.servers[i].capacity;
        position(
            utilization_pct(self.used[i], capacity),
            self.band.average,
            self.band.threshold,
        )
    }

    /// Live servers outside the band, with their position.
    fn outside(&self) -> impl Iterator<Item = (usize, Position)> + '_ {
        self.live()
            .map(|i| (i, self.position(i)))
            .filter(|(_, p)| *p != Position::Inside)
    }

    /// Indices of live servers.
    fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.view.servers.len()).filter(|&i| self.view.servers[i].alive)
    }

    /// max(Σ bytes above the band, Σ bytes below it).
    fn lower_bound(&self) -> u64 {
        let (mut excess, mut deficit) = (0u64, 0u64);
        for (i, p) in self.outside() {
            let (u, b) = (self.used[i], &self.bounds[i]);
            match p {
                Position::Over => excess += u.saturating_sub(b.hi_edge),
                Position::Under => deficit += b.lo_edge.saturating_sub(u),
                Position::Inside => {}
            }
        }
        excess.max(deficit)
    }

    /// Notes about servers that cannot play their part.
    fn note_dead_and_full(&mut self) {
        for s in self.view.servers.iter().filter(|s| !s.alive) {
            self.notes
                .server(format!("{} is dead: neither source nor target", s.id));
        }
        for i in self.live().collect::<Vec<_>>() {
            let (s, b) = (&self.view.servers[i], self.bounds[i]);
            let p = self.position(i);
            if p != Position::Over && self.used[i] >= b.limit {
                self.notes
                    .server(format!("{} cannot take more: free space at floor", s.id));
            } else if p == Position::Under && b.limit < b.lo_edge {
                self.notes.server(format!(
                    "{} cannot reach the band: its free-space floor is below it",
                    s.id
                ));
            }
        }
    }

    /// Phase 2 of the module doc: overloaded servers shed their excess.
    fn drain_overloaded(&mut self) {
        let sources = self.sorted_by_load(|p, _, _| p == Position::Over);
        if sources.is_empty() {
            return;
        }
        let others = self.live().filter(|&i| self.position(i) != Position::Over);
        let targets = Targets::new(
            others.map(|i| ServerIdx(i as u32)).collect::<Vec<_>>(),
            &self.used,
            &self.bounds,
            &self.rack_of,
            false,
        );
        self.shed_all(&sources, targets, |b| b.hi_aim);
    }

    /// Phase 3 of the module doc: underloaded servers are filled by donors.
    fn fill_underloaded(&mut self) {
        let needy: Vec<_> = self
            .live()
            .filter(|&i| self.position(i) == Position::Under)
            .collect();
        if needy.is_empty() {
            return;
        }
        let donors = self.sorted_by_load(|p, used, b| p != Position::Under && used > b.average);
        let targets = Targets::new(
            needy.iter().map(|&i| ServerIdx(i as u32)),
            &self.used,
            &self.bounds,
            &self.rack_of,
            true,
        );
        self.shed_all(&donors, targets, |b| b.average);
    }

    /// Live servers matching `pick`, most utilized first.
    fn sorted_by_load(&self, pick: impl Fn(Position, u64, &Bounds) -> bool) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .live()
            .filter(|&i| pick(self.position(i), self.used[i], &self.bounds[i]))
            .collect();
        let util = |i: usize| utilization_pct(self.used[i], self.view.servers[i].capacity);
        out.sort_by(|&a, &b| util(b).total_cmp(&util(a)).then(a.cmp(&b)));
        out
    }

    fn is_busy(&self, c: usize) -> bool {
        self.busy[c / 64] & (1 << (c % 64)) != 0
    }

    fn finish(mut self, lower_bound_bytes: u64) -> Plan {
        let outside: Vec<_> = self.outside().collect();
        let (lo, hi) = (
            self.band.average - self.band.threshold,
            self.band.average + self.band.threshold,
        );
        for &(i, p) in &outside {
            let s = &self.view.servers[i];
            let side = if p == Position::Over {
                "overloaded"
            } else {
                "underloaded"
            };
            let util = utilization_pct(self.used[i], s.capacity);
            self.notes.server(format!(
                "{} stays {side} at {util:.1}% (band {lo:.1}% to {hi:.1}%)",
                s.id
            ));
        }
        self.note_load_outside();
        let load_band_reached = self.load_band_reached();
        Plan {
            bytes: self.moves.iter().map(|m| m.bytes).sum(),
            moves: self.moves,
            lower_bound_bytes,
            band_reached: outside.is_empty(),
            average_utilization_pct: self.band.average,
            notes: self.notes.into_lines(),
            load_band_reached,
        }
    }
}

/// Numbers the racks of `view` in name order; `None` for servers without one.
fn number_racks(view: &ClusterView) -> Vec<Option<u32>> {
    let mut numbers: BTreeMap<&str, u32> = view
        .servers
        .iter()
        .filter_map(|s| Some((s.rack.as_deref()?, 0)))
        .collect();
    for (i, n) in numbers.values_mut().enumerate() {
        *n = i as u32;
    }
    view.servers
        .iter()
        .map(|s| numbers.get(s.rack.as_deref()?).copied())
        .collect()
}

/// Counts `mv` as done in `used`, whatever stage it has reached in `view`:
/// not yet copied (on the source only), copied (on both), done (on the
/// target only: nothing left to count), or obsolete (on neither).
fn project(view: &ClusterView, used: &mut [u64], mv: &PlannedMove) {
    let Some(chunk) = view.get_chunk(mv.chunk) else {
        return;
    };
    let (from, to) = (mv.from.0 as usize, mv.to.0 as usize);
    if from >= used.len() || to >= used.len() || !chunk.is_on(mv.from) {
        return;
    }
    used[from] = used[from].saturating_sub(chunk.size());
    if !chunk.is_on(mv.to) {
        used[to] += chunk.size();
    }
}
