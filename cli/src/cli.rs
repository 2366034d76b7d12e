//! Command-line arguments: the global flags, one subcommand enum, and the
//! parsing of `--move CHUNK:FROM:TO`.
//!
//! A new command group is one more variant of [`Command`], one more module,
//! and one more arm in [`Cli::run`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use keel_balancer::MoveRef;
use keel_proto::units::{parse_duration, parse_size};

use crate::client::Clients;
use crate::error::Error;
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

/// `keelctl sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// A cluster described in JSON (servers, chunk sizes, limits; see
    /// docs/sim.md); `-` reads standard input.
    #[arg(
        required_unless_present = "from_master",
        conflicts_with = "from_master"
    )]
    pub file: Option<PathBuf>,
    /// Predict the master's own plan for the live cluster, with the
    /// master's queue limits and each chunk server's migration bandwidth.
    #[arg(long)]
    pub from_master: bool,
    /// Time a move holds its slot beyond its transfer (RPCs, fsyncs,
    /// records); default 40ms.
    #[arg(long, value_parser = parse_duration)]
    pub move_overhead: Option<Duration>,
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

/// `keelctl demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Once balanced, read every chunk back and check it, check every
    /// server is inside the band, stop the cluster and exit (1 if anything
    /// is off).
    #[arg(long, env = "KEEL_EXIT_WHEN_BALANCED")]
    pub exit_when_balanced: bool,
    /// Chunks in the skewed data set.
    #[arg(long, env = "KEEL_CHUNKS", default_value_t = 48, hide = true,
          value_parser = clap::value_parser!(u32).range(3..=100_000))]
    pub chunks: u32,
    /// Largest chunk; each is between half this and this.
    #[arg(long, env = "KEEL_CHUNK_SIZE", default_value = "8MiB", hide = true, value_parser = parse_size)]
    pub chunk_size: u64,
    /// Each chunk server's migration bandwidth (in and out together).
    #[arg(long, env = "KEEL_MIGRATE_BANDWIDTH", default_value = "10MiB", hide = true, value_parser = parse_size)]
    pub migrate_bandwidth: u64,
    /// The master's band half-width, in percentage points.
    #[arg(long, env = "KEEL_THRESHOLD_PCT", default_value_t = 10.0, hide = true)]
    pub threshold_pct: f64,
    /// The master's gRPC address when free (any free port otherwise).
    #[arg(
        long,
        env = "KEEL_MASTER_LISTEN",
        default_value = "127.0.0.1:7000",
        hide = true
    )]
    pub master_listen: String,
    /// The master's HTTP address when free (any free port otherwise).
    #[arg(
        long,
        env = "KEEL_HTTP_LISTEN",
        default_value = "127.0.0.1:7080",
        hide = true
    )]
    pub http_listen: String,
    /// Give up when the cluster is not balanced after this long.
    #[arg(long, env = "KEEL_BALANCE_TIMEOUT", default_value = "120s", hide = true, value_parser = parse_duration)]
    pub balance_timeout: Duration,
}

/// `keelctl server ...`.
#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Copy every chunk off a server (it takes no new data meanwhile); its
    /// state turns `drained` when it holds nothing the cluster still needs.
    /// The mark is kept by the chunk server across restarts.
    Drain(ServerArgs),
    /// Clear the drain mark: the server takes placements and moves again.
    Undrain(ServerArgs),
}

/// A chunk server named by id.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Chunk server id, e.g. `cs3`.
    pub server: String,
}

/// `keelctl explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Chunk id.
    pub chunk: String,
}

/// `keelctl health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// gRPC address of the daemon to check (default: `--master`).
    pub url: Option<String>,
}

/// `keelctl put`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// Chunk id: 1–128 characters of `[A-Za-z0-9._-]`, not starting with `.`.
    pub chunk: String,
    /// File whose bytes become the chunk; `-` reads standard input (a file
    /// named `-` is `./-`).
    pub file: PathBuf,
    /// Number of replicas (default: the master's `--replication`).
    #[arg(long, env = "KEEL_REPLICATION", value_parser = clap::value_parser!(u32).range(1..=i64::from(keel_proto::MAX_REPLICATION)))]
    pub replication: Option<u32>,
    /// Pin placement to this chunk server id (repeatable).
    #[arg(
        long = "on",
        value_name = "SERVER",
        env = "KEEL_ON",
        value_delimiter = ','
    )]
    pub on: Vec<String>,
}

/// `keelctl get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Chunk id to fetch.
    pub chunk: String,
    /// Destination file (replaced atomically once the bytes are verified).
    pub file: PathBuf,
}

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

/// `keelctl rebalance run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Show progress until no move is pending or running, then a summary.
    #[arg(long, env = "KEEL_WAIT")]
    pub wait: bool,
    /// With `--wait`: give up waiting after this long (the moves go on).
    #[arg(long = "wait-timeout", env = "KEEL_WAIT_TIMEOUT", value_parser = parse_duration, requires = "wait")]
    pub wait_timeout: Option<Duration>,
    /// With `--wait`: how often to poll the master.
    #[arg(long, env = "KEEL_POLL_INTERVAL", default_value = "500ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
}

/// `keelctl rebalance execute`.
#[derive(Debug, Args)]
pub struct ExecuteArgs {
    /// A move as `CHUNK:FROM:TO` (repeatable, or several after one `--move`).
    #[arg(
        long = "move",
        value_name = "CHUNK:FROM:TO",
        env = "KEEL_MOVE",
        value_delimiter = ',',
        required = true,
        num_args = 1..,
        value_parser = parse_move
    )]
    pub moves: Vec<MoveRef>,
}

/// Parses `CHUNK:FROM:TO`; the chunk id must pass the chunk-id rules.
pub fn parse_move(s: &str) -> Result<MoveRef, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [chunk, from, to] = parts[..] else {
        return Err(format!(
            "expected CHUNK:FROM:TO (three fields separated by ':'), got {} field(s)",
            parts.len()
        ));
    };
    keel_proto::chunk_id::validate(chunk).map_err(|e| e.to_string())?;
    for (name, value) in [("FROM", from), ("TO", to)] {
        if value.trim().is_empty() {
            return Err(format!("{name} server id is empty"));
        }
    }
    Ok(MoveRef::new(chunk, from.trim(), to.trim()))
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
        let (token, tls) = crate::tls::credentials(&self)?;
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
    fn parses_a_move() {
        let m = parse_move("ch_010:cs1:cs4").expect("valid");
        assert_eq!(m, MoveRef::new("ch_010", "cs1", "cs4"));
    }

    #[test]
    fn refuses_bad_moves() {
        assert!(
            parse_move("ch_010:cs1")
                .expect_err("must fail")
                .contains("got 2 field")
        );
        assert!(
            parse_move("a:b:c:d")
                .expect_err("must fail")
                .contains("got 4 field")
        );
        assert!(
            parse_move("../x:cs1:cs2")
                .expect_err("must fail")
                .contains("starts with '.'")
        );
        assert!(
            parse_move(":cs1:cs2")
                .expect_err("must fail")
                .contains("empty")
        );
        assert!(
            parse_move("c:cs1:")
                .expect_err("must fail")
                .contains("TO server id")
        );
        assert!(
            parse_move("c: :cs2")
                .expect_err("must fail")
                .contains("FROM server id")
        );
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
