//! Command-line arguments: the global flags and one subcommand enum composed
//! of the commands' own arguments, each defined in its command's module.
//!
//! A new command group is one more module owning its clap `Args` (or
//! `Subcommand`), one more variant of [`Command`], and one more arm in
//! [`Cli::run`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use keel_proto::units::parse_duration;

use crate::client::Clients;
use crate::demo::DemoArgs;
use crate::drain::ServerCommand;
use crate::error::Error;
use crate::explain::ExplainArgs;
use crate::get::GetArgs;
use crate::health::HealthArgs;
use crate::put::PutArgs;
use crate::rebalance::RebalanceCommand;
use crate::sim::SimArgs;
use crate::{demo, drain, explain, get, health, put, rebalance, servers, sim};

/// keelctl: operate a Keel cluster and move chunks in and out of it.
#[derive(Debug, Parser)]
#[command(name = "keelctl", version, about, propagate_version = true)]
pub struct Cli {
    /// gRPC address of the master (`http://HOST:PORT` or a bare `HOST:PORT`);
    /// with several masters, all of them separated by commas (keelctl finds
    /// the leader).
    #[arg(
        long,
        global = true,
        env = "KEEL_MASTER",
        default_value = "http://127.0.0.1:7000"
    )]
    pub master: String,

    /// Print machine-readable JSON on stdout instead of tables (errors stay on stderr).
    #[arg(long, global = true, env = "KEEL_JSON")]
    pub json: bool,

    /// Diagnostic log lines (`RUST_LOG`, off by default) on stderr as `text`
    /// or `json`.
    #[arg(long, global = true, env = "KEEL_LOG_FORMAT", value_enum, default_value_t = keel_proto::logging::LogFormat::Text)]
    pub log_format: keel_proto::logging::LogFormat,

    /// Shared token sent as `authorization: Bearer <token>` to the master and chunk servers.
    #[arg(long, global = true, env = "KEEL_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// File holding the token (instead of `--auth-token`, which `ps` shows).
    /// A trailing line break is ignored.
    #[arg(long, global = true, env = "KEEL_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,

    /// PEM CA that signs the daemons' certificates; needed for `https://` addresses.
    #[arg(long, global = true, env = "KEEL_TLS_CA")]
    pub tls_ca: Option<PathBuf>,

    /// PEM client certificate, presented to daemons that require mTLS (with `--tls-key`).
    #[arg(long, global = true, env = "KEEL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, global = true, env = "KEEL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// Deadline for each control request to the master (not for data
    /// transfers, `rebalance execute` or `rebalance run --wait`).
    #[arg(long, global = true, env = "KEEL_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// A `get` or `put` stream to a chunk server that moves no bytes for
    /// this long is abandoned (`get` then tries another replica).
    #[arg(long, global = true, env = "KEEL_STREAM_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub stream_idle_timeout: Duration,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Store a file as a chunk on the servers the master chooses (or `--on`).
    Put(PutArgs),
    /// Fetch a chunk into a file, verifying its size and CRC32C.
    Get(GetArgs),
    /// List chunk servers with their load and state.
    Servers,
    /// Drain or undrain one chunk server.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Why a chunk is (or is not) being repaired or moved: its replicas and
    /// their health, the jobs on it, and the reasons, in sentences.
    Explain(ExplainArgs),
    /// Inspect and drive the balancer.
    #[command(subcommand)]
    Rebalance(RebalanceCommand),
    /// Ask a daemon (master or chunk server) whether it is serving: prints
    /// `SERVING` and exits 0, otherwise says why and exits 1.
    Health(HealthArgs),
    /// Predict a rebalance without touching data: the planner and the move
    /// queue run in simulated time against the servers' migration
    /// bandwidth. Prints moves, bytes, the lower bound, each server's bytes
    /// in and out, the ETA and a timeline.
    Sim(SimArgs),
    /// Run a whole local cluster (a master and five chunk servers): write a
    /// skewed data set, add an empty server, and watch the balancer even
    /// things out. Stops everything on Ctrl-C.
    Demo(DemoArgs),
    /// Print a shell completion script, e.g.
    /// `keelctl completions bash > /etc/bash_completion.d/keelctl`.
    Completions(CompletionsArgs),
}

