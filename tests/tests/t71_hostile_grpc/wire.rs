//! Bytes no well-behaved client sends, to every method of both services:
//! a message above the size limit, bytes that are not protobuf, a field of
//! the wrong wire type, invalid UTF-8 in a string, and a write stream with
//! a second header.

use keel_proto::v1::{ChunkHeader, WriteChunkRequest};
use keel_tests::faults::Shape;
use prost::Message;
use tonic::Code;

use crate::call::{Call, Daemon};
use crate::{Expect, Row, row};

/// Every method: daemon, path, shape, and whether field 1 of its request is
/// a string (`Some(true)`), a message holding a string first (`Some(false)`),
/// or absent (`None`).
const METHODS: [(Daemon, &str, Shape, Option<bool>); 23] = [
    (
        Daemon::Master,
        "/keel.v1.Master/Heartbeat",
        Shape::Unary,
        Some(true),
    ),
    (
        Daemon::Master,
        "/keel.v1.Master/ListServers",
        Shape::Unary,
        None,
    ),
    (
        Daemon::Master,
        "/keel.v1.Master/LocateChunk",
        Shape::Unary,
        Some(true),
    ),
    (
        Daemon::Master,
        "/keel.v1.Master/AllocateChunk",
        Shape::Unary,
        Some(true),
    ),
    (
        Daemon::Master,
        "/keel.v1.Master/RebalanceCheck",
        Shape::Unary,
        None,
    ),
    (
        Daemon::Master,
        "/keel.v1.Master/RebalanceExecute",
        Shape::Unary,
        Some(false),
    ),
    (
        Daemon::Master,
        "/keel.v1.Master/RebalancePlan",
        Shape::Unary,
        None,
    ),
    (
        Daemon::Master,
        "/keel.v1.Master/RebalanceRun",
        Shape::Unary,
        None,
    ),
    (
        Daemon::Master,
        "/keel.v1.Master/RebalanceStatus",
        Shape::Unary,
        None,
    ),
    (
        Daemon::Master,
        "/keel.v1.Master/RebalancePause",
        Shape::Unary,
        None,
    ),
    (
        Daemon::Master,
        "/keel.v1.Master/RebalanceResume",
        Shape::Unary,
        None,
    ),
    (
        Daemon::Master,
        "/keel.v1.Master/ReportCorruption",
        Shape::Unary,
        Some(true),
    ),
    (
        Daemon::Master,
        "/keel.v1.Master/DrainServer",
        Shape::Unary,
        Some(true),
    ),
    (
        Daemon::Master,
        "/keel.v1.Master/UndrainServer",
        Shape::Unary,
        Some(true),
    ),
    (
        Daemon::Master,
        "/keel.v1.Master/ExplainChunk",
        Shape::Unary,
        Some(true),
    ),
    (
        Daemon::ChunkServer,
        "/keel.v1.ChunkServer/VerifyChunk",
        Shape::Unary,
        Some(true),
    ),
    (
        Daemon::ChunkServer,
        "/keel.v1.ChunkServer/SetDrain",
        Shape::Unary,
        None,
    ),
    (
        Daemon::ChunkServer,
        "/keel.v1.ChunkServer/WriteChunk",
        Shape::ClientStream,
        Some(false),
    ),
    (
        Daemon::ChunkServer,
        "/keel.v1.ChunkServer/ReadChunk",
        Shape::ServerStream,
        Some(true),
    ),
    (
        Daemon::ChunkServer,
        "/keel.v1.ChunkServer/CopyChunk",
        Shape::Unary,
        Some(true),
    ),
    (
        Daemon::ChunkServer,
        "/keel.v1.ChunkServer/DeleteChunk",
        Shape::Unary,
        Some(true),
    ),
    (
        Daemon::ChunkServer,
        "/keel.v1.ChunkServer/StatChunk",
        Shape::Unary,
        Some(true),
    ),
    (
        Daemon::ChunkServer,
        "/keel.v1.ChunkServer/ServerStatus",
        Shape::Unary,
        None,
    ),
];

fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Field `no` with wire type LEN holding `bytes`.
fn len_field(no: u64, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    varint(no << 3 | 2, &mut out);
    varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

/// The messages of an oversized call: one unknown field just above the
/// limit (after a valid header for `WriteChunk`, whose payload is data).
pub fn oversized(shape: Shape) -> Vec<Vec<u8>> {
    let big = vec![0x42u8; keel_proto::MAX_MESSAGE_BYTES + 1];
    match shape {
        Shape::ClientStream => {
            let head = WriteChunkRequest {
                header: Some(ChunkHeader {
                    chunk: "fresh".into(),
                    size: big.len() as u64,
                    crc32c: crc32c::crc32c(&big),
                    replication: 1,
                }),
                data: Default::default(),
                capability: None,
            };
            vec![head.encode_to_vec(), len_field(2, &big)]
        }
        _ => vec![len_field(99, &big)],
    }
}

/// Rows for every method.
pub fn rows() -> Vec<Row> {
    let too_big = || Expect::Refused(&[Code::OutOfRange, Code::ResourceExhausted], "");
    let undecodable = || Expect::Refused(&[Code::Internal], "decode");
    let mut rows = vec![];
    for (to, path, shape, field1) in METHODS {
        let raw = |messages: Vec<Vec<u8>>| Call::Raw {
            to,
            path,
            shape,
            messages,
        };
        rows.push(row(
            format!("{path}: one message above the limit"),
            Call::Oversized { to, path, shape },
            too_big(),
        ));
        rows.push(row(
            format!("{path}: bytes that are not protobuf"),
            raw(vec![vec![0xff; 11]]),
            undecodable(),
        ));
        rows.push(row(
            format!("{path}: a truncated field"),
            raw(vec![vec![0x0a, 0x7f, b'x']]),
            undecodable(),
        ));
        let Some(plain) = field1 else { continue };
        // Field 1 as a varint where a string or message is due.
        rows.push(row(
            format!("{path}: field 1 of the wrong wire type"),
            raw(vec![vec![0x08, 0x01]]),
            undecodable(),
        ));
        let bad_utf8 = len_field(1, &[0xff, 0xfe, b'x']);
        let msg = if plain {
            bad_utf8
        } else {
            len_field(1, &bad_utf8)
        };
        rows.push(row(
            format!("{path}: invalid UTF-8 in a string"),
            raw(vec![msg]),
            undecodable(),
        ));
    }
    rows.extend(redundancy_rows());
    let head = |chunk: &str| WriteChunkRequest {
        header: Some(ChunkHeader {
            chunk: chunk.into(),
            size: 4,
            crc32c: crc32c::crc32c(b"data"),
            replication: 1,
        }),
        data: Default::default(),
        capability: None,
    };
    let data = WriteChunkRequest {
        header: None,
        data: b"data".to_vec().into(),
        capability: None,
    };
    rows.push(row(
        "WriteChunk with a second header",
        Call::Raw {
            to: Daemon::ChunkServer,
            path: "/keel.v1.ChunkServer/WriteChunk",
            shape: Shape::ClientStream,
            messages: vec![
                head("fresh").encode_to_vec(),
                head("other").encode_to_vec(),
                data.encode_to_vec(),
            ],
        },
        Expect::Refused(&[Code::InvalidArgument], "only come in the first message"),
    ));
    rows
}

/// The drain, explain and verify calls with ids they must refuse.
fn redundancy_rows() -> Vec<Row> {
    use keel_proto::v1::{DrainServerRequest, UndrainServerRequest, VerifyChunkRequest};
    let unary = |to, path, msg: Vec<u8>| Call::Raw {
        to,
        path,
        shape: Shape::Unary,
        messages: vec![msg],
    };
    let invalid = |word| Expect::Refused(&[Code::InvalidArgument], word);
    let drain = |s: &str| DrainServerRequest { server: s.into() }.encode_to_vec();
    let undrain = |s: &str| UndrainServerRequest { server: s.into() }.encode_to_vec();
    let verify = |c: &str| VerifyChunkRequest { chunk: c.into() }.encode_to_vec();
    let master = Daemon::Master;
    vec![
        row(
            "DrainServer of an unknown server",
            unary(master, "/keel.v1.Master/DrainServer", drain("cs9")),
            invalid("not known"),
        ),
        row(
            "DrainServer with a path-traversal id",
            unary(master, "/keel.v1.Master/DrainServer", drain("../cs1")),
            invalid("id"),
        ),
        row(
            "UndrainServer with an empty id",
            unary(master, "/keel.v1.Master/UndrainServer", undrain("")),
            invalid("id"),
        ),
        row(
            "ExplainChunk with a NUL in the id",
            unary(
                master,
                "/keel.v1.Master/ExplainChunk",
                keel_proto::v1::ExplainChunkRequest {
                    chunk: "a\0b".into(),
                }
                .encode_to_vec(),
            ),
            invalid("chunk id"),
        ),
        row(
            "VerifyChunk of an unknown chunk",
            unary(
                Daemon::ChunkServer,
                "/keel.v1.ChunkServer/VerifyChunk",
                verify("nope"),
            ),
            Expect::Refused(&[Code::NotFound], "nope"),
        ),
        row(
            "VerifyChunk with a path-traversal id",
            unary(
                Daemon::ChunkServer,
                "/keel.v1.ChunkServer/VerifyChunk",
                verify("../good"),
            ),
            invalid("chunk id"),
        ),
    ]
}
