//! The gRPC codec of `keel.v1`: prost's, with encode and decode buffers sized
//! for the messages that carry chunk bytes.
//!
//! tonic encodes each message into one growing buffer and hands out the
//! encoded bytes as views into it; it decodes into another. Its default
//! buffer is 8 KiB, grown per message; for chunk streams (512 KiB frames) a
//! buffer of four frames measured about a fifth less CPU per copied byte on
//! both servers together (`scripts/bench-copy.sh`, docs/benchmarks.md).
//! Every other method keeps tonic's default, so a heartbeat or a status call
//! allocates no more than before.

use std::any::TypeId;
use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

use crate::v1::{ReadChunkResponse, WriteChunkRequest};

/// Buffer of a chunk stream's encoder and decoder: a few frames.
pub const STREAM_BUFFER_BYTES: usize = 4 * crate::FRAME_BYTES;

/// prost's codec with buffers sized per message type (see the module docs).
#[derive(Debug, Clone)]
pub struct FrameCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for FrameCodec<T, U> {
    fn default() -> Self {
        FrameCodec {
            _types: PhantomData,
        }
    }
}

/// Whether messages of type `M` carry chunk bytes.
fn carries_frames<M: 'static>() -> bool {
    let t = TypeId::of::<M>();
    t == TypeId::of::<ReadChunkResponse>() || t == TypeId::of::<WriteChunkRequest>()
}

/// The buffers for a stream of `M`.
fn settings<M: 'static>() -> BufferSettings {
    if carries_frames::<M>() {
        stream_settings()
    } else {
        // tonic's defaults: nothing changes for messages without chunk bytes.
        BufferSettings::default()
    }
}

/// Chunk streams: a buffer of [`STREAM_BUFFER_BYTES`]; each encoded frame is
/// still handed to HTTP/2 as soon as it is complete (tonic's yield threshold).
fn stream_settings() -> BufferSettings {
    BufferSettings::new(STREAM_BUFFER_BYTES, 32 << 10)
}

impl<T, U> Codec for FrameCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings::<T>())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings::<U>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{HeartbeatRequest, ReadChunkRequest};

    #[test]
    fn only_chunk_streams_get_large_buffers() {
        assert!(carries_frames::<ReadChunkResponse>());
        assert!(carries_frames::<WriteChunkRequest>());
        assert!(!carries_frames::<ReadChunkRequest>());
        assert!(!carries_frames::<HeartbeatRequest>());
    }
}