/// `keelctl completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Shells `keelctl completions` writes scripts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// Bash.
    Bash,
    /// Zsh.
    Zsh,
    /// Fish.
    Fish,
}

/// Writes the completion script for `shell` on stdout.
fn completions(shell: Shell) -> Result<(), Error> {
    use clap::CommandFactory;
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "keelctl", &mut script);
    crate::output::print_stdout(&String::from_utf8_lossy(&script))
}

impl Cli {
    /// Runs the chosen command.
    pub async fn run(self) -> Result<(), Error> {
        if let Command::Completions(a) = &self.command {
            return completions(a.shell);
        }
        let (token, tls) = crate::tls::credentials(&self.credentials()).map_err(Error::Usage)?;
        // Built only by the commands that talk keel.v1 (health needs no token).
        let clients = || {
            Clients::new(&self.master, token.as_deref(), self.timeout, tls.clone())
                .map(|c| c.with_stream_idle(self.stream_idle_timeout))
        };
        let json = self.json;
        match self.command {
            Command::Put(a) => put::run(&clients()?, a, json).await,
            Command::Get(a) => get::run(&clients()?, a, json).await,
            Command::Servers => servers::run(&clients()?, json).await,
            Command::Server(c) => drain::run(&clients()?, c, json).await,
            Command::Explain(a) => explain::run(&clients()?, &a.chunk, json).await,
            Command::Rebalance(c) => rebalance::run(&clients()?, c, json).await,
            Command::Sim(a) => sim::run(a, json, clients).await,
            Command::Health(a) => {
                let first = self.master.split(',').next().unwrap_or_default();
                let url = a.url.as_deref().unwrap_or(first);
                health::run(url, json, tls.as_ref()).await
            }
            Command::Demo(a) => {
                let common = demo::Common {
                    token: token.as_deref(),
                    timeout: self.timeout,
                    json,
                };
                demo::run(a, common).await
            }
            Command::Completions(a) => completions(a.shell),
        }
    }

    /// The flags naming the token and the TLS files.
    fn credentials(&self) -> crate::tls::Credentials<'_> {
        crate::tls::Credentials {
            auth_token: self.auth_token.as_deref(),
            token_file: self.token_file.as_deref(),
            tls_ca: self.tls_ca.as_deref(),
            tls_cert: self.tls_cert.as_deref(),
            tls_key: self.tls_key.as_deref(),
        }
    }

    /// Whether the command handles Ctrl-C and SIGTERM itself (it has
    /// children to stop first).
    pub fn handles_signals(&self) -> bool {
        matches!(self.command, Command::Demo(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn json_is_global_and_moves_repeat() {
        let cli = Cli::try_parse_from([
            "keelctl",
            "rebalance",
            "execute",
            "--move",
            "a:cs1:cs2",
            "b:cs2:cs3",
            "--move",
            "c:cs3:cs1",
            "--json",
        ])
        .expect("parses");
        assert!(cli.json);
        let Command::Rebalance(RebalanceCommand::Execute(e)) = cli.command else {
            panic!("wrong command: {:?}", cli.command);
        };
        let chunks: Vec<_> = e.moves.iter().map(|m| m.chunk.as_str()).collect();
        assert_eq!(chunks, ["a", "b", "c"]);
    }

    #[test]
    fn execute_needs_a_move() {
        let err = Cli::try_parse_from(["keelctl", "rebalance", "execute"]).expect_err("must fail");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn get_takes_the_readers_rack() {
        let cli =
            Cli::try_parse_from(["keelctl", "get", "c1", "f", "--rack", "rack-a"]).expect("parses");
        let Command::Get(g) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(g.rack.as_deref(), Some("rack-a"));
    }

    #[test]
    fn put_flags() {
        let cli = Cli::try_parse_from([
            "keelctl",
            "put",
            "c1",
            "f",
            "--on",
            "cs1",
            "--on",
            "cs2",
            "--replication",
            "2",
        ])
        .expect("parses");
        let Command::Put(p) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(p.on, ["cs1", "cs2"]);
        assert_eq!(p.replication, Some(2));
        assert!(Cli::try_parse_from(["keelctl", "put", "c1", "f", "--replication", "0"]).is_err());
        assert!(Cli::try_parse_from(["keelctl", "put", "c1", "f", "--replication", "17"]).is_err());
    }
}
