//! The balancer's moving parts: planning passes (background and on demand),
//! the mover loop, and one task per started move.

use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use keel_balancer::queue::AfterFailure;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::pass::{PassInput, plan_pass};
use super::state::{Enqueued, Start};
use super::{
    Balancer, ENQUEUE_BATCH, MAX_QUEUED, OperatorFailure, PassPlan, PassReport, REFILL_BELOW, TICK,
};
use crate::error::Error;
use crate::meta::lock;
use crate::mover::{MoveDone, MoveError};
use keel_balancer::CopyJob;

/// What started a pass, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `--balance-interval`.
    Interval,
    /// `RebalanceRun`.
    Request,
    /// The queue ran low after a plan that was cut short.
    Refill,
}

impl Balancer {
    /// Starts the pass loop and the mover loop; both end at `shutdown`.
    pub fn spawn(&self, shutdown: &CancellationToken) {
        let tracker = &self.inner.tracker;
        tracker.spawn(self.clone().pass_loop(shutdown.clone()));
        tracker.spawn(self.clone().mover_loop(shutdown.clone()));
    }

    /// Copies the metadata and the queue's ids out, then plans off the
    /// async workers, as an operator's pass would (not held by the
    /// [`super::LoadGate`]). Changes nothing.
    pub async fn plan(&self) -> Result<PassPlan, Error> {
        self.plan_as(false).await
    }

    /// [`Balancer::plan`]; `background`: the pass also records where the
    /// servers lie against the load band and holds from load moves the
    /// servers the [`super::LoadGate`] says to.
    async fn plan_as(&self, background: bool) -> Result<PassPlan, Error> {
        let now = self.now();
        // The queue first, then the metadata, each lock on its own: a move
        // that ends in between is projected as done but is no longer on its
        // source in the snapshot, which the planner's projection skips.
        let in_flight = self.state().in_flight(now);
        let cooling = self.cooling_chunks();
        let mut input = PassInput::take(&mut lock(self.inner.mover.meta()), &in_flight, &cooling);
        // Finished load moves still linger in the reported rates.
        self.cooling().linger(&mut input.view, now);
        if background {
            let copying = self.state().copying();
            let pct = self.inner.settings.policy.load_threshold_pct;
            input.held = self.gate().observe(&input.view, pct, &copying, now);
        }
        let policy = self.inner.settings.policy;
        let mut plan = tokio::task::spawn_blocking(move || plan_pass(input, &policy))
            .await
            .map_err(|e| Error::Planner(e.to_string()))?;
        if self.in_safe_mode() {
            plan.notes.push(
                "the master is still in safe mode: servers may be missing from this plan".into(),
            );
        }
        Ok(plan)
    }

    /// Plans and queues the moves, at most up to [`MAX_QUEUED`] in the queue.
    pub async fn run_pass(&self, trigger: Trigger) -> Result<PassReport, Error> {
        let _one_at_a_time = self.inner.passes.lock().await;
        let queued = self.state().len();
        if queued >= MAX_QUEUED {
            info!(?trigger, queued, "balancer pass skipped: the queue is full");
            self.inner.cut_short.store(true, Ordering::Relaxed);
            return Ok(PassReport::default());
        }
        let started = Instant::now();
        let generation = self.state().generation();
        let mut plan = self.plan_as(trigger != Trigger::Request).await?;
        let room = MAX_QUEUED - queued;
        let take = plan.moves.len().min(room);
        let (enqueued, queued_at) = self.enqueue_in_batches(&plan.moves[..take], generation);
        self.remember_load_moves(&plan, &queued_at);
        let cut = take < plan.planned;
        self.inner.cut_short.store(cut, Ordering::Relaxed);
        if cut {
            plan.notes.push(format!(
                "queued the first {take} of {} planned moves; the rest is planned again once the queue runs low",
                plan.planned
            ));
        }
        let secs = started.elapsed().as_secs_f64();
        if enqueued.moves > 0 {
            info!(
                ?trigger,
                moves = enqueued.moves,
                bytes = enqueued.bytes,
                stale = enqueued.stale,
                lower_bound_bytes = plan.lower_bound_bytes,
                reaches_band = plan.reaches_band,
                chunks = plan.chunks,
                secs,
                "balancer pass: planned {} moves",
                enqueued.moves
            );
        } else if plan.reaches_band {
            info!(
                ?trigger,
                queued,
                chunks = plan.chunks,
                secs,
                "balancer pass: balanced"
            );
        } else {
            info!(?trigger, stale = enqueued.stale, notes = ?plan.notes, chunks = plan.chunks, secs,
                  "balancer pass: outside the band but no move can help now");
        }
        self.inner.wake.notify_one();
        Ok(PassReport { plan, enqueued })
    }

