//! The message limit and deadline of each `keel.v1.ChunkServer` method (see
//! [`keel_proto::budget`]); health and reflection get the default.
//!
//! Only write frames are large. Streams are bounded by
//! `--stream-idle-timeout` instead of a deadline, copies by the master's
//! copy deadline, verifications by the master's call deadline.

use keel_proto::budget::{Budgets, Method};

/// Largest `WriteChunk` message: four data frames of
/// [`keel_proto::FRAME_BYTES`] (2 MiB), room for clients that frame larger
/// (1 MiB frames measured as fast), while a stream that has not yet sent its
/// header, and so holds no transfer slot, pins at most this much.
pub const WRITE_MESSAGE_BYTES: usize = 4 * keel_proto::FRAME_BYTES;

/// Largest message a copy's source may send: sources frame at
/// [`keel_proto::FRAME_BYTES`], so four frames' worth leaves room while
/// bounding what one message of a slow or hostile source pins.
pub const COPY_MESSAGE_BYTES: usize = 4 * keel_proto::FRAME_BYTES;

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
