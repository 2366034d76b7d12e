//! The chunk server's hostile inputs: write streams that lie about their
//! size or checksum, break off or carry no header; copies from bogus
//! sources or with impossible expectations; reads, stats and deletes of
//! chunks that are not there.

use keel_proto::v1::{ChunkHeader, CopyChunkRequest, ReadChunkRequest};
use keel_tests::cs::header;
use tonic::Code;

use crate::call::{Call, Env};
use crate::{Expect, Row, row};

const INVALID: &[Code] = &[Code::InvalidArgument];

fn hdr(size: u64, crc32c: u32, replication: u32) -> ChunkHeader {
    ChunkHeader {
        chunk: "fresh".into(),
        size,
        crc32c,
        replication,
    }
}

fn write(header: Option<ChunkHeader>, frames: Vec<Vec<u8>>) -> Call {
    Call::Write {
        on: "cs1",
        header,
        frames,
    }
}

/// Write streams that must leave nothing behind.
pub fn write_rows() -> Vec<Row> {
    let ten = vec![7u8; 10];
    let crc10 = crc32c::crc32c(&ten);
    let no_space = || Expect::Refused(&[Code::ResourceExhausted], "no space");
    let mut rows = vec![
        row(
            "WriteChunk with an empty stream",
            write(None, vec![]),
            Expect::Refused(INVALID, "missing header"),
        ),
        row(
            "WriteChunk without a header",
            write(None, vec![ten.clone()]),
            Expect::Refused(INVALID, "missing header"),
        ),
        row(
            "WriteChunk of size 0 carrying data",
            write(Some(hdr(0, 0, 1)), vec![ten.clone()]),
            Expect::Refused(INVALID, "declares 0 bytes"),
        ),
        row(
            "WriteChunk with more data than declared",
            write(Some(hdr(10, crc10, 1)), vec![ten.clone(), ten.clone()]),
            Expect::Refused(INVALID, "declares 10 bytes"),
        ),
        row(
            "WriteChunk truncated: the stream ends early",
            write(Some(hdr(20, crc10, 1)), vec![ten.clone()]),
            Expect::Refused(INVALID, "but 10 were received"),
        ),
        row(
            "WriteChunk with a wrong checksum",
            write(Some(hdr(10, crc10 ^ 1, 1)), vec![ten.clone()]),
            Expect::Refused(&[Code::DataLoss], "checksum mismatch"),
        ),
        row(
            "WriteChunk with replication 0",
            write(Some(hdr(10, crc10, 0)), vec![ten.clone()]),
            Expect::Refused(INVALID, "replication must be at least 1"),
        ),
        row(
            "WriteChunk with replication 17",
            write(Some(hdr(10, crc10, 17)), vec![ten.clone()]),
            Expect::Refused(INVALID, "above the largest supported, 16"),
        ),
        row(
            "WriteChunk with replication u32::MAX",
            write(Some(hdr(10, crc10, u32::MAX)), vec![ten.clone()]),
            Expect::Refused(INVALID, "above the largest supported"),
        ),
        row(
            "WriteChunk of an existing chunk",
            write(Some(header("good", &ten, 1)), vec![ten.clone()]),
            Expect::Refused(&[Code::AlreadyExists], "already exists"),
        ),
        row(
            "WriteChunk abandoned by the client after the header",
            Call::WriteCut {
                header: hdr(1 << 20, 0, 1),
                sent: 0,
            },
            Expect::Refused(&[Code::Cancelled], "abandoned"),
        ),
        row(
            "WriteChunk abandoned by the client after 300 KiB",
            Call::WriteCut {
                header: hdr(1 << 20, 0, 1),
                sent: 300 << 10,
            },
            Expect::Refused(&[Code::Cancelled], "abandoned"),
        ),
    ];
    for size in [
        u64::MAX,
        u64::MAX - 1,
        1 << 63,
        (1 << 40) + 1,
        (1 << 30) + 1,
    ] {
        rows.push(row(
            format!("WriteChunk declaring {size} bytes"),
            write(Some(hdr(size, 0, 1)), vec![ten.clone()]),
            no_space(),
        ));
    }
    rows
}

fn copy(on: &'static str, chunk: &str, source: &str, expected: (u64, u32)) -> Call {
    Call::Copy {
        on,
        req: CopyChunkRequest {
            chunk: chunk.into(),
            source_id: "bogus".into(),
            source_address: source.into(),
            expected_size: expected.0,
            expected_crc32c: expected.1,
            term: 0,
        },
    }
}

