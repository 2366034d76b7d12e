//! Keel chunk server: stores immutable chunks as files under its data dir,
//! streams them to clients and peers, pulls copies for the master's moves
//! (throttled by one token bucket shared by all migration traffic), and
//! reports what it holds to the master in heartbeats.
//!
//! # Layout
//! - [`config`]: flags and their `KEEL_*` environment variables.
//! - [`datadir`]: the data dir's layout, lock, owner id, start-up sweep and scan.
//! - [`chunk_file`]: one chunk's file format and the temp → fsync → rename writer.
//! - [`store`]: the index, capacity accounting and reservations.
//! - [`report`]: which changes the master has not acknowledged yet.
//! - [`mod@write`], [`read`], [`transfer`]: `WriteChunk`, `ReadChunk`, `CopyChunk`;
//!   [`reads`]: the read slots; [`verify`]: `VerifyChunk` at a bounded cost;
//!   [`read_route`]: `ReadChunk`'s answer sent below tonic's encoder.
//! - [`sink`]: the pipelined writer behind writes and copies.
//! - [`throttle`]: the migration bandwidth bucket; [`throttle::auto`] its
//!   controller for `--migrate-bandwidth auto`, fed by [`latency`], which
//!   also keeps the client read p99 ([`p99`]).
//! - [`heat`]: decayed client read rates of the server and its chunks, for
//!   heartbeats and `/metrics`.
//! - [`heartbeat`]: the loops to the masters; [`corruption`]: corruption
//!   reports, kept until a leader takes them.
//! - [`fence`]: the highest master term seen; deposed masters are refused.
//! - [`service`]: the thin gRPC layer; [`convert`]: every wire message it,
//!   the heartbeats, reads and copies build; [`auth`]: the shared token;
//!   [`peer`]: outgoing clients; [`budgets`]: each method's message limit
//!   and deadline.
//! - [`write_gate`]: who may write: the cluster token or a master-signed write capability.
//! - [`traffic`]: byte counters; [`metrics`]: `/metrics`, `/healthz` on
//!   `--http-listen`.
//! - [`node`]: what requests share; [`blocking`]: file work off the async
//!   threads.
//! - [`run`]: wires it all to an already-bound listener until shutdown.

pub mod auth;
pub mod blocking;
pub mod budgets;
pub mod chunk_file;
pub mod config;
pub mod convert;
pub mod corruption;
pub mod datadir;
pub mod error;
pub mod fence;
pub mod heartbeat;
pub mod heat;
pub mod latency;
pub mod metrics;
pub mod node;
pub mod p99;
pub mod peer;
pub mod read;
pub mod read_route;
pub mod reads;
pub mod report;
pub mod service;
pub mod sink;
pub mod store;
pub mod test_hooks;
pub mod throttle;
pub mod traffic;
pub mod transfer;
pub mod verify;
pub mod write;
pub mod write_gate;

#[cfg(test)]
mod store_replica_tests;
#[cfg(test)]
mod store_tests;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use keel_proto::serving;
use keel_proto::v1::chunk_server_server::ChunkServerServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Server;
use tracing::{info, warn};

pub use config::Config;
pub use error::Error;

use crate::auth::AttachToken;
use crate::config::Bandwidth;
use crate::corruption::MasterReporter;
use crate::fence::Fence;
use crate::heartbeat::{Heartbeat, Identity};
use crate::latency::ClientLatency;
use crate::node::{Node, Transfers};
use crate::service::ChunkService;
use crate::store::Store;
use crate::throttle::Throttle;
use crate::write_gate::WriteGate;

