//! Errors of the balancer's bookkeeping. They are caller mistakes or races
//! with the rest of the cluster, reported with the indices involved.

use crate::ids::{ChunkIdx, MoveId, ServerIdx};
use crate::plan::PlannedMove;

/// Why [`crate::ClusterView::apply`] refused a move.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The view has no such chunk.
    #[error("no chunk {0:?} in the view")]
    UnknownChunk(ChunkIdx),
    /// The view has no such server.
    #[error("no server {0:?} in the view")]
    UnknownServer(ServerIdx),
    /// The move's byte count is not the chunk's size.
    #[error("chunk {chunk:?} has {size} bytes, the move says {bytes}")]
    SizeMismatch {
        /// The chunk.
        chunk: ChunkIdx,
        /// Its size in the view.
        size: u64,
        /// The move's byte count.
        bytes: u64,
    },
    /// The source holds no replica of the chunk.
    #[error("chunk {chunk:?} is not on source {from:?}")]
    NotOnSource {
        /// The chunk.
        chunk: ChunkIdx,
        /// The source named by the move.
        from: ServerIdx,
    },
    /// The target already holds a replica (or is the source).
    #[error("chunk {chunk:?} is already on target {to:?}")]
    AlreadyOnTarget {
        /// The chunk.
        chunk: ChunkIdx,
        /// The target named by the move.
        to: ServerIdx,
    },
}

/// Why the move queue refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The move names a chunk or server the view lacks, or a byte count
    /// that is not the chunk's size.
    #[error("move {mv:?} does not fit the view")]
    NotInView {
        /// The move.
        mv: PlannedMove,
    },
    /// The chunk already has a move pending or running.
    #[error("chunk {chunk} already has move {existing:?} queued or running")]
    ChunkBusy {
        /// The chunk.
        chunk: String,
        /// The move that holds it.
        existing: MoveId,
    },
    /// A move from a server to itself.
    #[error("move of chunk {chunk} has the same source and target {server}")]
    SameServer {
        /// The chunk.
        chunk: String,
        /// The server named twice.
        server: String,
    },
    /// No move with this id is in the state the call needs (running for
    /// `on_done`/`on_failed`, pending for `cancel`).
    #[error("no {state} move {id:?}")]
    UnknownMove {
        /// The id given.
        id: MoveId,
        /// The state looked in: `running` or `pending`.
        state: &'static str,
    },
}
