//! The election loop: campaign as a standby, lead while the lease is kept
//! alive, step down first when it cannot be.
//!
//! **Standby.** Grant a lease of `--leader-lease`; run the transaction
//! "create `<prefix>/leader` = my address with my lease, if its create
//! revision is 0, else read it" again as soon as an etcd watch on the key
//! reports it deleted, and every [`poll`] in any case. Losing tells who
//! leads (shown by `keelctl servers` and sent to chunk servers as the term).
//! The lease is kept alive meanwhile, so a win holds a fresh lease.
//!
//! **Leader.** The term is the key's create revision. Before leading, the
//! operator state is loaded from etcd and applied; then a keep-alive goes
//! out every third of the lease. Each acknowledged one moves the local
//! deadline to three quarters of the lease after its send time
//! ([`super::lead_deadline`]). When that deadline passes without renewal —
//! etcd unreachable, or this process frozen — the master is no longer the
//! leader at once (the deadline is checked where data changes), and this
//! loop logs it, clears the move queue (failing every operator waiting on
//! it) and campaigns again. A keep-alive that finds the lease gone steps
//! down at once. A new term starts from an empty queue. On shutdown the leader steps down, then revokes its
//! lease so a standby takes over without waiting for the lease to run out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use keel_proto::etcd::etcdserverpb::WatchResponse;
use tonic::Streaming;

use super::etcd::{Campaigned, Etcd, EtcdError, Lease};
use super::{Leadership, OperatorState, lead_deadline};
use crate::balance::{Balancer, Trigger};

/// How the election runs.
#[derive(Debug, Clone)]
pub struct CampaignSettings {
    /// Key prefix in etcd (`--etcd-prefix`).
    pub prefix: String,
    /// `--leader-lease`.
    pub lease: Duration,
}

/// The election loop of one master.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// etcd, shared with the operator-state writes.
    pub etcd: Arc<Etcd>,
    /// What the rest of the master reads.
    pub leadership: Leadership,
    /// Paused or resumed by each new leader from the operator state.
    pub balancer: Balancer,
    /// Prefix and lease.
    pub settings: CampaignSettings,
}

