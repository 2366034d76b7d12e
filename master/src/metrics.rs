//! Move counters in one place: the mover feeds done, failed and bytes; the
//! move queue sets the pending gauges. `/metrics` renders them with the
//! per-server gauges in Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::meta::ServerStatus;

/// Counters and gauges of moves, shared by every component that moves data.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Moves waiting in the queue (set by the queue).
    pub moves_pending: AtomicU64,
    /// Moves copying right now (kept by the mover).
    pub moves_running: AtomicU64,
    /// Moves that completed.
    pub moves_done_total: AtomicU64,
    /// Moves that failed after their retries.
    pub moves_failed_total: AtomicU64,
    /// Bytes copied by completed moves and repairs.
    pub bytes_moved_total: AtomicU64,
    /// Age of the oldest pending move, in milliseconds (set by the queue).
    pub oldest_pending_move_age_ms: AtomicU64,
    /// Repair and drain copies that completed.
    pub repairs_done: AtomicU64,
    /// Chunks below their factor on live servers (set by the maintenance pass).
    pub chunks_under_replicated: AtomicU64,
    /// Chunks with no whole replica on a live server (set by the maintenance pass).
    pub chunks_unavailable: AtomicU64,
}

impl Metrics {
    /// Counts a completed move of `bytes`.
    pub fn move_done(&self, bytes: u64) {
        self.moves_done_total.fetch_add(1, Ordering::Relaxed);
        self.bytes_moved_total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts a failed move.
    pub fn move_failed(&self) {
        self.moves_failed_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Renders the Prometheus text exposition.
    pub fn render(&self, servers: &[ServerStatus]) -> String {
        let mut out = String::with_capacity(1024 + servers.len() * 256);
        gauge_family(
            &mut out,
            "keel_server_utilization_pct",
            "Used bytes in percent of capacity.",
            servers,
            |s| s.utilization_pct,
        );
        gauge_family(
            &mut out,
            "keel_server_free_bytes",
            "Capacity minus used bytes.",
            servers,
            |s| s.capacity.saturating_sub(s.used) as f64,
        );
        gauge_family(
            &mut out,
            "keel_server_alive",
            "1 while heartbeats arrive in time.",
            servers,
            |s| f64::from(u8::from(s.alive)),
        );
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let scalars: [(&str, &str, &str, f64); 9] = [
            (
                "keel_moves_pending",
                "gauge",
                "Moves waiting in the queue.",
                load(&self.moves_pending) as f64,
            ),
            (
                "keel_moves_running",
                "gauge",
                "Moves copying now.",
                load(&self.moves_running) as f64,
            ),
            (
                "keel_moves_done_total",
                "counter",
                "Moves completed.",
                load(&self.moves_done_total) as f64,
            ),
            (
                "keel_moves_failed_total",
                "counter",
                "Moves dropped after their retries.",
                load(&self.moves_failed_total) as f64,
            ),
            (
                "keel_bytes_moved_total",
                "counter",
                "Bytes copied by moves and repairs.",
                load(&self.bytes_moved_total) as f64,
            ),
            (
                "keel_oldest_pending_move_age_seconds",
                "gauge",
                "Age of the oldest pending move.",
                load(&self.oldest_pending_move_age_ms) as f64 / 1000.0,
            ),
            (
                "keel_chunks_under_replicated",
                "gauge",
                "Chunks with fewer whole replicas on live servers than their factor.",
                load(&self.chunks_under_replicated) as f64,
            ),
            (
                "keel_chunks_unavailable",
                "gauge",
                "Chunks with no whole replica on a live server.",
                load(&self.chunks_unavailable) as f64,
            ),
            (
                "keel_repairs_done_total",
                "counter",
                "Repair and drain copies completed.",
                load(&self.repairs_done) as f64,
            ),
        ];
        for (name, kind, help, value) in scalars {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}

fn gauge_family(
    out: &mut String,
    name: &str,
    help: &str,
    servers: &[ServerStatus],
    value: impl Fn(&ServerStatus) -> f64,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for s in servers {
        // Server ids follow the chunk-id rules: no quote or backslash to escape.
        let _ = writeln!(out, "{name}{{server=\"{}\"}} {}", s.id, value(s));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::default();
        m.move_done(64 << 20);
        m.move_failed();
        let s = ServerStatus {
            id: "cs1".into(),
            address: String::new(),
            rack: String::new(),
            capacity: 100,
            used: 78,
            utilization_pct: 78.0,
            chunks: 1,
            alive: true,
            state: crate::meta::ServerState::Alive,
            last_heartbeat_ms: 0,
        };
        let text = m.render(&[s]);
        for line in [
            "keel_server_utilization_pct{server=\"cs1\"} 78",
            "keel_server_free_bytes{server=\"cs1\"} 22",
            "keel_server_alive{server=\"cs1\"} 1",
            "keel_moves_done_total 1",
            "keel_moves_failed_total 1",
            "keel_bytes_moved_total 67108864",
            "keel_moves_pending 0",
            "keel_oldest_pending_move_age_seconds 0",
            "# TYPE keel_moves_running gauge",
            "# TYPE keel_chunks_under_replicated gauge",
            "# TYPE keel_chunks_unavailable gauge",
            "keel_repairs_done_total 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
