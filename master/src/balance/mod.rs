//! The background balancer: planning passes feed a move queue, and a mover
//! loop drains it through the safe move protocol ([`Mover::run`]).
//!
//! A **pass** (every `--balance-interval` once `--safe-mode` is over, or on
//! `RebalanceRun`) takes a copy-on-write clone of the balancer's view, which
//! the metadata keeps current as heartbeats arrive, under a short lock, and
//! plans off the async workers, leaving queued, running,
//! busy and recently failed chunks alone, then queues the moves that still
//! fit the metadata. The queue holds at most [`MAX_QUEUED`] moves; when a
//! plan is longer, the rest is planned again once the queue runs low.
//!
//! The queue is the one queue of copies: the passes' balance moves, an
//! operator's moves (`RebalanceExecute`, which waits for their ends), and the
//! repairs and drains the maintenance loop plans ([`Balancer::enqueue_urgent`]).
//!
//! The **mover loop** ticks when a copy ends, when copies are queued or
//! resumed, and every [`TICK`] while copies wait. Each tick judges every
//! pending copy against the metadata with the one admission rule, most
//! urgent class first, gives each that passes a slot from the queue's one
//! slot table (`--max-concurrent-moves`, `--max-moves-per-server`), and marks
//! it begun in the metadata under the same lock. A failed copy is retried
//! with backoff and dropped after `--move-retries`, whatever its class.
//!
//! # Layout
//! - `state.rs`: the queue against the metadata (time passed in).
//! - `pass.rs`: one planning pass over a snapshot (pure, CPU-bound).
//! - `cooling.rs`: the memory of load moves (`--load-cooldown`).
//! - `dwell.rs`: when a background pass may move for load (`--load-dwell`).
//! - `drive.rs`: the two loops and the move tasks.
//! - `wire.rs`: answers in protobuf.

mod cooling;
mod drive;
mod dwell;
mod pass;
mod state;
mod wire;

#[cfg(test)]
mod churn_tests;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use std::collections::HashMap;

use keel_balancer::queue::{FinishedMove, MoveId, Outcome, QueueConfig, QueueStatus};
use keel_balancer::{CopyClass, CopyJob, Policy, QueueError, load};
use tokio::sync::{Notify, oneshot};
use tokio_util::task::TaskTracker;

pub use cooling::{Cooling, LoadMove, MAX_COOLING};
pub use drive::Trigger;
pub use dwell::{Held, Hold, LoadGate};
pub use pass::{PassInput, PassPlan, named, plan_pass};
pub use state::{Enqueued, InFlightNames, QueueState, Start};
pub use wire::{MAX_LISTED, explain_queued, plan_response, run_response, status_response};

use crate::meta::lock;
use crate::mover::{MoveDone, Mover};

/// Most moves pending or running at once; a longer plan is queued in parts.
pub const MAX_QUEUED: usize = 10_000;
/// A plan cut short is planned again once fewer moves than this are queued.
pub const REFILL_BELOW: usize = MAX_QUEUED / 4;
/// Planned moves checked and queued under one hold of the locks.
pub const ENQUEUE_BATCH: usize = 500;
/// How often waiting moves are looked at again.
pub const TICK: Duration = Duration::from_millis(500);
/// Failed moves listed in the status, newest first.
pub const RECENT_FAILURES: usize = 20;

/// The balancer's flags.
#[derive(Debug, Clone)]
pub struct BalanceSettings {
    /// Period of background passes; zero plans only on demand.
    pub interval: Duration,
    /// Band and free-space floor.
    pub policy: Policy,
    /// Slots, retries and floor of the queue.
    pub queue: QueueConfig,
    /// When the master started: the queue's clock counts from here.
    pub started: Instant,
    /// No background pass before this instant.
    pub safe_until: Instant,
    /// Pending this long with nothing finished: the queue counts as stuck.
    pub stuck_after: Duration,
    /// A chunk moved for load is not moved for load again within this
    /// (`--load-cooldown`).
    pub load_cooldown: Duration,
    /// A background pass moves a server's chunks for load only once it has
    /// been hot at every pass for this long (`--load-dwell`).
    pub load_dwell: Duration,
}

/// The balancer's state at one moment, for `RebalanceStatus`.
#[derive(Debug, Clone)]
pub struct BalanceStatus {
    /// The queue: counts and every pending and running move.
    pub queue: QueueStatus,
    /// The latest moves dropped as failed, newest first.
    pub recent_failures: Vec<FinishedMove>,
    /// Bytes of the moves pending or running.
    pub bytes_remaining: u64,
    /// No live server outside the band.
    pub balanced: bool,
    /// Capacity-weighted average utilization of live servers.
    pub average_utilization_pct: f64,
    /// Background passes have not started yet.
    pub safe_mode: bool,
    /// The queue's clock when this was taken.
    pub now: Duration,
    /// Redundancy as of the last maintenance pass.
    pub redundancy: crate::meta::Redundancy,
    /// Repair and drain copies running now.
    pub copies: Vec<crate::meta::RunningCopy>,
    /// Repair and drain copies completed since start.
    pub repairs_done: u64,
    /// The slot limits in force.
    pub limits: MoveLimits,
}

