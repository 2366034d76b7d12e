//! Move counters in one place: the mover feeds done, failed, bytes and the
//! duration and throughput of each copy; the move queue sets the pending
//! gauges and whether it is stuck. `/metrics` renders them with the
//! per-server gauges in Prometheus text format.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use keel_proto::exposition::{self, Histogram};
use keel_proto::rpc_timing::RpcTimes;

use crate::meta::ServerStatus;

/// Counters and gauges of moves, shared by every component that moves data.
#[derive(Debug)]
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
    /// 1 while moves are pending and none has finished for `--stuck-after`
    /// (set by the queue).
    pub queue_stuck: AtomicU64,
    /// Seconds from a copy's start to its end, by what it was for.
    pub move_duration: Labelled,
    /// Bytes per second of each completed copy.
    pub copy_throughput: Histogram,
    /// Latency of the gRPC calls the master serves, by method.
    pub rpc: Arc<RpcTimes>,
    /// Moves queued for read load (the balancer counts them as it queues).
    pub load_moves_total: AtomicU64,
}

/// Buckets of `keel_move_duration_seconds`.
const DURATION_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

/// Buckets of `keel_copy_throughput_bytes_per_second`: 1 MiB/s to 1 GiB/s.
const THROUGHPUT_BUCKETS: &[f64] = &[
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    33_554_432.0,
    67_108_864.0,
    134_217_728.0,
    268_435_456.0,
    536_870_912.0,
    1_073_741_824.0,
];

/// One histogram per copy class (`repair`, `drain`, `operator`, `balance`).
#[derive(Debug)]
pub struct Labelled {
    by_kind: [Histogram; 4],
}

impl Labelled {
    const KINDS: [keel_balancer::CopyClass; 4] = [
        keel_balancer::CopyClass::Repair,
        keel_balancer::CopyClass::Drain,
        keel_balancer::CopyClass::Operator,
        keel_balancer::CopyClass::Balance,
    ];

    /// Records one observation for copies of `kind`.
    pub fn observe(&self, kind: keel_balancer::CopyClass, v: f64) {
        if let Some(i) = Self::KINDS.iter().position(|&k| k == kind) {
            self.by_kind[i].observe(v);
        }
    }
}

impl Default for Labelled {
    fn default() -> Self {
        Labelled {
            by_kind: std::array::from_fn(|_| Histogram::new(DURATION_BUCKETS)),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            moves_pending: AtomicU64::default(),
            moves_running: AtomicU64::default(),
            moves_done_total: AtomicU64::default(),
            moves_failed_total: AtomicU64::default(),
            bytes_moved_total: AtomicU64::default(),
            oldest_pending_move_age_ms: AtomicU64::default(),
            repairs_done: AtomicU64::default(),
            chunks_under_replicated: AtomicU64::default(),
            chunks_unavailable: AtomicU64::default(),
            queue_stuck: AtomicU64::default(),
            move_duration: Labelled::default(),
            copy_throughput: Histogram::new(THROUGHPUT_BUCKETS),
            rpc: Arc::default(),
            load_moves_total: AtomicU64::default(),
        }
    }
}

impl Metrics {
    /// Counts a completed move of `bytes`.
    pub fn move_done(&self, bytes: u64) {
        self.moves_done_total.fetch_add(1, Ordering::Relaxed);
        self.bytes_moved_total.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records a completed copy of `kind`: its duration and throughput.
    pub fn copy_timed(&self, kind: keel_balancer::CopyClass, bytes: u64, secs: f64) {
        self.move_duration.observe(kind, secs);
        if secs > 0.0 {
            self.copy_throughput.observe(bytes as f64 / secs);
        }
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
        self.render_reads(&mut out, servers);
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
            exposition::scalar(&mut out, name, kind, help, value);
        }
        exposition::scalar(
            &mut out,
            "keel_queue_stuck",
            "gauge",
            "1 while moves are pending and none has finished for --stuck-after.",
            load(&self.queue_stuck) as f64,
        );
        let name = "keel_move_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Seconds from a copy's start to its end, by what it was for.\n# TYPE {name} histogram"
        );
        for (kind, h) in Labelled::KINDS.iter().zip(&self.move_duration.by_kind) {
            h.render(&mut out, name, &format!("kind=\"{}\",", kind.name()));
        }
        let name = "keel_copy_throughput_bytes_per_second";
        let _ = writeln!(
            out,
            "# HELP {name} Bytes per second of each completed copy.\n# TYPE {name} histogram"
        );
        self.copy_throughput.render(&mut out, name, "");
        exposition::build_info(&mut out, "keel-master", env!("CARGO_PKG_VERSION"));
        self.rpc.render(&mut out);
        out
    }
}

