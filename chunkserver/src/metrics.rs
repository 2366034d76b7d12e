//! The chunk server's own numbers and its HTTP face (`--http-listen`):
//! `/metrics` in the Prometheus text format and `/healthz`.
//!
//! Bytes are counted where they cross the wire: client reads and writes,
//! migration reads served to peers (out) and copies pulled from them (in).
//! The throttle adds the time transfers waited for its bucket.
//!
//! Client read load, as heartbeats report it: decayed reads/s and bytes/s
//! (a one-minute time constant, [`crate::heat`]) and the read p99 over the
//! last 30 s or so ([`crate::p99`]; 0 without reads in that window).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use keel_proto::exposition;

use crate::node::Node;

/// The HTTP routes of a running server.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics_text))
        .with_state(node)
}

async fn metrics_text(State(node): State<Arc<Node>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&node),
    )
}

/// The Prometheus text exposition of `node`.
pub fn render(node: &Node) -> String {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    let t = &node.traffic;
    let totals = node.store.totals();
    let reachable = node
        .master_reachable
        .iter()
        .any(|r| r.load(Ordering::Relaxed));
    let now = std::time::Instant::now();
    let rate = node.store.heat.server(now);
    let p99 = node.latency.read_p99(now).unwrap_or_default();
    let families: [(&str, &str, &str, f64); 16] = [
        (
            "keel_chunkserver_bytes_read_total",
            "counter",
            "Bytes sent to clients by ReadChunk.",
            load(&t.read),
        ),
        (
            "keel_chunkserver_bytes_written_total",
            "counter",
            "Bytes received from clients by WriteChunk.",
            load(&t.written),
        ),
        (
            "keel_chunkserver_bytes_migrated_in_total",
            "counter",
            "Bytes received from peers by CopyChunk.",
            load(&t.migrated_in),
        ),
        (
            "keel_chunkserver_bytes_migrated_out_total",
            "counter",
            "Bytes sent to peers by migration reads.",
            load(&t.migrated_out),
        ),
        (
            "keel_chunkserver_throttle_wait_seconds_total",
            "counter",
            "Time transfers waited for the migration bucket.",
            node.throttle.waited().as_secs_f64(),
        ),
        (
            "keel_chunkserver_migrate_bandwidth_bytes_per_second",
            "gauge",
            "The migration bucket's rate (0 = unlimited).",
            node.throttle.bytes_per_sec() as f64,
        ),
        (
            "keel_chunkserver_transfers_in_flight",
            "gauge",
            "Writes and copies running now.",
            node.transfers.in_flight() as f64,
        ),
        (
            "keel_chunkserver_reads_in_flight",
            "gauge",
            "Client reads running now (at most --max-reads).",
            node.reads.in_flight() as f64,
        ),
        (
            "keel_chunkserver_verify_reads_total",
            "counter",
            "Whole-chunk reads done to verify replicas (fresh verdicts are not reread).",
            node.verifier.reads() as f64,
        ),
        (
            "keel_chunkserver_client_reads_per_second",
            "gauge",
            "Client reads started per second, decayed over about a minute.",
            rate.reads_per_sec,
        ),
        (
            "keel_chunkserver_client_read_bytes_per_second",
            "gauge",
            "Bytes sent to clients per second, decayed over about a minute.",
            rate.bytes_per_sec,
        ),
        (
            "keel_chunkserver_client_read_p99_seconds",
            "gauge",
            "p99 of client read service time (arrival to first data frame) over the last 30 s; 0 without reads.",
            p99.as_secs_f64(),
        ),
        (
            "keel_chunkserver_chunks",
            "gauge",
            "Chunks held.",
            totals.chunks as f64,
        ),
        (
            "keel_chunkserver_used_bytes",
            "gauge",
            "Bytes of the chunks held.",
            totals.used as f64,
        ),
        (
            "keel_chunkserver_capacity_bytes",
            "gauge",
            "Bytes counted as 100 %.",
            totals.capacity as f64,
        ),
        (
            "keel_chunkserver_master_reachable",
            "gauge",
            "1 when the last heartbeat reached a master (any, with several).",
            f64::from(u8::from(reachable)),
        ),
    ];
    let mut out = String::with_capacity(2048);
    for (name, kind, help, value) in families {
        exposition::scalar(&mut out, name, kind, help, value);
    }
    exposition::build_info(&mut out, "keel-chunkserver", env!("CARGO_PKG_VERSION"));
    t.rpc.render(&mut out);
    out
}
