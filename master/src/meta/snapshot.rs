//! The planner's [`ClusterView`] of every chunk.
//!
//! [`Meta::balance_view`] is what a pass plans on: the servers copied, the
//! chunk table lent from the view the metadata keeps up to date (see
//! `store.rs`), under the lock in time proportional to the servers. Chunks
//! come in slot order there. [`Meta::snapshot`] and
//! [`ViewSnapshot::into_view`] build a full copy in id order instead, the
//! old way (for tests and tools; at ten million chunks it takes seconds).

use keel_balancer::{ChunkIdx, ClusterView, Server, ServerIdx};
use smallvec::SmallVec;

use super::{Meta, ServerNo};

/// One chunk of a snapshot.
#[derive(Debug, Clone)]
struct SnapChunk {
    /// Where its id starts in [`ViewSnapshot::ids`].
    id_start: usize,
    /// Id length (at most 128).
    id_len: u8,
    size: u64,
    reads: u64,
    replication: u32,
    replicas: SmallVec<[ServerNo; 3]>,
}

/// A flat copy of servers and chunks; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct ViewSnapshot {
    /// id, rack, capacity, alive — in server-number order.
    servers: Vec<(String, Option<String>, u64, bool)>,
    /// Each server's reads, in server-number order.
    reads: Vec<keel_balancer::ReadRate>,
    /// Hot replicas: server, chunk id, rate.
    hot: Vec<(ServerNo, String, keel_balancer::ReadRate)>,
    /// Every chunk id, back to back.
    ids: String,
    chunks: Vec<SnapChunk>,
    /// Replicas over all chunks.
    replicas: usize,
}

impl Meta {
    /// The balancer's view for a pass: `ServerIdx(n)` is server number `n`
    /// (a draining server counts as not alive, see [`Meta::load_view`]),
    /// `ChunkIdx(n)` is chunk slot `n` (emptied slots hold nothing, see
    /// [`Meta::balance_idx`]). Takes time in the servers and the chunks
    /// changed since the last view, not in all chunks: the chunk table is
    /// shared with the metadata's copy until either changes.
    pub fn balance_view(&mut self) -> ClusterView {
        let servers = self
            .servers
            .iter()
            .enumerate()
            .map(|(no, s)| Server {
                id: s.id.to_string(),
                rack: s.has_rack().then(|| s.rack.clone()),
                capacity: s.capacity,
                used: s.used,
                // The floor counts what the master's own check counts:
                // allocations, a larger reported use and copies running in.
                // (A running balance move is also projected by the pass, so
                // its bytes count twice at the floor: the safe side.)
                incoming: s.committed_bytes().saturating_sub(s.used),
                alive: s.takes_data(),
                reads: self.reads_of(no as ServerNo).rate,
            })
            .collect();
        ClusterView {
            servers,
            chunks: self.chunks.mirror(),
            heat: self.heat(|id| self.chunks.chunk_idx(id)),
        }
    }

    /// Where chunk `id` is in the views [`Meta::balance_view`] lends.
    pub fn balance_idx(&self, id: &str) -> Option<ChunkIdx> {
        self.chunks.chunk_idx(id)
    }

    /// Copies servers and chunks out (O(chunks) under the lock; for tests
    /// and tools, a pass uses [`Meta::balance_view`]).
    pub fn snapshot(&self) -> ViewSnapshot {
        let servers = self
            .servers
            .iter()
            .map(|s| {
                (
                    s.id.to_string(),
                    s.has_rack().then(|| s.rack.clone()),
                    s.capacity,
                    // Draining servers are out of balancing (see `load_view`).
                    s.takes_data(),
                )
            })
            .collect();
        let id_bytes: usize = self.chunks.keys().map(|k| k.len()).sum();
        let reads = (0..self.servers.len() as ServerNo)
            .map(|no| self.reads_of(no).rate)
            .collect();
        let hot = (0..self.servers.len() as ServerNo)
            .flat_map(|no| self.hot_on(no).map(move |(c, r)| (no, c.to_owned(), r)))
            .collect();
        let mut snap = ViewSnapshot {
            servers,
            reads,
            hot,
            ids: String::with_capacity(id_bytes),
            chunks: Vec::with_capacity(self.chunks.len()),
            replicas: 0,
        };
        for (id, c) in self.chunks.iter() {
            snap.chunks.push(SnapChunk {
                id_start: snap.ids.len(),
                id_len: id.len().min(u8::MAX as usize) as u8,
                size: c.size,
                reads: c.reads(),
                replication: c.replication,
                replicas: c.servers().collect(),
            });
            snap.ids.push_str(id);
            snap.replicas += c.replicas.len();
        }
        snap
    }

