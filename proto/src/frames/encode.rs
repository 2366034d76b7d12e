//! The sending end: a `ReadChunkResponse` as its prefix and fields, then its
//! payload as the `Bytes` it already is.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame as BodyFrame};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};
use tokio_stream::Stream;
use tonic::Status;

use super::{DATA_FIELD, PREFIX_BYTES};
use crate::v1::ReadChunkResponse;

/// Encodes `msg` as one gRPC message in two pieces: the prefix with every
/// field but `data`, then `data`'s tag and length (a few bytes); and
/// `data` itself, untouched. Sent one after the other they are exactly
/// the message tonic would encode (prost writes fields in number order;
/// `data` is the last field).
pub fn encode_response(msg: ReadChunkResponse) -> Result<(Bytes, Bytes), Status> {
    let ReadChunkResponse { header, data } = msg;
    let head = ReadChunkResponse {
        header,
        data: Bytes::new(),
    };
    let fields = head.encoded_len();
    let tail = if data.is_empty() {
        0
    } else {
        1 + encoded_len_varint(data.len() as u64)
    };
    let len = fields + tail + data.len();
    if len > crate::MAX_MESSAGE_BYTES {
        return Err(Status::out_of_range(format!(
            "encoded message of {len} bytes is over the limit of {} bytes",
            crate::MAX_MESSAGE_BYTES
        )));
    }
    let mut buf = BytesMut::with_capacity(PREFIX_BYTES + fields + tail);
    buf.put_u8(0);
    // Within u32: MAX_MESSAGE_BYTES is 64 MiB.
    buf.put_u32(len as u32);
    head.encode_raw(&mut buf);
    if !data.is_empty() {
        encode_key(DATA_FIELD, WireType::LengthDelimited, &mut buf);
        encode_varint(data.len() as u64, &mut buf);
    }
    Ok((buf.freeze(), data))
}

/// `msg` as one uncompressed gRPC message: a unary request's whole body.
pub fn encode_request<M: Message>(msg: &M) -> Bytes {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(PREFIX_BYTES + len);
    buf.put_u8(0);
    // Requests here are a chunk id and a flag, far under 4 GiB.
    buf.put_u32(len as u32);
    msg.encode_raw(&mut buf);
    buf.freeze()
}

/// The body of a `ReadChunk` response: each message of `stream` as its
/// prefix and its payload (see [`encode_response`]), then the trailers:
/// `grpc-status: 0`, or the status the stream ended with, as tonic sends
/// them.
pub struct ResponseBody<S> {
    /// The messages to send.
    stream: S,
    /// The payload of the message whose prefix went last.
    payload: Option<Bytes>,
    /// Set once the trailers went.
    done: bool,
}

impl<S> ResponseBody<S> {
    /// Streams `stream`'s messages.
    pub fn new(stream: S) -> Self {
        ResponseBody {
            stream,
            payload: None,
            done: false,
        }
    }

    /// The trailers that end the body.
    fn trailers(&mut self, status: Status) -> BodyFrame<Bytes> {
        self.done = true;
        let mut map = HeaderMap::new();
        if let Err(unsendable) = status.add_header(&mut map) {
            map.clear();
            let why = format!("the status could not be sent: {}", unsendable.message());
            // A plain status with an ASCII message always encodes.
            let _ = Status::internal(why).add_header(&mut map);
        }
        BodyFrame::trailers(map)
    }
}

impl<S> Body for ResponseBody<S>
where
    S: Stream<Item = Result<ReadChunkResponse, Status>> + Unpin,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Status>>> {
        if let Some(payload) = self.payload.take() {
            return Poll::Ready(Some(Ok(BodyFrame::data(payload))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        let frame = match ready!(Pin::new(&mut self.stream).poll_next(cx)) {
            Some(Ok(msg)) => match encode_response(msg) {
                Ok((prefix, payload)) => {
                    self.payload = (!payload.is_empty()).then_some(payload);
                    BodyFrame::data(prefix)
                }
                Err(status) => self.trailers(status),
            },
            Some(Err(status)) => self.trailers(status),
            None => self.trailers(Status::ok("")),
        };
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.payload.is_none()
    }
}
