//! The frames against prost's and tonic's own encoding, split every way
//! HTTP/2 might split them.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body as _, Frame as BodyFrame};
use prost::Message;
use tonic::body::Body;
use tonic::{Code, Status};

use super::*;
use crate::v1::{ChunkHeader, ReadChunkResponse};

/// A body that yields the given frames, then ends.
struct Frames(VecDeque<BodyFrame<Bytes>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<BodyFrame<Bytes>, Status>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
}

fn header() -> ReadChunkResponse {
    ReadChunkResponse {
        header: Some(ChunkHeader {
            chunk: "c1".into(),
            size: 300_000,
            crc32c: 0xdead_beef,
            replication: 3,
        }),
        data: Bytes::new(),
    }
}

fn data(n: usize, seed: u8) -> ReadChunkResponse {
    let bytes: Vec<u8> = (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
    ReadChunkResponse {
        header: None,
        data: Bytes::from(bytes),
    }
}

/// tonic's encoding of one message: prefix, then prost's bytes.
fn tonic_encoding(msg: &ReadChunkResponse) -> Vec<u8> {
    let body = msg.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn ok_trailers() -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", "0".parse().expect("should succeed"));
    t
}

fn response(frames: Vec<BodyFrame<Bytes>>) -> http::Response<Body> {
    http::Response::new(Body::new(Frames(frames.into())))
}

/// Every message of a reader, or its error.
async fn read_all(mut reader: ResponseReader) -> Result<Vec<Frame>, Status> {
    let mut out = Vec::new();
    while let Some(f) = reader.message().await? {
        out.push(f);
    }
    Ok(out)
}

fn joined(f: &Frame) -> Vec<u8> {
    f.data.iter().flat_map(|b| b.iter().copied()).collect()
}

#[test]
fn two_pieces_are_tonics_encoding() {
    for msg in [header(), data(1, 0), data(200_000, 7)] {
        let (prefix, payload) = encode_response(msg.clone()).expect("should succeed");
        let mut wire = prefix.to_vec();
        wire.extend_from_slice(&payload);
        assert_eq!(wire, tonic_encoding(&msg));
        assert!(prefix.len() < 64, "the prefix is a few bytes");
    }
}

#[tokio::test]
async fn messages_split_anywhere_decode_whole_and_without_copies() {
    let msgs = [header(), data(100_000, 1), data(70_001, 2), data(3, 3)];
    let wire: Bytes = msgs
        .iter()
        .flat_map(tonic_encoding)
        .collect::<Vec<u8>>()
        .into();
    for step in [1, 2, 5, 7, 4096, 65_536, 300_000] {
        let frames = wire
            .chunks(step)
            .map(|c| BodyFrame::data(wire.slice_ref(c)))
            .chain([BodyFrame::trailers(ok_trailers())])
            .collect();
        let reader = ResponseReader::new(response(frames), 1 << 20).expect("should succeed");
        let got = read_all(reader).await.expect("should succeed");
        assert_eq!(got.len(), msgs.len(), "step {step}");
        for (f, m) in got.iter().zip(&msgs) {
            assert_eq!(f.header, m.header, "step {step}");
            assert_eq!(joined(f), m.data.to_vec(), "step {step}");
            // Tiny pieces are copied together on purpose (`SMALL_PIECE`).
            if step >= 4096 {
                for slice in &f.data {
                    let inside = wire.as_ptr_range();
                    assert!(inside.contains(&slice.as_ptr()), "payload was copied");
                }
            }
        }
    }
}

#[tokio::test]
async fn the_body_round_trips_through_the_reader() {
    let msgs = vec![header(), data(200_000, 4), data(10, 5)];
    let mut body = ResponseBody::new(tokio_stream::iter(msgs.clone().into_iter().map(Ok)));
    let mut frames = Vec::new();
    while let Some(f) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        frames.push(f.expect("should succeed"));
    }
    assert!(body.is_end_stream());
    // Each data message is its prefix and its payload, as given.
    assert_eq!(frames.len(), 1 + 2 * 2 + 1);
    let payload = frames[2].data_ref().expect("should succeed");
    assert_eq!(
        payload.as_ptr(),
        msgs[1].data.as_ptr(),
        "payload was copied"
    );
    let reader = ResponseReader::new(response(frames), 1 << 20).expect("should succeed");
    let got = read_all(reader).await.expect("should succeed");
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].header, msgs[0].header);
    assert_eq!(joined(&got[1]), msgs[1].data.to_vec());
    assert_eq!(joined(&got[2]), msgs[2].data.to_vec());
}

