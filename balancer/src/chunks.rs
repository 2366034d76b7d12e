//! The chunk table: every chunk's id, size, read count, replication factor
//! and replicas, stored column by column in fixed segments that clones
//! share until one of them changes a segment (copy on write).
//!
//! That makes a clone of a ten-million-chunk view cost a few thousand
//! reference counts, and a changed chunk cost one segment copy at most: the
//! master keeps one view up to date as its metadata changes and hands the
//! planner a clone of it. Slots may be rewritten in place
//! ([`ChunkTable::put`]) and emptied (an empty slot has no
//! replicas and size 0, so the planner never looks at it). Up to three
//! replicas are held inline; a chunk with more keeps them in a small side
//! table.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::ids::{ChunkIdx, ServerIdx};

/// An owned copy of one chunk's record, e.g. from [`ChunkRef::to_chunk`].
/// The view itself stores chunks column by column (see [`crate::ClusterView::chunk`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Chunk id.
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// Recent reads; the planner prefers moving cold chunks.
    pub reads: u64,
    /// Wanted number of replicas.
    pub replication: u32,
    /// Servers holding a replica.
    pub replicas: Vec<ServerIdx>,
}

/// log2 of the chunks per segment: 4,096 chunks, about 200 KiB to copy.
const SEGMENT_BITS: usize = 12;
/// Chunks per segment.
const SEGMENT: usize = 1 << SEGMENT_BITS;
/// Replicas held inline per chunk.
const INLINE: usize = 3;
/// Replica count marking a chunk whose replicas live in the side table.
const SPILLED: u8 = u8::MAX;

/// One segment's columns.
#[derive(Debug, Clone, Default, PartialEq)]
struct Segment {
    /// Chunk ids; `None` for an empty slot.
    ids: Vec<Option<Arc<str>>>,
    /// Sizes in bytes.
    sizes: Vec<u64>,
    /// Recent reads.
    reads: Vec<u64>,
    /// Wanted replicas.
    replication: Vec<u32>,
    /// Replica servers, the first `counts[i]` valid.
    replicas: Vec<[ServerIdx; INLINE]>,
    /// Replica counts, or [`SPILLED`].
    counts: Vec<u8>,
}

impl Segment {
    fn with_capacity(n: usize) -> Self {
        Segment {
            ids: Vec::with_capacity(n),
            sizes: Vec::with_capacity(n),
            reads: Vec::with_capacity(n),
            replication: Vec::with_capacity(n),
            replicas: Vec::with_capacity(n),
            counts: Vec::with_capacity(n),
        }
    }

    fn push_empty(&mut self) {
        self.ids.push(None);
        self.sizes.push(0);
        self.reads.push(0);
        self.replication.push(0);
        self.replicas.push([ServerIdx(0); INLINE]);
        self.counts.push(0);
    }

    fn heap_bytes(&self) -> usize {
        let ids: usize = self.ids.iter().flatten().map(|id| 16 + id.len()).sum();
        ids + 16 * self.ids.capacity()
            + 8 * self.sizes.capacity()
            + 8 * self.reads.capacity()
            + 4 * self.replication.capacity()
            + 4 * INLINE * self.replicas.capacity()
            + self.counts.capacity()
    }
}

/// Column-wise storage of all chunks of a [`crate::ClusterView`]. Read it
/// through [`crate::ClusterView::chunk`]; change it through
/// [`crate::ClusterView::add_chunk`] and [`ChunkTable::put`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkTable {
    /// Segments of [`SEGMENT`] chunks, shared between clones.
    segments: Vec<Arc<Segment>>,
    /// Number of slots.
    len: usize,
    /// Replicas of chunks with more than [`INLINE`] of them.
    spilled: Arc<BTreeMap<u32, Vec<ServerIdx>>>,
}

impl ChunkTable {
    /// A table with room for `chunks` chunks before it reallocates its
    /// segment list (ids and replicas are sized per segment).
    pub(crate) fn with_capacity(chunks: usize, _id_bytes: usize, _replicas: usize) -> Self {
        Self {
            segments: Vec::with_capacity(chunks.div_ceil(SEGMENT)),
            ..Self::default()
        }
    }

    /// Number of chunk slots (empty ones included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no chunks.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reserves room for `additional` more chunks.
    pub fn reserve(&mut self, additional: usize) {
        self.reserve_exact(additional, 0, additional);
    }

    /// Whether another table shares this one's segments (a clone is alive):
    /// changes would then copy segments.
    pub fn is_shared(&self) -> bool {
        self.segments
            .first()
            .is_some_and(|s| Arc::strong_count(s) > 1)
    }

    /// The segment and position of slot `i`.
    fn at(i: usize) -> (usize, usize) {
        (i >> SEGMENT_BITS, i & (SEGMENT - 1))
    }

    fn seg(&self, i: usize) -> (&Segment, usize) {
        let (s, j) = Self::at(i);
        (&self.segments[s], j)
    }

    /// Appends empty slots until slot `i` exists.
    fn grow_to(&mut self, i: usize) {
        while self.len <= i {
            let (s, _) = Self::at(self.len);
            if s == self.segments.len() {
                self.segments
                    .push(Arc::new(Segment::with_capacity(SEGMENT)));
            }
            Arc::make_mut(&mut self.segments[s]).push_empty();
            self.len += 1;
        }
    }

    /// Appends a chunk and returns its index.
    pub(crate) fn push(
        &mut self,
        id: Arc<str>,
        size: u64,
        reads: u64,
        replication: u32,
        replicas: &[ServerIdx],
    ) -> ChunkIdx {
        let idx = ChunkIdx(self.len as u32);
        self.put(idx.0 as usize, Some(id), size, reads, replication, replicas);
        idx
    }

