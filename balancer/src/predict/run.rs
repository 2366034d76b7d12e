//! The event loop of a prediction: queue the plan, start what the queue
//! admits, let the running copies share the buckets until the next one
//! finishes its transfer or its overhead, apply it to the view, report it
//! done to the queue, and start what that frees. Time is kept in seconds as
//! `f64` between events (rates are constant in between) and reported as
//! [`Duration`]s.

use std::collections::HashMap;
use std::time::Duration;

use super::flow::fair_rates;
use super::timeline::TimelinePoint;
use super::{Execution, NotStarted, PredictError, Prediction, TimedMove};
use crate::admission::{Admits, Admitted, Refusal, check_in_view};
use crate::ids::CopyJob;
use crate::ids::{ChunkIdx, ServerIdx};
use crate::model::ClusterView;
use crate::plan::{Plan, PlannedMove};
use crate::queue::{MoveId, MoveQueue, Outcome};

/// Bytes (or seconds) below which a phase counts as over: float crumbs.
const EPSILON: f64 = 1e-6;

/// Ids to view positions, indexed once: the positions stay put as moves
/// are applied, and re-indexing a large view at every event would cost
/// more than the rest of the simulation.
struct Ids {
    chunks: HashMap<String, ChunkIdx>,
    servers: HashMap<String, ServerIdx>,
}

impl Ids {
    fn new(view: &ClusterView) -> Self {
        Ids {
            chunks: view
                .chunks()
                .map(|c| (c.id().to_owned(), c.idx()))
                .collect(),
            servers: view
                .servers
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.clone(), ServerIdx(i as u32)))
                .collect(),
        }
    }

    fn planned(&self, copy: &CopyJob) -> Option<PlannedMove> {
        Some(PlannedMove {
            chunk: *self.chunks.get(&copy.mv.chunk)?,
            from: *self.servers.get(&copy.mv.from)?,
            to: *self.servers.get(&copy.mv.to)?,
            bytes: copy.bytes,
            reason: crate::MoveReason::Capacity,
        })
    }
}

/// The one admission rule over the view as it is now.
struct Now<'a> {
    view: &'a ClusterView,
    ids: &'a Ids,
}

impl Admits for Now<'_> {
    fn check(&self, copy: &CopyJob, extra: u64, min_free_pct: f64) -> Result<Admitted, Refusal> {
        let mv = self.ids.planned(copy).ok_or(Refusal::Unknown)?;
        check_in_view(self.view, &mv, copy.class, extra, min_free_pct)?;
        Ok(Admitted {
            from: mv.from.0,
            to: mv.to.0,
        })
    }
}

/// A copy holding a slot.
struct Running {
    id: MoveId,
    mv: PlannedMove,
    start: f64,
    /// Bytes still to transfer.
    left: f64,
    /// Seconds of overhead still to spend once the transfer is over.
    overhead: f64,
}

/// One prediction in progress.
pub(super) struct Sim<'e> {
    view: ClusterView,
    ids: Ids,
    exec: &'e Execution,
    queue: MoveQueue,
    running: Vec<Running>,
    now: f64,
    bytes_done: f64,
    out: Prediction,
}

impl<'e> Sim<'e> {
    pub(super) fn new(view: ClusterView, exec: &'e Execution) -> Self {
        Sim {
            ids: Ids::new(&view),
            view,
            exec,
            queue: MoveQueue::new(exec.queue),
            running: Vec::new(),
            now: 0.0,
            bytes_done: 0.0,
            out: Prediction::default(),
        }
    }

    /// Runs `plan` to its end. Each move starts and ends once, with a phase
    /// change in between: three events per move bound the loop.
    pub(super) fn run(mut self, plan: &Plan) -> Result<Prediction, PredictError> {
        let budget = plan.moves.len().saturating_mul(3).saturating_add(16);
        let mut queued = 0;
        let mut freed = true;
        self.point();
        for _ in 0..budget {
            let before = queued;
            queued = self.refill(plan, queued)?;
            // Only a freed slot or new moves can start anything: a pass over
            // the pending moves costs their number, so skip the others.
            if freed || queued > before {
                self.start_ready()?;
            }
            if self.running.is_empty() {
                return Ok(self.finish());
            }
            freed = self.advance()?;
        }
        Err(PredictError::NoEnd(budget))
    }

    /// Queues more of the plan while the queue is below a quarter of its
    /// window, as the master refills a plan cut short.
    fn refill(&mut self, plan: &Plan, mut queued: usize) -> Result<usize, PredictError> {
        let window = self.exec.queue_window.max(1);
        let held = self.queue.pending_len() + self.queue.running_len();
        if queued >= plan.moves.len() || (queued > 0 && held >= window / 4) {
            return Ok(queued);
        }
        let take = window.saturating_sub(held).min(plan.moves.len() - queued);
        let now = self.clock();
        for mv in &plan.moves[queued..queued + take] {
            self.queue
                .enqueue_planned(*mv, now, &self.view)
                .map_err(|e| PredictError::BadMove(e.to_string()))?;
        }
        queued += take;
        Ok(queued)
    }

    fn clock(&self) -> Duration {
        Duration::from_secs_f64(self.now)
    }

