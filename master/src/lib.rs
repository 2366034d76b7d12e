//! Keel master: learns servers and chunks from heartbeats, places new chunks,
//! answers where chunks are, and moves chunks safely between servers.
//!
//! # Layout
//! - [`config`]: flags (every one also read from `KEEL_<FLAG>`).
//! - [`meta`]: the metadata (pure; one mutex around it).
//! - [`mover`]: the safe move protocol and the RPCs to chunk servers.
//! - [`balance`]: the one move queue (balance, operator, repair and drain
//!   copies under one admission rule, slot table and retry policy) drained
//!   through the mover, and the background balancer's planning passes
//!   (`--balance-interval`) that feed it.
//! - [`rebalance`]: `RebalanceExecute`, operator moves through that queue.
//! - [`maintenance`]: liveness, trimming, verification, and the repair and
//!   drain copies it queues.
//! - [`front`]: what a request means, whichever door it came in by: the
//!   one leader gate (a typed [`error::NotLeader`]), [`front::Limits`] on
//!   what one client may cost, the pause kept in etcd, the planning permit.
//! - [`service`] and [`convert`]: the gRPC front door, which only encodes
//!   and decodes; [`auth`]: its token check.
//! - [`stdio`]: the seed's JSON-lines door (`--stdio`) onto the same front.
//! - [`reports`]: paged full reports, applied whole; [`corruption_limits`]:
//!   the rate of corruption reports; [`budgets`]: each method's message
//!   limit and deadline.
//! - [`ha`]: several masters: leadership through etcd, fencing terms.
//! - [`http`] and [`metrics`]: `/healthz`, `/readyz` and `/metrics`;
//!   [`dashboard`]: the operator's page at `/`, with the replay of the last
//!   rebalance that [`history`] keeps.
//! - [`error`]: request errors and their gRPC codes.
//! - [`server`]: [`run`], which wires all of the above together.

pub mod auth;
pub mod balance;
pub mod budgets;
pub mod config;
pub mod convert;
pub mod corruption_limits;
pub mod dashboard;
pub mod error;
pub mod front;
pub mod ha;
pub mod history;
pub mod http;
pub mod maintenance;
pub mod meta;
pub mod metrics;
pub mod mover;
pub mod rebalance;
pub mod reports;
pub mod server;
pub mod service;
pub mod stdio;

pub use config::Config;
pub use server::{RunError, run};
