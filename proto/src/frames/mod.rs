//! `ReadChunkResponse` streams on the wire without copying their bytes.
//!
//! tonic's codec encodes each message into a buffer of its own and, on the
//! receiving side, gathers each message's HTTP/2 DATA frames into one
//! contiguous buffer before prost sees it: for a chunk stream that is a
//! `memmove` of every byte on each end of a copy, 11–17 % of both servers'
//! CPU in a profile of `scripts/bench-copy.sh`. The chunk server's
//! `ReadChunk` and `CopyChunk`'s pull from the source use these instead:
//!
//! - [`encode`]: a message becomes two pieces, its gRPC prefix and protobuf
//!   fields (a few bytes, with `data`'s tag and length last) and the `data`
//!   `Bytes` as read from disk, which HTTP/2 writes to the socket without
//!   copying it; [`ResponseBody`] streams them, then the status trailers.
//! - [`decode`]: [`ResponseReader`] takes a message's payload as slices of
//!   the DATA frames it arrived in ([`Frame::data`]), never gathering them;
//!   [`read_chunk`] calls `ReadChunk` on a channel and returns one.
//!
//! The bytes on the wire are gRPC's and protobuf's exactly, so either end may
//! be tonic's own (`keelctl`, the master, older servers). Nothing else
//! changes: the same message limit ([`crate::MAX_MESSAGE_BYTES`]), no
//! compression (the servers offer none), the status in the trailers.

mod client;
pub mod decode;
pub mod encode;

pub use client::read_chunk;
pub use decode::{Frame, ResponseReader};
pub use encode::{ResponseBody, encode_request, encode_response};

/// The path of `ReadChunk`, which these frames serve.
pub const READ_CHUNK_PATH: &str = "/keel.v1.ChunkServer/ReadChunk";

/// Bytes of gRPC's message prefix: a compression flag and a big-endian length.
const PREFIX_BYTES: usize = 5;

/// `ReadChunkResponse.data`'s field number.
const DATA_FIELD: u32 = 2;

/// `content-type` of gRPC messages.
const GRPC_CONTENT_TYPE: &str = "application/grpc";

#[cfg(test)]
mod tests;
