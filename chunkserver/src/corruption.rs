//! Corruption reports to the masters ([`MasterReporter`]): sent to every
//! master at once, taken by the leader. A report no master takes (none
//! leads, or none answers) is kept on this server and offered again until
//! the leader takes it, so a replica found bad during a failover is still
//! replaced. Before it is offered, the replica is marked suspect in the data
//! dir ([`crate::store::Store::mark_suspect`]): a restart or a failover
//! before any master has verified it leaves it reported suspect.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use keel_proto::chunk_id::ChunkId;
use keel_proto::v1::ReportCorruptionRequest;
use tracing::{debug, info, warn};

use crate::peer::MasterLink;

/// Most corruption reports one server keeps while no master takes them:
/// one per chunk, so this many corrupt chunks; later ones are dropped with a
/// warning (the next read of such a replica fails its check and reports it
/// again).
pub const MAX_PENDING_REPORTS: usize = 4096;

/// First wait before kept reports are offered again; doubles up to
/// [`REPORT_RETRY_MAX`].
const REPORT_RETRY_MIN: Duration = Duration::from_millis(250);

/// Longest wait between offers of kept reports.
const REPORT_RETRY_MAX: Duration = Duration::from_secs(5);

/// Tells the masters about corrupt replicas, without ever blocking the
/// caller. A report no master takes (none leads: standbys refuse it, or
/// none answers) is kept, one per chunk and at most
/// [`MAX_PENDING_REPORTS`], and offered again with backoff until one does.
#[derive(Clone)]
pub struct MasterReporter {
    /// Lazily connected master clients, one per `--master`: the leader acts
    /// on the report, standbys refuse it. The heartbeat loops share them.
    pub clients: Vec<MasterLink>,
    /// `--id`.
    server_id: Arc<str>,
    /// Reports no master took yet, shared by every clone.
    pending: Arc<Mutex<PendingReports>>,
    /// Where the suspect mark is kept, when set.
    marks: Option<Arc<crate::store::Store>>,
}

/// Reports waiting for a master to take them, by chunk id, with the
/// flag saying whether a task is offering them.
#[derive(Debug, Default)]
pub struct PendingReports {
    /// Chunk id → the latest detail reported for it.
    reports: std::collections::BTreeMap<String, String>,
    /// A retry task is running for these reports.
    retrying: bool,
}

/// What [`PendingReports::keep`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Kept; a retry task must be started.
    StartRetrying,
    /// Kept (or its chunk's report updated); a task already retries.
    Queued,
    /// Full: dropped.
    Full,
}

impl PendingReports {
    /// Keeps a report for `chunk` (the newest detail wins).
    pub fn keep(&mut self, chunk: &str, detail: &str) -> Kept {
        if !self.reports.contains_key(chunk) && self.reports.len() >= MAX_PENDING_REPORTS {
            return Kept::Full;
        }
        self.reports.insert(chunk.to_owned(), detail.to_owned());
        if self.retrying {
            Kept::Queued
        } else {
            self.retrying = true;
            Kept::StartRetrying
        }
    }

    /// The reports to offer now, oldest chunk id first.
    pub fn snapshot(&self) -> Vec<(String, String)> {
        self.reports
            .iter()
            .map(|(c, d)| (c.clone(), d.clone()))
            .collect()
    }

    /// A report was taken or refused for good. A report kept again since
    /// with a new detail stays.
    pub fn settle(&mut self, chunk: &str, detail: &str) {
        if self.reports.get(chunk).is_some_and(|d| d == detail) {
            self.reports.remove(chunk);
        }
    }

    /// Called by the retry task: true when nothing is left, and the task
    /// may end (a later report starts a new one).
    pub fn done(&mut self) -> bool {
        if self.reports.is_empty() {
            self.retrying = false;
        }
        !self.retrying
    }

    /// Reports kept.
    pub fn len(&self) -> usize {
        self.reports.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.reports.is_empty()
    }
}

/// How one offer of a report ended over every master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offer {
    /// A master (the leader) took it.
    Taken,
    /// None took it but one may later: no leader, or unreachable.
    Later,
    /// Every master refused it for good (e.g. an unknown chunk).
    Refused,
}

/// Whether a refusal may go away by itself: no leader yet, a standby, a
/// master out of reach or busy.
fn may_pass_later(code: tonic::Code) -> bool {
    use tonic::Code;
    matches!(
        code,
        Code::Unavailable
            | Code::FailedPrecondition
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::Unknown
    )
}

