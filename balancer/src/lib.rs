//! Keel's balancer as a pure library: a cluster model in, decisions out.
//!
//! Nothing here does I/O, spawns tasks or reads a clock; time is passed in.
//! The master copies a [`ClusterView`] out of its metadata under a short lock,
//! asks this crate what to do, and performs the RPCs itself.
//!
//! # Layout
//! - [`model`]: the cluster as the balancer sees it (servers, chunks,
//!   replicas), [`ClusterView::apply`] for a finished move; `chunks.rs` stores
//!   the chunks column by column; `invariants.rs` checks a view.
//! - [`load`]: utilization maths shared by every front door (`RebalanceCheck`).
//! - [`placement`]: the rules every move obeys (anti-affinity, racks, floor).
//! - [`plan`]: the planner's inputs and outputs, [`plan()`] the planner
//!   (`planner.rs`, with `band.rs`, `targets.rs` and `notes.rs`).
//! - [`queue`]: the move queue, a state machine that drains without
//!   head-of-line blocking, with [`queue::QueueStatus`] for operators.
//! - [`sim`]: seeded cluster generators and a drain simulation, for tests
//!   and the benchmark.
//! - [`error`]: what the bookkeeping refuses.

mod band;
mod chunks;
pub mod error;
mod invariants;
pub mod load;
pub mod model;
mod notes;
pub mod placement;
pub mod plan;
mod planner;
pub mod queue;
pub mod sim;
mod targets;

pub use chunks::{ChunkRef, ChunkTable};
pub use error::{ApplyError, QueueError};
pub use load::{LoadReport, ServerLoad};
pub use model::{Chunk, ChunkIdx, ClusterView, Server, ServerIdx};
pub use plan::{InFlight, Plan, PlannedMove, Policy};
pub use planner::plan;
