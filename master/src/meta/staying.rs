//! The replicas a delete relies on, for the mover to confirm with their
//! servers right before it deletes (see `mover/confirm.rs`).

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

impl Staying {
    /// Whether a `StatChunk` answer from the holder with replica `expect`
    /// confirms it: the same replica, the chunk's header, no delete running.
    pub fn confirms(
        &self,
        expect: u64,
        size: u64,
        crc32c: u32,
        replica: u64,
        deleting: bool,
    ) -> bool {
        !deleting
            && size == self.size
            && crc32c == self.crc32c
            && (expect == 0 || replica == expect)
    }
}
