//! A simulated master: the real metadata (`keel_master::meta::Meta`), the
//! real move queue (`keel_master::balance::QueueState`) and the real
//! `Leadership`, driven by the sim's clock. The mover's and the maintenance
//! loop's async glue is replayed here step by step, in the order
//! `master/src/mover/` and `master/src/maintenance.rs` take those steps,
//! with each RPC a message through the simulated network.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keel_balancer::NamedCopy;
use keel_balancer::admission::CopyClass;
use keel_balancer::queue::QueueConfig;
use keel_balancer::sim::Rng;
use keel_master::balance::{QueueState, Start};
use keel_master::ha::Leadership;
use keel_master::maintenance::{REPAIRS_IN_FLIGHT, TRIMS_PER_PASS};
use keel_master::meta::{
    Deletion, FULL_SCAN_EVERY, Meta, MetaSettings, QueuedCopies, ServerAddr, Verify, VerifyOutcome,
};
use keel_master::mover::SMALL_RPC_TIMEOUT;

use crate::chunkserver::{Answer, ChunkServer};
use crate::net::{Event, Intent, Request, Scheduler, Weather};

/// Fixed part of a copy's deadline, as `mover::copy::COPY_MARGIN`.
const COPY_MARGIN: Duration = Duration::from_secs(30);

/// The slowest copy rate planned for (`--copy-min-rate` default).
const COPY_MIN_RATE: u64 = 1 << 20;

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
    }
}

/// Where one running copy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// `CopyChunk` sent.
    Copying,
    /// The target said it holds the chunk: `StatChunk` sent.
    Stat,
    /// The source's `DeleteChunk` sent.
    Releasing,
}

/// An RPC in flight, with what the mover does with its answer.
#[derive(Debug, Clone)]
enum Op {
    /// A move or copy the queue started (`Mover::run`).
    Copy {
        start: Start,
        stage: Stage,
        decided: u64,
    },
    /// Excess replicas to delete in order (`Mover::trim`).
    Trim {
        d: Deletion,
        next: usize,
        decided: u64,
    },
    /// A copy verified corrupt, to delete (`Mover::delete_damaged`).
    Damaged { chunk: String, server: ServerAddr },
    /// A replica reported corrupt, to verify (`Mover::verify`).
    Verify { v: Verify },
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
    fn instant(&self) -> Instant {
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
    ops: BTreeMap<u64, Op>,
    /// No trims or repairs before this (safe mode).
    safe_until: Duration,
    /// The last full redundancy scan.
    last_scan: Option<Duration>,
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
        if cx.sched.now >= self.safe_until && self.lead.is_leader() {
            self.upkeep(cx);
        }
        self.start_ready(cx);
    }

    /// `Maintenance::upkeep`: plan under the lock, then run the RPCs.
    fn upkeep(&mut self, cx: &mut Ctx<'_>) {
        let now = cx.sched.now;
        let queued = urgent_copies(&self.queue);
        if self
            .last_scan
            .is_none_or(|t| now.saturating_sub(t) >= FULL_SCAN_EVERY)
        {
            self.meta.scan_redundancy();
            self.last_scan = Some(now);
        }
        let live: Vec<String> = self.meta.live_server_ids().map(str::to_owned).collect();
        let trims = if self.lead.settled(live.iter().map(String::as_str)) {
            self.meta.plan_trims(TRIMS_PER_PASS)
        } else {
            Vec::new()
        };
        let mut trims = trims;
        // Hash order inside the metadata must not leak into the steps.
        trims.sort_by(|a, b| a.chunk.cmp(&b.chunk));
        let repairs = self
            .meta
            .plan_repairs(cx.instant(), REPAIRS_IN_FLIGHT, &queued);
        let mut verifies = self.meta.verifications_due();
        verifies.sort_by(|a, b| (&a.chunk, a.server.no).cmp(&(&b.chunk, b.server.no)));
        let decided = self.lead.term_if_leading().unwrap_or(0);
        for d in trims {
            self.trim_next(cx, d, 0, decided);
        }
        for v in verifies {
            self.send_verify(cx, v);
        }
        let mut damaged = repairs.damaged;
        damaged.sort_by(|a, b| (&a.0, a.1.no).cmp(&(&b.0, b.1.no)));
        for (chunk, server) in damaged {
            self.send_damaged(cx, chunk, server);
        }
        for c in repairs.copies {
            let _ = self.queue.enqueue_urgent(c, now);
        }
    }

