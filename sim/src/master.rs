//! A simulated master: the real metadata (`keel_master::meta::Meta`), the
//! real move queue (`keel_master::balance::QueueState`) and the real
//! `Leadership`, driven by the sim's clock. The maintenance loop's async
//! glue (`master/src/maintenance.rs`) is replayed here: each pass plans through
//! the master's own `Meta::plan_upkeep`, and the
//! mover's steps are the master's own state machines, driven in
//! [`crate::mover`], with each RPC a message through the simulated network.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keel_balancer::admission::CopyClass;
use keel_balancer::queue::QueueConfig;
use keel_balancer::sim::Rng;
use keel_balancer::{CopyJob, MoveRef};
use keel_master::balance::QueueState;
use keel_master::ha::Leadership;
use keel_master::maintenance::UPKEEP_LIMITS;
use keel_master::meta::{Meta, MetaSettings};
use keel_master::mover::SMALL_RPC_TIMEOUT;

use crate::chunkserver::ChunkServer;
use crate::net::{Event, Request, Scheduler, Weather};

/// How long a simulated master waits after starting before it trims or
/// repairs (`--safe-mode`).
pub const SAFE_MODE: Duration = Duration::from_secs(3);

/// The metadata settings of every simulated master: short timeouts so a
/// seed sees deaths and repairs within a minute.
pub fn settings() -> MetaSettings {
    MetaSettings {
        default_replication: 3,
        heartbeat_timeout: Duration::from_secs(5),
        re_replicate_after: Duration::from_secs(10),
        min_free_pct: 10.0,
        load_threshold_pct: keel_balancer::traffic::DEFAULT_LOAD_THRESHOLD_PCT,
    }
}

/// What a master's step needs of the world.
pub struct Ctx<'a> {
    /// The clock and queue.
    pub sched: &'a mut Scheduler,
    /// The one random source.
    pub rng: &'a mut Rng,
    /// The network now.
    pub weather: Weather,
    /// The servers, for the ground truth a delete's intent records.
    pub servers: &'a [ChunkServer],
    /// Op ids, unique over every master and run.
    pub next_op: &'a mut u64,
    /// The instant the simulation's time zero maps to.
    pub base: Instant,
    /// Copies a master accepted as already there (server, chunk), for
    /// the failure messages.
    pub accepted: &'a mut Vec<(usize, String)>,
}

impl Ctx<'_> {
    pub(crate) fn instant(&self) -> Instant {
        self.base + self.sched.now
    }
}

/// One simulated master process.
pub struct SimMaster {
    /// Index among the masters.
    pub index: usize,
    /// The real metadata.
    pub meta: Meta,
    /// The real move queue.
    pub queue: QueueState,
    /// The real leadership view.
    pub lead: Leadership,
    /// RPCs in flight by op id.
    pub(crate) ops: BTreeMap<u64, crate::mover::Op>,
    /// No trims or repairs before this (safe mode).
    safe_until: Duration,
    /// The last full redundancy scan.
    last_scan: Option<Instant>,
    /// Repair copies finished (for the summary).
    pub repairs_done: u64,
}

impl SimMaster {
    /// A master that starts at `now`, a standby until it wins.
    pub fn new(index: usize, now: Duration) -> Self {
        SimMaster {
            index,
            meta: Meta::new(settings()),
            queue: QueueState::new(QueueConfig::default()),
            lead: Leadership::elected(format!("sim://m{index}")),
            ops: BTreeMap::new(),
            safe_until: now + SAFE_MODE,
            last_scan: None,
            repairs_done: 0,
        }
    }

    /// Won `term` (as `Campaign` then `Balancer::lead` do).
    pub fn win(&mut self, term: u64, now: Duration) {
        // The lease is the sim's to end: see `World::depose`.
        self.lead
            .lead(term, Instant::now() + Duration::from_secs(86_400));
        self.queue.clear_pending(now);
        self.queue.set_standing_by(false);
    }

    /// Lost the leadership (as `Campaign` then `Balancer::step_down` do).
    pub fn step_down(&mut self, now: Duration) {
        self.lead.step_down();
        self.queue.set_standing_by(true);
        self.queue.clear_pending(now);
    }

    /// The maintenance loop's sweep and upkeep, then the mover loop's start.
    pub fn tick(&mut self, cx: &mut Ctx<'_>) {
        let now = cx.instant();
        self.meta.sweep_liveness(now);
        self.meta.expire_pending(now);
        if cx.sched.now >= self.safe_until
            && let Some(term) = self.lead.term_if_leading()
        {
            self.upkeep(cx, term);
        }
        self.start_ready(cx);
    }

