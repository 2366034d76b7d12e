//! `keel.v1.Master`, thin: convert the request, call the [`Front`], convert
//! the answer, map errors through `From<Error> for Status`.
//!
//! What each call means, the leader gate included, is in [`crate::front`]:
//! a standby's refusal is FAILED_PRECONDITION with the leader's address in
//! the `keel-leader` header (UNAVAILABLE while no leader is known); clients
//! retry there.

use keel_proto::v1 as pb;
use keel_proto::v1::master_server::Master;
use tonic::{Request, Response, Status};
use tracing::instrument;

use crate::balance;
use crate::convert;
use crate::front::{Front, Standing};
use crate::rebalance;
use crate::reports::Page;

/// The gRPC front door of the master.
#[derive(Debug, Clone)]
pub struct MasterService {
    front: Front,
}

impl MasterService {
    /// The gRPC door onto `front`.
    pub fn new(front: Front) -> Self {
        MasterService { front }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// A status answer with the leader named; a standby's `paused` is the pause
/// as stored in etcd, which the leader obeys.
fn status_reply(s: Standing) -> pb::RebalanceStatusResponse {
    let mut r = balance::status_response(s.status);
    (r.leader, r.term, r.answered_by_leader) = (s.leader.address, s.leader.term, s.leader.is_self);
    if let Some(paused) = s.stored_pause {
        r.paused = paused;
    }
    r
}

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
        let hb = convert::heartbeat(req, self.front.tls())?;
        let answer = self
            .front
            .heartbeat(hb, page, refused_held, reported_term)
            .await?;
        Ok(Response::new(pb::HeartbeatResponse {
            send_full_report: answer.send_full_report,
            refused,
            term: answer.term,
        }))
    }

    #[instrument(level = "debug", skip_all)]
    async fn list_servers(
        &self,
        _req: Request<pb::ListServersRequest>,
    ) -> Reply<pb::ListServersResponse> {
        let list = self.front.servers();
        let servers = list.servers.into_iter();
        Ok(Response::new(pb::ListServersResponse {
            servers: servers
                .map(|(s, rate)| convert::server_info(s, rate))
                .collect(),
            average_utilization_pct: list.average_utilization_pct,
            leader: list.leader.address,
            term: list.leader.term,
            answered_by_leader: list.leader.is_self,
        }))
    }

    #[instrument(level = "debug", skip_all, fields(chunk = %req.get_ref().chunk.escape_debug()))]
    async fn locate_chunk(
        &self,
        req: Request<pb::LocateChunkRequest>,
    ) -> Reply<pb::LocateChunkResponse> {
        let req = req.into_inner();
        convert::chunk(&req.chunk)?;
        // A rack is only compared for equality: any text is harmless.
        let located = self.front.locate(&req.chunk, req.rack.trim())?;
        Ok(Response::new(convert::location(located)))
    }

    #[instrument(skip_all, fields(chunk = %req.get_ref().chunk.escape_debug(), size = req.get_ref().size))]
    async fn allocate_chunk(
        &self,
        req: Request<pb::AllocateChunkRequest>,
    ) -> Reply<pb::AllocateChunkResponse> {
        // Gated before decoding: a standby refers even a malformed request
        // to the leader.
        self.front.leading().map_err(crate::error::Error::from)?;
        let req = convert::alloc_request(req.into_inner())?;
        let placed = self.front.allocate(req)?;
        let mut answer = convert::allocation(placed.allocation);
        answer.capability = placed.capability;
        Ok(Response::new(answer))
    }

    #[instrument(skip_all)]
    async fn rebalance_check(
        &self,
        _req: Request<pb::RebalanceCheckRequest>,
    ) -> Reply<pb::RebalanceCheckResponse> {
        Ok(Response::new(convert::check_response(self.front.check())))
    }

    #[instrument(skip_all, fields(moves = req.get_ref().moves.len()))]
    async fn rebalance_execute(
        &self,
        req: Request<pb::RebalanceExecuteRequest>,
    ) -> Reply<pb::RebalanceExecuteResponse> {
        let requested = req.into_inner().moves;
        let executed = self.front.execute(convert::moves(&requested)).await?;
        Ok(Response::new(rebalance::response(requested, executed)))
    }

    #[instrument(skip_all)]
    async fn rebalance_plan(
        &self,
        _req: Request<pb::RebalancePlanRequest>,
    ) -> Reply<pb::RebalancePlanResponse> {
        let (plan, q) = self.front.plan().await?;
        let mut resp = balance::plan_response(plan);
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
        let report = self.front.run().await?;
        Ok(Response::new(balance::run_response(report)))
    }

    #[instrument(level = "debug", skip_all)]
    async fn rebalance_status(
        &self,
        _req: Request<pb::RebalanceStatusRequest>,
    ) -> Reply<pb::RebalanceStatusResponse> {
        Ok(Response::new(status_reply(self.front.status().await)))
    }

    #[instrument(skip_all)]
    async fn rebalance_pause(
        &self,
        _req: Request<pb::RebalancePauseRequest>,
    ) -> Reply<pb::RebalanceStatusResponse> {
        Ok(Response::new(status_reply(self.front.pause().await?)))
    }

    #[instrument(skip_all)]
    async fn rebalance_resume(
        &self,
        _req: Request<pb::RebalanceResumeRequest>,
    ) -> Reply<pb::RebalanceStatusResponse> {
        Ok(Response::new(status_reply(self.front.resume().await?)))
    }

    #[instrument(skip_all, fields(chunk = %req.get_ref().chunk.escape_debug(), server = %req.get_ref().server.escape_debug()))]
    async fn report_corruption(
        &self,
        req: Request<pb::ReportCorruptionRequest>,
    ) -> Reply<pb::ReportCorruptionResponse> {
        // Chunk servers (the cluster token) are limited per replica only;
        // on an open master every caller is limited.
        let caller = match req.extensions().get::<keel_proto::auth::Role>() {
            Some(keel_proto::auth::Role::Cluster) => None,
            _ => req.remote_addr().map(|a| a.ip()),
        };
        let req = req.into_inner();
        self.front
            .report_corruption(&req.chunk, &req.server, &req.detail, caller)?;
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
        Ok(Response::new(convert::explanation(
            self.front.explain(&chunk),
        )))
    }
}

impl MasterService {
    async fn set_drain(&self, server: String, draining: bool) -> Reply<pb::DrainServerResponse> {
        let d = self.front.drain(server, draining).await?;
        Ok(Response::new(pb::DrainServerResponse {
            server: d.server,
            state: d.state.to_owned(),
            chunks_left: d.chunks_left,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::ha::{Ha, Leadership};
    use crate::meta::{Meta, MetaSettings};

    fn service(l: &Leadership) -> MasterService {
        let mover =
            crate::rebalance::tests::mover_under(Meta::new(MetaSettings::default()), l.clone());
        let balancer = crate::rebalance::tests::balancer_of(mover);
        MasterService::new(Front::new(balancer, TaskTracker::new(), 10.0).with_ha(Ha {
            leadership: l.clone(),
            etcd: None,
        }))
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
}