fn lock_pending(p: &Mutex<PendingReports>) -> MutexGuard<'_, PendingReports> {
    p.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MasterReporter {
    /// Reports to `clients` (one per `--master`) as server `server_id`.
    pub fn new(clients: Vec<MasterLink>, server_id: &str) -> Self {
        MasterReporter {
            clients,
            server_id: server_id.into(),
            pending: Arc::default(),
            marks: None,
        }
    }

    /// The same reporter, marking each reported replica suspect in `store`
    /// first.
    pub fn with_marks(mut self, store: Arc<crate::store::Store>) -> Self {
        self.marks = Some(store);
        self
    }

    /// Reports `id` as corrupt on this server, in the background.
    pub fn corruption(&self, id: &ChunkId, detail: &str) {
        let this = self.clone();
        let (chunk, detail) = (id.to_string(), detail.to_owned());
        let marks = self.marks.clone().map(|store| (store, id.clone()));
        if let Some((store, id)) = &marks {
            // In the index now, on disk below: a StatChunk answered meanwhile
            // must not vouch for this copy.
            store.doubt(id);
        }
        tokio::spawn(async move {
            if let Some((store, id)) = marks {
                let marked = tokio::task::spawn_blocking(move || store.mark_suspect(&id)).await;
                match marked {
                    Ok(Ok(_)) => {}
                    // Gone or moved aside since: nothing is left to doubt.
                    Ok(Err(crate::error::Error::NotFound { .. })) => {}
                    Ok(Err(e)) => {
                        warn!(chunk = %chunk, error = %e, "could not keep the suspect mark")
                    }
                    Err(e) => warn!(chunk = %chunk, error = %e, "could not keep the suspect mark"),
                }
            }
            match this.offer(&chunk, &detail).await {
                Offer::Taken => info!(chunk = %chunk, "corruption reported to the master"),
                Offer::Refused => {}
                Offer::Later => this.keep(&chunk, &detail),
            }
        });
    }

    /// Keeps a report no master took, and starts retrying if none does.
    fn keep(&self, chunk: &str, detail: &str) {
        let kept = lock_pending(&self.pending).keep(chunk, detail);
        match kept {
            Kept::Full => warn!(
                chunk = %chunk,
                max = MAX_PENDING_REPORTS,
                "no master takes corruption reports and too many are kept; this one is dropped"
            ),
            Kept::Queued => {
                debug!(chunk = %chunk, "no master took the corruption report; kept for the leader");
            }
            Kept::StartRetrying => {
                info!(chunk = %chunk, "no master took the corruption report (none leads?); kept and retried until one does");
                let this = self.clone();
                tokio::spawn(async move { this.retry().await });
            }
        }
    }

    /// Offers the kept reports again, with backoff, until none is left.
    async fn retry(self) {
        let pending = Arc::clone(&self.pending);
        let mut wait = REPORT_RETRY_MIN;
        loop {
            tokio::time::sleep(wait).await;
            let reports = lock_pending(&pending).snapshot();
            let mut progress = false;
            for (chunk, detail) in reports {
                match self.offer(&chunk, &detail).await {
                    Offer::Later => {}
                    outcome => {
                        if outcome == Offer::Taken {
                            info!(chunk = %chunk, "kept corruption report taken by the master");
                        }
                        lock_pending(&pending).settle(&chunk, &detail);
                        progress = true;
                    }
                }
            }
            if lock_pending(&pending).done() {
                return;
            }
            wait = if progress {
                REPORT_RETRY_MIN
            } else {
                (wait * 2).min(REPORT_RETRY_MAX)
            };
        }
    }

    /// Sends one report to every master at once: taken when one (the
    /// leader) accepts it.
    async fn offer(&self, chunk: &str, detail: &str) -> Offer {
        let several = self.clients.len() > 1;
        let calls = self.clients.iter().map(|client| {
            let mut client = client.clone();
            let mut req = tonic::Request::new(ReportCorruptionRequest {
                chunk: chunk.to_owned(),
                server: self.server_id.to_string(),
                detail: detail.to_owned(),
            });
            req.set_timeout(Duration::from_secs(5));
            async move { client.report_corruption(req).await }
        });
        let mut outcome = Offer::Refused;
        // As they answer: the leader's yes ends the offer, however long a
        // frozen standby takes to time out.
        let mut answers: futures::stream::FuturesUnordered<_> = calls.collect();
        while let Some(r) = futures::StreamExt::next(&mut answers).await {
            match r {
                Ok(_) => return Offer::Taken,
                Err(e) if may_pass_later(e.code()) => {
                    // A standby refuses: the leader, also asked, acts on it.
                    if several && e.code() == tonic::Code::FailedPrecondition {
                        debug!(chunk = %chunk, error = %e, "a standby master passed on a corruption report");
                    } else {
                        debug!(chunk = %chunk, error = %e, "a master did not take a corruption report");
                    }
                    outcome = Offer::Later;
                }
                Err(e) => {
                    warn!(chunk = %chunk, error = %e, "the master refused a corruption report");
                }
            }
        }
        outcome
    }
}

#[cfg(test)]
mod pending_tests {
    use super::*;

    #[test]
    fn reports_are_kept_once_per_chunk_and_capped() {
        let mut p = PendingReports::default();
        assert_eq!(p.keep("a", "crc"), Kept::StartRetrying);
        assert_eq!(p.keep("a", "size"), Kept::Queued);
        assert_eq!(p.len(), 1);
        assert_eq!(p.snapshot(), [("a".to_owned(), "size".to_owned())]);
        for i in 1..MAX_PENDING_REPORTS {
            assert_eq!(p.keep(&format!("c{i}"), "crc"), Kept::Queued);
        }
        assert_eq!(p.keep("one-too-many", "crc"), Kept::Full);
        // A chunk already kept is updated even when full.
        assert_eq!(p.keep("a", "crc"), Kept::Queued);
        assert_eq!(p.len(), MAX_PENDING_REPORTS);
    }

    #[test]
    fn a_settled_report_goes_unless_reported_again_meanwhile() {
        let mut p = PendingReports::default();
        p.keep("a", "crc");
        p.keep("b", "crc");
        p.keep("b", "size");
        p.settle("a", "crc");
        p.settle("b", "crc");
        assert_eq!(p.snapshot(), [("b".to_owned(), "size".to_owned())]);
        assert!(!p.done(), "b is still kept: the task goes on");
        p.settle("b", "size");
        assert!(p.is_empty());
        assert!(p.done(), "nothing kept: the task ends");
        assert_eq!(p.keep("c", "crc"), Kept::StartRetrying);
    }
}
