//! The maintenance loop: marks silent servers dead, forgets stale
//! allocations, and — once safe mode is over — trims excess replicas and
//! re-replicates chunks that lost theirs (after a corruption report, or a
//! server dead past the grace period).

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::meta::lock;
use crate::mover::Mover;

/// How often liveness is swept.
pub const LIVENESS_TICK: Duration = Duration::from_millis(250);

/// Most chunks trimmed per pass.
pub const TRIMS_PER_PASS: usize = 256;

/// Most repair copies planned per pass (they queue for move slots).
pub const REPAIRS_PER_PASS: usize = 16;

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
}

impl Maintenance {
    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut liveness = tokio::time::interval(LIVENESS_TICK);
        let mut upkeep = tokio::time::interval(self.interval.max(LIVENESS_TICK));
        liveness.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        upkeep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut safe_mode = true;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = liveness.tick() => self.sweep(),
                _ = upkeep.tick() => {
                    if Instant::now() < self.safe_until {
                        continue;
                    }
                    if std::mem::take(&mut safe_mode) {
                        info!("safe mode over; trimming and repair active");
                    }
                    self.upkeep();
                }
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
    fn upkeep(&self) {
        let (trims, repairs) = {
            let mut m = lock(self.mover.meta());
            let trims = m.plan_trims(TRIMS_PER_PASS);
            let repairs = m.plan_repairs(Instant::now(), REPAIRS_PER_PASS);
            (trims, repairs)
        };
        for d in trims {
            let mover = self.mover.clone();
            self.tracker.spawn(async move { mover.trim(d).await });
        }
        for t in repairs {
            let mover = self.mover.clone();
            self.tracker.spawn(async move {
                let (chunk, to) = (t.chunk.clone(), t.to.id.clone());
                match mover.replicate(t).await {
                    Ok(_) => info!(chunk = %chunk, to = %to, "replica restored"),
                    Err(e) => warn!(chunk = %chunk, to = %to, error = %e, "re-replication failed; will retry"),
                }
            });
        }
    }
}
