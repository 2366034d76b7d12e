//! What a request to the master means, whichever door it came in by.
//!
//! Both front doors only encode and decode: `service.rs` turns protobuf into
//! the domain types taken here and the answers back into protobuf;
//! `stdio.rs` does the same for the seed's JSON lines. Everything a request
//! means lives in [`Front`]: the one leader gate, the limits one client may
//! cost, the pause kept in etcd, the one planning permit, and the calls into
//! the metadata, the balancer and the mover.
//!
//! With several masters a standby answers reads (servers, locations,
//! check, plan, status, explain) from its own view, takes heartbeats, and
//! refuses every call that changes something with a typed [`NotLeader`]
//! naming the leader it knows; each door words that refusal for its callers.
//!
//! # Layout
//! - this file: [`Front`], its settings, the leader gate and the reads.
//! - `change.rs`: the calls that change something (allocation, operator
//!   moves, runs, the pause, drains, corruption reports).

mod change;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use keel_balancer::LoadReport;
use keel_proto::capability::WriteKey;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_util::task::TaskTracker;

use crate::balance::{BalanceStatus, Balancer};
use crate::corruption_limits::CorruptionLimits;
use crate::error::{Error, NotLeader};
use crate::ha::{Ha, LeaderInfo, OperatorState};
use crate::meta::{Explanation, Heartbeat, Location, ServerStatus, SharedMeta, lock};
use crate::mover::Mover;
use crate::reports::{Applied, Page, Reports};

pub use change::{Drained, Placed};

/// How long a plan (`RebalancePlan`, `RebalanceRun`) waits for one already
/// being computed before it is refused as busy. Planning copies the whole
/// metadata, so plans run one at a time; a short wait lets a second operator
/// command through while a burst of them is refused cheaply.
pub const PLAN_WAIT: Duration = Duration::from_secs(2);

/// How long a standby's status waits for etcd's pause flag before it
/// answers with the one it read last.
const STORED_PAUSE_WAIT: Duration = Duration::from_millis(500);

/// What one client may cost the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Distinct server ids learned from heartbeats (`--max-servers`).
    pub max_servers: usize,
    /// Allocations remembered at once (`--max-pending-allocations`).
    pub max_pending_allocations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_servers: 10_000,
            max_pending_allocations: 50_000,
        }
    }
}

/// The answer to a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeartbeatAnswer {
    /// The master lacks a whole view of the server: it asks for a full report.
    pub send_full_report: bool,
    /// The highest term this master knows, so the server fences older ones.
    pub term: u64,
}

/// The live servers as this master sees them.
#[derive(Debug, Clone, PartialEq)]
pub struct Servers {
    /// Each server with its copy rate limit in bytes per second (0: none).
    pub servers: Vec<(ServerStatus, u64)>,
    /// Capacity-weighted average utilization of the live servers.
    pub average_utilization_pct: f64,
    /// Who answered, and who leads.
    pub leader: LeaderInfo,
}

/// The queue's status as this master answers it.
#[derive(Debug, Clone)]
pub struct Standing {
    /// Counts, moves, recent failures and the cluster's balance.
    pub status: BalanceStatus,
    /// Who answered, and who leads.
    pub leader: LeaderInfo,
    /// A standby runs no queue: the pause as stored in etcd, which the
    /// leader obeys (`None` on the leader, or without etcd).
    pub stored_pause: Option<bool>,
}

/// What a request means, for both front doors. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Front {
    meta: SharedMeta,
    mover: Mover,
    /// Background work started by requests (deletes of corrupt copies).
    tracker: TaskTracker,
    /// `--threshold-pct`.
    threshold_pct: f64,
    /// The move queue and its planner.
    balancer: Balancer,
    /// Paged full reports being received.
    reports: Arc<Reports>,
    /// One permit: plans are computed one at a time.
    plans: Arc<Semaphore>,
    /// What one client may cost.
    limits: Limits,
    /// Rate limits of corruption reports.
    corruption: Arc<CorruptionLimits>,
    /// Who leads; etcd for the operator state.
    ha: Ha,
    /// The pause as last read from etcd, for a standby's status when etcd
    /// is slow to answer.
    pause_seen: Arc<Mutex<Option<bool>>>,
    /// Signs the write capability of each allocation; `None` on a cluster
    /// without `--auth-token`, whose chunk servers require none.
    write_key: Option<WriteKey>,
}

impl Front {
    /// A front over `balancer`'s mover and metadata, as a single master.
    pub fn new(balancer: Balancer, tracker: TaskTracker, threshold_pct: f64) -> Self {
        let mover = balancer.mover().clone();
        Front {
            meta: Arc::clone(mover.meta()),
            mover,
            tracker,
            threshold_pct,
            balancer,
            reports: Arc::default(),
            plans: Arc::new(Semaphore::new(1)),
            limits: Limits::default(),
            corruption: Arc::default(),
            ha: Ha::single(),
            pause_seen: Arc::default(),
            write_key: None,
        }
    }

    /// The same front signing write capabilities with the key derived from
    /// the cluster token (`None`: an open cluster, no capabilities).
    pub fn with_cluster_token(mut self, token: Option<&str>) -> Self {
        self.write_key = token.map(WriteKey::from_cluster_token);
        self
    }

    /// The same front as one of several masters.
    pub fn with_ha(mut self, ha: Ha) -> Self {
        self.ha = ha;
        self
    }

    /// The same front with `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether chunk servers are reached over TLS (their addresses must
    /// then be `https://`).
    pub fn tls(&self) -> bool {
        self.mover.tls()
    }

    /// The move queue behind this front.
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// Who leads, as this master knows it now.
    pub fn leader(&self) -> LeaderInfo {
        self.ha.leadership.leader()
    }