    /// Writes slot `i` (appending empty slots up to it); `id: None` empties
    /// it. Server loads are the caller's: a view whose table is written this
    /// way sets its servers' `used` itself.
    pub fn put(
        &mut self,
        i: usize,
        id: Option<Arc<str>>,
        size: u64,
        reads: u64,
        replication: u32,
        replicas: &[ServerIdx],
    ) {
        self.grow_to(i);
        let was_spilled = self.seg(i).0.counts[self.seg(i).1] == SPILLED;
        let (s, j) = Self::at(i);
        let seg = Arc::make_mut(&mut self.segments[s]);
        seg.ids[j] = id;
        seg.sizes[j] = size;
        seg.reads[j] = reads;
        seg.replication[j] = replication;
        if replicas.len() <= INLINE {
            seg.replicas[j][..replicas.len()].copy_from_slice(replicas);
            seg.counts[j] = replicas.len() as u8;
            if was_spilled {
                Arc::make_mut(&mut self.spilled).remove(&(i as u32));
            }
        } else {
            seg.counts[j] = SPILLED;
            Arc::make_mut(&mut self.spilled).insert(i as u32, replicas.to_vec());
        }
    }

    /// Chunk `i`'s id (empty for an empty slot).
    pub fn id(&self, i: usize) -> &str {
        let (seg, j) = self.seg(i);
        seg.ids[j].as_deref().unwrap_or("")
    }

    /// Chunk `i`'s size in bytes.
    pub fn size(&self, i: usize) -> u64 {
        let (seg, j) = self.seg(i);
        seg.sizes[j]
    }

    /// Chunk `i`'s recent reads.
    pub fn reads(&self, i: usize) -> u64 {
        let (seg, j) = self.seg(i);
        seg.reads[j]
    }

    /// Chunk `i`'s wanted replica count.
    pub fn replication(&self, i: usize) -> u32 {
        let (seg, j) = self.seg(i);
        seg.replication[j]
    }

    /// Chunk `i`'s replicas.
    pub fn replicas(&self, i: usize) -> &[ServerIdx] {
        let (seg, j) = self.seg(i);
        match seg.counts[j] {
            SPILLED => &self.spilled[&(i as u32)],
            n => &seg.replicas[j][..n as usize],
        }
    }

    /// Chunk `i`'s replica slots, writable (a move rewrites one in place).
    pub(crate) fn replicas_mut(&mut self, i: usize) -> &mut [ServerIdx] {
        let (s, j) = Self::at(i);
        if self.segments[s].counts[j] == SPILLED {
            let spilled = Arc::make_mut(&mut self.spilled);
            return spilled.get_mut(&(i as u32)).expect("spilled replicas");
        }
        let seg = Arc::make_mut(&mut self.segments[s]);
        let n = seg.counts[j] as usize;
        &mut seg.replicas[j][..n]
    }

    /// Reserves room for `chunks` more chunks.
    pub(crate) fn reserve_exact(&mut self, chunks: usize, _id_bytes: usize, _replicas: usize) {
        let wanted = (self.len + chunks).div_ceil(SEGMENT);
        self.segments
            .reserve_exact(wanted.saturating_sub(self.segments.len()));
    }

    /// Gives unused reserved memory back.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.segments.shrink_to_fit();
        if let Some(last) = self.segments.last_mut() {
            let seg = Arc::make_mut(last);
            seg.ids.shrink_to_fit();
            seg.sizes.shrink_to_fit();
            seg.reads.shrink_to_fit();
            seg.replication.shrink_to_fit();
            seg.replicas.shrink_to_fit();
            seg.counts.shrink_to_fit();
        }
    }

    /// Heap bytes held by the table (allocated capacity, not length; ids
    /// counted whole even when shared with another owner).
    pub(crate) fn heap_bytes(&self) -> usize {
        let spilled: usize = self.spilled.values().map(|v| 48 + 4 * v.capacity()).sum();
        self.segments.capacity() * 8
            + self
                .segments
                .iter()
                .map(|s| std::mem::size_of::<Segment>() + 16 + s.heap_bytes())
                .sum::<usize>()
            + spilled
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

    /// Chunk id (empty for an empty slot).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_until_written() {
        let mut t = ChunkTable::default();
        for i in 0..(SEGMENT + 5) {
            t.push(format!("c{i}").into(), 1, 0, 1, &[ServerIdx(0)]);
        }
        let snapshot = t.clone();
        assert!(t.is_shared());
        t.put(3, Some("z".into()), 7, 0, 1, &[ServerIdx(1)]);
        assert_eq!(snapshot.id(3), "c3");
        assert_eq!(t.id(3), "z");
        assert_eq!(t.replicas(3), [ServerIdx(1)]);
        // The untouched segment is still shared, the written one is not.
        assert!(Arc::ptr_eq(&t.segments[1], &snapshot.segments[1]));
        assert!(!Arc::ptr_eq(&t.segments[0], &snapshot.segments[0]));
    }

    #[test]
    fn many_replicas_spill_and_come_back() {
        let mut t = ChunkTable::default();
        let four: Vec<ServerIdx> = (0..4).map(ServerIdx).collect();
        t.push("a".into(), 1, 0, 4, &four);
        assert_eq!(t.replicas(0), four.as_slice());
        t.replicas_mut(0)[3] = ServerIdx(9);
        assert_eq!(t.replicas(0)[3], ServerIdx(9));
        t.put(0, Some("a".into()), 1, 0, 2, &four[..2]);
        assert_eq!(t.replicas(0), &four[..2]);
        assert!(t.spilled.is_empty());
        t.put(2, None, 0, 0, 0, &[]);
        assert_eq!((t.len(), t.id(1), t.replicas(2)), (3, "", &[][..]));
    }
}
