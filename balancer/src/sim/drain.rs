//! A seeded simulation of the balancer loop: plan, queue, start what the
//! queue allows, finish or fail moves as simulated time passes, apply the
//! finished ones to the view, and plan again when the queue is idle or stuck.
//! Every step checks the invariants and the concurrency limits.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::Rng;
use crate::admission::ViewAdmits;
use crate::ids::{ChunkIdx, ServerIdx};
use crate::model::ClusterView;
use crate::plan::{Plan, PlannedMove, Policy};
use crate::planner::plan;
use crate::queue::{FinishedMove, MoveId, MoveQueue, Outcome, QueueConfig, Totals};
use crate::space::fill_limit;

/// Which moves fail.
#[derive(Debug, Clone, Default)]
pub struct FailureModel {
    /// Chance that any attempt fails.
    pub rate: f64,
    /// Chunks whose every move attempt fails.
    pub always: BTreeSet<ChunkIdx>,
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The planner's policy.
    pub policy: Policy,
    /// The queue's limits.
    pub queue: QueueConfig,
    /// Injected failures.
    pub failures: FailureModel,
    /// Seed of the failure draws.
    pub seed: u64,
    /// Planning passes allowed.
    pub max_plans: usize,
    /// Steps (events) allowed before the simulation calls it a livelock.
    pub max_steps: usize,
    /// Transfer rate of a move; each also takes one second of overhead.
    pub bytes_per_sec: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            queue: QueueConfig::default(),
            failures: FailureModel::default(),
            seed: 0,
            max_plans: 10,
            max_steps: 100_000,
            bytes_per_sec: 64 << 20,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// Every plan made, in order.
    pub plans: Vec<Plan>,
    /// The queue's lifetime counts at the end.
    pub totals: Totals,
    /// Moves still pending when the simulation stopped (blocked for good).
    pub stuck: usize,
    /// Moves dropped after their retries, as the queue's history has them.
    pub failed: Vec<FinishedMove>,
    /// Most moves running at once.
    pub max_running: usize,
    /// Simulated time taken.
    pub elapsed: Duration,
    /// Events processed.
    pub steps: usize,
}

/// Runs the balancer loop on `view` until a plan has nothing to do, the
/// queue is stuck with nothing left to plan, or `max_plans` is used up.
/// `Err` names the first invariant or limit broken.
pub fn simulate(view: &mut ClusterView, cfg: &SimConfig) -> Result<SimReport, String> {
    let before = view.clone();
    let mut sim = Sim {
        cfg,
        rng: Rng::new(cfg.seed),
        queue: MoveQueue::new(cfg.queue),
        running: BTreeMap::new(),
        now: Duration::ZERO,
        report: SimReport::default(),
    };
    sim.run(view)?;
    view.check_replicas_kept(&before)?;
    sim.report.totals = sim.queue.totals();
    sim.report.stuck = sim.queue.pending_len();
    sim.report.failed = sim
        .queue
        .history()
        .filter(|h| matches!(h.outcome, Outcome::Failed { .. }))
        .cloned()
        .collect();
    sim.report.elapsed = sim.now;
    Ok(sim.report)
}

struct Sim<'a> {
    cfg: &'a SimConfig,
    rng: Rng,
    queue: MoveQueue,
    /// Running moves by (finish time, id).
    running: BTreeMap<(Duration, MoveId), PlannedMove>,
    now: Duration,
    report: SimReport,
}