/// The queue's slot limits as operators see them (the dashboard shows
/// them as they are, under the flags' names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MoveLimits {
    /// The cluster-wide cap in force (with `auto`, what the live servers'
    /// per-server slots allow).
    pub max_concurrent_moves: usize,
    /// Whether the cap is `auto`.
    #[serde(rename = "max_concurrent_moves_auto")]
    pub auto: bool,
    /// Slots per server, as source or target.
    pub max_moves_per_server: usize,
}

impl MoveLimits {
    /// The limits of `q` with `live` servers.
    pub fn of(q: &QueueConfig, live: usize) -> Self {
        MoveLimits {
            max_concurrent_moves: q.effective_max_concurrent(live),
            auto: q.is_auto(),
            max_moves_per_server: q.max_moves_per_server,
        }
    }
}

/// What a pass queued, for `RebalanceRun`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PassReport {
    /// The plan behind it.
    pub plan: PassPlan,
    /// What was queued of it.
    pub enqueued: Enqueued,
}

/// The background balancer; cheap to clone.
#[derive(Debug, Clone)]
pub struct Balancer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    mover: Mover,
    /// Move tasks run here, so shutdown waits for them.
    tracker: TaskTracker,
    settings: BalanceSettings,
    /// Lock order: `state`, then the metadata; never the other way round.
    state: Mutex<QueueState>,
    /// One planning pass at a time.
    passes: tokio::sync::Mutex<()>,
    /// Wakes the mover loop.
    wake: Notify,
    /// Wakes the pass loop to continue a plan that was cut short.
    refill: Notify,
    /// The last pass queued only part of its plan.
    cut_short: AtomicBool,
    /// Woken when a repair or drain copy ends (the maintenance loop plans
    /// the next ones).
    copy_ended: Arc<Notify>,
    /// Operators waiting for their moves' ends, by queue id.
    waiters: Mutex<HashMap<MoveId, oneshot::Sender<OperatorEnd>>>,
    /// The last rebalance, move by move (the dashboard's replay).
    history: crate::history::History,
    /// Chunks moved for load lately. A leaf lock: taken alone, briefly.
    cooling: Mutex<Cooling>,
    /// Which servers background passes may move for load. A leaf lock.
    gate: Mutex<LoadGate>,
}

/// How an operator's queued move ended: done, or why not.
pub type OperatorEnd = Result<MoveDone, OperatorFailure>;

/// Why an operator's queued move did not end done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorFailure {
    /// Failed after its retries, or dropped as no longer possible; the text says why.
    Failed(String),
    /// This master stopped leading while the move waited: its queue was
    /// cleared, and the move may not have run at all.
    SteppedDown,
}

impl Balancer {
    /// A balancer running moves through `mover`, its tasks on `tracker`.
    pub fn new(mover: Mover, tracker: TaskTracker, settings: BalanceSettings) -> Self {
        let state = Mutex::new(QueueState::new(settings.queue));
        let cooling = Mutex::new(Cooling::new(settings.load_cooldown));
        // Rates lag a server's chunks by the chunk servers' time constant.
        let settle = keel_proto::READ_RATE_TIME_CONSTANT;
        let gate = Mutex::new(LoadGate::new(settings.load_dwell, settle));
        Balancer {
            inner: Arc::new(Inner {
                mover,
                tracker,
                settings,
                state,
                passes: tokio::sync::Mutex::new(()),
                wake: Notify::new(),
                refill: Notify::new(),
                cut_short: AtomicBool::new(false),
                copy_ended: Arc::new(Notify::new()),
                waiters: Mutex::new(HashMap::new()),
                history: crate::history::History::default(),
                cooling,
                gate,
            }),
        }
    }

    /// The mover it drives.
    pub fn mover(&self) -> &Mover {
        &self.inner.mover
    }

