//! The one admission rule for every copy of a replica: the planner, the move
//! queue and the master's last check before an RPC all call [`admit`], so a
//! move one of them accepts is never refused by another for a different
//! reason.
//!
//! The rule, in the order its refusals are reported:
//! 1. source and target are two servers, both known and alive;
//! 2. the chunk is idle (no other copy, move or delete runs on it);
//! 3. the source holds a whole replica and the target holds no copy, whole
//!    or damaged (anti-affinity);
//! 4. the target is not draining (a draining source is fine);
//! 5. a move that deletes its source never leaves the chunk in fewer racks;
//!    a copy that keeps it cannot lower the count, so for repairs and drains
//!    racks are a preference of the target's choice, not a gate;
//! 6. the target keeps its free-space floor, counting the bytes already
//!    committed to it (recorded use, allocations and copies in flight).
//!
//! Whoever calls gathers the facts from its own state ([`MoveFacts`]): the
//! planner from a [`ClusterView`] by index, the queue and the master through
//! [`Admits`] by id.

use std::collections::HashMap;
use std::fmt;

pub use crate::ids::CopyClass;
use crate::ids::{ChunkIdx, CopyJob, ServerIdx};
use crate::model::ClusterView;
use crate::plan::PlannedMove;
use crate::space::fits_floor;

/// One end of a copy, as far as the rule cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Endpoint<'a> {
    /// Known and heard from.
    pub alive: bool,
    /// Marked for draining.
    pub draining: bool,
    /// Failure-domain label, if any.
    pub rack: Option<&'a str>,
    /// Holds a whole replica of the chunk.
    pub holds: bool,
    /// Holds a copy that is not whole (corrupt, or awaiting deletion).
    pub holds_damaged: bool,
}

/// Everything [`admit`] looks at for one copy of one chunk.
#[derive(Debug, Clone)]
pub struct MoveFacts<'a, R> {
    /// What the copy is for.
    pub class: CopyClass,
    /// The chunk's size.
    pub bytes: u64,
    /// Another copy, move or delete of the chunk is running.
    pub busy: bool,
    /// Source and target are one server.
    pub same_server: bool,
    /// The source.
    pub from: Endpoint<'a>,
    /// The target.
    pub to: Endpoint<'a>,
    /// Racks of the chunk's replicas other than the source's.
    pub others: R,
    /// The target's capacity.
    pub to_capacity: u64,
    /// Bytes already committed to the target: recorded use plus what is
    /// on its way in.
    pub to_committed: u64,
    /// The free-space floor, in percent of capacity.
    pub min_free_pct: f64,
}

/// Why [`admit`] refused a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Source and target are one server.
    SameServer,
    /// The chunk, the source or the target is not known (any more).
    Unknown,
    /// The source is dead.
    SourceDown,
    /// The target is dead.
    TargetDown,
    /// Something else runs on the chunk now.
    Busy,
    /// The source holds no whole replica.
    NotOnSource,
    /// The target already holds a whole replica.
    OnTarget,
    /// The target holds a damaged copy that must be deleted first.
    DamagedOnTarget,
    /// The target is draining and takes no new data.
    TargetDraining,
    /// Deleting the source afterwards would leave the chunk in fewer racks.
    FewerRacks,
    /// The target would keep less free space than the floor.
    BelowFloor,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::SameServer => "source and target are the same server",
            Refusal::Unknown => "the chunk or a server is not known",
            Refusal::SourceDown => "the source is dead",
            Refusal::TargetDown => "the target is dead",
            Refusal::Busy => "another job runs on the chunk",
            Refusal::NotOnSource => "the source holds no whole replica",
            Refusal::OnTarget => "the target already holds a replica",
            Refusal::DamagedOnTarget => "the target holds a damaged copy",
            Refusal::TargetDraining => "the target is draining",
            Refusal::FewerRacks => "the chunk would span fewer racks",
            Refusal::BelowFloor => "target free space at floor",
        })
    }
}

impl std::error::Error for Refusal {}

/// The rule itself; see the module docs for its parts and their order.
pub fn admit<'a, R>(f: &MoveFacts<'a, R>) -> Result<(), Refusal>
where
    R: Iterator<Item = Option<&'a str>> + Clone,
{
    if f.same_server {
        return Err(Refusal::SameServer);
    }
    if !f.from.alive {
        return Err(Refusal::SourceDown);
    }
    if !f.to.alive {
        return Err(Refusal::TargetDown);
    }
    if f.busy {
        return Err(Refusal::Busy);
    }
    if !f.from.holds {
        return Err(Refusal::NotOnSource);
    }
    if f.to.holds {
        return Err(Refusal::OnTarget);
    }
    if f.to.holds_damaged {
        return Err(Refusal::DamagedOnTarget);
    }
    if f.to.draining {
        return Err(Refusal::TargetDraining);
    }
    if f.class.deletes_source()
        && !crate::racks::move_keeps_racks(f.others.clone(), f.from.rack, f.to.rack)
    {
        return Err(Refusal::FewerRacks);
    }
    if !fits_floor(f.to_capacity, f.to_committed, f.bytes, f.min_free_pct) {
        return Err(Refusal::BelowFloor);
    }
    Ok(())
}

