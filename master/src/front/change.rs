//! The calls that change something: each passes the leader gate first.

use std::net::IpAddr;
use std::time::Instant;

use keel_balancer::queue::QueueConfig;
use keel_proto::capability::Grant;
use keel_proto::v1::WriteCapability;
use tracing::info;

use super::{Front, Standing};
use crate::balance::{PassPlan, PassReport, Trigger};
use crate::convert;
use crate::error::Error;
use crate::ha::OperatorState;
use crate::meta::{AllocRequest, Allocation, lock};
use crate::rebalance::{self, Executed};
use keel_balancer::MoveRef;

/// A chunk placed: its servers, and the capability its writes present.
#[derive(Debug, Clone)]
pub struct Placed {
    /// The servers chosen and the replication.
    pub allocation: Allocation,
    /// Signed with the cluster token's key; `None` on an open cluster.
    pub capability: Option<WriteCapability>,
}

/// A server's drain mark as set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drained {
    /// The server.
    pub server: String,
    /// `draining`, `drained` or the state it returned to.
    pub state: &'static str,
    /// Chunks still to copy off it.
    pub chunks_left: u64,
}

impl Front {
    /// Places a new chunk (the door passes the leader gate before it
    /// decodes the request, so a standby refers even a malformed one to the
    /// leader): refuses it while `--max-pending-allocations`
    /// allocations await their writes, and signs its write capability.
    pub fn allocate(&self, req: AllocRequest) -> Result<Placed, Error> {
        self.leading()?;
        let a = {
            let now = Instant::now();
            let mut m = lock(&self.meta);
            m.expire_pending(now);
            let limit = self.limits.max_pending_allocations;
            if m.pending_allocations() >= limit && !m.is_pending(&req.chunk) {
                return Err(Error::TooManyAllocations {
                    chunk: req.chunk,
                    limit,
                });
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
        Ok(Placed {
            allocation: a,
            capability,
        })
    }

    /// Operator moves through the one queue (see [`rebalance`]); refused as
    /// a whole when this master stops leading while they wait.
    pub async fn execute(&self, moves: Vec<MoveRef>) -> Result<Executed, Error> {
        self.leading()?;
        let outcomes = rebalance::execute(&self.balancer, moves.clone()).await?;
        if rebalance::stepped_down(&outcomes) {
            return Err(self.stepped_down().into());
        }
        let executed = Executed::new(moves, outcomes);
        info!(
            moved = executed.moved,
            bytes = executed.bytes,
            results = executed.results.len(),
            "rebalance execute finished"
        );
        Ok(executed)
    }

    /// A dry run of one balance pass, with the queue's limits it would run
    /// under.
    pub async fn plan(&self) -> Result<(PassPlan, QueueConfig), Error> {
        let _permit = self.plan_permit().await?;
        let plan = self.balancer.plan().await?;
        info!(
            moves = plan.moves.len(),
            bytes = plan.bytes,
            reaches_band = plan.reaches_band,
            "rebalance plan (dry run)"
        );
        Ok((plan, self.balancer.queue_config()))
    }

    /// One balance pass now; refused during safe mode, when the view may
    /// still lack servers.
    pub async fn run(&self) -> Result<PassReport, Error> {
        self.leading()?;
        if let Some(left) = self.balancer.safe_mode_left() {
            let remaining_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
            return Err(Error::SafeMode { remaining_ms });
        }
        let _permit = self.plan_permit().await?;
        self.balancer.run_pass(Trigger::Request).await
    }

    /// Pauses the queue: running copies finish, no new one starts.
    pub async fn pause(&self) -> Result<Standing, Error> {
        self.leading()?;
        self.save_paused(true).await?;
        self.balancer.pause();
        Ok(self.status().await)
    }

    /// Resumes the queue.
    pub async fn resume(&self) -> Result<Standing, Error> {
        self.leading()?;
        self.save_paused(false).await?;
        self.balancer.resume();
        Ok(self.status().await)
    }

    /// Records the pause in etcd first (with several masters), so the next
    /// leader keeps it; only while the leader key is still this master's
    /// (its term), so a write delayed past a step-down cannot land.
    async fn save_paused(&self, paused: bool) -> Result<(), Error> {
        let Some((etcd, prefix)) = &self.ha.etcd else {
            return Ok(());
        };
        let Some(term) = self.ha.leadership.term_if_leading() else {
            return Err(self.stepped_down().into());
        };
        match OperatorState::save_paused(etcd, prefix, term, paused).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.stepped_down().into()),
            Err(e) => Err(Error::PauseNotRecorded {
                detail: e.to_string(),
            }),
        }
    }

    /// A replica reported corrupt: its server is asked to verify it, within
    /// the rate limits (`caller` is limited too; `None` for chunk servers).
    pub fn report_corruption(
        &self,
        chunk: &str,
        server: &str,
        detail: &str,
        caller: Option<IpAddr>,
    ) -> Result<(), Error> {
        self.leading()?;
        convert::chunk(chunk)?;
        convert::server_id(server)?;
        lock(&self.meta).check_report(chunk, server)?;
        // Checked after the replica is known: the limiters' keys are real.
        self.corruption.admit(chunk, server, caller)?;
        let verify = lock(&self.meta).report_corruption(chunk, server)?;
        info!(chunk = %chunk, server = %server, detail = %detail.escape_debug(),
              verifying = verify.is_some(), "corruption reported; the server is asked to verify its replica");
        if let Some(v) = verify {
            let mover = self.mover.clone();
            self.tracker.spawn(async move { mover.verify(v).await });
        }
        Ok(())
    }

    /// Sets or clears the drain mark on the chunk server (which keeps it
    /// across restarts), then in the metadata.
    pub async fn drain(&self, server: String, draining: bool) -> Result<Drained, Error> {
        self.leading()?;
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
        Ok(Drained {
            server,
            state,
            chunks_left,
        })
    }
}