impl Metrics {
    /// The read-load families: per-server rates and p99, how many servers
    /// are hot, and how many moves were queued for load.
    fn render_reads(&self, out: &mut String, servers: &[ServerStatus]) {
        gauge_family(
            out,
            "keel_server_reads_per_second",
            "Client reads per second the server reports (decayed average).",
            servers,
            |s| s.reads_per_sec,
        );
        gauge_family(
            out,
            "keel_server_read_bytes_per_second",
            "Client read bytes per second the server reports (decayed average).",
            servers,
            |s| s.read_bytes_per_sec,
        );
        gauge_family(
            out,
            "keel_server_read_p99_seconds",
            "p99 of client read service time the server reports.",
            servers,
            |s| s.read_p99_ms / 1000.0,
        );
        let hot = servers.iter().filter(|s| s.load == "hot").count();
        exposition::scalar(
            out,
            "keel_servers_hot",
            "gauge",
            "Live servers above the load band (--load-threshold-pct).",
            hot as f64,
        );
        exposition::scalar(
            out,
            "keel_load_moves_total",
            "counter",
            "Moves queued to bring read load inside its band.",
            self.load_moves_total.load(Ordering::Relaxed) as f64,
        );
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
        m.copy_timed(keel_balancer::CopyClass::Balance, 64 << 20, 2.0);
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
            read_bytes_per_sec: 4096.0,
            reads_per_sec: 12.5,
            read_p99_ms: 250.0,
            load: "hot",
        };
        let text = m.render(&[s]);
        for line in [
            "keel_server_utilization_pct{server=\"cs1\"} 78",
            "keel_server_free_bytes{server=\"cs1\"} 22",
            "keel_server_alive{server=\"cs1\"} 1",
            "keel_server_reads_per_second{server=\"cs1\"} 12.5",
            "keel_server_read_bytes_per_second{server=\"cs1\"} 4096",
            "keel_server_read_p99_seconds{server=\"cs1\"} 0.25",
            "keel_servers_hot 1",
            "keel_load_moves_total 0",
            "keel_moves_done_total 1",
            "keel_moves_failed_total 1",
            "keel_bytes_moved_total 67108864",
            "keel_moves_pending 0",
            "keel_oldest_pending_move_age_seconds 0",
            "# TYPE keel_moves_running gauge",
            "# TYPE keel_chunks_under_replicated gauge",
            "# TYPE keel_chunks_unavailable gauge",
            "keel_repairs_done_total 0",
            "keel_queue_stuck 0",
            "keel_move_duration_seconds_bucket{kind=\"balance\",le=\"2.5\"} 1",
            "keel_move_duration_seconds_bucket{kind=\"balance\",le=\"+Inf\"} 1",
            "keel_move_duration_seconds_count{kind=\"balance\"} 1",
            "keel_move_duration_seconds_count{kind=\"repair\"} 0",
            "keel_copy_throughput_bytes_per_second_bucket{le=\"33554432\"} 1",
            "keel_copy_throughput_bytes_per_second_bucket{le=\"16777216\"} 0",
            "keel_copy_throughput_bytes_per_second_count 1",
            "keel_build_info{binary=\"keel-master\",version=\"0.1.0\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }
}
