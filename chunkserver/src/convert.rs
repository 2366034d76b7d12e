//! Domain ⇄ protobuf for the chunk server, in one place: the service, the
//! heartbeat loop, reads and copies all build their wire messages here, so
//! none of them reaches into another for a conversion.

use keel_proto::v1::{
    ChunkHeader, ChunkReplica, HeartbeatStamp, StatChunkResponse, VerifyChunkResponse,
    VerifyVerdict,
};

use crate::chunk_file::ChunkMeta;
use crate::store::{Entry, Stamp, Verdict};

/// A store stamp as the wire carries it.
pub fn stamp(s: Stamp) -> HeartbeatStamp {
    HeartbeatStamp {
        incarnation: s.incarnation,
        seq: s.seq,
    }
}

/// The header of chunk `chunk` as reads, stats and verifications send it.
pub fn header(chunk: String, meta: &ChunkMeta) -> ChunkHeader {
    ChunkHeader {
        chunk,
        size: meta.size,
        crc32c: meta.crc32c,
        replication: meta.replication,
    }
}

/// One replica in a heartbeat's report.
pub fn replica(chunk: String, e: Entry) -> ChunkReplica {
    ChunkReplica {
        chunk,
        size: e.meta.size,
        crc32c: e.meta.crc32c,
        replication: e.meta.replication,
        reads: e.reads,
        replica_id: e.replica,
        suspect: e.suspect,
    }
}

/// `StatChunk`'s answer for a replica held at or after `stamp`.
pub fn stat(chunk: String, e: &Entry, deleting: bool, at: Stamp) -> StatChunkResponse {
    StatChunkResponse {
        header: Some(header(chunk, &e.meta)),
        reads: e.reads,
        replica_id: e.replica,
        deleting,
        stamp: Some(stamp(at)),
        suspect: e.suspect,
    }
}

/// `VerifyChunk`'s answer: the verdict on replica `replica` of `chunk`.
pub fn verified(chunk: String, replica: u64, verdict: Verdict, at: Stamp) -> VerifyChunkResponse {
    let stamp = Some(stamp(at));
    match verdict {
        Verdict::Whole(m) => VerifyChunkResponse {
            verdict: VerifyVerdict::Whole.into(),
            detail: String::new(),
            stamp,
            header: Some(header(chunk, &m)),
            replica_id: replica,
        },
        Verdict::Corrupt(detail) => VerifyChunkResponse {
            verdict: VerifyVerdict::Corrupt.into(),
            detail,
            header: None,
            stamp,
            replica_id: replica,
        },
        Verdict::Missing => VerifyChunkResponse {
            verdict: VerifyVerdict::Missing.into(),
            detail: "the chunk file is gone".into(),
            header: None,
            stamp,
            replica_id: replica,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_answer_carries_the_suspect_mark() {
        let meta = ChunkMeta {
            size: 10,
            crc32c: 7,
            replication: 2,
        };
        let mut e = Entry {
            meta,
            reads: 0,
            replica: 42,
            suspect: false,
        };
        let at = Stamp {
            incarnation: 1,
            seq: 3,
        };
        assert!(!stat("c".into(), &e, false, at).suspect);
        e.suspect = true;
        let r = stat("c".into(), &e, false, at);
        assert!(
            r.suspect,
            "a read found it damaged: no delete may rely on it"
        );
        assert_eq!((r.replica_id, r.deleting), (42, false));
    }
}