    /// Queues an operator's move (`RebalanceExecute`).
    pub fn operator_move(&mut self, cx: &mut Ctx<'_>, chunk: &str, from: &str, to: &str) {
        let Some(size) = self.meta.chunk(chunk).map(|c| c.size) else {
            return;
        };
        let copy = NamedCopy {
            chunk: chunk.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            bytes: size,
            class: CopyClass::Operator,
            rank: 0,
        };
        if self.lead.is_leader() && self.queue.enqueue_urgent(copy, cx.sched.now).is_ok() {
            self.start_ready(cx);
        }
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
    fn start_ready(&mut self, cx: &mut Ctx<'_>) {
        let starts = self.queue.start_ready(&mut self.meta, cx.sched.now);
        for s in starts {
            let decided = self.lead.term_if_leading().unwrap_or(0);
            self.begin_copy(cx, s, decided);
        }
    }

    fn op_id(cx: &mut Ctx<'_>) -> u64 {
        *cx.next_op += 1;
        *cx.next_op
    }

    /// Sends `req` to server `to` and arms its deadline.
    fn send(&mut self, cx: &mut Ctx<'_>, to: usize, op: Op, req: Request, timeout: Duration) {
        let id = Self::op_id(cx);
        self.ops.insert(id, op);
        let e = Event::ToServer {
            from: self.index,
            to,
            op: id,
            req,
        };
        cx.sched.send(cx.rng, &cx.weather, e);
        cx.sched.after(timeout, Event::Timeout(self.index, id));
    }

    /// `Mover::copy`: checks the copy can still run, then `CopyChunk`.
    fn begin_copy(&mut self, cx: &mut Ctx<'_>, start: Start, decided: u64) {
        let t = &start.ticket;
        let valid = self
            .meta
            .chunk(&t.chunk)
            .is_some_and(|c| c.holds(t.from.no))
            && self.meta.server(t.from.no).alive
            && self.meta.server(t.to.no).alive;
        let Some(term) = self.lead.term_if_leading().filter(|_| valid) else {
            return self.end_copy(cx, start, Err((false, "no longer valid".into())));
        };
        let req = Request::Copy {
            chunk: t.chunk.clone(),
            from: idx(&t.from),
            size: t.size,
            crc32c: t.crc32c,
            factor: t.replication,
            term,
        };
        let to = idx(&t.to);
        let timeout = COPY_MARGIN + Duration::from_secs_f64(t.size as f64 / COPY_MIN_RATE as f64);
        let op = Op::Copy {
            start,
            stage: Stage::Copying,
            decided,
        };
        self.send(cx, to, op, req, timeout);
    }

    /// The copy landed (`stamp` from its answer, or none when an existing
    /// copy was accepted): record it, then release the source of a move.
    fn copied(
        &mut self,
        cx: &mut Ctx<'_>,
        start: Start,
        stamp: Option<keel_master::meta::Stamp>,
        decided: u64,
    ) {
        let t = &start.ticket;
        self.meta.record_copy(t, stamp);
        if !t.kind.deletes_source() {
            self.repairs_done += 1;
            return self.end_copy(cx, start, Ok(()));
        }
        if self.meta.source_deletable(&t.chunk, t.from.no).is_err() {
            return self.end_copy(cx, start, Ok(()));
        }
        // `Clients::fenced`: the term at send time.
        let Some(term) = self.lead.term_if_leading() else {
            self.meta.doubt_replica(&t.chunk, t.from.no);
            return self.end_copy(cx, start, Ok(()));
        };
        let from = idx(&t.from);
        let req = Request::Delete {
            chunk: t.chunk.clone(),
            term,
            decided,
            intent: intent_whole(cx.servers, from, &t.chunk),
            kind: "move source",
        };
        let op = Op::Copy {
            start,
            stage: Stage::Releasing,
            decided,
        };
        self.send(cx, from, op, req, SMALL_RPC_TIMEOUT);
    }

    /// The copy task ends: busy mark off, result to the queue.
    fn end_copy(&mut self, cx: &mut Ctx<'_>, start: Start, result: Result<(), (bool, String)>) {
        let now = cx.sched.now;
        self.meta.end_busy(&start.ticket.chunk);
        let _ = match result {
            Ok(()) => self.queue.finish(start.id, Ok(()), now),
            Err((true, e)) => self.queue.finish(start.id, Err(e), now),
            Err((false, e)) => self.queue.give_up(start.id, e, now),
        };
        if self.queue.standing_by() {
            self.queue.clear_pending(now);
        }
    }

    /// `Mover::trim` from holder `next` on.
    fn trim_next(&mut self, cx: &mut Ctx<'_>, d: Deletion, next: usize, decided: u64) {
        let Some(s) = d.servers.get(next).cloned() else {
            return self.meta.end_busy(&d.chunk);
        };
        if self.meta.source_deletable(&d.chunk, s.no).is_err() {
            return self.meta.end_busy(&d.chunk);
        }
        let Some(term) = self.lead.term_if_leading() else {
            self.meta.doubt_replica(&d.chunk, s.no);
            return self.trim_next(cx, d, next + 1, decided);
        };
        let req = Request::Delete {
            chunk: d.chunk.clone(),
            term,
            decided,
            intent: intent_whole(cx.servers, idx(&s), &d.chunk),
            kind: "trim",
        };
        let op = Op::Trim { d, next, decided };
        self.send(cx, idx(&s), op, req, SMALL_RPC_TIMEOUT);
    }

    fn send_damaged(&mut self, cx: &mut Ctx<'_>, chunk: String, server: ServerAddr) {
        let Some(term) = self.lead.term_if_leading() else {
            return;
        };
        let to = idx(&server);
        let req = Request::Delete {
            chunk: chunk.clone(),
            term,
            decided: term,
            intent: Intent::Damaged,
            kind: "damaged copy",
        };
        self.send(
            cx,
            to,
            Op::Damaged { chunk, server },
            req,
            SMALL_RPC_TIMEOUT,
        );
    }

    fn send_verify(&mut self, cx: &mut Ctx<'_>, v: Verify) {
        let to = idx(&v.server);
        let req = Request::Verify {
            chunk: v.chunk.clone(),
        };
        let size = self.meta.chunk(&v.chunk).map_or(0, |c| c.size);
        let timeout = COPY_MARGIN + Duration::from_secs_f64(size as f64 / COPY_MIN_RATE as f64);
        self.send(cx, to, Op::Verify { v }, req, timeout);
    }

    /// A server answered op `id` (`None`: its deadline passed first).
    pub fn answered(&mut self, cx: &mut Ctx<'_>, id: u64, answer: Option<Answer>) {
        let Some(op) = self.ops.remove(&id) else {
            return;
        };
        match op {
            Op::Copy {
                start,
                stage,
                decided,
            } => self.copy_answered(cx, start, stage, decided, answer),
            Op::Trim { d, next, decided } => {
                let s = d.servers[next].clone();
                match answer {
                    Some(Answer::Ok(at)) => self.meta.record_removal(&d.chunk, s.no, Some(at)),
                    Some(Answer::NotFound) => self.meta.record_removal(&d.chunk, s.no, None),
                    _ => self.meta.doubt_replica(&d.chunk, s.no),
                }
                self.trim_next(cx, d, next + 1, decided);
            }
            Op::Damaged { chunk, server } => {
                if matches!(answer, Some(Answer::Ok(_) | Answer::NotFound)) {
                    self.meta.forget_excluded(&chunk, server.no);
                }
            }
            Op::Verify { v } => {
                let (outcome, at) = match answer {
                    Some(Answer::Whole(at)) => (VerifyOutcome::Whole, Some(at)),
                    Some(Answer::Corrupt(at)) => (VerifyOutcome::Corrupt("crc".into()), Some(at)),
                    Some(Answer::NotFound) => (VerifyOutcome::Missing, None),
                    _ => (VerifyOutcome::Failed("no answer".into()), None),
                };
                self.meta.verified(&v.chunk, v.server.no, &outcome, at);
            }
        }
    }

    fn copy_answered(
        &mut self,
        cx: &mut Ctx<'_>,
        start: Start,
        stage: Stage,
        decided: u64,
        answer: Option<Answer>,
    ) {
        let t = &start.ticket;
        let (size, crc) = (t.size, t.crc32c);
        match (stage, answer) {
            (Stage::Copying, Some(Answer::Copied(s, c, at))) if s == size && c == crc => {
                self.copied(cx, start, Some(at), decided)
            }
            (Stage::Copying, Some(Answer::AlreadyExists)) => {
                let req = Request::Stat {
                    chunk: t.chunk.clone(),
                };
                let to = idx(&t.to);
                let op = Op::Copy {
                    start,
                    stage: Stage::Stat,
                    decided,
                };
                self.send(cx, to, op, req, SMALL_RPC_TIMEOUT);
            }
            (Stage::Copying, None | Some(Answer::Unavailable)) => {
                self.end_copy(cx, start, Err((true, "copy failed".into())))
            }
            (Stage::Copying, _) => self.end_copy(cx, start, Err((false, "refused".into()))),
            (Stage::Stat, Some(Answer::Header(s, c))) if s == size && c == crc => {
                cx.accepted.push((idx(&t.to), t.chunk.clone()));
                self.copied(cx, start, None, decided)
            }
            (Stage::Stat, Some(Answer::Header(..))) => {
                self.end_copy(cx, start, Err((false, "different chunk".into())))
            }
            (Stage::Stat, _) => self.end_copy(cx, start, Err((true, "stat failed".into()))),
            (Stage::Releasing, a) => {
                let (chunk, from) = (t.chunk.clone(), t.from.no);
                match a {
                    Some(Answer::Ok(at)) => self.meta.record_removal(&chunk, from, Some(at)),
                    Some(Answer::NotFound) => self.meta.record_removal(&chunk, from, None),
                    _ => self.meta.doubt_replica(&chunk, from),
                }
                self.end_copy(cx, start, Ok(()));
            }
        }
    }

    /// A heartbeat arrives (the `Heartbeat` handler): applied, counted
    /// towards settling when built under this leader's term, answered.
    /// Returns whether the master now holds what it said (no full report
    /// asked for instead).
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
        !out.send_full_report
    }