/// A copy [`Admits::check`] let through, with the slot-table keys of its
/// two servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// The source's key.
    pub from: u32,
    /// The target's key.
    pub to: u32,
}

/// A cluster state that can answer [`admit`] for copies named by id: a
/// [`ClusterView`] here, the master's metadata there.
pub trait Admits {
    /// Applies [`admit`] to `copy`, with `extra` bytes promised to its
    /// target beyond what the state records (copies started a moment ago).
    fn check(&self, copy: &CopyJob, extra: u64, min_free_pct: f64) -> Result<Admitted, Refusal>;
}

/// [`Admits`] over a view, finding ids through maps built once.
#[derive(Debug)]
pub struct ViewAdmits<'v> {
    view: &'v ClusterView,
    chunks: HashMap<&'v str, ChunkIdx>,
    servers: HashMap<&'v str, ServerIdx>,
}

impl<'v> ViewAdmits<'v> {
    /// Indexes `view`'s ids (one pass over its chunks).
    pub fn new(view: &'v ClusterView) -> Self {
        ViewAdmits {
            view,
            chunks: view.chunks().map(|c| (c.id(), c.idx())).collect(),
            servers: view
                .servers
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.as_str(), ServerIdx(i as u32)))
                .collect(),
        }
    }

    /// The chunk `id`'s index.
    pub fn chunk(&self, id: &str) -> Option<ChunkIdx> {
        self.chunks.get(id).copied()
    }

    /// The server `id`'s index.
    pub fn server(&self, id: &str) -> Option<ServerIdx> {
        self.servers.get(id).copied()
    }

    /// `copy` in the view's indices.
    pub fn planned(&self, copy: &CopyJob) -> Option<PlannedMove> {
        Some(PlannedMove {
            chunk: self.chunk(copy.chunk())?,
            from: self.server(copy.from())?,
            to: self.server(copy.to())?,
            bytes: copy.bytes,
            reason: crate::MoveReason::Capacity,
        })
    }
}

impl Admits for ViewAdmits<'_> {
    fn check(&self, copy: &CopyJob, extra: u64, min_free_pct: f64) -> Result<Admitted, Refusal> {
        let mv = self.planned(copy).ok_or(Refusal::Unknown)?;
        check_in_view(self.view, &mv, copy.class, extra, min_free_pct)?;
        Ok(Admitted {
            from: mv.from.0,
            to: mv.to.0,
        })
    }
}

/// [`Admits`] straight on a view, finding ids by linear scans: for tests
/// and small views ([`ViewAdmits`] indexes them once).
impl Admits for ClusterView {
    fn check(&self, copy: &CopyJob, extra: u64, min_free_pct: f64) -> Result<Admitted, Refusal> {
        let mv = self.planned(copy).ok_or(Refusal::Unknown)?;
        check_in_view(self, &mv, copy.class, extra, min_free_pct)?;
        Ok(Admitted {
            from: mv.from.0,
            to: mv.to.0,
        })
    }
}

/// [`admit`] for `mv` planned on `view` by index. The target's committed
/// bytes are its `used` plus its `incoming` plus `extra`.
pub fn check_in_view(
    view: &ClusterView,
    mv: &PlannedMove,
    class: CopyClass,
    extra: u64,
    min_free_pct: f64,
) -> Result<(), Refusal> {
    let (Some(chunk), Some(from), Some(to)) = (
        view.get_chunk(mv.chunk),
        view.get_server(mv.from),
        view.get_server(mv.to),
    ) else {
        return Err(Refusal::Unknown);
    };
    let replicas = chunk.replicas();
    let rack = |s: ServerIdx| view.get_server(s).and_then(|s| s.rack.as_deref());
    fn end<'a>(s: ServerIdx, server: &'a crate::Server, replicas: &[ServerIdx]) -> Endpoint<'a> {
        Endpoint {
            alive: server.alive,
            rack: server.rack.as_deref(),
            holds: replicas.contains(&s),
            ..Endpoint::default()
        }
    }
    let facts = MoveFacts {
        class,
        bytes: mv.bytes,
        busy: false,
        same_server: mv.from == mv.to,
        from: end(mv.from, from, replicas),
        to: end(mv.to, to, replicas),
        others: replicas.iter().filter(|&&s| s != mv.from).map(|&s| rack(s)),
        to_capacity: to.capacity,
        to_committed: to.used.saturating_add(to.incoming).saturating_add(extra),
        min_free_pct,
    };
    admit(&facts)
}