    /// Remembers the load moves of `plan` the queue took (indices `queued`)
    /// as queued now (they cool from here) and counts them. A move the
    /// queue left out as stale never runs, so it is neither counted nor
    /// remembered.
    fn remember_load_moves(&self, plan: &PassPlan, queued: &[usize]) {
        let now = self.now();
        let load = queued
            .iter()
            .filter(|&&i| plan.reasons.get(i) == Some(&keel_balancer::MoveReason::Load))
            .filter_map(|&i| Some((plan.moves.get(i)?, plan.rates.get(i).copied()?)));
        let mut cooling = self.cooling();
        let mut n = 0u64;
        for (m, rate) in load {
            let from_reads = plan.source_reads.get(&m.mv.from).copied().unwrap_or(0.0);
            info!(chunk = %m.mv.chunk, from = %m.mv.from, to = %m.mv.to, from_reads_per_sec = from_reads, band_high = plan.load_band_high, "queued to move for load");
            cooling.queued(
                &m.mv.chunk,
                crate::balance::LoadMove {
                    from: m.mv.from.clone(),
                    to: m.mv.to.clone(),
                    from_reads_per_sec: from_reads,
                    band_high: plan.load_band_high,
                    rate,
                    at: now,
                    finished: false,
                },
            );
            n += 1;
        }
        drop(cooling);
        let metrics = self.inner.mover.metrics();
        metrics.load_moves_total.fetch_add(n, Ordering::Relaxed);
    }

    /// Queues `moves` [`ENQUEUE_BATCH`] at a time, letting go of the locks
    /// between batches: checking ten thousand moves against the metadata
    /// takes tens of milliseconds, which heartbeats should not wait for in
    /// one piece.
    /// Also returns the indices in `moves` of the moves queued.
    fn enqueue_in_batches(&self, moves: &[CopyJob], generation: u64) -> (Enqueued, Vec<usize>) {
        let mut out = Enqueued::default();
        let mut queued = Vec::new();
        for (n, batch) in moves.chunks(ENQUEUE_BATCH).enumerate() {
            let now = self.now();
            let mut st = self.state();
            // A pass that outlived the term it was planned in queues nothing.
            if !st.admits_work_of(generation) {
                break;
            }
            let first = n * ENQUEUE_BATCH;
            let meta = lock(self.inner.mover.meta());
            out += st.enqueue_each(&meta, batch, now, |i| queued.push(first + i));
        }
        (out, queued)
    }

    async fn pass_loop(self, shutdown: CancellationToken) {
        let interval = self.inner.settings.interval;
        let safe_until = tokio::time::Instant::from_std(self.inner.settings.safe_until);
        let mut next = (!interval.is_zero()).then_some(safe_until);
        loop {
            let timer = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let trigger = tokio::select! {
                () = shutdown.cancelled() => return,
                () = timer => {
                    next = Some(tokio::time::Instant::now() + interval);
                    Trigger::Interval
                }
                () = self.inner.refill.notified() => Trigger::Refill,
            };
            if (trigger == Trigger::Refill && self.in_safe_mode()) || !self.leads() {
                continue;
            }
            // Moves planned while paused would be planned on a view that is
            // stale by the time they run (servers join, data lands): plan on
            // resume instead. An operator's RebalanceRun still plans.
            if self.state().queue().is_paused() {
                debug!(?trigger, "balancer pass skipped: paused");
                continue;
            }
            // A pass over a large cluster takes seconds: shutdown need not wait.
            tokio::select! {
                () = shutdown.cancelled() => return,
                r = self.run_pass(trigger) => {
                    if let Err(e) = r {
                        warn!(?trigger, error = %e, "balancer pass failed");
                    }
                }
            }
        }
    }