    /// Whether any RPC is in flight.
    pub fn busy(&self) -> bool {
        !self.ops.is_empty()
    }
}

/// The simulated server a master's address names (ids are `csN`; the
/// master numbers servers in the order it first heard of them).
fn idx(a: &ServerAddr) -> usize {
    crate::world::World::server_index(&a.id).unwrap_or(usize::MAX)
}

/// The indexed copy of `chunk` on server `s` now: what a delete decided
/// now means to remove.
fn intent_whole(servers: &[ChunkServer], s: usize, chunk: &str) -> Intent {
    Intent::Whole(servers[s].files.get(chunk).map(|f| f.generation))
}

/// `Balancer::urgent_copies` over `queue`.
fn urgent_copies(queue: &QueueState) -> QueuedCopies {
    let mut out = QueuedCopies::default();
    let q = queue.queue();
    let pending = q.pending().map(|(_, c)| (c, true));
    let running = q.running().map(|(_, c)| (c, false));
    for (c, pending) in pending.chain(running).filter(|(c, _)| c.class.is_urgent()) {
        out.chunks.insert(c.chunk.clone());
        match c.class {
            CopyClass::Drain => out.drains += 1,
            _ => out.repairs += 1,
        }
        *out.outgoing.entry(c.from.clone()).or_default() += 1;
        if pending {
            *out.incoming.entry(c.to.clone()).or_default() += c.bytes;
        }
    }
    out
}
