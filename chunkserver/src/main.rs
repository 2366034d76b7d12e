//! `keel-chunkserver`: parse flags, set up logging, bind, run until SIGTERM/SIGINT.

use anyhow::Context;
use clap::Parser;
use keel_chunkserver::{Config, run};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    keel_proto::logging::init(config.log_format, "info");
    info!(id = %config.id, data_dir = %config.data_dir.display(), "keel-chunkserver starting");
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let shutdown = CancellationToken::new();
    let mut signals = Signals::new()?;
    let token = shutdown.clone();
    tokio::spawn(async move {
        let first = signals.next().await;
        info!(signal = first, "shutdown requested");
        token.cancel();
        let second = signals.next().await;
        warn!(signal = second, "second signal: exiting now");
        std::process::exit(130);
    });
    run(config, listener, shutdown).await?;
    Ok(())
}

/// SIGTERM and SIGINT, as one stream.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
        })
    }

    /// Name of the next signal received.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
