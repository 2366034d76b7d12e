//! The mover's steps without their I/O: one state machine per operation
//! (a move or copy, a trim, the delete of a damaged copy, a verification)
//! that reads and records the metadata, says which RPC to send next and
//! within what time, and reads its answer. The async [`Mover`] drives them
//! with real RPCs, the simulation (`sim/`) with simulated ones, so both
//! take the same steps in the same order; only the transport differs.
//!
//! Each machine has two calls, as [`Confirmation`] does: `next` (with the
//! metadata, the term this master leads under now and the time) returns
//! what to do — send a [`Request`], note something that happened, or end
//! with a result — and `answered` takes the reply of the request last
//! sent. The metadata is passed in for each call, never held: the drivers
//! lock it for the call only, and no step waits while holding it.
//!
//! # Layout
//! - `copy`: a move or copy the queue started (`Mover::run`).
//! - `release`: one delete that relies on the replicas that stay, confirmed
//!   right before it (a move's source, each holder of a trim).
//! - `trim`: a trim's holders, one after another.
//! - `repair`: the delete of a damaged copy, and a verification.
//!
//! [`Mover`]: super::Mover
//! [`Confirmation`]: super::Confirmation

mod copy;
mod release;
mod repair;
mod trim;

use std::time::Duration;

/// The status code of an error answer (tonic's), re-exported for drivers
/// that speak no gRPC themselves.
pub use tonic::Code;

pub use copy::{MoveStep, MoveSteps};
pub use release::Released;
pub use repair::{DamagedSteps, VerifySteps};
pub use trim::{TrimStep, TrimSteps};

use crate::meta::{Held, ServerAddr, Stamp, VerifyOutcome};

/// Deadline of a `DeleteChunk` or `StatChunk`.
pub const SMALL_RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Fixed part of a copy's deadline (connection set-up, fsync, rename).
pub const COPY_MARGIN: Duration = Duration::from_secs(30);

/// The deadline of copying (or verifying) `size` bytes at no less than
/// `min_rate` bytes/s.
pub fn copy_deadline(size: u64, min_rate: u64) -> Duration {
    let transfer =
        Duration::try_from_secs_f64(size as f64 / min_rate.max(1) as f64).unwrap_or(Duration::MAX);
    COPY_MARGIN.saturating_add(transfer)
}

/// Whether a failed `CopyChunk` may succeed when tried again.
pub fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Aborted
            | Code::DeadlineExceeded
            | Code::Internal
            | Code::Unknown
            | Code::Cancelled
    )
}

/// An RPC a step sends to one chunk server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rpc {
    /// `CopyChunk` on the target: pull the chunk from `source`, expecting
    /// `size` bytes with `crc32c`, under the decision term `term`.
    Copy {
        /// Chunk id.
        chunk: String,
        /// The server the target reads from.
        source: ServerAddr,
        /// Expected size.
        size: u64,
        /// Expected CRC32C.
        crc32c: u32,
        /// The decision term it is sent under.
        term: u64,
    },
    /// `StatChunk`: what the server holds under the chunk's id.
    Stat {
        /// Chunk id.
        chunk: String,
    },
    /// `DeleteChunk` of replica `replica`, decided and sent under `term`.
    Delete {
        /// Chunk id.
        chunk: String,
        /// The identity of the replica to remove.
        replica: u64,
        /// The decision term.
        term: u64,
    },
    /// `VerifyChunk`: reread the replica and say whether it is whole.
    Verify {
        /// Chunk id.
        chunk: String,
    },
}

/// One request: to whom, what, and how long its answer may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The chunk server asked.
    pub server: ServerAddr,
    /// What it is asked.
    pub rpc: Rpc,
    /// The deadline of the answer.
    pub timeout: Duration,
}

/// What a `StatChunk` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatReply {
    /// The header's size and CRC32C (`None`: the answer had no header).
    pub header: Option<(u64, u32)>,
    /// The identity of the replica held.
    pub replica: u64,
    /// A delete of it runs there.
    pub deleting: bool,
    /// Its server marks it suspect.
    pub suspect: bool,
    /// The server's stamp at the lookup, when it sent one.
    pub stamp: Option<Stamp>,
}

impl StatReply {
    /// What the server holds, when the answer names a header.
    pub fn held(&self) -> Option<Held> {
        let (size, crc32c) = self.header?;
        Some(Held {
            size,
            crc32c,
            replica: self.replica,
            deleting: self.deleting,
            suspect: self.suspect,
        })
    }
}

/// The reply to a [`Request`], as the steps read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `CopyChunk` answered: what the target stored, its stamp after the
    /// commit and the new replica's identity.
    Copied {
        /// Bytes stored.
        size: u64,
        /// Their CRC32C.
        crc32c: u32,
        /// The target's stamp after the commit, when it sent one.
        stamp: Option<Stamp>,
        /// The new replica's identity.
        replica: u64,
    },
    /// `StatChunk` answered.
    Stat(StatReply),
    /// `DeleteChunk` answered; the server's stamp right after, when it sent one.
    Deleted(Option<Stamp>),
    /// `VerifyChunk` answered with a verdict, and the server's stamp.
    Verified(VerifyOutcome, Option<Stamp>),
    /// The server answered with an error.
    Refused {
        /// Its code.
        code: Code,
        /// Its message.
        message: String,
    },
    /// No answer within the request's deadline.
    TimedOut,
    /// Not sent: no channel to the server, or this master may not send it
    /// now; why.
    NotSent(String),
}

impl Reply {
    /// Why the request failed, with `timed_out` the text of a deadline
    /// passed; `None` when it did not fail.
    fn failure(&self, timed_out: &str) -> Option<String> {
        match self {
            Reply::Refused { message, .. } => Some(message.clone()),
            Reply::NotSent(why) => Some(why.clone()),
            Reply::TimedOut => Some(timed_out.to_owned()),
            _ => None,
        }
    }

    /// What a `StatChunk` of a replica that stays says it holds, or why it
    /// confirms nothing.
    pub fn held(&self) -> Result<Held, String> {
        match self {
            Reply::Stat(s) => s.held().ok_or_else(|| "the answer has no header".into()),
            other => Err(other
                .failure("stat timed out")
                .unwrap_or_else(|| "an answer that is no StatChunk's".into())),
        }
    }
}

#[cfg(test)]
mod tests;