    /// `Maintenance::upkeep` under `term`: plan under the lock, then run
    /// the RPCs; every delete it plans is decided under `term`.
    fn upkeep(&mut self, cx: &mut Ctx<'_>, term: u64) {
        let queued = self.queue.urgent_copies();
        let lead = &self.lead;
        let plan = self.meta.plan_upkeep(
            cx.instant(),
            &mut self.last_scan,
            |live| lead.settled(live),
            &queued,
            &UPKEEP_LIMITS,
        );
        for d in plan.trims {
            self.run_trim(cx, d, term);
        }
        for v in plan.verifies {
            self.send_verify(cx, v);
        }
        for (chunk, server) in plan.damaged {
            self.send_damaged(cx, chunk, server, term);
        }
        let now = cx.sched.now;
        for c in plan.copies {
            let _ = self.queue.enqueue_urgent(c, now);
        }
    }

    /// Queues an operator's move (`RebalanceExecute`).
    pub fn operator_move(&mut self, cx: &mut Ctx<'_>, chunk: &str, from: &str, to: &str) {
        let Some(size) = self.meta.chunk(chunk).map(|c| c.size) else {
            return;
        };
        let copy = CopyJob::new(MoveRef::new(chunk, from, to), size, CopyClass::Operator);
        if self.lead.is_leader() && self.queue.enqueue_urgent(copy, cx.sched.now).is_ok() {
            self.start_ready(cx);
        }
    }

    /// An operator drains or undrains `server` (`Front::drain`): the
    /// chunk server's mark first, under the term this master leads at now.
    pub fn operator_drain(&mut self, cx: &mut Ctx<'_>, server: &str, draining: bool) {
        let Some(term) = self.lead.term_if_leading() else {
            return;
        };
        let Ok(addr) = self.meta.drain_target(server) else {
            return;
        };
        let to = crate::mover::idx(&addr);
        let op = crate::mover::Op::Drain {
            server: addr,
            draining,
        };
        let req = Request::SetDrain { draining, term };
        self.send(cx, to, op, req, SMALL_RPC_TIMEOUT);
    }

    /// The chunk server set its mark: `Front::drain`'s second half, the
    /// metadata follows it before the next heartbeat says so.
    pub(crate) fn drain_set(&mut self, no: keel_master::meta::ServerNo, draining: bool) {
        self.meta.drain_marked(no, draining);
    }

    /// A client reports a corrupt copy (`ReportCorruption`); returns
    /// whether the master took the report.
    pub fn corruption_reported(&mut self, cx: &mut Ctx<'_>, chunk: &str, server: &str) -> bool {
        if !self.lead.is_leader() {
            return false;
        }
        match self.meta.report_corruption(chunk, server) {
            Ok(Some(v)) => {
                self.send_verify(cx, v);
                true
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// `QueueState::start_ready` and one `Mover::run` per started copy.
    pub(crate) fn start_ready(&mut self, cx: &mut Ctx<'_>) {
        let starts = self.queue.start_ready(&mut self.meta, cx.sched.now);
        for s in starts {
            self.run_copy(cx, s);
        }
    }

    /// A heartbeat arrives (the `Heartbeat` handler): applied, counted
    /// towards settling when built under this leader's term, answered.
    /// Returns whether the master now holds what it said (no full report
    /// asked for instead, not ignored as older than one applied).
    pub fn heartbeat(
        &mut self,
        cx: &mut Ctx<'_>,
        from: usize,
        hb: keel_master::meta::Heartbeat,
        term: u64,
        covers: u64,
    ) -> bool {
        let incarnation = hb.stamp.map_or(0, |s| s.incarnation);
        let id = hb.id.clone();
        let out = self.meta.apply_heartbeat(hb, cx.instant());
        if !out.send_full_report && term >= self.lead.known_term() {
            self.lead.heard(&id);
        }
        let answer = Event::ToServer {
            from: self.index,
            to: from,
            op: 0,
            req: Request::HeartbeatAnswer {
                term: self.lead.known_term(),
                full: out.send_full_report,
                covers,
                incarnation,
            },
        };
        cx.sched.send(cx.rng, &cx.weather, answer);
        // A late report the master ignored applied nothing (it may still
        // count towards settling, as the `Heartbeat` handler counts it).
        !out.send_full_report && !out.stale
    }

    /// Whether any RPC is in flight.
    pub fn busy(&self) -> bool {
        !self.ops.is_empty()
    }
}
