//! What can go wrong in `keelctl demo` beyond the errors every command
//! shares; each is one sentence, and the daemons' log tails are printed
//! before it when they help.

use std::path::PathBuf;
use std::time::Duration;

use crate::words::age;

/// A demo step that failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The daemons' binaries are not where keelctl looked, and it could not
    /// build them.
    #[error("{} not found in {}: {hint}", missing.join(" and "), dir.display())]
    BinariesMissing {
        /// Where keelctl looked.
        dir: PathBuf,
        /// Which are missing.
        missing: Vec<&'static str>,
        /// What to do about it.
        hint: String,
    },

    /// `cargo build` of the daemons failed.
    #[error("`{command}` failed ({status}); its output is above")]
    BuildFailed {
        /// The command as typed.
        command: String,
        /// How it ended.
        status: String,
    },

    /// A daemon ended on its own.
    #[error("{name} exited ({status}) {during}; the end of its log is above")]
    DaemonExited {
        /// `master` or a server id.
        name: String,
        /// How it ended.
        status: String,
        /// When, e.g. `before it was listening`.
        during: &'static str,
    },

    /// A daemon did not log its address in time.
    #[error("{name} did not report its address within {}; the end of its log is above", age(*after))]
    DaemonSilent {
        /// `master` or a server id.
        name: String,
        /// How long keelctl waited.
        after: Duration,
    },

    /// Chunk servers did not register with the master in time.
    #[error("{alive} of {want} chunk servers registered with the master within {}", age(*after))]
    NotRegistered {
        /// Alive servers seen last.
        alive: usize,
        /// Servers started.
        want: usize,
        /// How long keelctl waited.
        after: Duration,
    },

    /// The balancer did not bring every server into the band in time.
    #[error("the cluster did not balance within {}: {verdict}", age(*after))]
    NotBalanced {
        /// How long keelctl waited.
        after: Duration,
        /// The last check's verdict.
        verdict: String,
    },

    /// A chunk has fewer live replicas than it was written with.
    #[error("chunk {chunk:?} has {live} live replica(s), {want} expected")]
    UnderReplicated {
        /// The chunk.
        chunk: String,
        /// Live replicas the master lists.
        live: usize,
        /// Its replication factor.
        want: usize,
    },

    /// A local set-up step failed (temp dir, log file, process, signals).
    #[error("cannot {action}: {}", crate::words::io_message(source))]
    Setup {
        /// What keelctl was doing, e.g. `start keel-master`.
        action: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl DemoError {
    /// Wraps an I/O error of a set-up step.
    pub fn setup(action: impl Into<String>, source: std::io::Error) -> Self {
        DemoError::Setup {
            action: action.into(),
            source,
        }
    }
}
