//! The cluster as the balancer sees it: servers, chunks and which servers hold
//! which chunk. Indices (`ServerIdx`, `ChunkIdx`) keep the view compact and
//! iteration deterministic.
//!
//! Indices are positions in one view. A caller that keeps moves across views
//! must build its views with stable positions: servers and chunks appended,
//! never renumbered. The master keeps one view up to date instead, writing a
//! chunk's slot in place when it changes ([`ChunkTable::put`]) and lending the
//! planner clones, which share the chunk table until either side changes it.

use std::sync::Arc;

use crate::chunks::{ChunkRef, ChunkTable};
use crate::error::ApplyError;
use crate::ids::{ChunkIdx, CopyClass, CopyJob, MoveRef, ServerIdx};
use crate::plan::PlannedMove;
use crate::traffic::{Heat, ReadRate};

/// A chunk server.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    /// Operator-facing id, e.g. `cs1`.
    pub id: String,
    /// Failure-domain label; `None` when the server has none.
    pub rack: Option<String>,
    /// Bytes counted as 100 % utilization.
    pub capacity: u64,
    /// Bytes of the chunks the server holds.
    pub used: u64,
    /// Bytes on their way in (copies running into it, space allocated for
    /// writes): not part of `used`, but counted against its free-space floor.
    pub incoming: u64,
    /// Whether the master hears its heartbeats. Dead servers are neither
    /// sources nor targets and do not count towards the average.
    pub alive: bool,
    /// Its client read rate, as it last reported it.
    pub reads: ReadRate,
}

/// Servers and chunks. `used` of each server must equal the sum of the sizes
/// of the chunks it holds; [`ClusterView::add_chunk`] and
/// [`ClusterView::apply`] keep that true, [`ClusterView::check_invariants`]
/// verifies it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterView {
    /// All known servers, alive or not.
    pub servers: Vec<Server>,
    /// All known chunks, column-wise (read through [`ClusterView::chunk`]).
    pub chunks: ChunkTable,
    /// Read rates of the replicas the servers reported as their hottest.
    pub heat: Heat,
}

impl ClusterView {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cluster with room for `chunks` chunks, `id_bytes` bytes of
    /// chunk ids and `replicas` replicas in all, so that building a large
    /// view does not over-allocate.
    pub fn with_capacity(chunks: usize, id_bytes: usize, replicas: usize) -> Self {
        Self {
            servers: Vec::new(),
            chunks: ChunkTable::with_capacity(chunks, id_bytes, replicas),
            heat: Heat::new(),
        }
    }

    /// Adds a server holding nothing yet.
    pub fn add_server(
        &mut self,
        id: impl Into<String>,
        rack: Option<String>,
        capacity: u64,
        alive: bool,
    ) -> ServerIdx {
        let idx = ServerIdx(self.servers.len() as u32);
        self.servers.push(Server {
            id: id.into(),
            rack,
            capacity,
            used: 0,
            incoming: 0,
            alive,
            reads: ReadRate::default(),
        });
        idx
    }

    /// Adds a chunk held by `replicas` and charges its size to each of them.
    ///
    /// # Panics
    /// If a replica names a server that was never added (a caller bug).
    pub fn add_chunk(
        &mut self,
        id: impl Into<String>,
        size: u64,
        reads: u64,
        replication: u32,
        replicas: &[ServerIdx],
    ) -> ChunkIdx {
        for s in replicas {
            self.servers[s.0 as usize].used += size;
        }
        let id: Arc<str> = Arc::from(id.into());
        self.chunks.push(id, size, reads, replication, replicas)
    }

    /// The server at `idx`.
    ///
    /// # Panics
    /// If the view has no such server; [`ClusterView::get_server`] does not.
    pub fn server(&self, idx: ServerIdx) -> &Server {
        &self.servers[idx.0 as usize]
    }

