//! The message limit and deadline of each `keel.v1.ChunkServer` method (see
//! [`keel_proto::budget`]); health and reflection get the default.
//!
//! Only write frames are large. Streams are bounded by
//! `--stream-idle-timeout` instead of a deadline, copies by the master's
//! copy deadline, verifications by the master's call deadline.

use keel_proto::budget::{Budgets, Method};

/// Largest `WriteChunk` message: a data frame of [`keel_proto::FRAME_BYTES`]
/// and its header, with room to spare for clients framing a little larger.
pub const WRITE_MESSAGE_BYTES: usize = 2 * keel_proto::FRAME_BYTES;

/// The chunk server's budgets.
pub fn budgets() -> Budgets {
    let unbounded = |message| Method {
        message,
        deadline: None,
    };
    let small = keel_proto::budget::SMALL_MESSAGE_BYTES;
    Budgets::default()
        .with(
            "/keel.v1.ChunkServer/WriteChunk",
            unbounded(WRITE_MESSAGE_BYTES),
        )
        .with("/keel.v1.ChunkServer/CopyChunk", unbounded(small))
        .with("/keel.v1.ChunkServer/VerifyChunk", unbounded(small))
}
