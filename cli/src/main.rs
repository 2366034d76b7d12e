//! keelctl: Keel's operator and client command line.
//!
//! # Layout
//! - `cli`: flags and subcommands (clap), and dispatch.
//! - `client`: connections with Keel's message limits, the token, keep-alive, deadlines.
//! - `idle`: the idle timeout of data streams.
//! - `error`: errors as one-line sentences; exit codes.
//! - `output`: tables, bars, progress lines, JSON.
//! - `words`: durations, counts and I/O errors in words, for errors and output alike.
//! - `spool`: standard input into a self-removing temp file, checksummed.
//! - `put`, `get` (+ `fetch`), `servers`, `rebalance/`, `health`: one module per command group.
//! - `sim/`: what-if predictions of a rebalance.
//! - `demo/`: the one-command local cluster.

mod cli;
mod client;
mod demo;
mod drain;
mod error;
mod explain;
mod fetch;
mod get;
mod health;
mod idle;
mod output;
mod put;
mod rebalance;
mod servers;
mod sim;
mod spool;
mod tls;
mod words;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    keel_proto::logging::init(cli.log_format, "off");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&error::Error::Runtime(e)),
    };
    let result = runtime.block_on(async {
        if cli.handles_signals() {
            return cli.run().await;
        }
        tokio::select! {
            r = cli.run() => r,
            _ = tokio::signal::ctrl_c() => Err(error::Error::Interrupted),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &error::Error) -> ExitCode {
    output::warn(&e.to_string());
    ExitCode::from(e.exit_code())
}
