//! `keelctl rebalance ...`: the balancer's front panel.
//!
//! # Layout
//! - [`check`]: `check` and `plan` (read-only views).
//! - [`load`]: the read-load half of `check` and `plan` in words.
//! - [`execute`]: `execute --move CHUNK:FROM:TO` (operator moves, synchronous).
//! - [`queue`]: `status`, `pause`, `resume` (the background move queue).
//! - [`run`](mod@run): `run [--wait]` (queue a plan, optionally follow it to the end).

pub mod check;
pub mod execute;
pub mod load;
pub mod queue;
pub mod run;

use clap::Subcommand;

use self::execute::ExecuteArgs;
use self::run::RunArgs;
use crate::client::Clients;
use crate::error::Error;

/// `keelctl rebalance ...`.
#[derive(Debug, Subcommand)]
pub enum RebalanceCommand {
    /// Average utilization and the servers outside the threshold band.
    Check,
    /// Dry run: the moves the balancer would make now, changing nothing.
    Plan,
    /// Plan now and queue the moves for the background mover.
    Run(RunArgs),
    /// Run the given moves now and wait for each to finish or fail.
    Execute(ExecuteArgs),
    /// The move queue: counts, oldest pending move, and each move's state.
    Status,
    /// Stop starting new moves (running ones finish).
    Pause,
    /// Start moves again.
    Resume,
}

/// Runs one `rebalance` subcommand.
pub async fn run(clients: &Clients, cmd: RebalanceCommand, json: bool) -> Result<(), Error> {
    // What changes the cluster waits through an election for the leader;
    // what only reads takes whichever master answers.
    let master = match cmd {
        RebalanceCommand::Check | RebalanceCommand::Plan | RebalanceCommand::Status => {
            clients.master().await?
        }
        _ => clients.leader().await?,
    };
    match cmd {
        RebalanceCommand::Check => check::check(&master, json).await,
        RebalanceCommand::Plan => check::plan(&master, json).await,
        RebalanceCommand::Execute(a) => execute::run(&master, a, json).await,
        RebalanceCommand::Status => queue::status(&master, json).await,
        RebalanceCommand::Pause => queue::pause(&master, json).await,
        RebalanceCommand::Resume => queue::resume(&master, json).await,
        RebalanceCommand::Run(a) => run::run(&master, a, json).await,
    }
}
