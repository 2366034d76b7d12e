//! The cluster as the balancer sees it: servers, chunks and which servers hold
//! which chunk. Indices (`ServerIdx`, `ChunkIdx`) keep the view compact and
//! iteration deterministic.

/// Index of a server in [`ClusterView::servers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServerIdx(pub u32);

/// Index of a chunk in [`ClusterView::chunks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChunkIdx(pub u32);

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
    /// Whether the master hears its heartbeats. Dead servers are neither
    /// sources nor targets and do not count towards the average.
    pub alive: bool,
}

/// A chunk and where its replicas are.
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

/// Servers and chunks. `used` of each server must equal the sum of the sizes
/// of the chunks it holds; [`ClusterView::add_chunk`] keeps that true.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterView {
    /// All known servers, alive or not.
    pub servers: Vec<Server>,
    /// All known chunks.
    pub chunks: Vec<Chunk>,
}

impl ClusterView {
    /// An empty cluster.
    pub fn new() -> Self {
        Self::default()
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
            alive,
        });
        idx
    }

    /// Adds a chunk held by `replicas` and charges its size to each of them.
    pub fn add_chunk(
        &mut self,
        id: impl Into<String>,
        size: u64,
        reads: u64,
        replication: u32,
        replicas: &[ServerIdx],
    ) -> ChunkIdx {
        let idx = ChunkIdx(self.chunks.len() as u32);
        for s in replicas {
            self.servers[s.0 as usize].used += size;
        }
        self.chunks.push(Chunk {
            id: id.into(),
            size,
            reads,
            replication,
            replicas: replicas.to_vec(),
        });
        idx
    }

    /// The server at `idx`.
    pub fn server(&self, idx: ServerIdx) -> &Server {
        &self.servers[idx.0 as usize]
    }

    /// The chunk at `idx`.
    pub fn chunk(&self, idx: ChunkIdx) -> &Chunk {
        &self.chunks[idx.0 as usize]
    }

    /// Finds a server by its id.
    pub fn server_by_id(&self, id: &str) -> Option<ServerIdx> {
        self.servers
            .iter()
            .position(|s| s.id == id)
            .map(|i| ServerIdx(i as u32))
    }
}

impl Server {
    /// `100 * used / capacity`; a server without capacity counts as full.
    pub fn utilization_pct(&self) -> f64 {
        if self.capacity == 0 {
            100.0
        } else {
            100.0 * self.used as f64 / self.capacity as f64
        }
    }
}