    /// Starts what the queue admits; a started copy's bytes count as
    /// incoming on its target until it ends, as in the master's metadata.
    fn start_ready(&mut self) -> Result<(), PredictError> {
        let now = self.clock();
        let started: Vec<(MoveId, PlannedMove)> = {
            let admits = Now {
                view: &self.view,
                ids: &self.ids,
            };
            let starts = self.queue.next_ready(now, &admits);
            starts
                .iter()
                .map(|s| {
                    self.ids
                        .planned(&s.copy)
                        .map(|mv| (s.id, mv))
                        .ok_or_else(|| PredictError::BadMove(format!("{:?}", s.copy)))
                })
                .collect::<Result<_, _>>()?
        };
        for (id, mv) in started {
            self.view.servers[mv.to.0 as usize].incoming += mv.bytes;
            self.running.push(Running {
                id,
                mv,
                start: self.now,
                left: mv.bytes as f64,
                overhead: self.exec.move_overhead.as_secs_f64(),
            });
        }
        if !self.running.is_empty() {
            self.point();
        }
        Ok(())
    }

    /// Moves time on to the next phase end and ends the moves that are over;
    /// true when one ended (and gave its slot back).
    fn advance(&mut self) -> Result<bool, PredictError> {
        let rates = self.rates();
        let until = |r: &Running, rate: f64| {
            if r.left > EPSILON {
                r.left / rate
            } else {
                r.overhead
            }
        };
        let dt = self
            .running
            .iter()
            .zip(&rates)
            .map(|(r, &rate)| until(r, rate))
            .fold(f64::INFINITY, f64::min)
            .max(0.0);
        if !dt.is_finite() {
            // Only a copy with no bandwidth left at all gets here.
            return Err(PredictError::NoEnd(self.out.moves.len()));
        }
        for (r, &rate) in self.running.iter_mut().zip(&rates) {
            let spent = until(r, rate);
            if r.left > EPSILON {
                let moved = if spent <= dt + EPSILON {
                    r.left
                } else {
                    rate * dt
                };
                r.left -= moved;
                self.bytes_done += moved;
            } else {
                r.overhead = if spent <= dt + EPSILON {
                    0.0
                } else {
                    r.overhead - dt
                };
            }
        }
        self.now += dt;
        self.end_finished()
    }

    /// Rates of the copies still transferring (0 for those in overhead).
    fn rates(&self) -> Vec<f64> {
        // Only the servers involved take part, so a large cluster costs
        // nothing extra per event.
        let mut local: HashMap<u32, usize> = HashMap::new();
        let mut bandwidth = Vec::new();
        let mut copies = Vec::new();
        let mut index = Vec::new();
        for (i, r) in self.running.iter().enumerate() {
            if r.left <= EPSILON {
                continue;
            }
            let mut pos = |s: u32| {
                *local.entry(s).or_insert_with(|| {
                    bandwidth.push(self.exec.bandwidth_of(s as usize));
                    bandwidth.len() - 1
                })
            };
            copies.push((pos(r.mv.from.0), pos(r.mv.to.0)));
            index.push(i);
        }
        let mut rates = vec![0.0; self.running.len()];
        for (i, rate) in index.into_iter().zip(fair_rates(&copies, &bandwidth)) {
            rates[i] = rate;
        }
        rates
    }

    /// Applies and reports done every move whose overhead is spent; true
    /// when there was one.
    fn end_finished(&mut self) -> Result<bool, PredictError> {
        let now = self.clock();
        let (over, still): (Vec<Running>, Vec<Running>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|r| r.left <= EPSILON && r.overhead <= EPSILON);
        self.running = still;
        for r in &over {
            let to = &mut self.view.servers[r.mv.to.0 as usize];
            to.incoming = to.incoming.saturating_sub(r.mv.bytes);
            self.view
                .apply(&r.mv)
                .map_err(|e| PredictError::BadMove(e.to_string()))?;
            self.queue
                .on_done(r.id, now)
                .map_err(|e| PredictError::BadMove(e.to_string()))?;
            self.record(r);
        }
        self.point();
        Ok(!over.is_empty())
    }

    fn record(&mut self, r: &Running) {
        let name = |s: crate::ids::ServerIdx| self.view.server(s).id.clone();
        self.out.moves.push(TimedMove {
            chunk: self.view.chunk(r.mv.chunk).id().to_owned(),
            from: name(r.mv.from),
            to: name(r.mv.to),
            bytes: r.mv.bytes,
            start: Duration::from_secs_f64(r.start),
            end: Duration::from_secs_f64(self.now),
        });
        self.out.bytes += r.mv.bytes;
    }

    /// Notes the state now; a second point at the same instant replaces the
    /// first.
    fn point(&mut self) {
        let p = TimelinePoint {
            at: self.clock(),
            bytes_done: self.bytes_done.round() as u64,
            running: self.running.len(),
        };
        match self.out.points.last_mut() {
            Some(last) if last.at == p.at => *last = p,
            _ => self.out.points.push(p),
        }
    }

    /// The prediction, with the moves that never started and why.
    fn finish(mut self) -> Prediction {
        let now = self.clock();
        self.out.moves.sort_by_key(|m| m.start);
        self.out.eta = self
            .out
            .moves
            .iter()
            .map(|m| m.end)
            .max()
            .unwrap_or_default();
        let status = self.queue.status(now);
        let waiting = status.moves.into_iter().map(|m| NotStarted {
            reason: m
                .waiting
                .map_or_else(|| "not started".into(), |w| w.to_string()),
            chunk: m.copy.mv.chunk,
            from: m.copy.mv.from,
            to: m.copy.mv.to,
            bytes: m.copy.bytes,
        });
        let obsolete = self
            .queue
            .history()
            .filter(|h| h.outcome == Outcome::Obsolete)
            .map(|h| NotStarted {
                chunk: h.copy.mv.chunk.clone(),
                from: h.copy.mv.from.clone(),
                to: h.copy.mv.to.clone(),
                bytes: h.copy.bytes,
                reason: "dropped as obsolete".into(),
            })
            .collect::<Vec<_>>();
        self.out.not_started = waiting.chain(obsolete).collect();
        self.out
    }
}
