//! The chunk table of the metadata, and the balancer's view of it kept up
//! to date as it changes.
//!
//! Chunks live in slots (numbered from 0, reused once freed) in fixed
//! segments; a hash table of slot numbers, hashed by id, finds them. Slot `n`
//! is chunk `ChunkIdx(n)` in the balancer's [`ChunkTable`], which mirrors the
//! slots: every change marks its slot, and the marked slots are written to
//! the mirror after each heartbeat — unless a planning pass holds a clone of
//! it, in which case they wait (a write would copy a segment under the lock)
//! until the next heartbeat after the pass, or until the next pass takes its
//! view. A pass therefore copies the view out under the lock in time
//! proportional to the servers and the chunks changed since the last one,
//! never to the whole table.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::{DefaultHashBuilder, HashTable};
use keel_balancer::{ChunkIdx, ChunkTable, ServerIdx};
use smallvec::SmallVec;

use super::ChunkRecord;

/// log2 of the slots per segment.
const SEGMENT_BITS: usize = 12;
/// Slots per segment (allocated whole, so growth never doubles a vector).
const SEGMENT: usize = 1 << SEGMENT_BITS;

/// One slot: a chunk, or nothing when `id` is `None`.
#[derive(Debug, Clone)]
struct Slot {
    /// The chunk's id, shared with the balancer's mirror.
    id: Option<Arc<str>>,
    /// Its record.
    meta: ChunkRecord,
}

/// Chunks by id in numbered slots, with the balancer's mirror. See the
/// module docs.
#[derive(Debug, Default)]
pub struct ChunkStore {
    /// Slot numbers, hashed by their chunk's id.
    index: HashTable<u32>,
    /// Hashes ids (seeded per process).
    hasher: DefaultHashBuilder,
    /// Segments of [`SEGMENT`] slots.
    segments: Vec<Vec<Slot>>,
    /// Slots handed out so far.
    slots: usize,
    /// Chunks held.
    len: usize,
    /// Emptied slots, reused first.
    free: Vec<u32>,
    /// Slots changed since they were last written to the mirror.
    dirty: Vec<u32>,
    /// One bit per slot: in `dirty`.
    dirty_bits: Vec<u64>,
    /// The balancer's chunk table: slot `n` is chunk `n`.
    mirror: ChunkTable,
    /// One bit per slot: the chunk is a repair candidate (see `repairs`).
    /// A bit per chunk rather than a set of ids: at ten million chunks,
    /// all of them candidates after a restart, that is 1 MiB, not 500.
    candidates: Vec<u64>,
}

impl ChunkStore {
    fn slot(&self, n: u32) -> &Slot {
        let n = n as usize;
        &self.segments[n >> SEGMENT_BITS][n & (SEGMENT - 1)]
    }

    fn slot_mut(&mut self, n: u32) -> &mut Slot {
        let n = n as usize;
        &mut self.segments[n >> SEGMENT_BITS][n & (SEGMENT - 1)]
    }

    /// The slot of chunk `id`.
    pub fn find(&self, id: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(id);
        self.index
            .find(hash, |&n| self.slot(n).id.as_deref() == Some(id))
            .copied()
    }

    /// Chunk `id`'s record.
    pub fn get(&self, id: &str) -> Option<&ChunkRecord> {
        self.find(id).map(|n| &self.slot(n).meta)
    }

    /// Chunk `id`'s record, to change (its slot is marked for the mirror).
    pub fn get_mut(&mut self, id: &str) -> Option<&mut ChunkRecord> {
        let n = self.find(id)?;
        self.mark(n);
        Some(&mut self.slot_mut(n).meta)
    }

    /// The record in slot `n`, to change (marked for the mirror).
    pub fn slot_meta_mut(&mut self, n: u32) -> &mut ChunkRecord {
        self.mark(n);
        &mut self.slot_mut(n).meta
    }

    /// The record in slot `n`.
    pub fn slot_meta(&self, n: u32) -> &ChunkRecord {
        &self.slot(n).meta
    }

    /// Whether chunk `id` is held.
    pub fn contains_key(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    /// Number of chunks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Adds chunk `id`, which must be absent; returns its slot.
    pub fn insert(&mut self, id: &str, meta: ChunkRecord) -> u32 {
        let n = match self.free.pop() {
            Some(n) => n,
            None => {
                if self.slots.is_multiple_of(SEGMENT) {
                    self.segments.push(Vec::with_capacity(SEGMENT));
                }
                let seg = self.segments.last_mut().expect("a segment");
                seg.push(Slot {
                    id: None,
                    meta: ChunkRecord::new(0, 0, 1),
                });
                self.slots += 1;
                (self.slots - 1) as u32
            }
        };
        *self.slot_mut(n) = Slot {
            id: Some(id.into()),
            meta,
        };
        let (hasher, segments) = (&self.hasher, &self.segments);
        let rehash = |&m: &u32| {
            let m = m as usize;
            let id = segments[m >> SEGMENT_BITS][m & (SEGMENT - 1)].id.as_deref();
            hasher.hash_one(id.unwrap_or(""))
        };
        self.index.insert_unique(hasher.hash_one(id), n, rehash);
        self.len += 1;
        self.mark(n);
        n
    }

    /// Forgets chunk `id`; returns its record.
    pub fn remove(&mut self, id: &str) -> Option<ChunkRecord> {
        let hash = self.hasher.hash_one(id);
        let segments = &self.segments;
        let entry = self
            .index
            .find_entry(hash, |&m| {
                let m = m as usize;
                segments[m >> SEGMENT_BITS][m & (SEGMENT - 1)].id.as_deref() == Some(id)
            })
            .ok()?;
        let (n, _) = entry.remove();
        let slot = std::mem::replace(
            self.slot_mut(n),
            Slot {
                id: None,
                meta: ChunkRecord::new(0, 0, 1),
            },
        );
        self.free.push(n);
        self.len -= 1;
        self.mark(n);
        Some(slot.meta)
    }

    /// Every chunk with its record, in slot order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ChunkRecord)> + '_ {
        self.segments
            .iter()
            .flatten()
            .filter_map(|s| Some((s.id.as_deref()?, &s.meta)))
    }