#[tokio::test]
async fn a_failed_stream_ends_with_its_status() {
    let items = vec![Ok(header()), Err(Status::data_loss("checksum mismatch"))];
    let mut body = ResponseBody::new(tokio_stream::iter(items));
    let mut frames = Vec::new();
    while let Some(f) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        frames.push(f.expect("should succeed"));
    }
    let mut reader = ResponseReader::new(response(frames), 1 << 20).expect("should succeed");
    assert!(
        reader
            .message()
            .await
            .expect("should succeed")
            .expect("should succeed")
            .header
            .is_some()
    );
    let err = reader.message().await.expect_err("should fail");
    assert_eq!(err.code(), Code::DataLoss);
    assert_eq!(err.message(), "checksum mismatch");
}

#[tokio::test]
async fn broken_streams_are_errors() {
    let whole = Bytes::from(tonic_encoding(&data(1000, 9)));
    let cases: Vec<(Vec<BodyFrame<Bytes>>, Code)> = vec![
        // No trailers at all.
        (vec![BodyFrame::data(whole.clone())], Code::Unknown),
        // Cut inside a message.
        (
            vec![
                BodyFrame::data(whole.slice(..500)),
                BodyFrame::trailers(ok_trailers()),
            ],
            Code::Internal,
        ),
        // A compressed flag nobody agreed on.
        (
            vec![BodyFrame::data({
                let mut b = BytesMut::from(&whole[..]);
                b[0] = 1;
                b.freeze()
            })],
            Code::Internal,
        ),
        // A message over the limit.
        (
            vec![BodyFrame::data(Bytes::from_static(&[0, 0, 1, 0, 0]))],
            Code::OutOfRange,
        ),
        // Protobuf that does not parse (a field longer than the message).
        (
            vec![
                BodyFrame::data(Bytes::from_static(&[0, 0, 0, 0, 2, 0x12, 9])),
                BodyFrame::trailers(ok_trailers()),
            ],
            Code::Internal,
        ),
    ];
    for (i, (frames, code)) in cases.into_iter().enumerate() {
        let reader = ResponseReader::new(response(frames), 4096).expect("should succeed");
        let err = read_all(reader).await.expect_err("should fail");
        assert_eq!(err.code(), code, "case {i}: {err:?}");
    }
}

#[test]
fn a_trailers_only_refusal_is_its_status() {
    let r = Status::not_found("chunk c1 not found").into_http::<Body>();
    let err = ResponseReader::new(r, 4096).err().expect("should succeed");
    assert_eq!(err.code(), Code::NotFound);
    let mut r = response(vec![]);
    *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    assert_eq!(
        ResponseReader::new(r, 4096)
            .err()
            .expect("should succeed")
            .code(),
        Code::Unavailable
    );
}

#[tokio::test]
async fn unknown_fields_are_skipped_and_the_header_still_parses() {
    let mut body = header().encode_to_vec();
    // Field 9, varint 150: not in the message, skipped by prost.
    body.extend_from_slice(&[0x48, 0x96, 0x01]);
    let mut wire = vec![0u8];
    wire.extend_from_slice(&(body.len() as u32).to_be_bytes());
    wire.extend_from_slice(&body);
    let frames = vec![
        BodyFrame::data(Bytes::from(wire)),
        BodyFrame::trailers(ok_trailers()),
    ];
    let got = read_all(ResponseReader::new(response(frames), 4096).expect("should succeed"))
        .await
        .expect("should succeed");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header, header().header);
    assert!(got[0].is_empty());
}

#[tokio::test]
async fn tiny_frames_are_gathered_not_kept_one_slice_per_byte() {
    let msg = data(100_000, 6);
    let wire = Bytes::from(tonic_encoding(&msg));
    let frames = wire
        .chunks(1)
        .map(|c| BodyFrame::data(wire.slice_ref(c)))
        .chain([BodyFrame::trailers(ok_trailers())])
        .collect();
    let reader = ResponseReader::new(response(frames), 1 << 20).expect("should succeed");
    let got = read_all(reader).await.expect("should succeed");
    assert_eq!(got.len(), 1);
    assert_eq!(joined(&got[0]), msg.data.to_vec());
    assert!(
        got[0].data.len() <= 100_000 / 4096 + 2,
        "{} slices for 100,000 bytes",
        got[0].data.len()
    );
}
