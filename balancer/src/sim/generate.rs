//! Seeded cluster generators: large skewed clusters for the benchmark, and
//! small varied ones (racks, replication, dead servers, unequal capacities)
//! for property tests and simulations.

use super::Rng;
use crate::ids::ServerIdx;
use crate::model::ClusterView;

/// A large skewed cluster: most servers near the middle, some hot, some
/// nearly empty. With replication above 1, each chunk's first replica fills
/// its server towards the drawn utilization and the others go to random
/// servers in other racks (when there are enough racks) that stay under 95 %.
#[derive(Debug, Clone, Copy)]
pub struct SkewSpec {
    /// Number of servers.
    pub servers: usize,
    /// Number of chunks, approximately (the servers are filled to their
    /// drawn utilization with chunks of a matching mean size).
    pub chunks: usize,
    /// Capacity of a server of average size, bytes.
    pub capacity: u64,
    /// Capacities vary between half and twice `capacity` when set.
    pub unequal: bool,
    /// Share of servers drawn at 75–95 % utilization.
    pub hot: f64,
    /// Share of servers drawn at 0–15 % utilization.
    pub cold: f64,
    /// Replicas per chunk.
    pub replication: u32,
    /// Number of racks, servers assigned round-robin; 0 for none.
    pub racks: usize,
}

/// Builds a cluster per `spec` from `seed`.
pub fn skewed_cluster(seed: u64, spec: &SkewSpec) -> ClusterView {
    let mut rng = Rng::new(seed);
    let mut view = ClusterView::new();
    let mut goals = Vec::with_capacity(spec.servers);
    for i in 0..spec.servers {
        let capacity = if spec.unequal {
            spec.capacity / 2 + rng.range(0, spec.capacity * 3 / 2)
        } else {
            spec.capacity
        };
        let roll = rng.unit();
        let pct = if roll < spec.hot {
            75.0 + 20.0 * rng.unit()
        } else if roll < spec.hot + spec.cold {
            15.0 * rng.unit()
        } else {
            35.0 + 25.0 * rng.unit()
        };
        goals.push((capacity as f64 * pct / 100.0) as u64);
        let rack = (spec.racks > 0).then(|| format!("r{}", i % spec.racks));
        view.add_server(format!("cs{i:05}"), rack, capacity, true);
    }
    let replication = spec.replication.max(1) as usize;
    let total: u64 = goals.iter().sum();
    let replicas_wanted = (spec.chunks * replication).max(1) as u64;
    let mean = (total / replicas_wanted).max(2);
    let expect = spec.chunks + spec.chunks / 8 + spec.servers;
    view.reserve(expect, expect * 10, expect * replication);
    let mut n = 0u64;
    let mut replicas = Vec::with_capacity(replication);
    for (i, goal) in goals.into_iter().enumerate() {
        while view.servers[i].used < goal {
            let size = rng.range(mean / 2, mean * 3 / 2);
            if view.servers[i].used + size > goal {
                break;
            }
            replicas.clear();
            replicas.push(ServerIdx(i as u32));
            add_replicas(&mut rng, &view, spec, size, replication, &mut replicas);
            view.add_chunk(
                format!("c{n:09}"),
                size,
                rng.range(0, 1000),
                replication as u32,
                &replicas,
            );
            n += 1;
        }
    }
    view.shrink_to_fit();
    view
}

/// Adds up to `replication - 1` random servers with room for `size`, in
/// racks not used yet when there are enough racks.
fn add_replicas(
    rng: &mut Rng,
    view: &ClusterView,
    spec: &SkewSpec,
    size: u64,
    replication: usize,
    replicas: &mut Vec<ServerIdx>,
) {
    let rack = |s: ServerIdx| s.0 as usize % spec.racks.max(1);
    let spread = spec.racks >= replication;
    for _ in 0..replication * 8 {
        if replicas.len() == replication {
            return;
        }
        let s = ServerIdx(rng.range(0, spec.servers as u64 - 1) as u32);
        let server = view.server(s);
        let fresh_rack = !spread || replicas.iter().all(|&r| rack(r) != rack(s));
        if fresh_rack
            && !replicas.contains(&s)
            && (server.used + size) * 100 <= server.capacity * 95
        {
            replicas.push(s);
        }
    }
}

/// A small varied cluster.
#[derive(Debug, Clone, Copy)]
pub struct RandomSpec {
    /// Number of servers.
    pub servers: usize,
    /// Number of chunks to try to place.
    pub chunks: usize,
    /// Largest capacity, bytes; capacities are drawn between a quarter of it and all of it.
    pub max_capacity: u64,
    /// Chunk sizes are drawn in `1..=max_chunk`.
    pub max_chunk: u64,
    /// Replicas per chunk are drawn in `1..=max_replication`.
    pub max_replication: u32,
    /// Number of racks; 0 for none.
    pub racks: usize,
    /// Chance that a server is dead.
    pub dead: f64,
}

/// Builds a cluster per `spec` from `seed`. Chunks go to servers chosen by
/// skewed weights, never past 95 % of a capacity, never twice to one server;
/// a chunk that finds no room is not added.
pub fn random_cluster(seed: u64, spec: &RandomSpec) -> ClusterView {
    let mut rng = Rng::new(seed);
    let mut view = ClusterView::new();
    let mut weights = Vec::new();
    for i in 0..spec.servers {
        let capacity = rng.range(spec.max_capacity / 4, spec.max_capacity).max(1);
        let rack = (spec.racks > 0).then(|| format!("r{}", rng.range(0, spec.racks as u64 - 1)));
        view.add_server(format!("s{i:02}"), rack, capacity, !rng.chance(spec.dead));
        weights.push(1 + rng.range(0, 3).pow(3));
    }
    let weight_sum: u64 = weights.iter().sum();
    for c in 0..spec.chunks {
        let size = rng.range(1, spec.max_chunk);
        let want = rng.range(1, u64::from(spec.max_replication.max(1))) as usize;
        let mut replicas: Vec<ServerIdx> = Vec::new();
        for _ in 0..want * 4 {
            if replicas.len() == want {
                break;
            }
            let s = pick_weighted(&mut rng, &weights, weight_sum);
            let server = view.server(s);
            if !replicas.contains(&s) && (server.used + size) * 100 <= server.capacity * 95 {
                replicas.push(s);
            }
        }
        if !replicas.is_empty() {
            let reads = rng.range(0, 100);
            view.add_chunk(format!("k{c:04}"), size, reads, want as u32, &replicas);
        }
    }
    view
}

fn pick_weighted(rng: &mut Rng, weights: &[u64], sum: u64) -> ServerIdx {
    let mut x = rng.range(0, sum - 1);
    for (i, &w) in weights.iter().enumerate() {
        if x < w {
            return ServerIdx(i as u32);
        }
        x -= w;
    }
    ServerIdx(weights.len() as u32 - 1)
}
