//! Keel master: learns servers and chunks from heartbeats, places new chunks,
//! answers where chunks are, and moves chunks safely between servers.
//!
//! # Layout
//! - [`config`]: flags (every one also read from `KEEL_<FLAG>`).
//! - [`meta`]: the metadata (pure; one mutex around it).
//! - [`placement`]: choosing servers for new replicas (pure).
//! - [`mover`]: the safe move protocol, RPCs to chunk servers, move slots.
//! - [`rebalance`]: `RebalanceExecute` on top of the mover.
//! - [`maintenance`]: liveness, trimming, repair.
//! - [`service`] and [`convert`]: the gRPC front door; [`auth`]: its token check.
//! - [`http`] and [`metrics`]: `/healthz` and `/metrics`.
//! - [`error`]: request errors and their gRPC codes.
//!
//! The background balancer (`--balance-interval`) plugs in beside
//! [`maintenance`]: it copies a [`keel_balancer::ClusterView`] out with
//! [`meta::Meta::cluster_view`], plans, and runs moves through
//! [`mover::Mover::execute`], feeding [`metrics::Metrics`].

pub mod auth;
pub mod config;
pub mod convert;
pub mod error;
pub mod http;
pub mod maintenance;
pub mod meta;
pub mod metrics;
pub mod mover;
pub mod placement;
pub mod rebalance;
pub mod service;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use keel_proto::v1::master_server::MasterServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::interceptor::InterceptedService;
use tracing::{info, warn};

pub use config::Config;

/// Why the master could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The auth token cannot be sent as a header.
    #[error(transparent)]
    Token(#[from] mover::clients::BadToken),
    /// A listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// Reflection could not load the descriptors.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Grpc(#[from] tonic::transport::Error),
}

/// Serves gRPC on `grpc` and HTTP on `http` until `shutdown`, then waits up
/// to `--shutdown-deadline` for running requests and moves.
pub async fn run(
    config: Config,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    let started = Instant::now();
    let meta: meta::SharedMeta = Arc::new(Mutex::new(meta::Meta::new(meta::MetaSettings {
        default_replication: config.replication,
        heartbeat_timeout: config.heartbeat_timeout,
        re_replicate_after: config.re_replicate_after,
        min_free_pct: config.min_free_pct,
    })));
    let metrics = Arc::new(metrics::Metrics::default());
    let clients = Arc::new(mover::Clients::new(config.auth_token.as_deref())?);
    let slots = mover::Slots::new(
        config.max_concurrent_moves as usize,
        config.max_moves_per_server as usize,
    );
    let settings = mover::MoverSettings {
        retries: config.move_retries,
        copy_min_rate: config.copy_min_rate,
        ..mover::MoverSettings::default()
    };
    let mover = mover::Mover::new(
        Arc::clone(&meta),
        clients,
        slots,
        Arc::clone(&metrics),
        settings,
    );
    let tracker = TaskTracker::new();

    let upkeep = maintenance::Maintenance {
        mover: mover.clone(),
        tracker: tracker.clone(),
        interval: config.maintenance_interval,
        safe_until: started + config.safe_mode,
    };
    tracker.spawn(upkeep.run(shutdown.clone()));
    // The background balancer loop (`--balance-interval`) is spawned here
    // once it exists, on the same mover and tracker.

    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<MasterServer<service::MasterService>>()
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(keel_proto::FILE_DESCRIPTOR_SET)
    };
    let master = MasterServer::new(service::MasterService::new(
        mover,
        tracker.clone(),
        config.threshold_pct,
    ))
    .max_decoding_message_size(keel_proto::MAX_MESSAGE_BYTES)
    .max_encoding_message_size(keel_proto::MAX_MESSAGE_BYTES);
    let master =
        InterceptedService::new(master, auth::AuthCheck::new(config.auth_token.as_deref()));

    let grpc_addr = grpc.local_addr()?;
    let http_addr = http.local_addr()?;
    let grpc_server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(master)
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(grpc),
            shutdown.clone().cancelled_owned(),
        );
    let mut grpc_task = tokio::spawn(grpc_server);
    info!(addr = %grpc_addr, "grpc listening");
    let router = http::router(meta, metrics);
    let http_server =
        axum::serve(http, router).with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let http_task = tokio::spawn(async move { http_server.await });
    info!(addr = %http_addr, "http listening");
    info!(safe_mode = ?config.safe_mode, replication = config.replication, auth = config.auth_token.is_some(), "master ready");

    let early = tokio::select! {
        () = shutdown.cancelled() => None,
        r = &mut grpc_task => Some(r),
    };
    if let Some(r) = early {
        shutdown.cancel();
        return match r {
            Ok(r) => r.map_err(RunError::from),
            Err(e) => Err(RunError::Io(std::io::Error::other(e))),
        };
    }
    info!("shutting down");
    health
        .set_not_serving::<MasterServer<service::MasterService>>()
        .await;
    tracker.close();
    let drain = async {
        let grpc = grpc_task.await;
        let _ = http_task.await;
        tracker.wait().await;
        grpc
    };
    match tokio::time::timeout(config.shutdown_deadline, drain).await {
        Ok(Ok(r)) => r?,
        Ok(Err(e)) => warn!(error = %e, "grpc server task ended abnormally"),
        Err(_) => {
            warn!(deadline = ?config.shutdown_deadline, "shutdown deadline passed; abandoning running moves (each leaves a whole replica)")
        }
    }
    info!("stopped");
    Ok(())
}