impl Sim<'_> {
    fn run(&mut self, view: &mut ClusterView) -> Result<(), String> {
        loop {
            self.report.steps += 1;
            if self.report.steps > self.cfg.max_steps {
                return Err(format!("no end after {} steps", self.cfg.max_steps));
            }
            self.start_ready(view)?;
            if let Some((&(at, id), &mv)) = self.running.iter().next() {
                self.running.remove(&(at, id));
                self.now = at;
                self.finish(view, id, mv)?;
            } else if let Some(at) = self.queue.next_retry_at(self.now) {
                self.now = at;
            } else if !self.replan(view)? {
                return Ok(());
            }
        }
    }

    /// Plans again, nothing running and nothing able to start: `false` when
    /// the plan is empty or the plans are used up.
    fn replan(&mut self, view: &ClusterView) -> Result<bool, String> {
        if self.report.plans.len() >= self.cfg.max_plans {
            return Ok(false);
        }
        let plan = plan(view, &self.cfg.policy, &self.queue.busy(self.now, view));
        for mv in &plan.moves {
            self.queue
                .enqueue_planned(*mv, self.now, view)
                .map_err(|e| e.to_string())?;
        }
        let planned = !plan.moves.is_empty();
        self.report.plans.push(plan);
        Ok(planned)
    }

    /// Starts what the queue allows and checks the limits and the floor.
    /// A started move's bytes count as incoming on its target until it ends.
    fn start_ready(&mut self, view: &mut ClusterView) -> Result<(), String> {
        let started: Vec<(MoveId, PlannedMove)> = {
            let ids = ViewAdmits::new(view);
            let starts = self.queue.next_ready(self.now, &ids);
            starts
                .iter()
                .map(|s| {
                    let mv = ids.planned(&s.copy).ok_or("a started move left the view")?;
                    Ok((s.id, mv))
                })
                .collect::<Result<_, String>>()?
        };
        for &(id, mv) in &started {
            let secs = 1.0 + mv.bytes as f64 / self.cfg.bytes_per_sec as f64;
            let at = self.now + Duration::from_secs_f64(secs);
            self.running.insert((at, id), mv);
            view.servers[mv.to.0 as usize].incoming += mv.bytes;
        }
        self.check_limits(view, &started.iter().map(|(_, m)| m.to).collect::<Vec<_>>())
    }

    fn check_limits(
        &mut self,
        view: &ClusterView,
        new_targets: &[ServerIdx],
    ) -> Result<(), String> {
        let q = self.cfg.queue;
        self.report.max_running = self.report.max_running.max(self.running.len());
        if self.running.len() > q.max_concurrent_moves {
            return Err(format!(
                "{} moves running, limit {}",
                self.running.len(),
                q.max_concurrent_moves
            ));
        }
        let mut per_server: BTreeMap<ServerIdx, usize> = BTreeMap::new();
        let mut incoming: BTreeMap<ServerIdx, u64> = BTreeMap::new();
        for mv in self.running.values() {
            *per_server.entry(mv.from).or_default() += 1;
            *per_server.entry(mv.to).or_default() += 1;
            *incoming.entry(mv.to).or_default() += mv.bytes;
        }
        if let Some((s, n)) = per_server
            .iter()
            .find(|(_, n)| **n > q.max_moves_per_server)
        {
            return Err(format!(
                "{n} moves on {}, limit {}",
                view.server(*s).id,
                q.max_moves_per_server
            ));
        }
        for t in new_targets {
            let server = view.server(*t);
            if server.used + incoming[t] > fill_limit(server.capacity, q.min_free_pct) {
                return Err(format!(
                    "moves into {} pass its free-space floor",
                    server.id
                ));
            }
        }
        Ok(())
    }

    /// Ends a running move: fails it per the failure model, or applies it.
    fn finish(
        &mut self,
        view: &mut ClusterView,
        id: MoveId,
        mv: PlannedMove,
    ) -> Result<(), String> {
        let f = &self.cfg.failures;
        let target = &mut view.servers[mv.to.0 as usize];
        target.incoming = target.incoming.saturating_sub(mv.bytes);
        if f.always.contains(&mv.chunk) || self.rng.chance(f.rate) {
            self.queue
                .on_failed(id, "injected failure", self.now)
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
        let racks = rack_count(view, mv.chunk);
        view.apply(&mv).map_err(|e| e.to_string())?;
        view.check_invariants()?;
        if rack_count(view, mv.chunk) < racks {
            return Err(format!("move {mv:?} narrowed its chunk's racks"));
        }
        self.queue.on_done(id, self.now).map_err(|e| e.to_string())
    }
}

/// Distinct racks the replicas of `chunk` span.
fn rack_count(view: &ClusterView, chunk: ChunkIdx) -> usize {
    let racks: BTreeSet<&str> = view
        .chunk(chunk)
        .replicas()
        .iter()
        .filter_map(|&s| view.server(s).rack.as_deref())
        .collect();
    racks.len()
}
