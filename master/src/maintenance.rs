//! The maintenance loop: marks silent servers dead, forgets stale
//! allocations, and — once safe mode is over — trims excess replicas,
//! verifies replicas reported corrupt, and plans copies of chunks below
//! their factor or on draining servers (see `meta/redundancy.rs` for every
//! path that makes a chunk a candidate). The copies run in the one move
//! queue, ahead of every other class; a finished one wakes the loop, so
//! copies follow each other without waiting for the next tick.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::balance::Balancer;
use crate::meta::{UpkeepLimits, lock};
use crate::mover::Mover;

/// How often liveness is swept.
pub const LIVENESS_TICK: Duration = Duration::from_millis(250);

/// Most chunks trimmed per pass.
pub const TRIMS_PER_PASS: usize = 256;

/// Most repair copies, and most drain copies, in the move queue at once
/// (they take move slots ahead of every other copy; each class has its own
/// budget, so queued drain copies never hold a repair back).
pub const REPAIRS_IN_FLIGHT: usize = 32;

/// The limits every maintenance pass plans with.
pub const UPKEEP_LIMITS: UpkeepLimits = UpkeepLimits {
    trims: TRIMS_PER_PASS,
    repairs: REPAIRS_IN_FLIGHT,
};

/// The loop's configuration.
#[derive(Debug, Clone)]
pub struct Maintenance {
    /// Does the RPCs and records results.
    pub mover: Mover,
    /// Trims and repairs run as tasks here, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Period of trimming and repair passes (`--maintenance-interval`).
    pub interval: Duration,
    /// No trimming or repair before this instant (`--safe-mode`).
    pub safe_until: Instant,
    /// The move queue, which runs the repair and drain copies planned here.
    pub balancer: Balancer,
}

impl Maintenance {
    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut liveness = tokio::time::interval(LIVENESS_TICK);
        let mut upkeep = tokio::time::interval(self.interval.max(LIVENESS_TICK));
        liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_scan: Option<Instant> = None;
        let copy_ended: Arc<Notify> = self.balancer.copy_ended();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = liveness.tick() => self.sweep(),
                () = copy_ended.notified() => self.upkeep(&mut last_scan),
                _ = upkeep.tick() => self.upkeep(&mut last_scan),
            }
        }
    }

    fn sweep(&self) {
        let now = Instant::now();
        let mut m = lock(self.mover.meta());
        m.sweep_liveness(now);
        m.expire_pending(now);
    }

    /// Plans under the lock, then spawns the RPCs outside it.
    fn upkeep(&self, last_scan: &mut Option<Instant>) {
        let now = Instant::now();
        if now < self.safe_until {
            return;
        }
        // Every delete this pass plans is sent under this term or not at all.
        let Some(term) = self.mover.leadership().term_if_leading() else {
            return;
        };
        let generation = self.balancer.generation();
        let queued = self.balancer.urgent_copies();
        if last_scan.is_none() {
            info!("safe mode over; trimming and repair active");
        }
        let plan = lock(self.mover.meta()).plan_upkeep(
            now,
            last_scan,
            |live| self.mover.leadership().settled(live),
            &queued,
            &UPKEEP_LIMITS,
        );
        let counts = plan.counts;
        let metrics = self.mover.metrics();
        metrics
            .chunks_under_replicated
            .store(counts.under_replicated, Ordering::Relaxed);
        metrics
            .chunks_unavailable
            .store(counts.unavailable, Ordering::Relaxed);
        for d in plan.trims {
            let mover = self.mover.clone();
            self.tracker.spawn(async move { mover.trim(d, term).await });
        }
        for v in plan.verifies {
            let mover = self.mover.clone();
            self.tracker.spawn(async move { mover.verify(v).await });
        }
        for (chunk, server) in plan.damaged {
            let mover = self.mover.clone();
            self.tracker
                .spawn(async move { mover.delete_damaged(&chunk, &server, term).await });
        }
        self.balancer.enqueue_urgent(plan.copies, generation);
    }
}
