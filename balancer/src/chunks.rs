//! The chunk table: every chunk's id, size, read count, replication factor
//! and replica slots, stored column by column so that ten million chunks fit
//! in well under 100 bytes each.
//!
//! Ids live in one string arena, replicas in one flat vector; each chunk
//! owns a fixed run of replica slots from [`ClusterView::add_chunk`] on. A
//! move rewrites one slot in place, so a chunk's replica count can never
//! shrink through the balancer.
//!
//! [`ClusterView::add_chunk`]: crate::ClusterView::add_chunk

use crate::model::{Chunk, ChunkIdx, ServerIdx};

/// Column-wise storage of all chunks of a [`crate::ClusterView`]. Read it
/// through [`crate::ClusterView::chunk`]; add to it through
/// [`crate::ClusterView::add_chunk`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkTable {
    /// Every chunk id, concatenated.
    id_bytes: String,
    /// End of chunk `i`'s id in `id_bytes`; chunk `i` starts where `i - 1` ends.
    id_ends: Vec<u64>,
    /// Chunk sizes in bytes.
    sizes: Vec<u64>,
    /// Recent reads per chunk.
    reads: Vec<u64>,
    /// Wanted replicas per chunk.
    replication: Vec<u32>,
    /// All replica slots, chunk after chunk.
    replicas: Vec<ServerIdx>,
    /// End of chunk `i`'s replica slots in `replicas`.
    replica_ends: Vec<u64>,
}

impl ChunkTable {
    /// A table with room for `chunks` chunks, `id_bytes` bytes of ids and
    /// `replicas` replica slots before it reallocates.
    pub(crate) fn with_capacity(chunks: usize, id_bytes: usize, replicas: usize) -> Self {
        Self {
            id_bytes: String::with_capacity(id_bytes),
            id_ends: Vec::with_capacity(chunks),
            sizes: Vec::with_capacity(chunks),
            reads: Vec::with_capacity(chunks),
            replication: Vec::with_capacity(chunks),
            replicas: Vec::with_capacity(replicas),
            replica_ends: Vec::with_capacity(chunks),
        }
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    /// Whether there are no chunks.
    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }

    /// Reserves room for `additional` more chunks of one replica each (ids
    /// grow as needed; [`crate::ClusterView::reserve`] sizes those too).
    pub fn reserve(&mut self, additional: usize) {
        self.reserve_exact(additional, 0, additional);
    }

    /// Appends a chunk and returns its index.
    pub(crate) fn push(
        &mut self,
        id: &str,
        size: u64,
        reads: u64,
        replication: u32,
        replicas: &[ServerIdx],
    ) -> ChunkIdx {
        let idx = ChunkIdx(self.len() as u32);
        self.id_bytes.push_str(id);
        self.id_ends.push(self.id_bytes.len() as u64);
        self.sizes.push(size);
        self.reads.push(reads);
        self.replication.push(replication);
        self.replicas.extend_from_slice(replicas);
        self.replica_ends.push(self.replicas.len() as u64);
        idx
    }

    /// Range of `i`'s entries given a vector of ends.
    fn span(ends: &[u64], i: usize) -> std::ops::Range<usize> {
        let start = if i == 0 { 0 } else { ends[i - 1] as usize };
        start..ends[i] as usize
    }

    /// Chunk `i`'s id.
    pub(crate) fn id(&self, i: usize) -> &str {
        &self.id_bytes[Self::span(&self.id_ends, i)]
    }

    /// Chunk `i`'s size in bytes.
    pub(crate) fn size(&self, i: usize) -> u64 {
        self.sizes[i]
    }

    /// Chunk `i`'s recent reads.
    pub(crate) fn reads(&self, i: usize) -> u64 {
        self.reads[i]
    }

    /// Chunk `i`'s wanted replica count.
    pub(crate) fn replication(&self, i: usize) -> u32 {
        self.replication[i]
    }

    /// Chunk `i`'s replica slots.
    pub(crate) fn replicas(&self, i: usize) -> &[ServerIdx] {
        &self.replicas[Self::span(&self.replica_ends, i)]
    }

    /// Chunk `i`'s replica slots, writable (a move rewrites one in place).
    pub(crate) fn replicas_mut(&mut self, i: usize) -> &mut [ServerIdx] {
        let span = Self::span(&self.replica_ends, i);
        &mut self.replicas[span]
    }

    /// Reserves room for `chunks` more chunks with `id_bytes` bytes of ids
    /// and `replicas` replica slots.
    pub(crate) fn reserve_exact(&mut self, chunks: usize, id_bytes: usize, replicas: usize) {
        self.id_bytes.reserve(id_bytes);
        self.id_ends.reserve(chunks);
        self.sizes.reserve(chunks);
        self.reads.reserve(chunks);
        self.replication.reserve(chunks);
        self.replicas.reserve(replicas);
        self.replica_ends.reserve(chunks);
    }

    /// Gives unused reserved memory back.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.id_bytes.shrink_to_fit();
        self.id_ends.shrink_to_fit();
        self.sizes.shrink_to_fit();
        self.reads.shrink_to_fit();
        self.replication.shrink_to_fit();
        self.replicas.shrink_to_fit();
        self.replica_ends.shrink_to_fit();
    }

    /// Heap bytes held by the table (allocated capacity, not length).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.id_bytes.capacity()
            + 8 * self.id_ends.capacity()
            + 8 * self.sizes.capacity()
            + 8 * self.reads.capacity()
            + 4 * self.replication.capacity()
            + std::mem::size_of::<ServerIdx>() * self.replicas.capacity()
            + 8 * self.replica_ends.capacity()
    }
}

/// A borrowed view of one chunk in a [`crate::ClusterView`].
#[derive(Debug, Clone, Copy)]
pub struct ChunkRef<'a> {
    table: &'a ChunkTable,
    idx: usize,
}

impl<'a> ChunkRef<'a> {
    pub(crate) fn new(table: &'a ChunkTable, idx: ChunkIdx) -> Self {
        Self {
            table,
            idx: idx.0 as usize,
        }
    }

    /// The chunk's index in its view.
    pub fn idx(&self) -> ChunkIdx {
        ChunkIdx(self.idx as u32)
    }

    /// Chunk id.
    pub fn id(&self) -> &'a str {
        self.table.id(self.idx)
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.table.size(self.idx)
    }

    /// Recent reads; the planner prefers moving cold chunks.
    pub fn reads(&self) -> u64 {
        self.table.reads(self.idx)
    }

    /// Wanted number of replicas.
    pub fn replication(&self) -> u32 {
        self.table.replication(self.idx)
    }

    /// Servers holding a replica.
    pub fn replicas(&self) -> &'a [ServerIdx] {
        self.table.replicas(self.idx)
    }

    /// Whether `server` holds a replica.
    pub fn is_on(&self, server: ServerIdx) -> bool {
        self.replicas().contains(&server)
    }

    /// An owned copy of the record.
    pub fn to_chunk(&self) -> Chunk {
        Chunk {
            id: self.id().to_owned(),
            size: self.size(),
            reads: self.reads(),
            replication: self.replication(),
            replicas: self.replicas().to_vec(),
        }
    }
}
