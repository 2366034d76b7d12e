//! [`Traffic`]: the bytes this server moves, counted where they cross the
//! wire (client reads and writes, migration reads served to peers and
//! copies pulled from them); `metrics.rs` renders them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes moved, by direction and purpose.
#[derive(Debug, Default)]
pub struct Traffic {
    /// Sent to clients by `ReadChunk`.
    pub read: AtomicU64,
    /// Received from clients by `WriteChunk`.
    pub written: AtomicU64,
    /// Received by `CopyChunk` from a peer.
    pub migrated_in: AtomicU64,
    /// Sent to peers by migration reads.
    pub migrated_out: AtomicU64,
    /// Latency of the gRPC calls this server answers, by method.
    pub rpc: Arc<keel_proto::rpc_timing::RpcTimes>,
}

impl Traffic {
    /// Adds `n` bytes to `counter`.
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}
