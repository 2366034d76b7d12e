//! [`run`]: builds the metadata, mover and loops from the flags, serves gRPC
//! and HTTP on already-bound listeners (so tests can bind port 0), and shuts
//! down gracefully within a deadline.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::serve::ListenerExt;
use keel_proto::serving;
use keel_proto::v1::master_server::MasterServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic_health::server::HealthReporter;
use tracing::{debug, info, warn};

use keel_balancer::Policy;
use keel_balancer::queue::{HISTORY_LIMIT, QueueConfig};

use crate::balance::{BalanceSettings, Balancer};
use crate::config::Config;
use crate::front::{Front, Limits};
use crate::ha::{Campaign, CampaignSettings, EtcdError, Ha, HaFlags};
use crate::meta::{Meta, MetaSettings, SharedMeta};
use crate::metrics::Metrics;
use crate::mover::{Clients, Mover, MoverSettings, clients::BadToken};
use crate::service::MasterService;
use crate::{auth, http, maintenance};

/// Services advertised by reflection (the descriptor set also describes
/// `keel.v1.ChunkServer`, which the master does not serve).
const ADVERTISED: [&str; 4] = [
    "keel.v1.Master",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Why the master could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The auth token cannot be sent as a header.
    #[error(transparent)]
    Token(#[from] BadToken),
    /// A token or TLS flag or file is unusable.
    #[error(transparent)]
    Security(#[from] auth::SecurityError),
    /// A listener failed.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// Reflection could not load the descriptors.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC server failed.
    #[error("grpc server: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// The gRPC server task panicked.
    #[error("grpc server task: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// `--etcd` is unusable.
    #[error(transparent)]
    Etcd(#[from] EtcdError),
    /// `--advertise` breaks the TLS rule or names no scheme Keel speaks.
    #[error("--advertise: {0}")]
    Advertise(#[from] keel_proto::tls::AddressError),
    /// `--ready-file` could not be written.
    #[error(transparent)]
    Ready(#[from] keel_launch::ReadyError),
}

/// The long-lived parts every front door and loop share.
struct Parts {
    meta: SharedMeta,
    metrics: Arc<Metrics>,
    mover: Mover,
    /// The move queue, its passes and its mover loop.
    balancer: Balancer,
    /// Moves, trims, repairs and loops; shutdown waits for them.
    tracker: TaskTracker,
    /// Tokens and TLS, read once from the flags and files.
    security: auth::Secured,
    /// Who leads; with `--etcd`, the election that decides it.
    ha: Ha,
}

impl Parts {
    fn new(config: &Config, ha: Ha) -> Result<Self, RunError> {
        let meta: SharedMeta = Arc::new(Mutex::new(Meta::new(MetaSettings {
            default_replication: config.replication,
            heartbeat_timeout: config.heartbeat_timeout,
            re_replicate_after: config.re_replicate_after,
            min_free_pct: config.min_free_pct,
            load_threshold_pct: config.load_threshold_pct,
        })));
        let metrics = Arc::new(Metrics::default());
        let security = auth::Secured::from_config(config)?;
        let clients = Arc::new(
            Clients::new(security.cluster_token.as_deref())?
                .with_tls(security.client_tls.clone())
                .with_leadership(ha.leadership.clone()),
        );
        let settings = MoverSettings {
            copy_min_rate: config.copy_min_rate,
        };
        let mover = Mover::new(Arc::clone(&meta), clients, Arc::clone(&metrics), settings);
        let tracker = TaskTracker::new();
        let balancer = Balancer::new(mover.clone(), tracker.clone(), balance_settings(config));
        Ok(Parts {
            meta,
            metrics,
            mover,
            balancer,
            tracker,
            security,
            ha,
        })
    }

    /// What requests mean, for both front doors.
    fn front(&self, config: &Config) -> Front {
        Front::new(
            self.balancer.clone(),
            self.tracker.clone(),
            config.threshold_pct,
        )
        .with_limits(Limits {
            max_servers: usize::try_from(config.max_servers).unwrap_or(usize::MAX),
            max_pending_allocations: usize::try_from(config.max_pending_allocations)
                .unwrap_or(usize::MAX),
        })
        .with_ha(self.ha.clone())
        .with_cluster_token(self.security.cluster_token.as_deref())
    }

    /// With `--etcd`: starts the election loop.
    fn campaign(&self, config: &Config, shutdown: &CancellationToken) {
        let Some((etcd, prefix)) = &self.ha.etcd else {
            return;
        };
        let campaign = Campaign {
            etcd: Arc::clone(etcd),
            leadership: self.ha.leadership.clone(),
            balancer: self.balancer.clone(),
            settings: CampaignSettings {
                prefix: prefix.clone(),
                lease: config.leader_lease,
            },
        };
        self.tracker.spawn(campaign.run(shutdown.clone()));
        info!(etcd = ?config.etcd, prefix = %prefix, lease = ?config.leader_lease, "campaigning for leadership through etcd");
    }
}

/// The address this master advertises: `--advertise`, else the bound one.
/// With any TLS flag set a bare `--advertise` is `https://` and `http://`
/// is refused ([`keel_proto::tls::url`]); the bound address is `https://`
/// when this master serves TLS.
fn advertise(
    config: &Config,
    bound: std::net::SocketAddr,
) -> Result<String, keel_proto::tls::AddressError> {
    let tls = config.security.tls();
    match &config.advertise {
        Some(a) => keel_proto::tls::url(a, tls.any()),
        None if tls.cert.is_some() => Ok(format!("https://{bound}")),
        None => Ok(format!("http://{bound}")),
    }
}

/// The balancer's settings from the flags; the clock starts now.
fn balance_settings(config: &Config) -> BalanceSettings {
    let started = Instant::now();
    BalanceSettings {
        interval: config.balance_interval,
        policy: Policy {
            load_threshold_pct: config.load_threshold_pct,
            ..Policy::new(config.threshold_pct, config.min_free_pct)
        },
        queue: QueueConfig {
            max_concurrent_moves: config.max_concurrent_moves.slots(),
            max_moves_per_server: config.max_moves_per_server as usize,
            move_retries: config.move_retries,
            min_free_pct: config.min_free_pct,
            history_limit: HISTORY_LIMIT,
        },
        started,
        safe_until: started + config.safe_mode,
        stuck_after: config.stuck_after,
        load_cooldown: config.load_cooldown,
        load_dwell: config.load_dwell,
    }
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    let mut b = tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(keel_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET);
    for name in ADVERTISED {
        b = b.with_service_name(name);
    }
    b
}

/// Starts the gRPC server: health, reflection (v1 and v1alpha) and the
/// token-checked `keel.v1.Master`.
async fn serve_grpc(
    core: &Parts,
    front: Front,
    config: &Config,
    listener: TcpListener,
    shutdown: &CancellationToken,
) -> Result<
    (
        JoinHandle<Result<(), tonic::transport::Error>>,
        HealthReporter,
    ),
    RunError,
> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<MasterServer<MasterService>>().await;
    let master = MasterServer::new(MasterService::new(front))
        .max_decoding_message_size(keel_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(keel_proto::MAX_MESSAGE_BYTES);
    // Timed inside the token check: a caller must be admitted before the
    // method it names can become a metric label.
    let master = keel_proto::rpc_timing::Timed::new(master, Arc::clone(&core.metrics.rpc));
    let master = keel_proto::auth::Guard::new(master, core.security.tokens.clone());
    let budgets = crate::budgets::budgets();
    let addr = listener.local_addr()?;
    // Every server may hold a connection, and clients beside them.
    let max_connections = usize::try_from(config.max_servers)
        .unwrap_or(usize::MAX)
        .saturating_add(serving::MAX_CONNECTIONS);
    let server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(serving::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(serving::KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(serving::MAX_CONCURRENT_STREAMS)
        .add_service(budgets.wrap(health_service))
        .add_service(budgets.wrap(reflection().build_v1()?))
        .add_service(budgets.wrap(reflection().build_v1alpha()?))
        .add_service(budgets.wrap(master))
        .serve_with_incoming_shutdown(
            keel_proto::tls::incoming_capped(
                listener,
                core.security.server_tls.clone(),
                max_connections,
            ),
            shutdown.clone().cancelled_owned(),
        );
    let task = tokio::spawn(server);
    info!(addr = %addr, "grpc listening");
    Ok((task, health))
}

/// Starts the HTTP server (`/healthz`, `/metrics`, the dashboard).
fn serve_http(
    core: &Parts,
    listener: TcpListener,
    shutdown: &CancellationToken,
) -> Result<JoinHandle<()>, RunError> {
    let addr = listener.local_addr()?;
    let tls = core.security.http_tls.clone();
    let router = http::router(
        Arc::clone(&core.meta),
        Arc::clone(&core.metrics),
        core.ha.leadership.clone(),
        crate::dashboard::Dashboard::new(
            core.balancer.clone(),
            core.ha.leadership.clone(),
            core.security.tokens.clone(),
        )
        .with_secure_cookies(tls.is_some()),
    );
    // The peer address keys the login limiter.
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    let stop = shutdown.clone().cancelled_owned();
    let task = match tls {
        // `tap_io` only lends the listener axum's peer-address plumbing.
        Some(tls) => {
            let listener = keel_proto::https::HttpsListener::new(listener, tls)?.tap_io(|_| {});
            spawn_http(
                axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .into_future(),
            )
        }
        None => spawn_http(
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .into_future(),
        ),
    };
    info!(addr = %addr, https = core.security.http_tls.is_some(), "http listening");
    Ok(task)
}

fn spawn_http(
    server: impl std::future::Future<Output = std::io::Result<()>> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = server.await {
            warn!(error = %e, "http server failed");
        }
    })
}

/// How long a server may take to close its connections once every
/// request is answered.
const CONNECTION_GRACE: Duration = Duration::from_millis(300);

/// Waits [`CONNECTION_GRACE`] for a server task to end, then aborts it.
async fn finish<T>(mut task: JoinHandle<T>, what: &str) -> Result<Option<T>, RunError> {
    match tokio::time::timeout(CONNECTION_GRACE, &mut task).await {
        Ok(r) => Ok(Some(r?)),
        Err(_) => {
            task.abort();
            debug!(server = what, "idle connections closed");
            Ok(None)
        }
    }
}

/// Speaks the seed's JSON-lines protocol on stdin/stdout beside the gRPC
/// listener. EOF on stdin stops the master; no input does. A broken stdin or
/// stdout ends the session alone: gRPC goes on until SIGTERM.
fn serve_stdio(front: Front, shutdown: &CancellationToken) {
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let input = tokio::io::BufReader::new(tokio::io::stdin());
        let output = tokio::io::stdout();
        let max = crate::stdio::MAX_LINE_BYTES;
        match crate::stdio::serve(&front, input, output, max).await {
            Ok(()) => {
                info!("stdin closed; stopping");
                stop.cancel();
            }
            Err(e) => warn!(error = %e, "stdio session ended; gRPC keeps serving"),
        }
    });
    info!("serving the JSON-lines protocol on stdin/stdout");
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
    let bound = grpc.local_addr()?;
    let http_bound = http.local_addr()?;
    let advertised = advertise(&config, bound)?;
    if !config.etcd.is_empty() && config.advertise.is_none() && bound.ip().is_unspecified() {
        warn!(address = %advertised, "advertising an unspecified address; set --advertise so standbys name a leader clients can reach");
    }
    let flags = HaFlags {
        etcd: &config.etcd,
        prefix: &config.etcd_prefix,
        leader_lease: config.leader_lease,
        access: &config.etcd_access,
    };
    let ha = Ha::from_flags(&flags, advertised)?;
    let core = Parts::new(&config, ha)?;
    let front = core.front(&config);
    let (mut grpc_task, health) =
        serve_grpc(&core, front.clone(), &config, grpc, &shutdown).await?;
    let http_task = serve_http(&core, http, &shutdown)?;
    let upkeep = maintenance::Maintenance {
        mover: core.mover.clone(),
        tracker: core.tracker.clone(),
        interval: config.maintenance_interval,
        safe_until: started + config.safe_mode,
        balancer: core.balancer.clone(),
    };
    core.tracker.spawn(upkeep.run(shutdown.clone()));
    core.balancer.spawn(&shutdown);
    core.campaign(&config, &shutdown);
    info!(safe_mode = ?config.safe_mode, replication = config.replication, balance_interval = ?config.balance_interval, auth = core.security.tokens.enabled(), tls = core.security.server_tls.is_some(), "master ready");
    if config.stdio {
        serve_stdio(front, &shutdown);
    }
    if let Some(path) = &config.ready_file {
        // Every listener is bound and served: a launcher may connect now.
        keel_launch::Ready {
            grpc: bound,
            http: Some(http_bound),
        }
        .write(path)?;
        info!(path = %path.display(), "ready file written");
    }

    tokio::select! {
        () = shutdown.cancelled() => {}
        r = &mut grpc_task => {
            shutdown.cancel();
            return Ok(r??);
        }
    }
    info!("shutting down");
    health
        .set_not_serving::<MasterServer<MasterService>>()
        .await;
    core.tracker.close();
    if tokio::time::timeout(config.shutdown_deadline, core.tracker.wait())
        .await
        .is_err()
    {
        warn!(deadline = ?config.shutdown_deadline, "shutdown deadline passed; abandoning running moves (each leaves a whole replica)");
    }
    // Requests answer within moments once the moves they wait for are over;
    // an idle client may never acknowledge HTTP/2's goodbye, so its
    // connection is dropped after a short grace instead of being waited for.
    if let Some(r) = finish(grpc_task, "grpc").await? {
        r?;
    }
    finish(http_task, "http").await?;
    info!("stopped");
    Ok(())
}
