//! Keel's balancer as a pure library: a cluster model in, decisions out.
//!
//! Nothing here does I/O, spawns tasks or reads a clock; time is passed in.
//! The master copies a [`ClusterView`] out of its metadata under a short lock,
//! asks this crate what to do, and performs the RPCs itself.
//!
//! # Layout
//! - [`model`]: the cluster as the balancer sees it (servers, chunks, replicas).
//! - [`load`]: utilization maths shared by every front door (`RebalanceCheck`).

pub mod load;
pub mod model;

pub use load::{LoadReport, ServerLoad};
pub use model::{Chunk, ChunkIdx, ClusterView, Server, ServerIdx};