    /// The chunk at `idx`.
    ///
    /// # Panics
    /// If the view has no such chunk; [`ClusterView::get_chunk`] does not.
    pub fn chunk(&self, idx: ChunkIdx) -> ChunkRef<'_> {
        assert!((idx.0 as usize) < self.chunks.len(), "no chunk {idx:?}");
        ChunkRef::new(&self.chunks, idx)
    }

    /// The chunk at `idx`, or `None` when the view has no such chunk.
    pub fn get_chunk(&self, idx: ChunkIdx) -> Option<ChunkRef<'_>> {
        ((idx.0 as usize) < self.chunks.len()).then(|| ChunkRef::new(&self.chunks, idx))
    }

    /// The server at `idx`, or `None` when the view has no such server.
    pub fn get_server(&self, idx: ServerIdx) -> Option<&Server> {
        self.servers.get(idx.0 as usize)
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// Every chunk, in index order.
    pub fn chunks(&self) -> impl ExactSizeIterator<Item = ChunkRef<'_>> + '_ {
        (0..self.chunks.len()).map(|i| ChunkRef::new(&self.chunks, ChunkIdx(i as u32)))
    }

    /// Finds a server by its id.
    pub fn server_by_id(&self, id: &str) -> Option<ServerIdx> {
        self.servers
            .iter()
            .position(|s| s.id == id)
            .map(|i| ServerIdx(i as u32))
    }

    /// Finds a chunk by its id (a linear scan: for tests and tools).
    pub fn chunk_by_id(&self, id: &str) -> Option<ChunkIdx> {
        self.chunks().find(|c| c.id() == id).map(|c| c.idx())
    }

    /// Reserves room for more chunks (see [`ClusterView::with_capacity`]).
    pub fn reserve(&mut self, chunks: usize, id_bytes: usize, replicas: usize) {
        self.chunks.reserve_exact(chunks, id_bytes, replicas);
    }

    /// Gives unused reserved memory back.
    pub fn shrink_to_fit(&mut self) {
        self.servers.shrink_to_fit();
        self.chunks.shrink_to_fit();
    }

    /// Heap bytes the view holds (allocated capacity), for capacity planning.
    pub fn heap_bytes(&self) -> usize {
        let servers: usize = self
            .servers
            .iter()
            .map(|s| s.id.capacity() + s.rack.as_ref().map_or(0, String::capacity))
            .sum();
        servers + self.servers.capacity() * std::mem::size_of::<Server>() + self.chunks.heap_bytes()
    }

    /// `mv`, planned on this view by index, named by ids as a job of
    /// `class`; `None` if an index is out of range or the byte count is not
    /// the chunk's size.
    pub fn job_of(&self, mv: &PlannedMove, class: CopyClass) -> Option<CopyJob> {
        let chunk = self.get_chunk(mv.chunk).filter(|c| c.size() == mv.bytes)?;
        let named = MoveRef::new(
            chunk.id(),
            self.get_server(mv.from)?.id.as_str(),
            self.get_server(mv.to)?.id.as_str(),
        );
        Some(CopyJob::new(named, mv.bytes, class))
    }

    /// `job` in this view's indices, found by linear scans (for tests and
    /// small views; [`crate::admission::ViewAdmits::planned`] indexes the
    /// view once).
    pub fn planned(&self, job: &CopyJob) -> Option<PlannedMove> {
        Some(PlannedMove {
            chunk: self.chunk_by_id(job.chunk())?,
            from: self.server_by_id(job.from())?,
            to: self.server_by_id(job.to())?,
            bytes: job.bytes,
            reason: crate::MoveReason::Capacity,
        })
    }

    /// Records a finished move: the replica slot of `mv.chunk` on `mv.from`
    /// now names `mv.to`, and both servers' `used` follow, and so do the
    /// replica's reads (its heat and both servers' read rates). Refuses, changing
    /// nothing, a move that does not fit the view (unknown chunk or server,
    /// chunk not on the source, already on the target, or a size that
    /// disagrees with the chunk's). Capacity and liveness are the caller's
    /// gates, not this bookkeeping's.
    pub fn apply(&mut self, mv: &PlannedMove) -> Result<(), ApplyError> {
        let chunk = self
            .get_chunk(mv.chunk)
            .ok_or(ApplyError::UnknownChunk(mv.chunk))?;
        if chunk.size() != mv.bytes {
            return Err(ApplyError::SizeMismatch {
                chunk: mv.chunk,
                size: chunk.size(),
                bytes: mv.bytes,
            });
        }
        for s in [mv.from, mv.to] {
            self.get_server(s).ok_or(ApplyError::UnknownServer(s))?;
        }
        if mv.from == mv.to || chunk.is_on(mv.to) {
            return Err(ApplyError::AlreadyOnTarget {
                chunk: mv.chunk,
                to: mv.to,
            });
        }
        let slot =
            chunk
                .replicas()
                .iter()
                .position(|&s| s == mv.from)
                .ok_or(ApplyError::NotOnSource {
                    chunk: mv.chunk,
                    from: mv.from,
                })?;
        self.chunks.replicas_mut(mv.chunk.0 as usize)[slot] = mv.to;
        let from = &mut self.servers[mv.from.0 as usize];
        from.used = from.used.saturating_sub(mv.bytes);
        self.servers[mv.to.0 as usize].used += mv.bytes;
        if let Some(rate) = self.heat.remove(mv.from, mv.chunk) {
            self.heat.set(mv.to, mv.chunk, rate);
            if let Ok([from, to]) = self
                .servers
                .get_disjoint_mut([mv.from.0 as usize, mv.to.0 as usize])
            {
                ReadRate::carry(&mut from.reads, &mut to.reads, rate);
            }
        }
        Ok(())
    }
}

impl Server {
    /// `100 * used / capacity`; a server without capacity counts as full.
    pub fn utilization_pct(&self) -> f64 {
        crate::space::utilization_pct(self.used, self.capacity)
    }
}
