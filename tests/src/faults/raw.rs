//! A gRPC call that sends any bytes to any method: oversized messages,
//! bytes that are not protobuf, messages of the wrong type.

use std::time::Duration;

use tonic::codegen::http::uri::PathAndQuery;

/// Bytes in, bytes out: a codec that lets a test send any payload to any
/// gRPC method (oversized, undecodable, of the wrong message type).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

/// Encoder and decoder of [`RawCodec`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RawBytes;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;
    fn encoder(&mut self) -> RawBytes {
        RawBytes
    }
    fn decoder(&mut self) -> RawBytes {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// How a raw call is shaped on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One message each way.
    Unary,
    /// A stream of messages in, one out (`WriteChunk`).
    ClientStream,
    /// One message in, a stream out (`ReadChunk`).
    ServerStream,
}

/// Sends `messages` as they are to `path` (e.g. `/keel.v1.Master/Heartbeat`)
/// with no size limit on our side, and returns the status the call ended
/// with (`Ok` carries the number of reply messages).
pub async fn raw_call(
    url: &str,
    path: &str,
    shape: Shape,
    messages: Vec<Vec<u8>>,
) -> Result<usize, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(url.to_owned())
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let mut grpc = tonic::client::Grpc::new(channel)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let path =
        PathAndQuery::try_from(path).map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
    let first = messages.first().cloned().unwrap_or_default();
    match shape {
        Shape::Unary => grpc
            .unary(tonic::Request::new(first), path, RawCodec)
            .await
            .map(|_| 1),
        Shape::ClientStream => {
            let req = tonic::Request::new(tokio_stream::iter(messages));
            grpc.client_streaming(req, path, RawCodec).await.map(|_| 1)
        }
        Shape::ServerStream => {
            let mut s = grpc
                .server_streaming(tonic::Request::new(first), path, RawCodec)
                .await?
                .into_inner();
            let mut n = 0;
            while s.message().await?.is_some() {
                n += 1;
            }
            Ok(n)
        }
    }
}
