//! Starting Keel's daemons as child processes, one way for every caller:
//! `keelctl demo`, the integration tests, the benchmarks and the etcd of the
//! HA tests.
//!
//! A daemon started with `--ready-file PATH` writes
//! `{"grpc": ADDR, "http": ADDR | null}` there atomically once it serves
//! ([`ready`]); the launcher waits for that file with a deadline instead of
//! reading addresses out of logs, and shows the log's tail when the daemon
//! exits or stays silent ([`process`]). Binaries are found in one place
//! ([`bins`]).
//!
//! # Layout
//! - [`ready`]: the ready file, written by the daemons and read here.
//! - [`spec`]: [`Spec`], what to run and how.
//! - [`process`]: [`Process`], the running child, stopped on drop: SIGTERM,
//!   a grace period, SIGKILL.
//! - [`bins`]: where `keel-master`, `keel-chunkserver` and `keelctl` are.

pub mod bins;
pub mod process;
pub mod ready;
mod signal;
pub mod spec;

pub use bins::{BinDir, FindError, find};
pub use process::{LaunchError, Process, tail};
pub use ready::{Ready, ReadyError};
pub use spec::Spec;
