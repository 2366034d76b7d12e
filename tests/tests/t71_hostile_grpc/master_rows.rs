//! The master's own hostile inputs: heartbeats with bad fields, unknown
//! chunks and servers, absurd sizes and replication factors, and
//! duplicated, contradictory or huge lists of moves.

use keel_proto::v1::{
    AllocateChunkRequest, ChunkReplica, HeartbeatRequest, Move, ReportCorruptionRequest,
};
use keel_tests::master::mv;
use tonic::Code;

use crate::call::{Call, Env};
use crate::ids::cs1_report;
use crate::{Expect, Row, row};

const INVALID: &[Code] = &[Code::InvalidArgument];

fn alloc(chunk: &str, size: u64, replication: u32, on: &[&str]) -> Call {
    Call::Allocate(AllocateChunkRequest {
        chunk: chunk.into(),
        size,
        replication,
        on: on.iter().map(|s| s.to_string()).collect(),
    })
}

fn corruption(chunk: &str, server: &str, detail: String) -> Call {
    Call::Corruption(ReportCorruptionRequest {
        chunk: chunk.into(),
        server: server.into(),
        detail,
    })
}

/// Heartbeats from `cs1` that are wrong in one field each.
pub fn heartbeat_rows(env: &Env) -> Vec<Row> {
    let base = || cs1_report(env, vec![]);
    let with = |f: &dyn Fn(&mut HeartbeatRequest)| {
        let mut hb = base();
        f(&mut hb);
        Call::Heartbeat(hb)
    };
    let mut rows = vec![];
    for (what, address, needle) in [
        ("empty address", "", "empty"),
        ("blank address", "   ", "empty"),
        ("ftp address", "ftp://127.0.0.1:1", "scheme"),
        ("file address", "file:///etc/passwd", "usable"),
        ("address without host", "http://", "usable"),
        ("address with spaces", "not a url", "does not parse"),
        ("address with NUL", "http://127.0.0.1\0:1", "usable"),
        ("unclosed IPv6 address", "http://[::1", "usable"),
    ] {
        rows.push(row(
            format!("Heartbeat with {what}"),
            with(&|hb| hb.address = address.into()),
            Expect::Refused(INVALID, needle),
        ));
    }
    let huge = |size: u64| ChunkReplica {
        chunk: "huge".into(),
        size,
        ..Default::default()
    };
    for size in [u64::MAX, u64::MAX / 2 + 1, (1 << 40) + 1] {
        rows.push(row(
            format!("Heartbeat with a chunk of {size} bytes"),
            with(&|hb| {
                hb.chunks.push(huge(size));
                hb.chunk_count += 1;
            }),
            Expect::RefusedAlone("largest supported"),
        ));
    }
    rows.extend([
        row(
            "Heartbeat listing a chunk twice",
            with(&|hb| {
                let again = hb.chunks[0].clone();
                hb.chunks.push(again);
            }),
            Expect::Refused(INVALID, "more than once"),
        ),
        row(
            "Heartbeat delta adding and removing one chunk",
            with(&|hb| {
                hb.full_report = false;
                hb.removed.push("good".into());
            }),
            Expect::Refused(INVALID, "more than once"),
        ),
        row(
            "Heartbeat removing a chunk twice",
            with(&|hb| {
                hb.full_report = false;
                hb.chunks.clear();
                hb.removed = vec!["good".into(), "good".into()];
            }),
            Expect::Refused(INVALID, "more than once"),
        ),
    ]);
    rows
}

