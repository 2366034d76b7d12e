//! Heartbeats to the master, and best-effort corruption reports.
//!
//! The first heartbeat, any heartbeat after the master asks for it, and one
//! every [`FULL_REPORT_EVERY`] carry every chunk; the others carry only what
//! changed since the last acknowledged heartbeat (see [`crate::report`]). A
//! commit or delete sends one soon, coalesced over [`COALESCE`]. While the
//! master is away the loop keeps retrying quietly: one warning when it goes,
//! one info line when it is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use keel_proto::chunk_id::ChunkId;
use keel_proto::v1::{ChunkReplica, HeartbeatRequest, ReportCorruptionRequest};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::peer::{MasterLink, error_chain};
use crate::store::{Report, Store};

/// A full chunk report at least this often, whatever the master says.
pub const FULL_REPORT_EVERY: Duration = Duration::from_secs(300);

/// After a commit or delete, wait this long for more before heartbeating.
pub const COALESCE: Duration = Duration::from_millis(100);

/// Who this server is, as heartbeats tell the master.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `--id`.
    pub id: String,
    /// Address others use to reach this server.
    pub address: String,
    /// `--rack`, empty when unset.
    pub rack: String,
}

/// The heartbeat loop of one server.
pub struct Heartbeat {
    /// What is reported.
    pub store: Arc<Store>,
    /// Lazily connected master client.
    pub client: MasterLink,
    /// Who we are.
    pub identity: Identity,
    /// `--heartbeat-interval`.
    pub interval: Duration,
    /// Whether the last heartbeat reached the master.
    pub reachable: Arc<AtomicBool>,
}

impl Heartbeat {
    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut want_full = true;
        let mut last_full: Option<Instant> = None;
        let mut was_up: Option<bool> = None;
        loop {
            let full = want_full || last_full.is_none_or(|t| t.elapsed() >= FULL_REPORT_EVERY);
            let report = self.store.report(full);
            let seq = report.seq;
            let up = match self.send(full, report).await {
                Ok(send_full) => {
                    self.store.ack(seq);
                    want_full = send_full;
                    if full {
                        last_full = Some(Instant::now());
                    }
                    true
                }
                Err(e) => {
                    want_full = full;
                    let error = describe(&e);
                    debug!(error, "heartbeat failed");
                    if was_up != Some(false) {
                        warn!(
                            error,
                            "master unreachable; retrying every heartbeat interval"
                        );
                    }
                    false
                }
            };
            if up && was_up != Some(true) {
                info!("master reachable; heartbeats flowing");
            }
            was_up = Some(up);
            self.reachable.store(up, Ordering::Relaxed);
            if !self.wait(up, &shutdown).await {
                return;
            }
        }
    }

    /// Sleeps until the next heartbeat is due; false on shutdown.
    async fn wait(&self, up: bool, shutdown: &CancellationToken) -> bool {
        let changed = self.store.changed().notified();
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(self.interval) => true,
            () = changed, if up => {
                tokio::select! {
                    () = shutdown.cancelled() => false,
                    () = tokio::time::sleep(COALESCE) => true,
                }
            }
        }
    }

    async fn send(&mut self, full: bool, report: Report) -> Result<bool, tonic::Status> {
        let mut req = tonic::Request::new(self.request(full, report));
        req.set_timeout(
            self.interval
                .clamp(Duration::from_secs(2), Duration::from_secs(10)),
        );
        let resp = self.client.heartbeat(req).await?;
        Ok(resp.into_inner().send_full_report)
    }

    fn request(&self, full: bool, report: Report) -> HeartbeatRequest {
        let chunks = report
            .chunks
            .into_iter()
            .map(|(chunk, e)| ChunkReplica {
                chunk,
                size: e.meta.size,
                crc32c: e.meta.crc32c,
                replication: e.meta.replication,
                reads: e.reads,
            })
            .collect();
        HeartbeatRequest {
            id: self.identity.id.clone(),
            address: self.identity.address.clone(),
            rack: self.identity.rack.clone(),
            capacity_bytes: report.totals.capacity,
            used_bytes: report.totals.used,
            full_report: full,
            chunks,
            removed: report.removed,
            chunk_count: report.totals.chunks,
            stamp: Some(crate::service::wire_stamp(report.stamp)),
            draining: self.store.is_draining(),
        }
    }
}

/// A status and its transport causes on one line, e.g.
/// `Unavailable: tcp connect error: Connection refused (os error 111)`.
fn describe(s: &tonic::Status) -> String {
    let mut out = format!("{:?}: {}", s.code(), s.message());
    if let Some(src) = std::error::Error::source(s) {
        let chain = error_chain(src);
        if !out.contains(&chain) {
            out.push_str(": ");
            out.push_str(&chain);
        }
    }
    out
}

/// Tells the master about corrupt replicas, without ever blocking the caller.
#[derive(Clone)]
pub struct MasterReporter {
    /// Lazily connected master client.
    pub client: MasterLink,
    /// `--id`.
    pub server_id: Arc<str>,
}

impl MasterReporter {
    /// Reports `id` as corrupt on this server, in the background.
    pub fn corruption(&self, id: &ChunkId, detail: &str) {
        let mut client = self.client.clone();
        let mut req = tonic::Request::new(ReportCorruptionRequest {
            chunk: id.to_string(),
            server: self.server_id.to_string(),
            detail: detail.to_owned(),
        });
        req.set_timeout(Duration::from_secs(5));
        let id = id.clone();
        tokio::spawn(async move {
            match client.report_corruption(req).await {
                Ok(_) => info!(chunk = %id, "corruption reported to the master"),
                Err(e) => {
                    warn!(chunk = %id, error = %e, "could not report corruption to the master")
                }
            }
        });
    }
}
