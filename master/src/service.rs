//! `keel.v1.Master`, thin: convert the request, call the metadata or the
//! mover or the balancer, convert the answer, map errors through
//! `From<Error> for Status`.
//!
//! With several masters a standby answers reads (`ListServers`,
//! `LocateChunk`, `RebalanceCheck`, `RebalancePlan`, `RebalanceStatus`,
//! `ExplainChunk`) from its own view, takes heartbeats, and refuses every
//! call that changes something with FAILED_PRECONDITION and the leader's
//! address in the `keel-leader` header (UNAVAILABLE while no leader is
//! known); clients retry there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_proto::v1 as pb;
use keel_proto::v1::master_server::Master;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};
use tracing::{info, instrument};

use crate::balance::{self, Balancer, Trigger};
use crate::convert;
use crate::error::Error;
use crate::ha::{Ha, LEADER_HEADER, OperatorState};
use crate::meta::{SharedMeta, lock};
use crate::mover::Mover;
use crate::rebalance;
use crate::reports::{Page, Reports};

/// How long `RebalancePlan` and `RebalanceRun` wait for a plan already being
/// computed before answering RESOURCE_EXHAUSTED. Planning copies the whole
/// metadata, so plans run one at a time; a short wait lets a second operator
/// command through while a burst of them is refused cheaply.
pub const PLAN_WAIT: Duration = Duration::from_secs(2);

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

/// The gRPC front door of the master.
#[derive(Debug, Clone)]
pub struct MasterService {
    meta: SharedMeta,
    mover: Mover,
    /// Background work started by requests (moves, deletes of corrupt copies).
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
    /// Who leads; etcd for the operator state.
    ha: Ha,
}

impl MasterService {
    /// A service over `balancer`'s mover and metadata.
    pub fn new(balancer: Balancer, tracker: TaskTracker, threshold_pct: f64) -> Self {
        let mover = balancer.mover().clone();
        MasterService {
            meta: Arc::clone(mover.meta()),
            mover,
            tracker,
            threshold_pct,
            balancer,
            reports: Arc::default(),
            plans: Arc::new(Semaphore::new(1)),
            limits: Limits::default(),
            ha: Ha::single(),
        }
    }

    /// The same service as one of several masters.
    pub fn with_ha(mut self, ha: Ha) -> Self {
        self.ha = ha;
        self
    }

    /// Refuses a call that changes something unless this master leads.
    fn leader_only(&self) -> Result<(), Status> {
        let leader = self.ha.leadership.leader();
        if leader.is_self {
            return Ok(());
        }
        if leader.address.is_empty() {
            return Err(Status::unavailable(
                "this master is a standby and no leader is known right now; retry shortly",
            ));
        }
        let mut status = Status::failed_precondition(format!(
            "this master is a standby; the leader is {} (term {})",
            leader.address, leader.term
        ));
        if let Ok(v) = leader.address.parse() {
            status.metadata_mut().insert(LEADER_HEADER, v);
        }
        Err(status)
    }

    /// The leader as replies name it: address, term, and whether it is us.
    fn leader_fields(&self) -> (String, u64, bool) {
        let l = self.ha.leadership.leader();
        (l.address, l.term, l.is_self)
    }

    /// Records the pause in etcd first (with several masters), so the next
    /// leader keeps it.
    async fn save_paused(&self, paused: bool) -> Result<(), Status> {
        let Some((etcd, prefix)) = &self.ha.etcd else {
            return Ok(());
        };
        OperatorState::save_paused(etcd, prefix, paused)
            .await
            .map_err(|e| {
                Status::unavailable(format!(
                    "could not record the pause in etcd, so nothing changed: {e}"
                ))
            })
    }

    /// A status answer with the leader named.
    fn status_reply(&self) -> pb::RebalanceStatusResponse {
        let mut r = balance::status_response(self.balancer.status());
        (r.leader, r.term, r.answered_by_leader) = self.leader_fields();
        r
    }

    /// The same service with `limits`.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Waits up to [`PLAN_WAIT`] for the one planning permit.
    async fn plan_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Error> {
        match tokio::time::timeout(PLAN_WAIT, self.plans.acquire()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Error::PlanBusy {
                waited_ms: u64::try_from(PLAN_WAIT.as_millis()).unwrap_or(u64::MAX),
            }),
        }
    }

    /// Applies a heartbeat after its bad entries were taken out: refuses a
    /// new server id beyond `--max-servers`, and keeps the pages of a paged
    /// report until its last one.
    fn apply_heartbeat(
        &self,
        hb: crate::meta::Heartbeat,
        page: Page,
        refused: u64,
    ) -> Result<bool, Error> {
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
        let send_full = self.reports.apply(&self.meta, hb, page, refused, now);
        Ok(send_full)
    }
}

type Reply<T> = Result<Response<T>, Status>;

