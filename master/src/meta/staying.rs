//! The replicas a delete relies on, for the mover to confirm with their
//! servers right before it deletes (see `mover/confirm.rs` and
//! `mover/steps/release.rs`).

use super::{Meta, ServerAddr, ServerNo};

impl Meta {
    /// The replicas [`Meta::source_deletable`] counts for deleting the one
    /// on `from`, with what each must still be (identity, size, CRC32C),
    /// and how many of them must be confirmed held. The mover asks their
    /// servers right before the delete: a copy that vanished since the last
    /// heartbeat must not be the one the delete relied on.
    pub fn staying(&self, chunk: &str, from: ServerNo) -> Option<Staying> {
        let c = self.chunks.get(chunk)?;
        let holders = c
            .servers()
            .filter(|&s| s != from && self.server(s).alive && !self.is_suspect(chunk, s))
            .map(|s| (self.addr(s), c.replica_on(s).map_or(0, |r| r.id)))
            .collect();
        Some(Staying {
            holders,
            size: c.size,
            crc32c: c.crc32c,
            need: c.replication as usize,
        })
    }
}

/// The replicas a delete relies on (see [`Meta::staying`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staying {
    /// Each server and the identity of its replica (0: not known).
    pub holders: Vec<(ServerAddr, u64)>,
    /// The chunk's size.
    pub size: u64,
    /// The chunk's CRC32C.
    pub crc32c: u32,
    /// How many must be confirmed.
    pub need: usize,
}

/// What a holder answers `StatChunk` with: the copy it holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Size its header states.
    pub size: u64,
    /// CRC32C its header states.
    pub crc32c: u32,
    /// Its identity.
    pub replica: u64,
    /// A delete of it runs there.
    pub deleting: bool,
    /// Its server marks it suspect (a read found it damaged, or a
    /// verification of it has not ended).
    pub suspect: bool,
}

impl Staying {
    /// Whether a `StatChunk` answer from the holder with replica `expect`
    /// confirms it: the same replica, the chunk's header, no delete running,
    /// and not marked suspect by its server. The mark matters because the
    /// header is all a `StatChunk` reads: a copy a client's read found
    /// rotten a moment ago still has a whole-looking header, and the
    /// heartbeat saying so may not have arrived yet (seed 96065).
    pub fn confirms(&self, expect: u64, held: &Held) -> bool {
        !held.deleting
            && !held.suspect
            && held.size == self.size
            && held.crc32c == self.crc32c
            && (expect == 0 || held.replica == expect)
    }
}
