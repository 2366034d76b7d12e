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

use keel_proto::capability::{Grant, WriteKey};
use keel_proto::v1 as pb;
use keel_proto::v1::master_server::Master;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};
use tracing::{info, instrument};

use crate::balance::{self, Balancer, Trigger};
use crate::convert;
use crate::error::Error;
use crate::ha::{Ha, LEADER_HEADER, LeaderInfo, OperatorState};
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
    /// Rate limits of corruption reports.
    corruption: Arc<crate::corruption_limits::CorruptionLimits>,
    /// Who leads; etcd for the operator state.
    ha: Ha,
    /// The pause as last read from etcd, for a standby's status when etcd
    /// is slow to answer.
    pause_seen: Arc<std::sync::Mutex<Option<bool>>>,
    /// Signs the write capability of each allocation; `None` on a cluster
    /// without `--auth-token`, whose chunk servers require none.
    write_key: Option<WriteKey>,
}

/// How long a standby's status waits for etcd's pause flag before it
/// answers with the one it read last.
const STORED_PAUSE_WAIT: Duration = Duration::from_millis(500);

/// FAILED_PRECONDITION with `text`, and the leader in the `keel-leader`
/// header when another master is known to lead.
fn refusal(leader: &LeaderInfo, text: String) -> Status {
    let mut status = Status::failed_precondition(text);
    if !leader.is_self
        && !leader.address.is_empty()
        && let Ok(v) = leader.address.parse()
    {
        status.metadata_mut().insert(LEADER_HEADER, v);
    }
    status
}