    /// Every chunk with its slot and record, in slot order.
    pub fn iter_slots(&self) -> impl Iterator<Item = (u32, &str, &ChunkRecord)> + '_ {
        self.segments
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(n, s)| Some((n as u32, s.id.as_deref()?, &s.meta)))
    }

    /// Makes the chunk in slot `n` a repair candidate.
    pub fn add_candidate_slot(&mut self, n: u32) {
        let word = n as usize / 64;
        if word >= self.candidates.len() {
            self.candidates.resize(word + 1, 0);
        }
        self.candidates[word] |= 1 << (n % 64);
    }

    /// Makes chunk `id` a repair candidate, if it is held.
    pub fn add_candidate(&mut self, id: &str) {
        if let Some(n) = self.find(id) {
            self.add_candidate_slot(n);
        }
    }

    /// Every repair candidate with its id, in slot order; the marks are
    /// cleared.
    pub fn take_candidates(&mut self) -> Vec<(u32, Arc<str>)> {
        let mut out = Vec::new();
        for (w, word) in std::mem::take(&mut self.candidates).into_iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let n = (w * 64) as u32 + bits.trailing_zeros();
                bits &= bits - 1;
                if (n as usize) < self.slots
                    && let Some(id) = &self.slot(n).id
                {
                    out.push((n, Arc::clone(id)));
                }
            }
        }
        out
    }

    /// Every chunk id, in slot order.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.iter().map(|(id, _)| id)
    }

    /// Marks slot `n` as changed.
    fn mark(&mut self, n: u32) {
        let (word, bit) = (n as usize / 64, n % 64);
        if word >= self.dirty_bits.len() {
            self.dirty_bits.resize(word + 1, 0);
        }
        if self.dirty_bits[word] & (1 << bit) == 0 {
            self.dirty_bits[word] |= 1 << bit;
            self.dirty.push(n);
        }
    }

    /// Writes the changed slots to the mirror; unless `force`, only when no
    /// clone of it is alive (a write would then copy segments).
    pub fn flush(&mut self, force: bool) {
        if self.dirty.is_empty() || (!force && self.mirror.is_shared()) {
            return;
        }
        let mut replicas: SmallVec<[ServerIdx; 4]> = SmallVec::new();
        for n in std::mem::take(&mut self.dirty) {
            self.dirty_bits[n as usize / 64] &= !(1 << (n % 64));
            let slot = &self.segments[n as usize >> SEGMENT_BITS][n as usize & (SEGMENT - 1)];
            let c = &slot.meta;
            replicas.clear();
            match &slot.id {
                Some(id) => {
                    replicas.extend(c.servers().map(ServerIdx));
                    let id = Some(Arc::clone(id));
                    self.mirror
                        .put(n as usize, id, c.size, c.reads(), c.replication, &replicas);
                }
                None => self.mirror.put(n as usize, None, 0, 0, 0, &[]),
            }
        }
    }

    /// The mirror, up to date, shared with the store until either changes.
    pub fn mirror(&mut self) -> ChunkTable {
        self.flush(true);
        self.mirror.clone()
    }

    /// Checks that the index finds every chunk and that the mirror agrees
    /// with every slot not waiting to be written to it.
    pub fn check(&self) -> Result<(), String> {
        if self.index.len() != self.len {
            return Err(format!(
                "{} chunks but {} indexed",
                self.len,
                self.index.len()
            ));
        }
        let mut held = 0;
        for n in 0..self.slots as u32 {
            let slot = self.slot(n);
            if let Some(id) = &slot.id {
                held += 1;
                if self.find(id) != Some(n) {
                    return Err(format!("chunk {id} is not indexed at slot {n}"));
                }
            }
            let dirty = self
                .dirty_bits
                .get(n as usize / 64)
                .is_some_and(|w| w & (1 << (n % 64)) != 0);
            if dirty {
                continue;
            }
            let i = n as usize;
            let c = &slot.meta;
            let servers: Vec<ServerIdx> = c.servers().map(ServerIdx).collect();
            let (id, size, replicas) = match &slot.id {
                Some(id) => (&**id, c.size, servers.as_slice()),
                None => ("", 0, &[][..]),
            };
            let mirrored = i < self.mirror.len()
                && self.mirror.id(i) == id
                && self.mirror.size(i) == size
                && self.mirror.replicas(i) == replicas
                && (slot.id.is_none() || self.mirror.reads(i) == c.reads());
            if !mirrored {
                return Err(format!(
                    "the balancer's view disagrees with slot {n} ({id:?})"
                ));
            }
        }
        if held != self.len {
            return Err(format!("{held} slots hold chunks, {} counted", self.len));
        }
        Ok(())
    }

    /// The balancer's index of chunk `id` in [`ChunkStore::mirror`].
    pub fn chunk_idx(&self, id: &str) -> Option<ChunkIdx> {
        self.find(id).map(ChunkIdx)
    }
}
