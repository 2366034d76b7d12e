//! The mover's steps (`master/src/mover/`), one RPC at a time: each request
//! goes out through the simulated network with its deadline, and its answer
//! (or the deadline) takes the next step, in the order `Mover::run`,
//! `Mover::trim`, `Mover::delete_damaged` and `Mover::verify` take them.

use std::time::Duration;

use keel_master::balance::Start;
use keel_master::meta::{Deletion, ServerAddr, Stamp, Verify, VerifyOutcome};
use keel_master::mover::SMALL_RPC_TIMEOUT;

use crate::chunkserver::{Answer, ChunkServer};
use crate::confirm::Then;
use crate::master::{Ctx, SimMaster};
use crate::net::{Event, Intent, Request};

/// Fixed part of a copy's deadline, as `mover::copy::COPY_MARGIN`.
const COPY_MARGIN: Duration = Duration::from_secs(30);

/// The slowest copy rate planned for (`--copy-min-rate` default).
const COPY_MIN_RATE: u64 = 1 << 20;

/// Where one running copy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `CopyChunk` sent.
    Copying,
    /// The target said it holds the chunk: `StatChunk` sent.
    Stat,
    /// The source's `DeleteChunk` sent.
    Releasing,
}

/// An RPC in flight, with what the mover does with its answer.
#[derive(Debug, Clone)]
pub enum Op {
    /// A move or copy the queue started (`Mover::run`), decided under `term`.
    Copy {
        /// The queue's start.
        start: Start,
        /// Where it is.
        stage: Stage,
        /// The decision term.
        term: u64,
    },
    /// Excess replicas to delete in order (`Mover::trim`).
    Trim {
        /// The plan.
        d: Deletion,
        /// The holder whose delete is out.
        next: usize,
        /// The decision term.
        term: u64,
    },
    /// A damaged or mismatched copy to delete (`Mover::delete_damaged`).
    Damaged {
        /// Chunk id.
        chunk: String,
        /// Its server.
        server: ServerAddr,
    },
    /// A replica reported corrupt, to verify (`Mover::verify`).
    Verify {
        /// What to verify.
        v: Verify,
    },
    /// A `StatChunk` of a replica a delete relies on (`Mover::confirm_staying`).
    Confirm(crate::confirm::Confirming),
    /// The drain mark sent to a server (`Mover::set_drain`, from `Front::drain`).
    Drain {
        /// The server.
        server: ServerAddr,
        /// The mark sent.
        draining: bool,
    },
}

/// A copy's failure: whether the queue may retry it, and why.
type Failure = (bool, String);

impl SimMaster {
    fn op_id(cx: &mut Ctx<'_>) -> u64 {
        *cx.next_op += 1;
        *cx.next_op
    }