/// Why a call that waited was refused when this master stepped down: the
/// leader it knows now (another, itself again, or none).
pub fn stepped_down_text(leader: &LeaderInfo) -> String {
    let what = "this master is no longer the leader: it stepped down while the request waited; its queued moves were dropped, and any already copying end on their own (done, or fenced and cleaned up)";
    if leader.is_self {
        format!(
            "{what}; it leads again at term {}: send the request again",
            leader.term
        )
    } else if leader.address.is_empty() {
        format!("{what}; no leader is known right now: retry shortly")
    } else {
        format!(
            "{what}; the leader is {} (term {})",
            leader.address, leader.term
        )
    }
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
            corruption: Arc::default(),
            ha: Ha::single(),
            pause_seen: Arc::default(),
            write_key: None,
        }
    }

    /// The same service signing write capabilities with the key derived
    /// from the cluster token (`None`: an open cluster, no capabilities).
    pub fn with_cluster_token(mut self, token: Option<&str>) -> Self {
        self.write_key = token.map(WriteKey::from_cluster_token);
        self
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
        Err(refusal(
            &leader,
            format!(
                "this master is a standby; the leader is {} (term {})",
                leader.address, leader.term
            ),
        ))
    }

    /// The answer to a call this master took as the leader but stopped
    /// leading before it ended: FAILED_PRECONDITION, naming the leader in
    /// the `keel-leader` header when one is known.
    fn stepped_down(&self) -> Status {
        let leader = self.ha.leadership.leader();
        refusal(&leader, stepped_down_text(&leader))
    }

    /// The leader as replies name it: address, term, and whether it is us.
    fn leader_fields(&self) -> (String, u64, bool) {
        let l = self.ha.leadership.leader();
        (l.address, l.term, l.is_self)
    }

    /// Records the pause in etcd first (with several masters), so the next
    /// leader keeps it; only while the leader key is still this master's
    /// (its term), so a write delayed past a step-down cannot land.
    async fn save_paused(&self, paused: bool) -> Result<(), Status> {
        let Some((etcd, prefix)) = &self.ha.etcd else {
            return Ok(());
        };
        let Some(term) = self.ha.leadership.term_if_leading() else {
            return Err(self.stepped_down());
        };
        match OperatorState::save_paused(etcd, prefix, term, paused).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.stepped_down()),
            Err(e) => Err(Status::unavailable(format!(
                "could not record the pause in etcd, so nothing changed: {e}"
            ))),
        }
    }

    /// A status answer with the leader named. A standby runs no queue: its
    /// `paused` is the pause as stored in etcd, which the leader obeys.
    async fn status_reply(&self) -> pb::RebalanceStatusResponse {
        let mut r = balance::status_response(self.balancer.status());
        (r.leader, r.term, r.answered_by_leader) = self.leader_fields();
        if !r.answered_by_leader
            && let Some(paused) = self.stored_pause().await
        {
            r.paused = paused;
        }
        r
    }

    /// The pause as etcd stores it, or as last read when etcd does not
    /// answer within [`STORED_PAUSE_WAIT`]; `None` without etcd.
    async fn stored_pause(&self) -> Option<bool> {
        let (etcd, prefix) = self.ha.etcd.as_ref()?;
        let read = tokio::time::timeout(STORED_PAUSE_WAIT, OperatorState::load(etcd, prefix)).await;
        let mut seen = self
            .pause_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(Ok(state)) = read {
            *seen = Some(state.paused);
        }
        *seen
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
        let reported_term = req.term;
        let hb = convert::heartbeat(req, self.mover.tls())?;
        let server = hb.id.clone();
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
        // Counted towards a new leader's settling only once applied, whole
        // (a paged report on its last page, and not when the master asks for
        // a full report: it holds no whole view of the server then), and
        // only when built under this leader's term: then it lists every
        // delete an earlier leader made.
        if !send_full_report
            && (page.report_id == 0 || page.last)
            && reported_term >= self.ha.leadership.known_term()
        {
            self.ha.leadership.heard(&server);
        }
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
        let capability = self.write_key.as_ref().map(|key| {
            let servers: Vec<String> = a.servers.iter().map(|s| s.id.clone()).collect();
            key.grant(&Grant {
                chunk: &req.chunk,
                servers: &servers,
                replication: a.replication,
                size: req.size,
            })
        });
        let mut answer = convert::allocation(a);
        answer.capability = capability;
        Ok(Response::new(answer))
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
        if rebalance::stepped_down(&outcomes) {
            return Err(self.stepped_down());
        }
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
        let mut resp = balance::plan_response(plan);
        let q = self.balancer.queue_config();
        resp.max_concurrent_moves = u32::try_from(q.max_concurrent_moves).unwrap_or(u32::MAX);
        resp.max_moves_per_server = u32::try_from(q.max_moves_per_server).unwrap_or(u32::MAX);
        resp.min_free_pct = q.min_free_pct;
        resp.max_concurrent_moves_auto = q.is_auto();
        Ok(Response::new(resp))
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
        Ok(Response::new(self.status_reply().await))
    }

    #[instrument(skip_all)]
    async fn rebalance_pause(
        &self,
        _req: Request<pb::RebalancePauseRequest>,
    ) -> Reply<pb::RebalanceStatusResponse> {
        self.leader_only()?;
        self.save_paused(true).await?;
        self.balancer.pause();
        Ok(Response::new(self.status_reply().await))
    }

    #[instrument(skip_all)]
    async fn rebalance_resume(
        &self,
        _req: Request<pb::RebalanceResumeRequest>,
    ) -> Reply<pb::RebalanceStatusResponse> {
        self.leader_only()?;
        self.save_paused(false).await?;
        self.balancer.resume();
        Ok(Response::new(self.status_reply().await))
    }

    #[instrument(skip_all, fields(chunk = %req.get_ref().chunk.escape_debug(), server = %req.get_ref().server.escape_debug()))]
    async fn report_corruption(
        &self,
        req: Request<pb::ReportCorruptionRequest>,
    ) -> Reply<pb::ReportCorruptionResponse> {
        self.leader_only()?;
        // Chunk servers (the cluster token) are limited per replica only;
        // on an open master every caller is limited.
        let caller = match req.extensions().get::<keel_proto::auth::Role>() {
            Some(keel_proto::auth::Role::Cluster) => None,
            _ => req.remote_addr().map(|a| a.ip()),
        };
        let req = req.into_inner();
        convert::chunk(&req.chunk)?;
        convert::server_id(&req.server)?;
        lock(&self.meta).check_report(&req.chunk, &req.server)?;
        // Checked after the replica is known: the limiters' keys are real.
        self.corruption.admit(&req.chunk, &req.server, caller)?;
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
        if draining {
            // Plan the drain's copies now instead of at the next maintenance
            // pass, up to --maintenance-interval (2 s) away: the wait was a
            // third of a small drain's time to `drained`.
            self.balancer.copy_ended().notify_one();
        }
        info!(server = %server, draining, chunks_left, "drain mark set");
        Ok(Response::new(pb::DrainServerResponse {
            server,
            state: state.to_owned(),
            chunks_left,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ha::Leadership;
    use crate::meta::{Meta, MetaSettings};

    fn service(l: &Leadership) -> MasterService {
        let mover =
            crate::rebalance::tests::mover_under(Meta::new(MetaSettings::default()), l.clone());
        let balancer = crate::rebalance::tests::balancer_of(mover);
        MasterService::new(balancer, TaskTracker::new(), 10.0).with_ha(Ha {
            leadership: l.clone(),
            etcd: None,
        })
    }

    /// A full report of one chunk from cs1, built under term 3: one
    /// message, or page `page` of report 7.
    fn report(page: Option<(u32, bool)>) -> pb::HeartbeatRequest {
        let (report_id, page, last_page) = page.map_or((0, 0, false), |(p, last)| (7, p, last));
        pb::HeartbeatRequest {
            id: "cs1".into(),
            address: "127.0.0.1:7001".into(),
            capacity_bytes: 100,
            full_report: true,
            chunks: vec![pb::ChunkReplica {
                chunk: format!("c{page}"),
                size: 1,
                crc32c: 1,
                replication: 1,
                reads: 0,
                ..Default::default()
            }],
            chunk_count: u64::from(page) + 1,
            report_id,
            page,
            last_page,
            term: 3,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_report_built_before_the_server_knew_the_term_is_not_counted() {
        let l = Leadership::elected("http://m1:7000".into());
        l.lead(3, Instant::now() + Duration::from_secs(60));
        let svc = service(&l);
        // The answers tell cs1 term 3, but it has not recorded it (an
        // answer lost, a delete of term 2 still running): its reports may
        // still list what term 2's leader is deleting.
        let mut old = report(None);
        old.term = 2;
        for _ in 0..3 {
            let r = svc.heartbeat(Request::new(old.clone())).await.expect("ok");
            assert_eq!(r.get_ref().term, 3);
        }
        assert!(!l.settled(["cs1"]), "no report built under term 3");
        for _ in 0..2 {
            svc.heartbeat(Request::new(report(None))).await.expect("ok");
        }
        assert!(l.settled(["cs1"]), "two reports built under term 3");
    }

    #[tokio::test]
    async fn a_new_leader_counts_a_report_only_once_it_is_applied_whole() {
        let l = Leadership::elected("http://m1:7000".into());
        l.lead(3, Instant::now() + Duration::from_secs(60));
        let svc = service(&l);
        let r = svc.heartbeat(Request::new(report(None))).await.expect("ok");
        assert!(!r.get_ref().send_full_report);
        assert_eq!(r.get_ref().term, 3, "the answer tells the term");
        assert!(!l.settled(["cs1"]), "one report");
        // The first page of a paged report is not the report: its removals
        // are applied with the last page.
        let r = svc
            .heartbeat(Request::new(report(Some((0, false)))))
            .await
            .expect("ok");
        assert!(!r.get_ref().send_full_report);
        assert!(!l.settled(["cs1"]), "a report whose last page has not come");
        svc.heartbeat(Request::new(report(Some((1, true)))))
            .await
            .expect("ok");
        assert!(l.settled(["cs1"]), "two whole reports applied");
    }

    #[tokio::test]
    async fn a_delta_the_master_cannot_use_is_not_counted() {
        let l = Leadership::elected("http://m1:7000".into());
        l.lead(3, Instant::now() + Duration::from_secs(60));
        let svc = service(&l);
        let mut delta = report(None);
        delta.full_report = false;
        delta.chunks.clear();
        for _ in 0..3 {
            let r = svc
                .heartbeat(Request::new(delta.clone()))
                .await
                .expect("ok");
            assert!(r.get_ref().send_full_report, "an unknown server's delta");
        }
        assert!(!l.settled(["cs1"]));
    }

    #[test]
    fn the_step_down_refusal_names_what_is_known() {
        let other = LeaderInfo {
            address: "http://m2:7000".into(),
            term: 8,
            is_self: false,
        };
        let s = refusal(&other, stepped_down_text(&other));
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(
            s.message().contains("no longer the leader"),
            "{}",
            s.message()
        );
        assert!(
            s.message()
                .contains("the leader is http://m2:7000 (term 8)")
        );
        assert_eq!(
            s.metadata()
                .get(LEADER_HEADER)
                .and_then(|v| v.to_str().ok()),
            Some("http://m2:7000")
        );
        let none = LeaderInfo::default();
        let s = refusal(&none, stepped_down_text(&none));
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(s.message().contains("no leader is known right now"));
        assert!(s.metadata().get(LEADER_HEADER).is_none());
    }
}