/// How often a standby tries the leader key: a tenth of the lease, within
/// 100 ms–1 s, so a standby takes over soon after the lease ends.
fn poll(lease: Duration) -> Duration {
    (lease / 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

/// Deadline of one etcd call: a quarter of the lease, within 200 ms–2 s,
/// so one lost answer leaves time for another keep-alive.
pub fn call_timeout(lease: Duration) -> Duration {
    (lease / 4).clamp(Duration::from_millis(200), Duration::from_secs(2))
}

/// Returns once `watch` reports the leader key deleted. A watch that ends,
/// fails or is cancelled by etcd is dropped (a new one is made after the
/// next try) and this then waits forever, like no watch at all: the poll
/// paces the next try, so an endpoint that ends every watch at once cannot
/// turn the loop into a spin against etcd.
async fn deleted(watch: &mut Option<Streaming<WatchResponse>>) {
    let Some(w) = watch.as_mut() else {
        return std::future::pending().await;
    };
    loop {
        match w.message().await {
            Ok(Some(r)) if r.canceled => break,
            Ok(Some(r)) if !r.events.is_empty() => return,
            // The watch's confirmation, or a progress report.
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    *watch = None;
    std::future::pending().await
}

/// A won election.
struct Won {
    lease: Lease,
    term: u64,
}

impl Campaign {
    fn leader_key(&self) -> String {
        super::leader_key(&self.settings.prefix)
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut quiet = false;
        loop {
            let won = tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.campaign() => r,
            };
            match won {
                Ok(won) => {
                    quiet = false;
                    if self.lead(won, &shutdown).await {
                        return;
                    }
                }
                Err(e) => {
                    if quiet {
                        debug!(error = %e, "etcd unreachable; campaigning again");
                    } else if matches!(e, EtcdError::Auth { .. }) {
                        // Not an outage: only the operator can fix it.
                        error!(error = %e, "etcd refused this master's credentials; it stays a standby and keeps trying");
                        quiet = true;
                    } else {
                        warn!(error = %e, "etcd unreachable; this master stays a standby and keeps trying");
                        quiet = true;
                    }
                    self.leadership.observe(None);
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(poll(self.settings.lease)) => {}
                    }
                }
            }
        }
    }

    /// Campaigns until this master wins; an etcd error ends the attempt.
    /// Between tries a standby watches the leader key, so it tries again as
    /// soon as the key is deleted (lease expiry or revocation) rather than
    /// at the next poll; the poll stays as the fallback and as the pace of
    /// its own lease's keep-alives.
    async fn campaign(&self) -> Result<Won, EtcdError> {
        let etcd = &self.etcd;
        let advertise = self.leadership.inner.advertise.clone();
        let mut lease = etcd.grant(self.settings.lease).await?;
        let mut renewed = Instant::now();
        let mut announced: Option<(String, u64)> = None;
        let mut watch: Option<Streaming<WatchResponse>> = None;
        loop {
            if renewed.elapsed() >= self.ttl(lease) / 3 {
                let sent = Instant::now();
                match etcd.keep_alive(lease.id).await? {
                    Some(_) => renewed = sent,
                    None => {
                        lease = etcd.grant(self.settings.lease).await?;
                        renewed = sent;
                    }
                }
            }
            match etcd
                .campaign(&self.leader_key(), &advertise, lease.id)
                .await?
            {
                Campaigned::Won { term } => return Ok(Won { lease, term }),
                Campaigned::Lost { leader, revision } => {
                    if leader != announced {
                        if let Some((address, term)) = &leader {
                            info!(leader = %address, term, "standing by; another master leads");
                        }
                        announced.clone_from(&leader);
                    }
                    self.leadership.observe(leader);
                    if watch.is_none() {
                        watch = self.watch(revision + 1).await;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(poll(self.settings.lease)) => {}
                () = deleted(&mut watch) => {}
            }
        }
    }

    /// A watch on the leader key from `revision`; `None` (polling only)
    /// when etcd refuses it.
    async fn watch(&self, revision: i64) -> Option<Streaming<WatchResponse>> {
        match self.etcd.watch_deletes(&self.leader_key(), revision).await {
            Ok(w) => Some(w),
            Err(e) => {
                debug!(error = %e, "could not watch the leader key; polling only");
                None
            }
        }
    }

    /// The lease this master relies on: the shorter of the flag and etcd's
    /// choice, so neither the keep-alives nor the deadline outlast it.
    fn ttl(&self, lease: Lease) -> Duration {
        if lease.ttl.is_zero() {
            self.settings.lease
        } else {
            lease.ttl.min(self.settings.lease)
        }
    }

    /// Leads until the lease is lost or `shutdown`; true on shutdown.
    async fn lead(&self, won: Won, shutdown: &CancellationToken) -> bool {
        let Won { lease, term } = won;
        let ttl = self.ttl(lease);
        // Renew first: the lease's clock started when it was granted.
        let sent = Instant::now();
        let state = match self.renew_and_load(lease.id).await {
            Ok(state) => state,
            Err(e) => {
                warn!(term, error = %e, "won the election but could not read the operator state; standing down");
                let _ = self.etcd.revoke(lease.id).await;
                return false;
            }
        };
        // An empty queue before the term begins: nothing left from an
        // earlier term may start under this one.
        self.balancer.lead();
        self.leadership.lead(term, lead_deadline(sent, ttl));
        info!(term, lease = ?ttl, paused = state.paused, "this master leads");
        self.take_over(state);
        let stopped = self.keep_leading(lease.id, ttl, term, shutdown).await;
        self.leadership.step_down();
        // Queued moves go and operators waiting for them hear it now, not
        // whenever this master leads again.
        self.balancer.step_down();
        if stopped {
            info!(term, "stepping down for shutdown; handing the lease back");
        }
        // Handing the lease back frees the key now rather than when the lease
        // runs out (a lease that already ran out is refused, harmlessly).
        if let Err(e) = self.etcd.revoke(lease.id).await {
            debug!(error = %e, "could not revoke the lease; it runs out by itself");
        }
        stopped
    }

    /// Applies the operator state and, unless paused, plans once: the
    /// previous leader's queue is gone with it, so a rebalance it was running
    /// continues from a fresh plan over this master's view.
    fn take_over(&self, state: OperatorState) {
        let paused_here = self.balancer.status().queue.paused;
        if state.paused {
            if !paused_here {
                self.balancer.pause();
            }
            return;
        }
        if paused_here {
            self.balancer.resume();
        }
        if self.balancer.in_safe_mode() {
            return;
        }
        let balancer = self.balancer.clone();
        tokio::spawn(async move {
            if let Err(e) = balancer.run_pass(Trigger::Refill).await {
                warn!(error = %e, "the new leader's first balancer pass failed");
            }
        });
    }

    async fn renew_and_load(&self, lease: i64) -> Result<OperatorState, EtcdError> {
        if self.etcd.keep_alive(lease).await?.is_none() {
            return Err(EtcdError::Rpc {
                endpoint: String::new(),
                op: "lease keep-alive",
                code: tonic::Code::NotFound,
                message: "the lease expired before leading began".into(),
            });
        }
        OperatorState::load(&self.etcd, &self.settings.prefix).await
    }

    /// Keeps the lease alive; returns true on shutdown, false once this
    /// master has lost the leadership.
    async fn keep_leading(
        &self,
        lease: i64,
        ttl: Duration,
        term: u64,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut next = Instant::now() + ttl / 3;
        loop {
            // Wakes at the deadline too, so a master frozen past it or
            // waiting out failed keep-alives steps down on time.
            let wake = self.leadership.lead_until().map_or(next, |u| u.min(next));
            tokio::select! {
                () = shutdown.cancelled() => return true,
                () = tokio::time::sleep_until(wake.into()) => {}
            }
            if !self.leadership.is_leader() {
                warn!(
                    term,
                    "the lease could not be renewed in time; this master stepped down"
                );
                return false;
            }
            let sent = Instant::now();
            let until = self.leadership.lead_until().unwrap_or(sent);
            // The deadline may pass while etcd is slow to answer: step down
            // then, not when the call gives up.
            let renewed = tokio::select! {
                () = shutdown.cancelled() => return true,
                () = tokio::time::sleep_until(until.into()) => {
                    warn!(term, "no keep-alive acknowledged in time; this master stepped down");
                    return false;
                }
                r = self.etcd.keep_alive(lease) => r,
            };
            match renewed {
                Ok(Some(_)) => {
                    self.leadership.renew(lead_deadline(sent, ttl));
                    next = sent + ttl / 3;
                }
                Ok(None) => {
                    warn!(term, "the lease has expired; this master stepped down");
                    return false;
                }
                Err(e) => {
                    warn!(term, error = %e, "keep-alive failed; retrying until the lease deadline");
                    next = Instant::now() + poll(ttl);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_and_deadlines_scale_with_the_lease() {
        assert_eq!(poll(Duration::from_secs(5)), Duration::from_millis(500));
        assert_eq!(poll(Duration::from_millis(500)), Duration::from_millis(100));
        assert_eq!(
            call_timeout(Duration::from_secs(5)),
            Duration::from_millis(1250)
        );
        assert_eq!(
            call_timeout(Duration::from_secs(60)),
            Duration::from_secs(2)
        );
    }
}
