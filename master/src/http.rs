//! HTTP on `--http-listen`: `/healthz` for liveness, `/readyz` for
//! readiness (the leader, or a standby whose view is warm) and `/metrics`
//! in the Prometheus text format; the dashboard's routes ([`crate::dashboard`]).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::dashboard::Dashboard;
use crate::ha::Leadership;
use crate::meta::{SharedMeta, lock};
use crate::metrics::Metrics;

/// What the handlers read.
#[derive(Clone)]
struct HttpState {
    meta: SharedMeta,
    metrics: Arc<Metrics>,
    leadership: Leadership,
}

/// The HTTP routes.
pub fn router(
    meta: SharedMeta,
    metrics: Arc<Metrics>,
    leadership: Leadership,
    dashboard: Dashboard,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(HttpState {
            meta,
            metrics,
            leadership,
        })
        .merge(crate::dashboard::router(dashboard))
}

/// 200 for the leader, and for a standby that has heard from at least one
/// live chunk server (its view is warm enough to answer reads); 503 else.
async fn readyz(State(s): State<HttpState>) -> (StatusCode, &'static str) {
    if s.leadership.is_leader() {
        return (StatusCode::OK, "leader\n");
    }
    let warm = lock(&s.meta).live_server_ids().next().is_some();
    if warm {
        (StatusCode::OK, "standby\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "standby without a view yet: no chunk server has heartbeated\n",
        )
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics_text(State(s): State<HttpState>) -> impl IntoResponse {
    let servers = lock(&s.meta).list_servers(Instant::now());
    let mut body = s.metrics.render(&servers);
    body.push_str(&s.leadership.render_metrics());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
