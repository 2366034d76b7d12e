//! Keel's public gRPC contract, package `keel.v1`, and the few value types
//! every front door (daemons, `keelctl`, the JSON-lines protocol) must agree on.
//!
//! # Layout
//! - [`v1`]: code generated from `keel/v1/*.proto` at build time.
//! - [`etcd`]: a client of etcd's v3 KV and Lease services (leader election).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, served by gRPC reflection.
//! - [`codec`]: prost's gRPC codec with buffers sized for chunk streams;
//!   [`frames`]: `ReadChunk`'s messages sent and received without copying their bytes.
//! - [`chunk_id`]: the one validation of chunk ids, applied before any path is built.
//! - [`units`]: parsing of sizes (`64MiB`) and durations (`500ms`) for flags.
//! - [`serving`]: keep-alive and stream limits of the daemons' gRPC servers.
//! - [`budget`]: per-method message limits and call deadlines;
//!   [`connections`]: the cap on open connections.
//! - [`auth`]: bearer tokens, roles and the one token check both daemons use.
//! - [`capability`]: write capabilities, signed by the master, checked by chunk servers.
//! - [`tls`]: TLS and mTLS from PEM files, and the servers' accept loop.
//! - `flags` (feature `clap`): the daemons' shared security flags.
//! - [`logging`]: `--log-format text|json` and colours, for every binary.
//! - [`exposition`]: the Prometheus text pieces both daemons' `/metrics` write.
//! - [`rpc_timing`]: per-method latency histograms of the daemons' gRPC calls.
//! - [`move_id`]: the id that follows a move through every process's logs.

pub mod auth;
pub mod budget;
pub mod capability;
pub mod chunk_id;
pub mod codec;
pub mod connections;
pub mod exposition;
#[cfg(feature = "clap")]
pub mod flags;
pub mod frames;
#[cfg(feature = "https")]
pub mod https;
pub mod logging;
pub mod move_id;
pub mod rpc_timing;
pub mod serving;
pub mod tls;
pub mod units;

/// Generated messages, clients and servers of `keel.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("keel.v1");
}

/// Generated clients of the subset of etcd's v3 API under `proto/etcd/`
/// (Apache-2.0, the etcd authors): KV and Lease, enough for leader election.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod etcd {
    /// Keys and values as etcd stores them.
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    /// etcd's KV and Lease services.
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}

/// Encoded `FileDescriptorSet` of `keel.v1`, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/keel_descriptor.bin"));

/// Largest gRPC message any Keel endpoint accepts or sends. Data frames are far
/// smaller; this leaves room for large chunk reports in heartbeats.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Largest replication factor a chunk may carry. A factor no cluster can meet
/// would keep a chunk under-replicated forever and every move of it from
/// releasing its source; the master clamps requests to its live servers, and
/// chunk servers refuse writes above this.
pub const MAX_REPLICATION: u32 = 16;

/// Response metadata a master in safe mode adds to the calls it refuses for
/// that reason: the milliseconds left, so clients can wait it out instead
/// of reading the refusal as an outage.
pub const SAFE_MODE_HEADER: &str = "keel-safe-mode-ms";

/// Checks a replication factor where it enters (a write, a copy's header, a
/// heartbeat): `1..=MAX_REPLICATION`. The error is a sentence for the caller.
pub fn check_replication(replication: u32) -> Result<(), String> {
    match replication {
        0 => Err("replication must be at least 1".into()),
        r if r > MAX_REPLICATION => Err(format!(
            "replication {r} is above the largest supported, {MAX_REPLICATION}"
        )),
        _ => Ok(()),
    }
}

/// Payload bytes per data frame of chunk streams. 256 KiB–1 MiB measured fastest
/// on loopback; see the benchmark in the README.
pub const FRAME_BYTES: usize = 512 * 1024;

/// Most hot replicas one heartbeat carries (`HeartbeatRequest.hot_chunks`):
/// chunk servers send their hottest this many, and the master cuts a longer
/// list rather than trust it. Enough for the planner to find a hot server's
/// few hot chunks; small enough that a heartbeat stays small.
pub const HOT_CHUNKS_MAX: usize = 64;

/// Time constant of the chunk servers' decayed read rates: a rate that stops
/// falls to 1/e of itself after this long. The master uses the same figure
/// to age what a finished load move took from its source's reported rate.
pub const READ_RATE_TIME_CONSTANT: std::time::Duration = std::time::Duration::from_secs(60);