    async fn mover_loop(self, shutdown: CancellationToken) {
        loop {
            let waiting = self.tick();
            let wait = if waiting { TICK } else { TICK * 20 };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Whether this master leads: a standby plans and starts nothing.
    pub(super) fn leads(&self) -> bool {
        self.inner.mover.leadership().is_leader()
    }

    /// Starts every queued copy whose gates pass; true while copies wait.
    fn tick(&self) -> bool {
        if !self.leads() {
            return false;
        }
        let now = self.now();
        let (starts, waiting, queued) = {
            let mut st = self.state();
            let starts = {
                let mut meta = lock(self.inner.mover.meta());
                let starts = st.start_ready(&mut meta, now);
                let (idle, starting) = (st.is_empty(), !starts.is_empty());
                self.inner
                    .history
                    .tick(idle, starting, || meta.list_servers(Instant::now()));
                starts
            };
            self.answer_dropped(&st);
            self.publish(&st, now);
            (starts, st.queue().pending_len() > 0, st.len())
        };
        for s in starts {
            self.spawn_move(s);
        }
        if queued < REFILL_BELOW && self.inner.cut_short.swap(false, Ordering::Relaxed) {
            self.inner.refill.notify_one();
        }
        waiting
    }

    fn spawn_move(&self, s: Start) {
        let t = &s.ticket;
        debug!(chunk = %t.chunk, from = %t.from.id, to = %t.to.id, kind = t.kind.name(), attempt = s.attempt, "queue starts a copy");
        let this = self.clone();
        self.inner.tracker.spawn(async move {
            let began = SystemTime::now();
            let result = this.inner.mover.run(&s.ticket).await;
            this.finish_queued(&s, result, began);
        });
    }

    /// Reports a copy's end to the queue and to whoever waits for it; a
    /// copy dropped after its retries counts as failed in the metrics.
    fn finish_queued(&self, s: &Start, result: Result<MoveDone, MoveError>, began: SystemTime) {
        let now = self.now();
        let t = &s.ticket;
        let (chunk, from, to, kind) = (&t.chunk, &t.from.id, &t.to.id, t.kind.name());
        let mut st = self.state();
        let after = match &result {
            Ok(_) => st.finish(s.id, Ok(()), now),
            Err(MoveError::Failed { error, retry: true }) => {
                st.finish(s.id, Err(error.clone()), now)
            }
            Err(e) => st.give_up(s.id, e.to_string(), now),
        };
        let error = result
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        match &after {
            Ok(None) => {
                if result.is_ok() {
                    // A load move's cooldown counts from its end (only
                    // that move's: a repair of the chunk is not it).
                    self.cooling().finished(chunk, from, to, now);
                    // Both ends' rates lag their chunks from here.
                    let mut gate = self.gate();
                    gate.changed(from, now);
                    gate.changed(to, now);
                }
                if t.kind.is_urgent() {
                    info!(%chunk, %from, %to, kind, "replica restored");
                }
            }
            Ok(Some(AfterFailure::Retry { not_before })) => {
                let retry_in = not_before.saturating_sub(now);
                warn!(%chunk, %from, %to, kind, attempt = s.attempt, %error, ?retry_in, "copy failed; will retry");
            }
            Ok(Some(AfterFailure::Dropped)) => {
                self.inner.mover.metrics().move_failed();
                warn!(%chunk, %from, %to, kind, attempt = s.attempt, %error, "copy failed; dropped after its retries");
            }
            Err(e) => warn!(%chunk, error = %e, "a finished copy was no longer in the queue"),
        }
        let ended = after.as_ref().ok().copied().flatten();
        self.inner
            .history
            .record(t, &result, ended, began, st.is_empty());
        match (result, after) {
            (Ok(done), _) => self.answer(s.id, Ok(done)),
            (Err(_), Ok(Some(AfterFailure::Dropped)) | Err(_)) => self.answer(
                s.id,
                Err(OperatorFailure::Failed(format!(
                    "{error} (after {} attempts)",
                    s.attempt
                ))),
            ),
            _ => {}
        }
        // Not leading: a retry would wait for a term that may never come.
        if st.standing_by() {
            st.clear_pending(now);
        }
        self.publish(&st, now);
        drop(st);
        if t.kind.is_urgent() {
            self.inner.copy_ended.notify_one();
        }
        self.inner.wake.notify_one();
    }
}