    /// Sends `req` to server `to` and arms its deadline.
    pub(crate) fn send(
        &mut self,
        cx: &mut Ctx<'_>,
        to: usize,
        op: Op,
        req: Request,
        timeout: Duration,
    ) {
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

    /// `Mover::run_attempt` and `Mover::copy`: the decision term is the
    /// term this master leads under now; the copy is sent under it.
    pub(crate) fn run_copy(&mut self, cx: &mut Ctx<'_>, start: Start) {
        let Some(term) = self.lead.term_if_leading() else {
            return self.end_copy(cx, start, Err((false, "not the leader".into())));
        };
        let t = &start.ticket;
        let valid = self
            .meta
            .chunk(&t.chunk)
            .is_some_and(|c| c.holds(t.from.no))
            && self.meta.server(t.from.no).alive
            && self.meta.server(t.to.no).alive;
        if !valid {
            return self.end_copy(cx, start, Err((false, "no longer valid".into())));
        }
        let req = Request::Copy {
            chunk: t.chunk.clone(),
            from: idx(&t.from),
            size: t.size,
            crc32c: t.crc32c,
            factor: t.replication,
            term,
        };
        let to = idx(&t.to);
        let timeout = copy_deadline(t.size);
        let op = Op::Copy {
            start,
            stage: Stage::Copying,
            term,
        };
        self.send(cx, to, op, req, timeout);
    }

    /// The copy landed (`stamp` from its answer, none when an existing copy
    /// was accepted; `replica` its identity): record it, then release the
    /// source of a move (`Mover::release_source`).
    fn copied(
        &mut self,
        cx: &mut Ctx<'_>,
        start: Start,
        stamp: Option<Stamp>,
        replica: u64,
        term: u64,
    ) {
        let t = &start.ticket;
        self.meta.record_copy_of(t, stamp, replica);
        if !t.kind.deletes_source() {
            self.repairs_done += 1;
            return self.end_copy(cx, start, Ok(()));
        }
        if self.meta.source_deletable(&t.chunk, t.from.no).is_err() {
            return self.end_copy(cx, start, Ok(()));
        }
        self.confirm(cx, Then::Release { start, term });
    }

    /// `Mover::release_source` once the replicas that stay are confirmed:
    /// the view checked again, then the source's delete.
    pub(crate) fn release(
        &mut self,
        cx: &mut Ctx<'_>,
        start: Start,
        term: u64,
        relied: Vec<(u64, Duration)>,
    ) {
        let t = &start.ticket;
        if self.meta.source_deletable(&t.chunk, t.from.no).is_err() {
            return self.end_copy(cx, start, Ok(()));
        }
        let replica = self.meta.replica_id(&t.chunk, t.from.no);
        if !self.leads_at(term) {
            return self.end_copy(cx, start, Ok(()));
        }
        let from = idx(&t.from);
        let req = Request::Delete {
            chunk: t.chunk.clone(),
            replica,
            term,
            decided: term,
            intent: intent_whole(cx.servers, from, &t.chunk),
            kind: "move source",
            relied,
        };
        let op = Op::Copy {
            start,
            stage: Stage::Releasing,
            term,
        };
        self.send(cx, from, op, req, SMALL_RPC_TIMEOUT);
    }

    /// `Clients::leads_at`.
    fn leads_at(&self, term: u64) -> bool {
        self.lead.term_if_leading() == Some(term)
    }

    /// The copy task ends: busy mark off, result to the queue
    /// (`Balancer::finish_queued`).
    pub(crate) fn end_copy(&mut self, cx: &mut Ctx<'_>, start: Start, result: Result<(), Failure>) {
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

    /// `Mover::trim` from holder `next` on, under decision term `term`:
    /// the replicas that stay are confirmed first.
    pub(crate) fn trim_next(&mut self, cx: &mut Ctx<'_>, d: Deletion, next: usize, term: u64) {
        let Some(s) = d.servers.get(next).cloned() else {
            return self.meta.end_busy(&d.chunk);
        };
        if self.meta.source_deletable(&d.chunk, s.no).is_err() {
            self.meta.trim_stopped(&d.chunk);
            return self.meta.end_busy(&d.chunk);
        }
        self.confirm(cx, Then::Trim { d, next, term });
    }

    /// `Mover::trim`'s delete of holder `next`, once the replicas that stay
    /// are confirmed.
    pub(crate) fn trim_delete(
        &mut self,
        cx: &mut Ctx<'_>,
        d: Deletion,
        next: usize,
        term: u64,
        relied: Vec<(u64, Duration)>,
    ) {
        let Some(s) = d.servers.get(next).cloned() else {
            return self.meta.end_busy(&d.chunk);
        };
        if self.meta.source_deletable(&d.chunk, s.no).is_err() {
            self.meta.trim_stopped(&d.chunk);
            return self.meta.end_busy(&d.chunk);
        }
        if !self.leads_at(term) {
            self.meta.trim_stopped(&d.chunk);
            return self.meta.end_busy(&d.chunk);
        }
        let req = Request::Delete {
            chunk: d.chunk.clone(),
            replica: self.meta.replica_id(&d.chunk, s.no),
            term,
            decided: term,
            intent: intent_whole(cx.servers, idx(&s), &d.chunk),
            kind: "trim",
            relied,
        };
        let op = Op::Trim { d, next, term };
        self.send(cx, idx(&s), op, req, SMALL_RPC_TIMEOUT);
    }

    /// `Mover::delete_damaged` under decision term `term`.
    pub(crate) fn send_damaged(
        &mut self,
        cx: &mut Ctx<'_>,
        chunk: String,
        server: ServerAddr,
        term: u64,
    ) {
        if !self.leads_at(term) {
            return self.meta.damaged_delete_failed(&chunk, server.no);
        }
        let req = Request::Delete {
            chunk: chunk.clone(),
            replica: self.meta.damaged_replica(&chunk, server.no),
            term,
            decided: term,
            intent: Intent::Damaged,
            kind: "damaged copy",
            relied: Vec::new(),
        };
        let to = idx(&server);
        self.send(
            cx,
            to,
            Op::Damaged { chunk, server },
            req,
            SMALL_RPC_TIMEOUT,
        );
    }

    /// `Mover::verify`.
    pub(crate) fn send_verify(&mut self, cx: &mut Ctx<'_>, v: Verify) {
        let to = idx(&v.server);
        let req = Request::Verify {
            chunk: v.chunk.clone(),
        };
        let size = self.meta.chunk(&v.chunk).map_or(0, |c| c.size);
        self.send(cx, to, Op::Verify { v }, req, copy_deadline(size));
    }

    /// A server answered op `id` (`None`: its deadline passed first).
    pub fn answered(&mut self, cx: &mut Ctx<'_>, id: u64, answer: Option<Answer>) {
        let Some(op) = self.ops.remove(&id) else {
            return;
        };
        match op {
            Op::Copy { start, stage, term } => self.copy_answered(cx, start, stage, term, answer),
            Op::Trim { d, next, term } => {
                let s = d.servers[next].clone();
                match answer {
                    Some(Answer::Ok(at)) => self.meta.record_removal(&d.chunk, s.no, Some(at)),
                    Some(Answer::NotFound) => self.meta.record_removal(&d.chunk, s.no, None),
                    _ => self.meta.doubt_replica(&d.chunk, s.no),
                }
                self.trim_next(cx, d, next + 1, term);
            }
            Op::Damaged { chunk, server } => match answer {
                Some(Answer::Ok(_) | Answer::NotFound) => {
                    self.meta.forget_excluded(&chunk, server.no)
                }
                _ => self.meta.damaged_delete_failed(&chunk, server.no),
            },
            Op::Verify { v } => {
                let (outcome, at) = match answer {
                    Some(Answer::Whole(at)) => (VerifyOutcome::Whole, Some(at)),
                    Some(Answer::Corrupt(at, replica)) => {
                        let detail = "crc".into();
                        (VerifyOutcome::Corrupt { detail, replica }, Some(at))
                    }
                    Some(Answer::NotFound) => (VerifyOutcome::Missing, None),
                    _ => (VerifyOutcome::Failed("no answer".into()), None),
                };
                self.meta.verified(&v.chunk, v.server.no, &outcome, at);
            }
            Op::Confirm(c) => self.confirm_answered(cx, c, answer),
            Op::Drain { server, draining } => {
                if let Some(Answer::Ok(_)) = answer {
                    self.drain_set(server.no, draining);
                }
            }
        }
    }

    fn copy_answered(
        &mut self,
        cx: &mut Ctx<'_>,
        start: Start,
        stage: Stage,
        term: u64,
        answer: Option<Answer>,
    ) {
        let t = &start.ticket;
        let (size, crc) = (t.size, t.crc32c);
        match (stage, answer) {
            (Stage::Copying, Some(Answer::Copied(s, c, at, replica))) if s == size && c == crc => {
                self.copied(cx, start, Some(at), replica, term)
            }
            (Stage::Copying, Some(Answer::AlreadyExists)) => self.verify_existing(cx, start, term),
            (Stage::Copying, None | Some(Answer::Unavailable)) => {
                self.end_copy(cx, start, Err((true, "copy failed".into())))
            }
            (Stage::Copying, _) => self.end_copy(cx, start, Err((false, "refused".into()))),
            (Stage::Stat, Some(Answer::Header(h))) if h.deleting => {
                self.end_copy(cx, start, Err((true, "the target is deleting it".into())))
            }
            (Stage::Stat, Some(Answer::Header(h))) if h.size == size && h.crc32c == crc => {
                cx.accepted.push((idx(&t.to), t.chunk.clone()));
                self.copied(cx, start, Some(h.stamp), h.replica, term)
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

    /// `Mover::verify_existing`: a doubted replica is no copy to accept.
    fn verify_existing(&mut self, cx: &mut Ctx<'_>, start: Start, term: u64) {
        let t = &start.ticket;
        if self.meta.is_doubted(&t.chunk, t.to.no) {
            return self.end_copy(cx, start, Err((true, "a delete may still run".into())));
        }
        let req = Request::Stat {
            chunk: t.chunk.clone(),
        };
        let to = idx(&t.to);
        let op = Op::Copy {
            start,
            stage: Stage::Stat,
            term,
        };
        self.send(cx, to, op, req, SMALL_RPC_TIMEOUT);
    }
}

/// `mover::copy::copy_deadline` with the default `--copy-min-rate`.
fn copy_deadline(size: u64) -> Duration {
    COPY_MARGIN + Duration::from_secs_f64(size as f64 / COPY_MIN_RATE as f64)
}

/// The simulated server a master's address names (ids are `csN`; the
/// master numbers servers in the order it first heard of them).
pub(crate) fn idx(a: &ServerAddr) -> usize {
    crate::world::World::server_index(&a.id).unwrap_or(usize::MAX)
}

/// The indexed copy of `chunk` on server `s` now: what a delete decided
/// now means to remove (ground truth, for the invariants).
fn intent_whole(servers: &[ChunkServer], s: usize, chunk: &str) -> Intent {
    Intent::Whole(servers[s].files.get(chunk).map(|f| f.generation))
}
