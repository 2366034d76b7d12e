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
//! - [`service`] and [`convert`]: the gRPC front door; [`auth`]: its token check.
//! - [`reports`]: paged full reports, applied whole; [`service::Limits`]: what
//!   one client may cost; [`corruption_limits`]: the rate of corruption
//!   reports; [`budgets`]: each method's message limit and deadline.
//! - [`ha`]: several masters: leadership through etcd, fencing terms.
//! - [`http`] and [`metrics`]: `/healthz`, `/readyz` and `/metrics`;
//!   [`dashboard`]: the operator's page at `/`, with the replay of the last
//!   rebalance that [`history`] keeps.
//! - [`error`]: request errors and their gRPC codes.
//! - [`stdio`]: the seed's JSON-lines protocol (`--stdio`) on the same core.
//! - [`server`]: [`run`], which wires all of the above together.

pub mod auth;
pub mod balance;
pub mod budgets;
pub mod config;
pub mod convert;
pub mod corruption_limits;
pub mod dashboard;
pub mod error;
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
