//! Hostile ids — path traversal, empty, too long, NUL, non-ASCII, control
//! characters — in every field that takes a chunk id or a server id.

use keel_proto::v1::{
    AllocateChunkRequest, ChunkReplica, CopyChunkRequest, HeartbeatRequest, ReadChunkRequest,
    ReportCorruptionRequest,
};
use keel_tests::cs::header;
use keel_tests::master::mv;
use tonic::Code;

use crate::call::{Call, Env};
use crate::{Expect, Row, row};

/// Ids no chunk or server may have.
pub fn bad_ids() -> Vec<String> {
    let mut ids: Vec<String> = [
        "",
        ".",
        "..",
        "../x",
        "../../../../etc/passwd",
        "/etc/passwd",
        "a/b",
        "a\\b",
        ".hidden",
        "a\0b",
        "\0",
        "é",
        "ch 1",
        "ch\n1",
        "tab\t",
        "%2e%2e%2f",
        "a:b",
        "*",
        "ch\u{202e}",
        "\u{ff0e}\u{ff0e}",
        "chunks/../../LOCK",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    ids.push("x".repeat(129));
    ids.push("x".repeat(200));
    ids.push("é".repeat(100));
    ids
}

/// A short label for an id (long ids are cut).
pub fn label(id: &str) -> String {
    let l = format!("{id:?}");
    match l.char_indices().nth(24) {
        Some((i, _)) => format!("{}…({} bytes)", &l[..i], id.len()),
        None => l,
    }
}

/// What `cs1` really holds, as its heartbeat would say, plus `extra`.
pub fn cs1_report(env: &Env, extra: Vec<ChunkReplica>) -> HeartbeatRequest {
    let good = crate::good();
    let mut chunks = vec![ChunkReplica {
        chunk: "good".into(),
        size: good.len() as u64,
        crc32c: crc32c::crc32c(&good),
        replication: 2,
        reads: 0,
        ..Default::default()
    }];
    chunks.extend(extra);
    HeartbeatRequest {
        id: "cs1".into(),
        address: env.cs("cs1"),
        capacity_bytes: 1 << 30,
        used_bytes: good.len() as u64,
        full_report: true,
        chunk_count: chunks.len() as u64,
        chunks,
        ..Default::default()
    }
}

/// Every bad id in every chunk-id field.
pub fn chunk_id_rows(env: &Env) -> Vec<Row> {
    let bad = || Expect::Refused(&[Code::InvalidArgument], "chunk id");
    let mut rows = vec![];
    for id in bad_ids() {
        let l = label(&id);
        let replica = ChunkReplica {
            chunk: id.clone(),
            size: 1,
            ..Default::default()
        };
        let delta = HeartbeatRequest {
            full_report: false,
            removed: vec![id.clone()],
            chunks: vec![],
            ..cs1_report(env, vec![])
        };
        rows.extend([
            row(format!("LocateChunk {l}"), Call::Locate(id.clone()), bad()),
            row(
                format!("AllocateChunk {l}"),
                Call::Allocate(AllocateChunkRequest {
                    chunk: id.clone(),
                    size: 1,
                    replication: 1,
                    on: vec![],
                }),
                bad(),
            ),
            row(
                format!("ReportCorruption chunk {l}"),
                Call::Corruption(ReportCorruptionRequest {
                    chunk: id.clone(),
                    server: "cs1".into(),
                    detail: "hostile".into(),
                }),
                bad(),
            ),
            row(
                format!("RebalanceExecute chunk {l}"),
                Call::Execute(vec![mv(&id, "cs1", "cs3")]),
                Expect::Rejected("bad chunk id"),
            ),
            row(
                format!("Heartbeat full report with chunk {l}"),
                Call::Heartbeat(cs1_report(env, vec![replica])),
                Expect::RefusedAlone("chunk id"),
            ),
            row(
                format!("Heartbeat delta removing {l}"),
                Call::Heartbeat(delta),
                Expect::RefusedAlone("chunk id"),
            ),
            row(
                format!("WriteChunk {l}"),
                Call::Write {
                    on: "cs1",
                    header: Some(header(&id, b"data", 1)),
                    frames: vec![b"data".to_vec()],
                },
                bad(),
            ),
            row(
                format!("ReadChunk {l}"),
                Call::Read(ReadChunkRequest {
                    chunk: id.clone(),
                    migration: false,
                }),
                bad(),
            ),
            row(
                format!("ReadChunk (migration) {l}"),
                Call::Read(ReadChunkRequest {
                    chunk: id.clone(),
                    migration: true,
                }),
                bad(),
            ),
            row(
                format!("CopyChunk {l}"),
                Call::Copy {
                    on: "cs3",
                    req: CopyChunkRequest {
                        chunk: id.clone(),
                        source_id: "cs1".into(),
                        source_address: env.cs("cs1"),
                        ..Default::default()
                    },
                },
                bad(),
            ),
            row(format!("DeleteChunk {l}"), Call::Delete(id.clone()), bad()),
            row(format!("StatChunk {l}"), Call::Stat(id.clone()), bad()),
        ]);
    }
    rows
}

/// Every bad id in every server-id field.
pub fn server_id_rows(env: &Env) -> Vec<Row> {
    let bad = || Expect::Refused(&[Code::InvalidArgument], "server id");
    let mut rows = vec![];
    for id in bad_ids() {
        let l = label(&id);
        let hb = HeartbeatRequest {
            id: id.clone(),
            ..cs1_report(env, vec![])
        };
        if !id.is_empty() {
            // An empty source id is allowed (the address names the source);
            // with a good id this copy would succeed.
            let req = CopyChunkRequest {
                chunk: "solo".into(),
                source_id: id.clone(),
                source_address: env.cs("cs3"),
                ..Default::default()
            };
            rows.push(row(
                format!("CopyChunk from source id {l}"),
                Call::Copy { on: "cs1", req },
                bad(),
            ));
        }
        rows.extend([
            row(format!("Heartbeat from {l}"), Call::Heartbeat(hb), bad()),
            row(
                format!("AllocateChunk on {l}"),
                Call::Allocate(AllocateChunkRequest {
                    chunk: "fresh".into(),
                    size: 1,
                    replication: 1,
                    on: vec![id.clone()],
                }),
                bad(),
            ),
            row(
                format!("ReportCorruption server {l}"),
                Call::Corruption(ReportCorruptionRequest {
                    chunk: "good".into(),
                    server: id.clone(),
                    detail: String::new(),
                }),
                bad(),
            ),
            row(
                format!("RebalanceExecute from {l}"),
                Call::Execute(vec![mv("good", &id, "cs3")]),
                Expect::Rejected(""),
            ),
            row(
                format!("RebalanceExecute to {l}"),
                Call::Execute(vec![mv("solo", "cs3", &id)]),
                Expect::Rejected(""),
            ),
        ]);
    }
    rows
}