/// Copies that cannot succeed.
pub fn copy_rows(env: &Env) -> Vec<Row> {
    let unavailable = || Expect::Refused(&[Code::Unavailable], "unreachable");
    let solo = crate::solo();
    let (size, crc) = (solo.len() as u64, crc32c::crc32c(&solo));
    let cs3 = env.cs("cs3");
    let master_http = format!("http://{}", env.master_http);
    vec![
        row(
            "CopyChunk without a source",
            copy("cs1", "solo", "", (0, 0)),
            Expect::Refused(INVALID, "source_address is required"),
        ),
        row(
            "CopyChunk from a blank source",
            copy("cs1", "solo", "  ", (0, 0)),
            Expect::Refused(INVALID, "source_address is required"),
        ),
        row(
            "CopyChunk from a source that is not a URL",
            copy("cs1", "solo", "not a url", (0, 0)),
            Expect::Refused(INVALID, "is not a URL"),
        ),
        row(
            "CopyChunk from a port where nothing listens",
            copy("cs1", "solo", "http://127.0.0.1:1", (0, 0)),
            unavailable(),
        ),
        row(
            "CopyChunk from an ftp URL",
            copy("cs1", "solo", "ftp://127.0.0.1:1", (0, 0)),
            Expect::Refused(INVALID, "unsupported scheme"),
        ),
        row(
            "CopyChunk from an unclosed IPv6 URL",
            copy("cs1", "solo", "http://[::1", (0, 0)),
            Expect::Refused(INVALID, "is not a URL"),
        ),
        row(
            "CopyChunk from a source with a newline in its URL",
            copy("cs1", "solo", &format!("{cs3}/\nforged"), (0, 0)),
            Expect::Refused(INVALID, "is not a URL"),
        ),
        row(
            "CopyChunk from the master (gRPC, but no ChunkServer service)",
            copy("cs1", "solo", &env.master, (0, 0)),
            Expect::Refused(&[Code::Aborted], "Unimplemented"),
        ),
        row(
            "CopyChunk from the master's HTTP port (not gRPC)",
            copy("cs1", "solo", &master_http, (0, 0)),
            Expect::Refused(&[Code::Unavailable, Code::Aborted], "solo"),
        ),
        row(
            "CopyChunk from itself",
            copy("cs1", "solo", &env.cs("cs1"), (0, 0)),
            Expect::Refused(&[Code::NotFound], "does not hold"),
        ),
        row(
            "CopyChunk from a server without the chunk",
            copy("cs1", "solo", &env.cs("cs2"), (0, 0)),
            Expect::Refused(&[Code::NotFound], "does not hold"),
        ),
        row(
            "CopyChunk onto a server that holds the chunk",
            copy("cs1", "good", &env.cs("cs2"), (0, 0)),
            Expect::Refused(&[Code::AlreadyExists], "already exists"),
        ),
        row(
            "CopyChunk expecting u64::MAX bytes",
            copy("cs1", "solo", &cs3, (u64::MAX, crc)),
            Expect::Refused(&[Code::ResourceExhausted], "no space"),
        ),
        row(
            "CopyChunk expecting the wrong size",
            copy("cs1", "solo", &cs3, (size + 1, crc)),
            Expect::Refused(&[Code::FailedPrecondition], "was expected"),
        ),
        row(
            "CopyChunk expecting the wrong checksum",
            copy("cs1", "solo", &cs3, (size, crc ^ 1)),
            Expect::Refused(&[Code::FailedPrecondition], "was expected"),
        ),
    ]
}

/// Reads, stats and deletes of chunks that are not there.
pub fn missing_rows() -> Vec<Row> {
    let nf = || Expect::Refused(&[Code::NotFound], "not found");
    let read = |migration| {
        Call::Read(ReadChunkRequest {
            chunk: "nope".into(),
            migration,
        })
    };
    vec![
        row("ReadChunk of an unknown chunk", read(false), nf()),
        row(
            "ReadChunk (migration) of an unknown chunk",
            read(true),
            nf(),
        ),
        row(
            "StatChunk of an unknown chunk",
            Call::Stat("nope".into()),
            nf(),
        ),
        row(
            "DeleteChunk of an unknown chunk",
            Call::Delete("nope".into()),
            nf(),
        ),
        row(
            "DeleteChunk of a chunk held elsewhere",
            Call::Delete("solo".into()),
            nf(),
        ),
    ]
}
