//! `keelctl demo`: a whole Keel cluster on this machine in one command. A
//! master and four chunk servers of unequal capacity start as separate
//! processes on loopback; a skewed data set goes in through the normal
//! client path; a fifth, empty server joins; the master's background
//! balancer evens things out while a progress bar runs; then the cluster
//! keeps running for the operator to poke at until Ctrl-C, or with
//! `--exit-when-balanced` every chunk is read back and checked and keelctl
//! exits.
//!
//! # Layout
//! - [`bins`]: finding (or building) `keel-master` and `keel-chunkserver`.
//! - [`cluster`]: the daemons as child processes, and the guard that always stops them.
//! - [`data`]: the skewed data set and the capacities that go with it.
//! - [`show`]: narration, tables, the band, the `--json` summary.
//! - [`verify`]: reading every chunk back.
//! - [`error`]: the demo's own failures.

mod args;
pub mod bins;
pub mod cluster;
pub mod data;
pub mod error;
pub mod show;
pub mod verify;

use std::cell::Cell;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

pub use self::args::DemoArgs;
use self::cluster::Cluster;
use self::error::DemoError;
use self::show::Narrator;
use crate::error::Error;
use crate::output;

mod scenario;

/// Settings shared with every other command.
#[derive(Debug, Clone, Copy)]
pub struct Common<'a> {
    /// `--auth-token`: given to the daemons and sent by keelctl.
    pub token: Option<&'a str>,
    /// `--timeout` of control requests.
    pub timeout: Duration,
    /// `--json`.
    pub json: bool,
}

/// Log lines of each daemon shown when the demo fails.
const TAIL_LINES: usize = 15;

/// Runs `keelctl demo`. Handles SIGINT and SIGTERM itself: whatever
/// happens, the daemons are stopped and the temp dir removed before it
/// returns.
pub async fn run(args: DemoArgs, common: Common<'_>) -> Result<(), Error> {
    args.check()?;
    let say = Narrator::new(common.json);
    let mut signals = Signals::new()?;
    let bins = tokio::select! {
        r = bins::locate(&say) => r?,
        _ = signals.recv() => return Err(Error::Interrupted),
    };
    let mut cluster = Cluster::new(bins, common.token)?;
    let running = Cell::new(false);
    let outcome = tokio::select! {
        r = scenario::play(&mut cluster, &args, common, say, &running) => r,
        name = signals.recv() => {
            let _ = say.line(&format!("\n{name}: stopping the cluster"));
            if running.get() { Ok(()) } else { Err(Error::Interrupted) }
        }
    };
    if let Err(e) = &outcome
        && !matches!(e, Error::Interrupted)
    {
        output::warn("the demo failed; the daemons' logs end with:");
        output::print_stderr(&cluster.log_tails(TAIL_LINES));
    }
    let killed = cluster.shutdown().await;
    if !killed.is_empty() {
        output::warn(&format!(
            "{} did not stop within the grace period and were killed",
            killed.join(", ")
        ));
    }
    let _ = say.line(&format!(
        "stopped the cluster; removing {}",
        cluster.dir().display()
    ));
    outcome
}

impl DemoArgs {
    /// Limits clap cannot express.
    fn check(&self) -> Result<(), Error> {
        if !(4 << 10..=1 << 30).contains(&self.chunk_size) {
            return Err(Error::Usage(
                "--chunk-size must be between 4KiB and 1GiB".into(),
            ));
        }
        Ok(())
    }
}

/// SIGINT and SIGTERM, caught for as long as the demo runs.
struct Signals {
    int: Signal,
    term: Signal,
}

impl Signals {
    fn new() -> Result<Self, Error> {
        let install = |kind| {
            signal(kind).map_err(|e| Error::from(DemoError::setup("install signal handlers", e)))
        };
        Ok(Signals {
            int: install(SignalKind::interrupt())?,
            term: install(SignalKind::terminate())?,
        })
    }

    /// The next signal, by name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "interrupted",
            _ = self.term.recv() => "terminated",
        }
    }
}