    /// The one leader gate: `Ok` while this master leads; otherwise the
    /// refusal of a standby, naming the leader it knows.
    pub fn leading(&self) -> Result<(), NotLeader> {
        let leader = self.leader();
        if leader.is_self {
            return Ok(());
        }
        Err(not_leader(leader, false))
    }

    /// The refusal of a call this master took as the leader but stopped
    /// leading before it ended.
    fn stepped_down(&self) -> NotLeader {
        not_leader(self.leader(), true)
    }

    /// Applies a heartbeat whose bad entries the door took out
    /// (`refused_held` of them): refuses a new server id beyond
    /// `--max-servers`, keeps the pages of a paged report until its last one,
    /// and counts a whole report built under this leader's term towards its
    /// settling.
    pub async fn heartbeat(
        &self,
        hb: Heartbeat,
        page: Page,
        refused_held: u64,
        reported_term: u64,
    ) -> Result<HeartbeatAnswer, Error> {
        let server = hb.id.clone();
        let applied = if hb.full_report {
            // Up to a page (or a 64 MiB message) of replicas: recorded off the
            // async threads, so other requests stay prompt meanwhile.
            let front = self.clone();
            tokio::task::spawn_blocking(move || front.apply_heartbeat(hb, page, refused_held))
                .await
                .map_err(|e| Error::ReportTask {
                    detail: e.to_string(),
                })??
        } else {
            self.apply_heartbeat(hb, page, refused_held)?
        };
        // Counted towards a new leader's settling only once applied, whole
        // (a paged report on its last page, and not when the master asks for
        // a full report: it holds no whole view of the server then), and
        // only when built under this leader's term: then it lists every
        // delete an earlier leader made.
        // A report ignored as late says nothing of the server's disk now.
        let leadership = &self.ha.leadership;
        let send_full_report = applied.send_full_report;
        if !send_full_report
            && !applied.stale
            && (page.report_id == 0 || page.last)
            && reported_term >= leadership.known_term()
        {
            leadership.heard(&server);
        }
        Ok(HeartbeatAnswer {
            send_full_report,
            term: leadership.known_term(),
        })
    }

    fn apply_heartbeat(&self, hb: Heartbeat, page: Page, refused: u64) -> Result<Applied, Error> {
        let now = Instant::now();
        {
            let m = lock(&self.meta);
            if m.server_no(&hb.id).is_none() && m.server_count() >= self.limits.max_servers {
                return Err(Error::TooManyServers {
                    server: hb.id,
                    limit: self.limits.max_servers,
                });
            }
        }
        Ok(self
            .reports
            .apply_report(&self.meta, hb, page, refused, now))
    }

    /// Every known server, with the cluster's average utilization.
    pub fn servers(&self) -> Servers {
        let (servers, view) = {
            let m = lock(&self.meta);
            let servers = m
                .list_servers(Instant::now())
                .into_iter()
                .map(|s| {
                    let rate = m.server_by_id(&s.id).map_or(0, |e| e.migrate_rate);
                    (s, rate)
                })
                .collect();
            (servers, m.load_view())
        };
        Servers {
            servers,
            average_utilization_pct: keel_balancer::load::average_utilization_pct(&view),
            leader: self.leader(),
        }
    }

    /// Where a chunk's replicas are, in the order a reader in `rack` (may
    /// be empty) should try them: least loaded holders first.
    pub fn locate(&self, chunk: &str, rack: &str) -> Result<Location, Error> {
        lock(&self.meta).locate_by_load(chunk, rack)
    }

    /// Which servers are outside the band of `--threshold-pct` around the
    /// average, and outside the load band of `--load-threshold-pct`:
    /// `RebalanceCheck` and the seed's `rebalance_check`.
    pub fn check(&self) -> LoadReport {
        let view = lock(&self.meta).load_view();
        let load_threshold_pct = self.balancer.settings().policy.load_threshold_pct;
        keel_balancer::load::check(&view, self.threshold_pct, load_threshold_pct)
    }

    /// Why a chunk is where it is, and what is queued for it.
    pub fn explain(&self, chunk: &str) -> Explanation {
        let mut e = lock(&self.meta).explain(chunk, Instant::now());
        crate::balance::explain_queued(&self.balancer.status(), &mut e);
        self.balancer.explain_load(&mut e);
        e
    }

    /// The queue's status, with the leader named.
    pub async fn status(&self) -> Standing {
        let leader = self.leader();
        let stored_pause = if leader.is_self {
            None
        } else {
            self.stored_pause().await
        };
        Standing {
            status: self.balancer.status(),
            leader,
            stored_pause,
        }
    }

    /// The pause as etcd stores it, or as last read when etcd does not
    /// answer within [`STORED_PAUSE_WAIT`]; `None` without etcd.
    async fn stored_pause(&self) -> Option<bool> {
        let (etcd, prefix) = self.ha.etcd.as_ref()?;
        let read = tokio::time::timeout(STORED_PAUSE_WAIT, OperatorState::load(etcd, prefix)).await;
        let mut seen = self
            .pause_seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Ok(Ok(state)) = read {
            *seen = Some(state.paused);
        }
        *seen
    }

    /// Waits up to [`PLAN_WAIT`] for the one planning permit.
    async fn plan_permit(&self) -> Result<SemaphorePermit<'_>, Error> {
        match tokio::time::timeout(PLAN_WAIT, self.plans.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Error::PlanBusy {
                waited_ms: u64::try_from(PLAN_WAIT.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }
}

/// The typed refusal for `leader` as known now.
fn not_leader(leader: LeaderInfo, stepped_down: bool) -> NotLeader {
    NotLeader {
        leader: leader.address,
        term: leader.term,
        leads_again: leader.is_self,
        stepped_down,
    }
}

#[cfg(test)]
mod tests;
