//! What the planner takes and returns: [`Policy`], [`InFlight`], [`Plan`]
//! and [`PlannedMove`]. The algorithm itself is in `planner.rs`.

use std::collections::BTreeMap;

use std::collections::BTreeSet;

use crate::ids::{ChunkIdx, ServerIdx};
use crate::traffic::DEFAULT_LOAD_THRESHOLD_PCT;

/// Margin inside the band the planner aims for by default, in percentage
/// points: servers land a little inside the edges, so that the next pass,
/// after a few writes, does not find them just outside again.
pub const DEFAULT_MARGIN_PCT: f64 = 0.5;

/// How the planner balances.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Band half-width around the cluster average, in percentage points.
    pub threshold_pct: f64,
    /// A move may not leave its target with less free space than this
    /// percentage of its capacity.
    pub min_free_pct: f64,
    /// How far inside the band edges servers are aimed, in percentage
    /// points; clamped to half the threshold.
    pub margin_pct: f64,
    /// Load band half-width, in percent of the mean reads/s of the live
    /// servers (see [`crate::traffic::load_position`]); 0 balances bytes
    /// only.
    pub load_threshold_pct: f64,
}

impl Policy {
    /// A policy with the default margin.
    pub fn new(threshold_pct: f64, min_free_pct: f64) -> Self {
        Self {
            threshold_pct,
            min_free_pct,
            margin_pct: DEFAULT_MARGIN_PCT,
            load_threshold_pct: DEFAULT_LOAD_THRESHOLD_PCT,
        }
    }
}

impl Default for Policy {
    /// The master's defaults: threshold 20, floor 10 %, load band 25 %.
    fn default() -> Self {
        Self::new(20.0, 10.0)
    }
}

/// Why the planner chose a move.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MoveReason {
    /// To bring utilization inside the capacity band (cold chunks first).
    #[default]
    Capacity,
    /// To bring read load inside the load band (hot chunks off hot servers).
    Load,
}

impl MoveReason {
    /// `capacity` or `load`, as operators read it.
    pub fn as_str(self) -> &'static str {
        match self {
            MoveReason::Capacity => "capacity",
            MoveReason::Load => "load",
        }
    }
}

/// One move: copy `chunk` from `from` to `to`, then drop it from `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PlannedMove {
    /// The chunk to move.
    pub chunk: ChunkIdx,
    /// The server giving up its replica.
    pub from: ServerIdx,
    /// The server receiving it.
    pub to: ServerIdx,
    /// The chunk's size.
    pub bytes: u64,
    /// Why it was planned.
    pub reason: MoveReason,
}

/// Chunks the planner must leave alone because they are queued, moving, or
/// busy otherwise (e.g. being trimmed). Known moves are also projected: the
/// planner plans as if they had already finished.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InFlight {
    /// Busy chunks, with the move they are in when there is one.
    chunks: BTreeMap<ChunkIdx, Option<PlannedMove>>,
    /// Chunks moved for load not long ago: not moved for load again until
    /// they cool down (hysteresis), though capacity may still move them.
    cooling: BTreeSet<ChunkIdx>,
}

impl InFlight {
    /// Nothing in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks a queued or running move.
    pub fn add_move(&mut self, mv: PlannedMove) {
        self.chunks.insert(mv.chunk, Some(mv));
    }

    /// Marks a chunk busy for a reason other than a move.
    pub fn add_chunk(&mut self, chunk: ChunkIdx) {
        self.chunks.entry(chunk).or_insert(None);
    }

    /// Marks a chunk recently moved for load (see [`InFlight::is_cooling`]).
    pub fn add_cooling(&mut self, chunk: ChunkIdx) {
        self.cooling.insert(chunk);
    }

    /// Keeps `chunk` from moving for load in this plan, as a cooling chunk
    /// is kept: the caller does not trust its heat now (e.g. its server's
    /// rates have not settled since its chunks last moved). Capacity may
    /// still move it.
    pub fn hold_from_load(&mut self, chunk: ChunkIdx) {
        self.cooling.insert(chunk);
    }

    /// Whether `chunk` may not move for load in this plan: it was moved for
    /// load too recently, or the caller holds it ([`InFlight::hold_from_load`]).
    pub fn is_cooling(&self, chunk: ChunkIdx) -> bool {
        self.cooling.contains(&chunk)
    }

    /// Whether `chunk` is busy.
    pub fn contains(&self, chunk: ChunkIdx) -> bool {
        self.chunks.contains_key(&chunk)
    }

    /// Number of busy chunks.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Busy chunks in index order.
    pub fn chunks(&self) -> impl Iterator<Item = ChunkIdx> + '_ {
        self.chunks.keys().copied()
    }

    /// Known moves in chunk order.
    pub fn moves(&self) -> impl Iterator<Item = &PlannedMove> + '_ {
        self.chunks.values().flatten()
    }
}

/// The planner's answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Moves in the order they should be queued.
    pub moves: Vec<PlannedMove>,
    /// Bytes the moves transfer.
    pub bytes: u64,
    /// Fewest bytes any plan must move to bring every live server into the
    /// band: max(Σ bytes above the band, Σ bytes below it).
    pub lower_bound_bytes: u64,
    /// Whether every live server lies inside the band once the moves (and
    /// those in flight) are done.
    pub band_reached: bool,
    /// Capacity-weighted average utilization the band is centred on.
    pub average_utilization_pct: f64,
    /// Whether every live server's reads/s lie inside the load band once the
    /// moves are done (true when load balancing is off).
    pub load_band_reached: bool,
    /// Decisions explained, for operators.
    pub notes: Vec<String>,
}

impl Plan {
    /// `bytes / lower_bound_bytes` (1 when both are 0): how close the plan
    /// comes to the least possible transfer.
    pub fn efficiency_ratio(&self) -> f64 {
        if self.lower_bound_bytes == 0 {
            if self.bytes == 0 { 1.0 } else { f64::INFINITY }
        } else {
            self.bytes as f64 / self.lower_bound_bytes as f64
        }
    }
}