    /// [`Meta::snapshot`] and [`ViewSnapshot::into_view`] in one go (for
    /// tests and small clusters; a loop should build outside the lock).
    pub fn cluster_view(&self) -> ClusterView {
        self.snapshot().into_view()
    }

    /// Every server with its recorded load, but only the chunks named by
    /// `ids` (in id order; unknown ids are left out): what the move queue's
    /// gates need, built in time proportional to the ids rather than to the
    /// whole chunk table. Server `used` is the server's full load, so the
    /// view's byte sums deliberately do not add up to it.
    pub fn partial_view<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> ClusterView {
        let mut v = self.load_view();
        let used: Vec<u64> = v.servers.iter().map(|s| s.used).collect();
        let mut ids: Vec<&str> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        let mut replicas = Vec::with_capacity(4);
        for id in ids {
            if let Some(c) = self.chunks.get(id) {
                replicas.clear();
                replicas.extend(c.servers().map(ServerIdx));
                v.add_chunk(id, c.size, c.reads(), c.replication, &replicas);
            }
        }
        for (s, u) in v.servers.iter_mut().zip(used) {
            s.used = u;
        }
        v
    }
}

/// Index of chunk `id` in a view whose chunks are in id order (what
/// [`ViewSnapshot::into_view`] and [`Meta::partial_view`] build), found by
/// binary search.
pub fn find_sorted(view: &ClusterView, id: &str) -> Option<ChunkIdx> {
    let (mut lo, mut hi) = (0usize, view.chunk_count());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let c = view.chunk(ChunkIdx(mid as u32));
        match c.id().cmp(id) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Some(c.idx()),
        }
    }
    None
}

impl ViewSnapshot {
    fn id(&self, c: &SnapChunk) -> &str {
        &self.ids[c.id_start..c.id_start + c.id_len as usize]
    }

    /// Chunk positions in id order. Sorting compares 16-byte big-endian
    /// prefixes held inline (no pointer chasing) and looks at the whole ids
    /// only when those are equal.
    fn sorted(&self) -> Vec<u32> {
        let prefix = |c: &SnapChunk| {
            let mut b = [0u8; 16];
            let id = self.id(c).as_bytes();
            let n = id.len().min(16);
            b[..n].copy_from_slice(&id[..n]);
            u128::from_be_bytes(b)
        };
        let mut keyed: Vec<(u128, u32)> = self
            .chunks
            .iter()
            .enumerate()
            .map(|(i, c)| (prefix(c), i as u32))
            .collect();
        keyed.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0).then_with(|| {
                self.id(&self.chunks[a.1 as usize])
                    .cmp(self.id(&self.chunks[b.1 as usize]))
            })
        });
        keyed.into_iter().map(|(_, i)| i).collect()
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Builds the view: `ServerIdx(n)` is the master's server number `n`,
    /// chunks come in id order (byte order of the ids, which is also `str`
    /// order) so plans are deterministic and [`find_sorted`] works.
    pub fn into_view(self) -> ClusterView {
        let mut v = ClusterView::with_capacity(self.chunks.len(), self.ids.len(), self.replicas);
        for (id, rack, capacity, alive) in &self.servers {
            v.add_server(id.clone(), rack.clone(), *capacity, *alive);
        }
        let mut replicas = Vec::with_capacity(4);
        for i in self.sorted() {
            let c = &self.chunks[i as usize];
            replicas.clear();
            replicas.extend(c.replicas.iter().map(|&s| ServerIdx(s)));
            v.add_chunk(self.id(c), c.size, c.reads, c.replication, &replicas);
        }
        for (s, r) in v.servers.iter_mut().zip(&self.reads) {
            s.reads = *r;
        }
        for (no, id, rate) in &self.hot {
            if let Some(c) = find_sorted(&v, id) {
                v.heat.set(ServerIdx(*no), c, *rate);
            }
        }
        v
    }
}
