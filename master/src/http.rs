//! HTTP on `--http-listen`: `/healthz` for probes and `/metrics` in the
//! Prometheus text format.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::meta::{SharedMeta, lock};
use crate::metrics::Metrics;

/// What the handlers read.
#[derive(Clone)]
struct HttpState {
    meta: SharedMeta,
    metrics: Arc<Metrics>,
}

/// The HTTP routes.
pub fn router(meta: SharedMeta, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .with_state(HttpState { meta, metrics })
}

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics_text(State(s): State<HttpState>) -> impl IntoResponse {
    let servers = lock(&s.meta).list_servers(Instant::now());
    let body = s.metrics.render(&servers);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
