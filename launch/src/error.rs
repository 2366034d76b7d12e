//! Why a daemon could not be started or did not become ready: the one error
//! of launching, shared by the spec that builds the command and the process
//! that runs it.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::ready::ReadyError;

/// Why a daemon could not be started or did not become ready. The log's
/// last lines are part of the message where they tell why.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Its log file could not be opened.
    #[error("cannot open {name}'s log {}: {source}", path.display())]
    Log {
        /// The daemon.
        name: String,
        /// The log file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The program could not be run.
    #[error("cannot start {name} ({}): {source}", program.display())]
    Spawn {
        /// The daemon.
        name: String,
        /// The program.
        program: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// It ended before it was ready.
    #[error("{name} exited ({status}) before it was ready; its log ends with:\n{log}")]
    Exited {
        /// The daemon.
        name: String,
        /// How it ended.
        status: ExitStatus,
        /// The last lines of its log.
        log: String,
    },
    /// It was not ready in time.
    #[error("{name} was not ready within {after:?}; its log ends with:\n{log}")]
    Timeout {
        /// The daemon.
        name: String,
        /// How long it was given.
        after: Duration,
        /// The last lines of its log.
        log: String,
    },
    /// Its ready file is unreadable or malformed.
    #[error("{source}; {name}'s log ends with:\n{log}")]
    Ready {
        /// The daemon.
        name: String,
        /// What is wrong with the file.
        source: ReadyError,
        /// The last lines of its log.
        log: String,
    },
    /// It was started without
    /// [`Spec::keel_daemon`](crate::Spec::keel_daemon), so it writes no ready
    /// file to wait on.
    #[error("{name} writes no ready file to wait on")]
    NoReadyFile {
        /// The daemon.
        name: String,
    },
    /// Its state could not be checked.
    #[error("cannot check on {name}: {source}")]
    Wait {
        /// The daemon.
        name: String,
        /// The cause.
        source: std::io::Error,
    },
}