// Span fields and the corruption detail are request strings, some logged
// before they are validated: they are escaped (`escape_debug`), so a newline
// cannot forge a log line; valid ids look the same either way.
#[tonic::async_trait]
impl Master for MasterService {
    #[instrument(level = "debug", skip_all, fields(server = %req.get_ref().id.escape_debug(), full = req.get_ref().full_report))]
    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Reply<pb::HeartbeatResponse> {
        let mut req = req.into_inner();
        let page = Page::of(&req);
        let listed = req.chunks.len();
        let refused = convert::refuse_bad_entries(&mut req);
        let refused_held = (listed - req.chunks.len()) as u64;
        let hb = convert::heartbeat(req)?;
        // Counted once per report: every page of a paged report was built
        // before the answer to its first page.
        if page.page == 0 {
            self.ha.leadership.heard(&hb.id);
        }
        let send_full_report = if hb.full_report {
            // Up to a page (or a 64 MiB message) of replicas: recorded off the
            // async threads, so other requests stay prompt meanwhile.
            let svc = self.clone();
            tokio::task::spawn_blocking(move || svc.apply_heartbeat(hb, page, refused_held))
                .await
                .map_err(|e| Status::internal(format!("applying a full report failed: {e}")))??
        } else {
            self.apply_heartbeat(hb, page, refused_held)?
        };
        Ok(Response::new(pb::HeartbeatResponse {
            send_full_report,
            refused,
            term: self.ha.leadership.known_term(),
        }))
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_servers(
        &self,
        _req: Request<pb::ListServersRequest>,
    ) -> Reply<pb::ListServersResponse> {
        let (servers, view) = {
            let m = lock(&self.meta);
            let servers: Vec<_> = m
                .list_servers(Instant::now())
                .into_iter()
                .map(|s| {
                    let rate = m.server_by_id(&s.id).map_or(0, |e| e.migrate_rate);
                    convert::server_info(s, rate)
                })
                .collect();
            (servers, m.load_view())
        };
        let (leader, term, answered_by_leader) = self.leader_fields();
        Ok(Response::new(pb::ListServersResponse {
            servers,
            average_utilization_pct: keel_balancer::load::average_utilization_pct(&view),
            leader,
            term,
            answered_by_leader,
        }))
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %req.get_ref().chunk.escape_debug()))]
    async fn locate_chunk(
        &self,
        req: Request<pb::LocateChunkRequest>,
    ) -> Reply<pb::LocateChunkResponse> {
        let chunk = req.into_inner().chunk;
        convert::chunk(&chunk)?;
        let loc = lock(&self.meta).locate(&chunk)?;
        Ok(Response::new(convert::location(loc)))
    }

    #[instrument(skip_all, fields(chunk = %req.get_ref().chunk.escape_debug(), size = req.get_ref().size))]
    async fn allocate_chunk(
        &self,
        req: Request<pb::AllocateChunkRequest>,
    ) -> Reply<pb::AllocateChunkResponse> {
        self.leader_only()?;
        let req = convert::alloc_request(req.into_inner())?;
        let a = {
            let now = Instant::now();
            let mut m = lock(&self.meta);
            m.expire_pending(now);
            let limit = self.limits.max_pending_allocations;
            if m.pending_allocations() >= limit && !m.is_pending(&req.chunk) {
                return Err(Error::TooManyAllocations {
                    chunk: req.chunk,
                    limit,
                }
                .into());
            }
            m.allocate(&req, now)?
        };
        let on: Vec<&str> = a.servers.iter().map(|s| s.id.as_str()).collect();
        info!(chunk = %req.chunk, size = req.size, replication = a.replication, servers = ?on, "chunk placed");
        Ok(Response::new(convert::allocation(a)))
    }

    #[instrument(skip_all)]
    async fn rebalance_check(
        &self,
        _req: Request<pb::RebalanceCheckRequest>,
    ) -> Reply<pb::RebalanceCheckResponse> {
        let view = lock(&self.meta).load_view();
        let report = keel_balancer::load::check(&view, self.threshold_pct);
        Ok(Response::new(convert::check_response(report)))
    }

    #[instrument(skip_all, fields(moves = req.get_ref().moves.len()))]
    async fn rebalance_execute(
        &self,
        req: Request<pb::RebalanceExecuteRequest>,
    ) -> Reply<pb::RebalanceExecuteResponse> {
        self.leader_only()?;
        let requested = req.into_inner().moves;
        let moves = rebalance::moves(&requested);
        let outcomes = rebalance::execute(&self.balancer, moves).await?;
        let resp = rebalance::response(requested, outcomes);
        info!(
            moved = resp.moved,
            bytes = resp.bytes_transferred,
            results = resp.results.len(),
            "rebalance execute finished"
        );
        Ok(Response::new(resp))
    }

    #[instrument(skip_all)]
    async fn rebalance_plan(
        &self,
        _req: Request<pb::RebalancePlanRequest>,
    ) -> Reply<pb::RebalancePlanResponse> {
        let _permit = self.plan_permit().await?;
        let plan = self.balancer.plan().await?;
        info!(
            moves = plan.moves.len(),
            bytes = plan.bytes,
            reaches_band = plan.reaches_band,
            "rebalance plan (dry run)"
        );
        Ok(Response::new(balance::plan_response(plan)))
    }

    #[instrument(skip_all)]
    async fn rebalance_run(
        &self,
        _req: Request<pb::RebalanceRunRequest>,
    ) -> Reply<pb::RebalanceRunResponse> {
        self.leader_only()?;
        if let Some(left) = self.balancer.safe_mode_left() {
            let remaining_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
            return Err(Error::SafeMode { remaining_ms }.into());
        }
        let _permit = self.plan_permit().await?;
        let report = self.balancer.run_pass(Trigger::Request).await?;
        Ok(Response::new(balance::run_response(report)))
    }

    #[instrument(level = "debug", skip_all)]
    async fn rebalance_status(
        &self,
        _req: Request<pb::RebalanceStatusRequest>,
    ) -> Reply<pb::RebalanceStatusResponse> {
        Ok(Response::new(self.status_reply()))
    }

    #[instrument(skip_all)]
    async fn rebalance_pause(
        &self,
        _req: Request<pb::RebalancePauseRequest>,
    ) -> Reply<pb::RebalanceStatusResponse> {
        self.leader_only()?;
        self.save_paused(true).await?;
        self.balancer.pause();
        Ok(Response::new(self.status_reply()))
    }

    #[instrument(skip_all)]
    async fn rebalance_resume(
        &self,
        _req: Request<pb::RebalanceResumeRequest>,
    ) -> Reply<pb::RebalanceStatusResponse> {
        self.leader_only()?;
        self.save_paused(false).await?;
        self.balancer.resume();
        Ok(Response::new(self.status_reply()))
    }

    #[instrument(skip_all, fields(chunk = %req.get_ref().chunk.escape_debug(), server = %req.get_ref().server.escape_debug()))]
    async fn report_corruption(
        &self,
        req: Request<pb::ReportCorruptionRequest>,
    ) -> Reply<pb::ReportCorruptionResponse> {
        self.leader_only()?;
        let req = req.into_inner();
        convert::chunk(&req.chunk)?;
        convert::server_id(&req.server)?;
        let verify = lock(&self.meta).report_corruption(&req.chunk, &req.server)?;
        info!(chunk = %req.chunk, server = %req.server, detail = %req.detail.escape_debug(),
              verifying = verify.is_some(), "corruption reported; the server is asked to verify its replica");
        if let Some(v) = verify {
            let mover = self.mover.clone();
            self.tracker.spawn(async move { mover.verify(v).await });
        }
        Ok(Response::new(pb::ReportCorruptionResponse {}))
    }

    #[instrument(skip_all, fields(server = %req.get_ref().server.escape_debug()))]
    async fn drain_server(
        &self,
        req: Request<pb::DrainServerRequest>,
    ) -> Reply<pb::DrainServerResponse> {
        self.set_drain(req.into_inner().server, true).await
    }

    #[instrument(skip_all, fields(server = %req.get_ref().server.escape_debug()))]
    async fn undrain_server(
        &self,
        req: Request<pb::UndrainServerRequest>,
    ) -> Reply<pb::DrainServerResponse> {
        self.set_drain(req.into_inner().server, false).await
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %req.get_ref().chunk.escape_debug()))]
    async fn explain_chunk(
        &self,
        req: Request<pb::ExplainChunkRequest>,
    ) -> Reply<pb::ExplainChunkResponse> {
        let chunk = req.into_inner().chunk;
        convert::chunk(&chunk)?;
        let mut e = lock(&self.meta).explain(&chunk, Instant::now());
        balance::explain_queued(&self.balancer.status(), &mut e);
        Ok(Response::new(convert::explanation(e)))
    }
}

impl MasterService {
    /// Sets the drain mark on the chunk server (which keeps it across
    /// restarts), then in the metadata.
    async fn set_drain(&self, server: String, draining: bool) -> Reply<pb::DrainServerResponse> {
        self.leader_only()?;
        convert::server_id(&server)?;
        let addr = lock(&self.meta).drain_target(&server)?;
        let action = if draining { "drain" } else { "undrain" };
        self.mover
            .set_drain(&addr, draining)
            .await
            .map_err(|s| Error::DrainMark {
                action,
                server: server.clone(),
                detail: s.message().to_owned(),
            })?;
        let (state, chunks_left) = {
            let mut m = lock(&self.meta);
            m.drain_marked(addr.no, draining);
            m.drain_state(addr.no)
        };
        info!(server = %server, draining, chunks_left, "drain mark set");
        Ok(Response::new(pb::DrainServerResponse {
            server,
            state: state.to_owned(),
            chunks_left,
        }))
    }
}
