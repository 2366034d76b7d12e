//! The names the balancer's parts hand each other: indices into one view
//! ([`ServerIdx`], [`ChunkIdx`]), a queued move's [`MoveId`], a move named
//! by ids ([`MoveRef`]) and the one job the queue holds and the master runs
//! ([`CopyJob`]: a move with its bytes, class and rank).
//!
//! A move by indices, valid in one view only, is the planner's
//! [`crate::PlannedMove`]; [`crate::ClusterView::job_of`] and
//! [`crate::ClusterView::planned`] convert between the two.

/// Index of a server in [`crate::ClusterView::servers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerIdx(pub u32);

/// Index of a chunk in a [`crate::ClusterView`] (see
/// [`crate::ClusterView::chunk`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkIdx(pub u32);

/// Identifies a move for the lifetime of its queue; ids grow with time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MoveId(pub u64);

/// A move named by ids: copy `chunk` from `from` to `to`. What an operator
/// asks for and what every front door passes on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MoveRef {
    /// Chunk id.
    pub chunk: String,
    /// Source server id.
    pub from: String,
    /// Target server id.
    pub to: String,
}

impl MoveRef {
    /// The move of `chunk` from `from` to `to`.
    pub fn new(chunk: impl Into<String>, from: impl Into<String>, to: impl Into<String>) -> Self {
        MoveRef {
            chunk: chunk.into(),
            from: from.into(),
            to: to.into(),
        }
    }
}

/// What a copy is for, in the order the queue serves them: restoring
/// redundancy first, then emptying draining servers, then an operator's
/// explicit moves, then balancing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum CopyClass {
    /// Copy only: the chunk is below its factor.
    Repair,
    /// Copy only: a replica sits on a draining server.
    Drain,
    /// Copy, then delete the source: asked for by an operator.
    Operator,
    /// Copy, then delete the source: planned by the balancer.
    #[default]
    Balance,
}

impl CopyClass {
    /// Whether the source replica is deleted once the copy is recorded.
    pub fn deletes_source(self) -> bool {
        matches!(self, CopyClass::Operator | CopyClass::Balance)
    }

    /// Whether it restores or protects redundancy: such copies take slots
    /// ahead of every other class, and are never held back by a failed
    /// chunk's cool-down.
    pub fn is_urgent(self) -> bool {
        matches!(self, CopyClass::Repair | CopyClass::Drain)
    }

    /// The name operators see.
    pub fn name(self) -> &'static str {
        match self {
            CopyClass::Repair => "repair",
            CopyClass::Drain => "drain",
            CopyClass::Operator => "operator",
            CopyClass::Balance => "balance",
        }
    }
}

/// One copy of a replica as the queue holds it and the master runs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CopyJob {
    /// The chunk and its two servers.
    pub mv: MoveRef,
    /// The chunk's size.
    pub bytes: u64,
    /// What it is for.
    pub class: CopyClass,
    /// Its place within its class, lower first: for a repair or drain copy,
    /// the whole replicas its chunk has on live servers, so the chunks
    /// closest to being lost are copied first; 0 for moves.
    pub rank: u32,
}

impl CopyJob {
    /// `mv` of `bytes` bytes for `class`, ranked 0 (moves are not ranked).
    pub fn new(mv: MoveRef, bytes: u64, class: CopyClass) -> Self {
        CopyJob {
            mv,
            bytes,
            class,
            rank: 0,
        }
    }

    /// Chunk id.
    pub fn chunk(&self) -> &str {
        &self.mv.chunk
    }

    /// Source server id.
    pub fn from(&self) -> &str {
        &self.mv.from
    }

    /// Target server id.
    pub fn to(&self) -> &str {
        &self.mv.to
    }
}
