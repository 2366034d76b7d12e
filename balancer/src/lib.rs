//! Keel's balancer as a pure library: a cluster model in, decisions out.
//!
//! Nothing here does I/O, spawns tasks or reads a clock; time is passed in.
//! The master copies a [`ClusterView`] out of its metadata under a short lock,
//! asks this crate what to do, and performs the RPCs itself.
//!
//! # Layout
//! - [`ids`]: the move vocabulary: indices, queue ids, [`MoveRef`] (a move
//!   named by ids) and [`CopyJob`] (one copy as the queue holds it).
//! - [`model`]: the cluster as the balancer sees it (servers, chunks,
//!   replicas), [`ClusterView::apply`] for a finished move; `chunks.rs` stores
//!   the chunks column by column; `invariants.rs` checks a view.
//! - [`space`]: utilization and the one free-space floor; [`load`]: the
//!   load report shared by every front door (`RebalanceCheck`).
//! - [`traffic`]: read rates (per server, per hot replica) and the load
//!   band, [`load_position`], the one comparison for hot and cold servers.
//! - [`admission`]: the one rule every copy obeys (alive, idle chunk,
//!   anti-affinity, not draining, [`racks`], floor against committed bytes),
//!   used by the planner, the queue and the master alike; [`placement`]:
//!   where new replicas and repair copies go.
//! - [`mod@plan`]: the planner's inputs and outputs, [`plan()`] the planner
//!   (`planner/`: the phases in `mod.rs`, one source shedding in `shed.rs`;
//!   with `band.rs` for byte bounds, `targets.rs` for picking targets and
//!   `notes.rs` for capped explanations).
//! - [`queue`]: the one queue of copies (repairs, drains, operator and
//!   balance moves) keyed by ids, a state machine that drains without
//!   head-of-line blocking (`mod.rs`; the gates in `state.rs`; operators'
//!   views in `inspect.rs` and `status.rs`), with [`slots`], the one slot
//!   table.
//! - [`predict`]: a timed prediction of a rebalance (the real planner and
//!   queue in simulated time against the servers' migration buckets), for
//!   `keelctl sim` and the ETA of `keelctl rebalance plan`.
//! - `sim` (cargo feature `sim`): seeded cluster generators, a drain
//!   simulation and the seeded `Rng`, for simulations, tests and the
//!   benchmark.
//! - [`error`]: what the bookkeeping refuses.
//!
//! # One balancer pass, as the master runs it
//! ```
//! use std::time::Duration;
//! use keel_balancer::admission::ViewAdmits;
//! use keel_balancer::queue::{MoveQueue, QueueConfig};
//! use keel_balancer::{ClusterView, Policy, plan};
//!
//! let mut view = ClusterView::new(); // copied out of the metadata
//! let hot = view.add_server("cs1", None, 100, true);
//! view.add_server("cs2", None, 100, true);
//! for i in 0..8 {
//!     view.add_chunk(format!("c{i}"), 10, 0, 1, &[hot]);
//! }
//! let mut queue = MoveQueue::new(QueueConfig::default());
//! let now = Duration::from_secs(30); // time since the master started
//! let p = plan(&view, &Policy::default(), &queue.busy(now, &view));
//! for mv in &p.moves {
//!     queue.enqueue_planned(*mv, now, &view)?; // queued by ids
//! }
//! let starts = queue.next_ready(now, &ViewAdmits::new(&view));
//! for start in starts {
//!     // ... run the copy-then-delete protocol for `start.copy`, then:
//!     let mv = ViewAdmits::new(&view).planned(&start.copy).expect("in view");
//!     view.apply(&mv)?;
//!     queue.on_done(start.id, now)?;
//! }
//! assert_eq!(queue.totals().done, 3); // the plan's three moves, four slots on cs1
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod admission;
mod band;
mod chunks;
pub mod error;
pub mod ids;
mod invariants;
pub mod load;
pub mod model;
mod notes;
pub mod placement;
pub mod plan;
mod planner;
pub mod predict;
pub mod queue;
pub mod racks;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
pub mod slots;
pub mod space;
mod targets;
pub mod traffic;

pub use admission::{Admits, Refusal, admit};
pub use chunks::{Chunk, ChunkRef, ChunkTable};
pub use error::{ApplyError, QueueError};
pub use ids::{ChunkIdx, CopyClass, CopyJob, MoveId, MoveRef, ServerIdx};
pub use load::{LoadReport, ServerLoad};
pub use model::{ClusterView, Server};
pub use plan::{InFlight, MoveReason, Plan, PlannedMove, Policy};
pub use planner::plan;
pub use traffic::{Heat, LoadPosition, ReadRate, load_position};
