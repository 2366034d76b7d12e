//! One chunk's metadata, kept compact: the chunk table holds one of these per
//! chunk (ten million of them must fit comfortably), so replicas are an inline
//! array of interned server numbers rather than a set of strings.

use smallvec::SmallVec;

/// Index of a server in the master's server table (ids are interned once).
pub type ServerNo = u32;

/// One whole replica of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replica {
    /// The server holding it.
    pub server: ServerNo,
    /// Reads it served since its server started (saturating; only a hint for
    /// the planner, which prefers cold chunks).
    pub reads: u32,
    /// The identity its server gave this replica's file (0: not known).
    /// Every delete names it, so it never removes a newer copy.
    pub id: u64,
}

/// What the master knows about one chunk: the facts every replica must agree
/// on, and the servers holding a whole (size and CRC32C matching) replica.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkRecord {
    /// Size in bytes.
    pub size: u64,
    /// CRC32C of the whole chunk.
    pub crc32c: u32,
    /// Wanted number of replicas.
    pub replication: u32,
    /// Servers holding a whole replica, alive or not. Three fit inline.
    pub replicas: SmallVec<[Replica; 3]>,
}

impl ChunkRecord {
    /// A chunk with no replica recorded yet.
    pub fn new(size: u64, crc32c: u32, replication: u32) -> Self {
        ChunkRecord {
            size,
            crc32c,
            replication: replication.max(1),
            replicas: SmallVec::new(),
        }
    }

    /// Whether `server` holds a whole replica.
    pub fn holds(&self, server: ServerNo) -> bool {
        self.replicas.iter().any(|r| r.server == server)
    }

    /// Whether `size` and `crc32c` describe this chunk.
    pub fn matches(&self, size: u64, crc32c: u32) -> bool {
        self.size == size && self.crc32c == crc32c
    }

    /// The replica on `server`, if it holds one.
    pub fn replica_on(&self, server: ServerNo) -> Option<&Replica> {
        self.replicas.iter().find(|r| r.server == server)
    }

    /// Records replica `id` on `server`, or refreshes its read count and
    /// identity. Returns true when the server held none before.
    pub fn upsert(&mut self, server: ServerNo, reads: u64, id: u64) -> bool {
        let reads = clamp_reads(reads);
        match self.replicas.iter_mut().find(|r| r.server == server) {
            Some(r) => {
                r.reads = reads;
                r.id = id;
                false
            }
            None => {
                self.replicas.push(Replica { server, reads, id });
                true
            }
        }
    }

    /// Forgets the replica on `server`. Returns true when there was one.
    pub fn remove(&mut self, server: ServerNo) -> bool {
        match self.replicas.iter().position(|r| r.server == server) {
            Some(i) => {
                self.replicas.remove(i);
                true
            }
            None => false,
        }
    }

    /// Reads over all replicas.
    pub fn reads(&self) -> u64 {
        self.replicas.iter().map(|r| u64::from(r.reads)).sum()
    }

    /// Servers holding a replica, in the order they were recorded.
    pub fn servers(&self) -> impl Iterator<Item = ServerNo> + '_ {
        self.replicas.iter().map(|r| r.server)
    }
}

/// A reported read count as a replica keeps it (saturating).
pub fn clamp_reads(reads: u64) -> u32 {
    u32::try_from(reads).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_small() {
        // Key (16 bytes) + this must stay around 90 bytes per table slot;
        // each inline replica carries its 8-byte identity.
        assert!(std::mem::size_of::<ChunkRecord>() <= 72);
    }

    #[test]
    fn upsert_remove_and_reads() {
        let mut c = ChunkRecord::new(10, 7, 2);
        assert!(c.upsert(1, 5, 11));
        assert!(!c.upsert(1, 6, 12));
        assert_eq!(c.replica_on(1).map(|r| (r.reads, r.id)), Some((6, 12)));
        assert!(c.upsert(2, u64::MAX, 0));
        assert_eq!(c.reads(), 6 + u64::from(u32::MAX));
        assert!(c.holds(2));
        assert!(c.remove(1));
        assert!(!c.remove(1));
        assert_eq!(c.servers().collect::<Vec<_>>(), [2]);
        for s in 3..10 {
            c.upsert(s, 0, 0);
        }
        assert_eq!(c.replicas.len(), 8);
    }

    #[test]
    fn replication_is_at_least_one() {
        assert_eq!(ChunkRecord::new(1, 1, 0).replication, 1);
    }
}
