//! The receiving end: `ReadChunkResponse`s whose payload stays in the
//! `Bytes` of the HTTP/2 DATA frames it arrived in.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::HeaderMap;
use http_body::Body as _;
use prost::Message;
use prost::encoding::{WireType, decode_key, decode_varint, encode_key, encode_varint};
use tonic::body::Body;
use tonic::{Code, Status};

use super::{DATA_FIELD, PREFIX_BYTES};
use crate::v1::{ChunkHeader, ReadChunkResponse};

/// One `ReadChunkResponse` as received.
#[derive(Debug, Default)]
pub struct Frame {
    /// The chunk's header (the first message only).
    pub header: Option<ChunkHeader>,
    /// The payload, in order, as slices of the DATA frames that carried it.
    pub data: Vec<Bytes>,
}

impl Frame {
    /// Payload bytes.
    pub fn len(&self) -> usize {
        self.data.iter().map(Bytes::len).sum()
    }

    /// Whether the message carries no payload.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// Bytes received and not yet taken, as the `Bytes` they arrived in
/// (never an empty one).
#[derive(Debug, Default)]
struct Segments {
    parts: VecDeque<Bytes>,
    remaining: usize,
}

/// Pieces shorter than this are copied together rather than kept as slices
/// of the DATA frames they came in: a peer sending tiny frames would
/// otherwise cost a slice's bookkeeping per byte, and pin every receive
/// buffer those bytes sit in, until the message is whole.
const SMALL_PIECE: usize = 4096;

impl Segments {
    fn push(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        self.remaining += b.len();
        if b.len() < SMALL_PIECE
            && let Some(last) = self.parts.back_mut()
            && last.len() + b.len() <= SMALL_PIECE
        {
            // At most SMALL_PIECE bytes copied per piece: bounded work.
            let mut joined = BytesMut::with_capacity(last.len() + b.len());
            joined.extend_from_slice(last);
            joined.extend_from_slice(&b);
            *last = joined.freeze();
            return;
        }
        self.parts.push_back(b);
    }

    /// Copies the first `N` bytes out, if there are that many.
    fn peek<const N: usize>(&self) -> Option<[u8; N]> {
        if self.remaining < N {
            return None;
        }
        let mut out = [0u8; N];
        let mut at = 0;
        for part in &self.parts {
            let n = part.len().min(N - at);
            out[at..at + n].copy_from_slice(&part[..n]);
            at += n;
            if at == N {
                break;
            }
        }
        Some(out)
    }

    /// Takes the first `n` bytes (at most what there is) as slices.
    fn split_to(&mut self, mut n: usize) -> Segments {
        let mut out = Segments::default();
        while n > 0 {
            let Some(mut part) = self.parts.pop_front() else {
                break;
            };
            if part.len() > n {
                self.parts.push_front(part.split_off(n));
            }
            n -= part.len();
            self.remaining -= part.len();
            out.push(part);
        }
        out
    }
}

impl Buf for Segments {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map_or(&[], |b| b)
    }

    fn advance(&mut self, mut cnt: usize) {
        while cnt > 0 {
            let Some(front) = self.parts.front_mut() else {
                return;
            };
            let n = cnt.min(front.len());
            front.advance(n);
            self.remaining -= n;
            cnt -= n;
            if front.is_empty() {
                self.parts.pop_front();
            }
        }
    }
}

/// Reads the `ReadChunkResponse`s of a `ReadChunk` response body, as
/// tonic's `Streaming` would, but without gathering each message into one
/// buffer: a message is parsed once all its bytes are here, its payload
/// taken as slices of the frames that brought it.
pub struct ResponseReader {
    body: Body,
    /// Bytes received and not yet parsed: at most one message and the
    /// beginning of the next, as the HTTP/2 window lets them in.
    buf: Segments,
    /// Largest message accepted, as tonic's `max_decoding_message_size`.
    max: usize,
    /// The trailers (or, for a trailers-only answer, the headers).
    trailers: Option<HeaderMap>,
    /// Whether the body ended.
    ended: bool,
}

impl ResponseReader {
    /// Reads `response`'s messages, none larger than `max` bytes. A
    /// response that is not gRPC, or that carries a failed status in its
    /// headers, is that error.
    pub fn new(response: http::Response<Body>, max: usize) -> Result<Self, Status> {
        let (parts, body) = response.into_parts();
        let status = Status::from_header_map(&parts.headers);
        if let Some(s) = &status
            && s.code() != Code::Ok
        {
            return Err(s.clone());
        }
        if parts.status != http::StatusCode::OK {
            return Err(http_failure(parts.status));
        }
        Ok(ResponseReader {
            body,
            buf: Segments::default(),
            max,
            trailers: status.is_some().then_some(parts.headers),
            ended: false,
        })
    }

