//! `keel-master`: parse flags, set up logging, bind, run until SIGTERM/SIGINT.

use anyhow::Context;
use clap::Parser;
use keel_master::Config;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    keel_proto::logging::init(config.log_format, "info");
    let grpc = TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("binding --listen {}", config.listen))?;
    let http = TcpListener::bind(&config.http_listen)
        .await
        .with_context(|| format!("binding --http-listen {}", config.http_listen))?;
    let shutdown = CancellationToken::new();
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "stopping"),
            _ = int.recv() => tracing::info!(signal = "SIGINT", "stopping"),
        }
        trigger.cancel();
    });
    keel_master::run(config, grpc, http, shutdown).await?;
    Ok(())
}