/// Opens the store, serves gRPC on `listener` and heartbeats to the master
/// until `shutdown` is cancelled; then lets in-flight requests finish for up
/// to `--shutdown-timeout`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let bound = listener
        .local_addr()
        .map_err(|e| Error::io("reading the bound address", e))?;
    keel_proto::chunk_id::validate(&config.id).map_err(|e| {
        Error::Config(format!(
            "--id {:?} is not a valid server id (same rules as chunk ids): {e}",
            config.id
        ))
    })?;
    config.check().map_err(Error::Config)?;
    let security = auth::Secured::from_config(&config)?;
    let store = open_store(&config).await?;
    let write_gate = WriteGate::new(
        security.tokens.clone(),
        security.cluster_token.as_deref(),
        &config.id,
    );
    let node = Arc::new(build_node(
        &config,
        bound,
        store,
        security.outgoing,
        write_gate,
    )?);

    let (health, health_service) = tonic_health::server::health_reporter();
    // Advertise only what this server serves (the descriptor set also holds
    // keel.v1.Master), plus health so `grpcurl describe` works on it.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(keel_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("keel.v1.ChunkServer")
            .with_service_name("grpc.health.v1.Health")
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| Error::Config(format!("reflection: {e}")))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| Error::Config(format!("reflection: {e}")))?;
    let service = Arc::new(ChunkService::new(Arc::clone(&node)));
    let chunkserver = ChunkServerServer::from_arc(Arc::clone(&service))
        .max_decoding_message_size(keel_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(keel_proto::MAX_MESSAGE_BYTES);
    let chunkserver = read_route::ReadRoute::new(chunkserver, service);
    // Timed inside the token check, as on the master.
    let chunkserver =
        keel_proto::rpc_timing::Timed::new(chunkserver, Arc::clone(&node.traffic.rpc));
    let chunkserver = keel_proto::auth::Guard::new(chunkserver, security.tokens);
    let budgets = budgets::budgets();
    let chunkserver = budgets.wrap(chunkserver);
    health
        .set_serving::<ChunkServerServer<ChunkService>>()
        .await;

    let beats = shutdown.child_token();
    let mut heartbeats = Vec::new();
    node.store.set_consumers(config.master_urls().len());
    for (consumer, master) in config.master_urls().into_iter().enumerate() {
        let beat = Heartbeat {
            store: Arc::clone(&node.store),
            client: node.reporter.clients[consumer].clone(),
            identity: node.identity.clone(),
            interval: config.heartbeat_interval,
            reachable: Arc::clone(&node.master_reachable[consumer]),
            consumer,
            master: master.clone(),
            fence: Arc::clone(&node.fence),
            changes: node.store.subscribe(),
            throttle: Arc::clone(&node.throttle),
            latency: Arc::clone(&node.latency),
        };
        heartbeats.push(tokio::spawn(beat.run(beats.clone())));
        info!(master = %master, interval = ?config.heartbeat_interval, "heartbeats started");
    }
    let control = tokio::spawn(latency::control(
        Arc::clone(&node.latency),
        Arc::clone(&node.throttle),
        beats.clone(),
    ));
    let scrub = tokio::spawn(scrub_missing(
        Arc::clone(&node.store),
        config.scrub_interval,
        beats.clone(),
    ));

    let (http, http_bound) = match config.http_listen {
        Some(addr) => {
            let tls = security.http_tls.clone();
            let (task, bound) = serve_http(addr, Arc::clone(&node), tls, &shutdown).await?;
            (Some(task), Some(bound))
        }
        None => (None, None),
    };

    info!(addr = %bound, "grpc listening");
    let incoming = keel_proto::tls::incoming(listener, security.server_tls);
    let server = Server::builder()
        .http2_keepalive_interval(Some(serving::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(serving::KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(serving::MAX_CONCURRENT_STREAMS)
        .initial_stream_window_size(peer::STREAM_WINDOW)
        .initial_connection_window_size(peer::CONNECTION_WINDOW)
        .max_frame_size(peer::H2_FRAME)
        .add_service(budgets.wrap(health_service))
        .add_service(budgets.wrap(reflection_v1))
        .add_service(budgets.wrap(reflection_v1alpha))
        .add_service(chunkserver)
        .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    tokio::pin!(server);
    if let Some(path) = &config.ready_file {
        // The listener is bound (connections wait in its backlog) and the
        // server is polled from the next line on: a launcher may connect.
        let ready = keel_launch::Ready {
            grpc: bound,
            http: http_bound,
        };
        ready
            .write(path)
            .map_err(|e| Error::io("writing --ready-file", std::io::Error::other(e)))?;
        info!(path = %path.display(), "ready file written");
    }
    let served = tokio::select! {
        r = &mut server => r,
        () = shutdown.cancelled() => {
            info!(deadline = ?config.shutdown_timeout, "shutting down; letting in-flight requests finish");
            health.set_not_serving::<ChunkServerServer<ChunkService>>().await;
            match tokio::time::timeout(config.shutdown_timeout, &mut server).await {
                Ok(r) => r,
                Err(_) => {
                    warn!("requests still running at the shutdown deadline; cutting them off");
                    Ok(())
                }
            }
        }
    };
    beats.cancel();
    if let Some(http) = http {
        let _ = http.await;
    }
    for heartbeat in heartbeats {
        let _ = heartbeat.await;
    }
    let _ = scrub.await;
    let _ = control.await;
    served.map_err(|e| Error::io("serving gRPC", std::io::Error::other(e)))?;
    info!("chunk server stopped");
    Ok(())
}

/// Binds `--http-listen` and serves `/metrics` and `/healthz` until shutdown.
/// With a certificate (`tls`), HTTPS. Returns the task and the bound address.
async fn serve_http(
    addr: std::net::SocketAddr,
    node: Arc<Node>,
    tls: Option<Arc<keel_proto::tls::ServerConfig>>,
    shutdown: &CancellationToken,
) -> Result<(tokio::task::JoinHandle<()>, std::net::SocketAddr), Error> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("binding --http-listen {addr}"), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::io("reading the bound http address", e))?;
    let (app, stop) = (metrics::router(node), shutdown.clone().cancelled_owned());
    info!(addr = %bound, https = tls.is_some(), "http listening");
    let server: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match tls {
        Some(tls) => {
            let listener = keel_proto::https::HttpsListener::new(listener, tls)
                .map_err(|e| Error::io("serving HTTPS on --http-listen", e))?;
            Box::pin(
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .into_future(),
            )
        }
        None => Box::pin(
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .into_future(),
        ),
    };
    let task = tokio::spawn(async move {
        if let Err(e) = server.await {
            warn!(error = %e, "http server failed");
        }
    });
    Ok((task, bound))
}

/// Every `interval`, forgets indexed chunks whose file is gone.
async fn scrub_missing(store: Arc<Store>, interval: Duration, stop: CancellationToken) {
    if interval.is_zero() {
        return;
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let store = Arc::clone(&store);
        let gone =
            blocking::blocking("checking chunk files", move || Ok(store.forget_missing())).await;
        if let Ok(n) = gone
            && n > 0
        {
            warn!(
                missing = n,
                "chunk files vanished; reported to the master as gone"
            );
        }
    }
}

async fn open_store(config: &Config) -> Result<Arc<Store>, Error> {
    let (dir, id, capacity) = (config.data_dir.clone(), config.id.clone(), config.capacity);
    blocking::blocking("opening the store", move || {
        Store::open(&dir, &id, capacity)
    })
    .await
}

fn build_node(
    config: &Config,
    bound: std::net::SocketAddr,
    store: Arc<Store>,
    token: AttachToken,
    write_gate: WriteGate,
) -> Result<Node, Error> {
    if config.advertise.is_none() && bound.ip().is_unspecified() {
        warn!(
            address = %config.advertise_url(bound),
            "advertising an unspecified address; set --advertise so peers on other hosts can reach this server"
        );
    }
    let clients = config
        .master_urls()
        .iter()
        .map(|url| peer::master_lazy(url, &token))
        .collect::<Result<Vec<_>, _>>()?;
    let master_reachable = clients
        .iter()
        .map(|_| Arc::new(AtomicBool::new(false)))
        .collect();
    let root = config.data_dir.clone();
    let fence = Arc::new(Fence::open(&root)?);
    let (throttle, latency) = match config.migrate_bandwidth {
        Bandwidth::Fixed(rate) => {
            info!(
                bytes_per_sec = rate,
                "migration throttle set (0 = unlimited)"
            );
            (Throttle::new(rate), ClientLatency::off())
        }
        Bandwidth::Auto => {
            let settings = crate::throttle::auto::Settings {
                max: config.migrate_bandwidth_max,
                target: config.client_latency_target,
            };
            info!(
                max_bytes_per_sec = settings.max,
                client_latency_target = ?settings.target,
                "migration throttle follows client latency (auto)"
            );
            (Throttle::new(settings.max), ClientLatency::auto(settings))
        }
    };
    info!(
        max_transfers = config.max_transfers,
        max_reads = config.max_reads,
        reads_per_connection = crate::reads::per_connection(config.max_reads),
        stream_idle_timeout = ?config.stream_idle_timeout,
        "transfer limits set"
    );
    let reporter = MasterReporter::new(clients, &config.id).with_marks(Arc::clone(&store));
    Ok(Node {
        store,
        throttle: Arc::new(throttle),
        latency: Arc::new(latency),
        traffic: Arc::default(),
        reporter,
        token,
        identity: Identity {
            id: config.id.clone(),
            address: config.advertise_url(bound),
            rack: config.rack.clone().unwrap_or_default(),
        },
        master_reachable,
        fence,
        transfers: Transfers::new(config.max_transfers, config.stream_idle_timeout),
        write_gate,
        reads: crate::reads::Reads::new(config.max_reads, config.max_transfers),
        verifier: Arc::default(),
    })
}