    /// The next message; `None` at the end of a stream whose status is OK,
    /// the status otherwise.
    pub async fn message(&mut self) -> Result<Option<Frame>, Status> {
        poll_fn(|cx| self.poll_message(cx)).await
    }

    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Frame>, Status>> {
        loop {
            if let Some(len) = self.complete()? {
                let _prefix = self.buf.split_to(PREFIX_BYTES);
                let msg = self.buf.split_to(len);
                return Poll::Ready(parse(msg).map(Some));
            }
            if self.ended {
                return Poll::Ready(self.end());
            }
            match ready!(Pin::new(&mut self.body).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => self.buf.push(data),
                    Err(frame) => {
                        if let Ok(t) = frame.into_trailers() {
                            self.trailers = Some(t);
                        }
                    }
                },
                Some(Err(status)) => return Poll::Ready(Err(status)),
                None => self.ended = true,
            }
        }
    }

    /// The length of the next message if all of it is here.
    fn complete(&self) -> Result<Option<usize>, Status> {
        let Some(prefix) = self.buf.peek::<PREFIX_BYTES>() else {
            return Ok(None);
        };
        if prefix[0] != 0 {
            return Err(Status::internal(
                "protocol error: a compressed message, but no compression was agreed",
            ));
        }
        let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        if len > self.max {
            return Err(Status::out_of_range(format!(
                "a message of {len} bytes is over the limit of {} bytes",
                self.max
            )));
        }
        Ok((self.buf.remaining() >= PREFIX_BYTES + len).then_some(len))
    }

    /// The end of the body: OK only with every message whole and an OK
    /// status in the trailers.
    fn end(&self) -> Result<Option<Frame>, Status> {
        if self.buf.remaining() > 0 {
            return Err(Status::internal(
                "protocol error: the stream ended inside a message",
            ));
        }
        match self.trailers.as_ref().and_then(Status::from_header_map) {
            Some(s) if s.code() == Code::Ok => Ok(None),
            Some(s) => Err(s),
            None => Err(Status::unknown(
                "protocol error: the stream ended without a grpc-status",
            )),
        }
    }
}

/// A response that is not a gRPC answer: its HTTP status as gRPC's mapping
/// reads it.
fn http_failure(status: http::StatusCode) -> Status {
    let code = match status {
        http::StatusCode::BAD_REQUEST => Code::Internal,
        http::StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        http::StatusCode::FORBIDDEN => Code::PermissionDenied,
        http::StatusCode::NOT_FOUND => Code::Unimplemented,
        http::StatusCode::TOO_MANY_REQUESTS
        | http::StatusCode::BAD_GATEWAY
        | http::StatusCode::SERVICE_UNAVAILABLE
        | http::StatusCode::GATEWAY_TIMEOUT => Code::Unavailable,
        _ => Code::Unknown,
    };
    Status::new(code, format!("the server answered HTTP {status}"))
}

/// Parses one message: `data` as slices, every other field copied (a few
/// bytes) and decoded by prost.
fn parse(mut msg: Segments) -> Result<Frame, Status> {
    let invalid = |e: prost::DecodeError| Status::internal(format!("invalid message: {e}"));
    let mut rest = BytesMut::new();
    let mut data = Vec::new();
    while msg.has_remaining() {
        let (field, wire) = decode_key(&mut msg).map_err(invalid)?;
        if field == DATA_FIELD && wire == WireType::LengthDelimited {
            let n = length(&mut msg)?;
            // A repeated scalar field: the last one counts.
            data = msg.split_to(n).parts.into();
            continue;
        }
        encode_key(field, wire, &mut rest);
        let n = match wire {
            WireType::Varint => {
                encode_varint(decode_varint(&mut msg).map_err(invalid)?, &mut rest);
                0
            }
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => {
                let n = length(&mut msg)?;
                encode_varint(n as u64, &mut rest);
                n
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(Status::internal("invalid message: groups are not used"));
            }
        };
        if n > msg.remaining() {
            return Err(Status::internal(
                "invalid message: a field runs past its end",
            ));
        }
        rest.put((&mut msg).take(n));
    }
    let head = ReadChunkResponse::decode(rest.freeze()).map_err(invalid)?;
    Ok(Frame {
        header: head.header,
        data,
    })
}

/// A length-delimited field's length, checked against what is left.
fn length(msg: &mut Segments) -> Result<usize, Status> {
    let n = decode_varint(msg).map_err(|e| Status::internal(format!("invalid message: {e}")))?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n <= msg.remaining())
        .ok_or_else(|| Status::internal("invalid message: a field runs past its end"))
}