    /// The memory of load moves (a leaf lock: hold it alone, briefly).
    pub fn cooling(&self) -> MutexGuard<'_, Cooling> {
        self.inner
            .cooling
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The chunks cooling now after a load move (true: the move is still
    /// queued or running), expired entries pruned on the way.
    pub fn cooling_chunks(&self) -> HashMap<Box<str>, bool> {
        let now = self.now();
        let mut c = self.cooling();
        c.prune(now);
        c.cooling(now)
            .map(|id| (id.into(), c.in_flight(id)))
            .collect()
    }

    /// The dwell and settle state of load moves (a leaf lock: hold it
    /// alone, briefly).
    pub fn gate(&self) -> MutexGuard<'_, LoadGate> {
        self.inner
            .gate
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Corrects `view`'s server rates for finished load moves whose reads
    /// still linger in the reported averages (see [`Cooling::linger`]).
    /// Call without the metadata lock held.
    pub fn linger(&self, view: &mut keel_balancer::ClusterView) {
        let now = self.now();
        self.cooling().linger(view, now);
    }

    /// Adds what the memory of load moves says of `e.chunk`.
    pub fn explain_load(&self, e: &mut crate::meta::Explanation) {
        let now = self.now();
        self.cooling().explain(now, e);
    }

    /// The flags it runs with.
    pub fn settings(&self) -> &BalanceSettings {
        &self.inner.settings
    }

    /// The last rebalance, move by move.
    pub fn history(&self) -> &crate::history::History {
        &self.inner.history
    }

    /// The queue's limits and floor (for predicting how a plan runs).
    pub fn queue_config(&self) -> QueueConfig {
        *self.state().queue().config()
    }

    /// The queue's clock: time since the master started.
    pub fn now(&self) -> Duration {
        self.inner.settings.started.elapsed()
    }

    /// Whether background passes are still held back after start-up.
    pub fn in_safe_mode(&self) -> bool {
        self.safe_mode_left().is_some()
    }

    /// Time left in safe mode, if it is not over.
    pub fn safe_mode_left(&self) -> Option<Duration> {
        let left = self
            .inner
            .settings
            .safe_until
            .saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }

    fn state(&self) -> MutexGuard<'_, QueueState> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Stops starting moves; running ones finish, queued ones wait.
    pub fn pause(&self) {
        self.state().pause();
        tracing::info!("balancer paused");
    }

    /// Starts moves again.
    pub fn resume(&self) {
        self.state().resume();
        tracing::info!("balancer resumed");
        self.inner.wake.notify_one();
        // Background passes skip while paused; plan on the current view now
        // (unless passes run only on demand).
        if !self.inner.settings.interval.is_zero() {
            self.inner.refill.notify_one();
        }
    }

    /// This master stopped leading: queued copies are dropped (running ones
    /// end by themselves, their requests fenced by the term) and every
    /// operator waiting for a move is told at once. Until [`Balancer::lead`],
    /// copies that end are not retried and nothing new is queued for an operator.
    pub fn step_down(&self) {
        let now = self.now();
        let mut st = self.state();
        st.set_standing_by(true);
        let dropped = st.clear_pending(now);
        self.inner.cut_short.store(false, Ordering::Relaxed);
        let waiting: Vec<_> = self.waiters().drain().collect();
        for (_, tx) in waiting {
            let _ = tx.send(Err(OperatorFailure::SteppedDown));
        }
        self.publish(&st, now);
        if dropped > 0 {
            tracing::info!(dropped, "not leading: queued moves dropped");
        }
    }

    /// This master leads (again): it starts from an empty queue, since a
    /// new leader plans afresh on its own view.
    pub fn lead(&self) {
        let now = self.now();
        let mut st = self.state();
        let dropped = st.clear_pending(now);
        st.set_standing_by(false);
        self.publish(&st, now);
        if dropped > 0 {
            tracing::info!(dropped, "leading: moves left from an earlier term dropped");
        }
    }

    /// Counts, moves, recent failures and the cluster's balance.
    pub fn status(&self) -> BalanceStatus {
        let now = self.now();
        let (queue, recent_failures) = {
            let st = self.state();
            let failures = st
                .queue()
                .history()
                .rev()
                .filter(|f| matches!(f.outcome, Outcome::Failed { .. }))
                .take(RECENT_FAILURES)
                .cloned()
                .collect();
            (st.status(now), failures)
        };
        let (mut view, redundancy, copies) = {
            let m = lock(self.inner.mover.meta());
            (m.load_view(), m.redundancy(), m.running_copies())
        };
        self.linger(&mut view);
        let report = load::check(
            &view,
            self.inner.settings.policy.threshold_pct,
            self.inner.settings.policy.load_threshold_pct,
        );
        let repairs_done = self
            .inner
            .mover
            .metrics()
            .repairs_done
            .load(Ordering::Relaxed);
        let limits = MoveLimits::of(&self.queue_config(), report.servers.len());
        BalanceStatus {
            limits,
            redundancy,
            copies,
            repairs_done,
            bytes_remaining: QueueState::bytes_remaining(&queue),
            queue,
            recent_failures,
            balanced: report.balanced(),
            average_utilization_pct: report.average_utilization_pct,
            safe_mode: self.in_safe_mode(),
            now,
        }
    }

    /// Woken whenever a repair or drain copy ends.
    pub fn copy_ended(&self) -> Arc<Notify> {
        Arc::clone(&self.inner.copy_ended)
    }

    /// The repair and drain copies pending or running, for the maintenance
    /// loop to plan around.
    pub fn urgent_copies(&self) -> crate::meta::QueuedCopies {
        self.state().urgent_copies()
    }

    /// The queue's generation now: pass it to [`Balancer::enqueue_urgent`]
    /// with what is planned after reading it.
    pub fn generation(&self) -> u64 {
        self.state().generation()
    }

    /// Queues repair and drain copies planned by the maintenance loop in
    /// `generation`, each ahead of a pending balance move of its chunk;
    /// returns how many were queued (a chunk with a copy running keeps it).
    pub fn enqueue_urgent(&self, copies: Vec<CopyJob>, generation: u64) -> usize {
        let now = self.now();
        let mut queued = 0;
        {
            let mut st = self.state();
            // Planned before a step-down (and perhaps a new term since):
            // the leader plans its own.
            if !st.admits_work_of(generation) {
                return 0;
            }
            for c in copies {
                match st.enqueue_urgent(c, now) {
                    Ok(_) => queued += 1,
                    Err(e) => tracing::debug!(error = %e, "repair not queued"),
                }
            }
            self.publish(&st, now);
        }
        if queued > 0 {
            self.inner.wake.notify_one();
        }
        queued
    }

    /// Queues an operator's move; the receiver gets its end: done, failed
    /// after its retries, dropped because it could no longer run, or
    /// [`OperatorFailure::SteppedDown`] (at once when this master does not
    /// lead). `Err` right away when its chunk has a copy running or a repair
    /// queued.
    pub fn submit_operator(
        &self,
        mv: CopyJob,
    ) -> Result<oneshot::Receiver<OperatorEnd>, QueueError> {
        let (tx, rx) = oneshot::channel();
        {
            let now = self.now();
            let mut st = self.state();
            // Checked under the queue's lock, which `step_down` takes to
            // clear the queue: a move is either refused here or cleared there.
            if st.standing_by() || !self.leads() {
                let _ = tx.send(Err(OperatorFailure::SteppedDown));
                return Ok(rx);
            }
            let copy = CopyJob {
                class: CopyClass::Operator,
                rank: 0,
                ..mv
            };
            let id = st.enqueue_urgent(copy, now)?;
            self.waiters().insert(id, tx);
            self.publish(&st, now);
        }
        self.inner.wake.notify_one();
        Ok(rx)
    }

    fn waiters(&self) -> MutexGuard<'_, HashMap<MoveId, oneshot::Sender<OperatorEnd>>> {
        self.inner
            .waiters
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Tells the operator waiting for `id`, if any, how it ended.
    fn answer(&self, id: MoveId, end: OperatorEnd) {
        if let Some(tx) = self.waiters().remove(&id) {
            let _ = tx.send(end);
        }
    }

    /// Answers operators whose moves left the queue without running to an
    /// end (dropped as no longer possible, or cancelled).
    fn answer_dropped(&self, st: &QueueState) {
        let mut waiters = self.waiters();
        if waiters.is_empty() {
            return;
        }
        let gone: Vec<MoveId> = waiters
            .keys()
            .copied()
            .filter(|&id| !st.holds(id))
            .collect();
        for id in gone {
            let why =
                st.queue()
                    .history()
                    .rev()
                    .find(|f| f.id == id)
                    .map(|f| match &f.outcome {
                        Outcome::Failed { error } => error.clone(),
                        Outcome::Cancelled => "cancelled".to_owned(),
                        _ => "it could no longer run as named: the chunk or a server changed"
                            .to_owned(),
                    })
                    .unwrap_or_else(|| "the move left the queue".to_owned());
            if let Some(tx) = waiters.remove(&id) {
                let _ = tx.send(Err(OperatorFailure::Failed(why)));
            }
        }
    }

    /// Sets the queue's gauges in the metrics.
    fn publish(&self, st: &QueueState, now: Duration) {
        let m = self.inner.mover.metrics();
        let q = st.queue();
        let oldest = q.oldest_pending_age(now).unwrap_or_default();
        let stuck_after = self.inner.settings.stuck_after;
        let last_done = q
            .history()
            .rev()
            .find(|f| f.outcome == Outcome::Done)
            .map_or(Duration::ZERO, |f| f.at);
        let stuck = q.pending_len() > 0
            && oldest >= stuck_after
            && now.saturating_sub(last_done) >= stuck_after;
        m.queue_stuck.store(u64::from(stuck), Ordering::Relaxed);
        m.moves_pending
            .store(q.pending_len() as u64, Ordering::Relaxed);
        m.oldest_pending_move_age_ms.store(
            u64::try_from(oldest.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }
}
