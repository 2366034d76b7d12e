//! What the queue tells operators: why a move waits, the state of each move,
//! lifetime totals and the recent history.

use std::fmt;
use std::time::Duration;

use crate::ids::CopyJob;
use crate::ids::MoveId;

/// Why a pending move did not start at the last pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitReason {
    /// The target would drop below its free-space floor, counting the moves
    /// already running into it.
    TargetAtFloor,
    /// Every slot of the cluster, the source or the target is taken.
    NoSlot,
    /// Another job (a copy, a delete) runs on the chunk.
    ChunkBusy,
    /// Backing off after this error.
    Retrying(String),
    /// The queue is paused.
    Paused,
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TargetAtFloor => f.write_str("target free space at floor"),
            Self::NoSlot => f.write_str("no slot"),
            Self::ChunkBusy => f.write_str("another job runs on the chunk"),
            Self::Retrying(error) => write!(f, "retrying: {error}"),
            Self::Paused => f.write_str("paused"),
        }
    }
}

/// Where a move is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveState {
    /// Waiting to start.
    Pending,
    /// Started, not yet reported back.
    Running,
}

/// One pending or running move, as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveStatus {
    /// Its id.
    pub id: MoveId,
    /// What it copies, and what for.
    pub copy: CopyJob,
    /// Pending or running.
    pub state: MoveState,
    /// Failed attempts so far.
    pub retries: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// Why a pending move waits; callers word it with its `Display` and
    /// match on the variant, never on the words.
    pub waiting: Option<WaitReason>,
    /// Time since it was queued.
    pub age: Duration,
    /// Time since the current attempt started, while running.
    pub running_for: Option<Duration>,
}

/// The queue at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatus {
    /// Whether starting moves is paused.
    pub paused: bool,
    /// Moves waiting to start.
    pub pending: usize,
    /// Moves running.
    pub running: usize,
    /// Moves done, lifetime.
    pub done: u64,
    /// Moves dropped after their retries, lifetime.
    pub failed: u64,
    /// Bytes moved by done moves, lifetime.
    pub bytes_moved: u64,
    /// Age of the oldest pending move; climbing means the queue is stuck.
    pub oldest_pending_age: Option<Duration>,
    /// Every pending move (oldest first), then every running one.
    pub moves: Vec<MoveStatus>,
}

/// How a move left the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Copied and dropped from its source.
    Done,
    /// Dropped after its retries; the last error.
    Failed {
        /// Why the last attempt failed.
        error: String,
    },
    /// Its chunk left the source some other way before it started (or the
    /// view no longer has the chunk and servers it named).
    Obsolete,
    /// Cancelled while pending.
    Cancelled,
}

/// A move that left the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedMove {
    /// Its id.
    pub id: MoveId,
    /// What it copied (or was to copy).
    pub copy: CopyJob,
    /// How it ended.
    pub outcome: Outcome,
    /// Failed attempts before the end.
    pub retries: u32,
    /// When it ended.
    pub at: Duration,
}

/// Lifetime counts of a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Moves done.
    pub done: u64,
    /// Moves dropped after their retries.
    pub failed: u64,
    /// Moves dropped as obsolete.
    pub obsolete: u64,
    /// Moves cancelled.
    pub cancelled: u64,
    /// Bytes moved by done moves.
    pub bytes_moved: u64,
}

impl Totals {
    /// Counts one more move that ended with `outcome`.
    pub(super) fn count(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Done => self.done += 1,
            Outcome::Failed { .. } => self.failed += 1,
            Outcome::Obsolete => self.obsolete += 1,
            Outcome::Cancelled => self.cancelled += 1,
        }
    }
}