/// Unknown names, absurd sizes and replication factors.
pub fn lookup_rows() -> Vec<Row> {
    let not_found = |n| Expect::Refused(&[Code::NotFound], n);
    vec![
        row(
            "LocateChunk unknown",
            Call::Locate("nope".into()),
            not_found("not known"),
        ),
        row(
            "ReportCorruption of an unknown chunk",
            corruption("nope", "cs1", "x".into()),
            not_found("not known"),
        ),
        row(
            "ReportCorruption on an unknown server",
            corruption("good", "cs9", "x".into()),
            Expect::Refused(INVALID, "not known"),
        ),
        row(
            "ReportCorruption on a server without the chunk, 1 MiB of detail",
            corruption("solo", "cs1", "d".repeat(1 << 20)),
            Expect::Refused(&[Code::ResourceExhausted], "over this method's limit"),
        ),
        row(
            "ReportCorruption on a server without the chunk, 32 KiB of detail",
            corruption("solo", "cs1", "d".repeat(32 << 10)),
            not_found("holds no replica"),
        ),
        row(
            "AllocateChunk of u64::MAX bytes",
            alloc("fresh", u64::MAX, 1, &[]),
            Expect::Refused(INVALID, "largest supported"),
        ),
        row(
            "AllocateChunk of 1 TiB + 1 bytes",
            alloc("fresh", (1 << 40) + 1, 1, &[]),
            Expect::Refused(INVALID, "largest supported"),
        ),
        row(
            "AllocateChunk of 1 TiB (no room anywhere)",
            alloc("fresh", 1 << 40, 1, &[]),
            Expect::Refused(&[Code::ResourceExhausted], "no room"),
        ),
        row(
            "AllocateChunk of u64::MAX bytes on cs1",
            alloc("fresh", u64::MAX, 1, &["cs1"]),
            Expect::Refused(INVALID, "largest supported"),
        ),
        row(
            "AllocateChunk with replication 16, the most, on three servers",
            alloc("fresh", 1, 16, &[]),
            Expect::Clamped(3),
        ),
        row(
            "AllocateChunk with replication 17",
            alloc("fresh", 1, 17, &[]),
            Expect::Refused(INVALID, "largest supported"),
        ),
        row(
            "AllocateChunk with replication u32::MAX",
            alloc("fresh", 1, u32::MAX, &[]),
            Expect::Refused(INVALID, "largest supported"),
        ),
        row(
            "AllocateChunk with replication 5 pinned on cs1",
            alloc("fresh", 1, 5, &["cs1"]),
            Expect::Refused(INVALID, "does not match"),
        ),
        row(
            "AllocateChunk on an unknown server",
            alloc("fresh", 1, 0, &["cs9"]),
            Expect::Refused(INVALID, "not known"),
        ),
        row(
            "AllocateChunk on known and unknown servers",
            alloc("fresh", 1, 0, &["cs1", "cs2", "cs3", "cs9"]),
            Expect::Refused(INVALID, "not known"),
        ),
        row(
            "AllocateChunk on one server twice",
            alloc("fresh", 1, 2, &["cs1", "cs1"]),
            Expect::Refused(INVALID, "more than once"),
        ),
        row(
            "AllocateChunk of an existing chunk",
            alloc("good", 1, 1, &[]),
            Expect::Refused(&[Code::AlreadyExists], "already exists"),
        ),
    ]
}

/// Moves that must all be rejected, alone or together.
pub fn move_rows() -> Vec<Row> {
    let many_unknown: Vec<Move> = (0..10_000)
        .map(|i| mv(&format!("nope-{i}"), "cs1", "cs2"))
        .collect();
    let many_same = vec![mv("solo", "cs3", "cs1"); 10_000];
    let cases = [
        (
            "no moves",
            Call::Execute(vec![]),
            Expect::Refused(INVALID, "lists no moves"),
        ),
        (
            "the same move twice",
            Call::Execute(vec![mv("solo", "cs3", "cs1"); 2]),
            Expect::Rejected("listed 2 times"),
        ),
        (
            "one chunk to two targets",
            Call::Execute(vec![mv("solo", "cs3", "cs1"), mv("solo", "cs3", "cs2")]),
            Expect::Rejected("listed 2 times"),
        ),
        (
            "a move and its reverse",
            Call::Execute(vec![mv("solo", "cs3", "cs1"), mv("solo", "cs1", "cs3")]),
            Expect::Rejected("listed 2 times"),
        ),
        (
            "one chunk from both holders",
            Call::Execute(vec![mv("good", "cs1", "cs3"), mv("good", "cs2", "cs3")]),
            Expect::Rejected("listed 2 times"),
        ),
        (
            "an unknown chunk",
            Call::Execute(vec![mv("nope", "cs1", "cs2")]),
            Expect::Rejected("unknown chunk"),
        ),
        (
            "an unknown source",
            Call::Execute(vec![mv("solo", "cs9", "cs1")]),
            Expect::Rejected("unknown server"),
        ),
        (
            "an unknown target",
            Call::Execute(vec![mv("solo", "cs3", "cs9")]),
            Expect::Rejected("unknown server"),
        ),
        (
            "source and target the same",
            Call::Execute(vec![mv("solo", "cs3", "cs3")]),
            Expect::Rejected("same server"),
        ),
        (
            "a target that holds the chunk",
            Call::Execute(vec![mv("good", "cs1", "cs2")]),
            Expect::Rejected("already holds"),
        ),
        (
            "a source without the chunk",
            Call::Execute(vec![mv("solo", "cs1", "cs2")]),
            Expect::Rejected("is not on cs1"),
        ),
        (
            "an empty source",
            Call::Execute(vec![mv("solo", "", "cs1")]),
            Expect::Rejected("from is empty"),
        ),
        (
            "an empty target",
            Call::Execute(vec![mv("solo", "cs3", "")]),
            Expect::Rejected("to is empty"),
        ),
        (
            "10000 unknown chunks",
            Call::Execute(many_unknown),
            Expect::Rejected("unknown chunk"),
        ),
        (
            "one move 10000 times",
            Call::Execute(many_same),
            Expect::Rejected("listed 10000 times"),
        ),
    ];
    cases
        .into_iter()
        .map(|(what, call, expect)| row(format!("RebalanceExecute with {what}"), call, expect))
        .collect()
}
