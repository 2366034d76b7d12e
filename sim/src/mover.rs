//! The master's own mover steps (`keel_master::mover::steps`: `MoveSteps`,
//! `TrimSteps`, `DamagedSteps`, `VerifySteps`, and the `Confirmation` of
//! the replicas a delete relies on inside them) driven through the
//! simulated network. The machines decide every step — what to check, what
//! to record, which RPC goes next with which deadline and term, what its
//! answer means — exactly as they do under the async `Mover`; this module
//! only turns each request into a message with its deadline, each answer
//! (or the deadline) back into a reply, and keeps the ground truth the
//! invariants need (what a delete was meant to remove, the copies it relied
//! on). A change to the master's step order is a change the seeds check.

use std::time::Duration;

use keel_master::balance::Start;
use keel_master::meta::{Deletion, ServerAddr, VerifyOutcome};
use keel_master::mover::steps::{
    self, Code, DamagedSteps, MoveStep, MoveSteps, Reply, Rpc, StatReply, TrimStep, TrimSteps,
    VerifySteps,
};
use keel_master::mover::{MoveError, MoverSettings};

use crate::chunkserver::{Answer, ChunkServer};
use crate::master::{Ctx, SimMaster};
use crate::net::{Event, Intent, Request};

/// The copies a delete's confirmation relied on: each one's generation and
/// when its server answered (ground truth for the invariants; the master
/// never sees it).
type Relied = Vec<(u64, Duration)>;

/// An RPC in flight, with the steps its answer goes to.
#[derive(Debug, Clone)]
pub enum Op {
    /// A move or copy the queue started (`Mover::run`).
    Move {
        /// The queue's start.
        start: Start,
        /// The master's steps.
        steps: Box<MoveSteps>,
        /// What its source's delete relies on.
        relied: Relied,
        /// The term this master led under when it started the copy
        /// (ground truth: the term a delete must be decided in).
        decided: u64,
    },
    /// Excess replicas to delete in order (`Mover::trim`).
    Trim {
        /// The master's steps.
        steps: Box<TrimSteps>,
        /// What the delete under way relies on.
        relied: Relied,
        /// The upkeep's term it was planned under (ground truth).
        decided: u64,
    },
    /// A damaged or mismatched copy to delete (`Mover::delete_damaged`).
    Damaged(DamagedSteps),
    /// A replica reported corrupt, to verify (`Mover::verify`).
    Verify(VerifySteps),
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

/// What the steps sending a request are for: a delete's ground truth
/// and label for the invariants depend on it.
#[derive(Debug, Clone, Copy)]
enum Purpose {
    /// A move or copy (its delete is the source's).
    Move,
    /// A trim.
    Trim,
    /// The delete of a damaged or mismatched copy.
    Damaged,
    /// A verification (it deletes nothing).
    Verify,
}

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

    /// `Mover::run`: one attempt of a copy the queue started.
    pub(crate) fn run_copy(&mut self, cx: &mut Ctx<'_>, start: Start) {
        let steps = MoveSteps::new(start.ticket.clone(), min_rate());
        let decided = self.lead.term_if_leading().unwrap_or(0);
        self.drive_move(cx, start, Box::new(steps), Vec::new(), decided);
    }

    /// Takes a move's steps up to its next request or its end.
    fn drive_move(
        &mut self,
        cx: &mut Ctx<'_>,
        start: Start,
        mut steps: Box<MoveSteps>,
        mut relied: Relied,
        decided: u64,
    ) {
        loop {
            let leading = self.lead.term_if_leading();
            match steps.next(&mut self.meta, leading, cx.instant()) {
                MoveStep::Send(req) => {
                    let t = &start.ticket;
                    let (to, wire) = wire(
                        cx,
                        &req,
                        t.replication,
                        (Purpose::Move, decided),
                        &mut relied,
                    );
                    let op = Op::Move {
                        start,
                        steps,
                        relied,
                        decided,
                    };
                    return self.send(cx, to, op, wire, req.timeout);
                }
                MoveStep::Recorded { existing } => {
                    let t = &start.ticket;
                    if existing {
                        cx.accepted.push((idx(&t.to), t.chunk.clone()));
                    }
                    if !t.kind.deletes_source() {
                        self.repairs_done += 1;
                    }
                }
                MoveStep::Done(result) => return self.end_copy(cx, start, failure(result)),
            }
        }
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

    /// `Mover::trim` of `d` under decision term `term`.
    pub(crate) fn run_trim(&mut self, cx: &mut Ctx<'_>, d: Deletion, term: u64) {
        self.drive_trim(cx, Box::new(TrimSteps::new(d, term)), Vec::new(), term);
    }

    /// Takes a trim's steps up to its next request or its end.
    fn drive_trim(
        &mut self,
        cx: &mut Ctx<'_>,
        mut steps: Box<TrimSteps>,
        mut relied: Relied,
        decided: u64,
    ) {
        loop {
            let leading = self.lead.term_if_leading();
            match steps.next(&mut self.meta, leading, cx.instant()) {
                TrimStep::Send(req) => {
                    let (to, wire) = wire(cx, &req, 0, (Purpose::Trim, decided), &mut relied);
                    let op = Op::Trim {
                        steps,
                        relied,
                        decided,
                    };
                    return self.send(cx, to, op, wire, req.timeout);
                }
                TrimStep::Trimmed(_)
                | TrimStep::Failed(..)
                | TrimStep::Stopped(..)
                | TrimStep::Deposed => {}
                TrimStep::Done => return self.meta.end_busy(steps.chunk()),
            }
        }
    }

    /// `Mover::delete_damaged` under decision term `term`.
    pub(crate) fn send_damaged(
        &mut self,
        cx: &mut Ctx<'_>,
        chunk: String,
        server: ServerAddr,
        term: u64,
    ) {
        let mut steps = DamagedSteps::new(&chunk, &server, term);
        let leading = self.lead.term_if_leading();
        if let Ok(req) = steps.next(&mut self.meta, leading) {
            let (to, wire) = wire(cx, &req, 0, (Purpose::Damaged, term), &mut Vec::new());
            self.send(cx, to, Op::Damaged(steps), wire, req.timeout);
        }
    }

    /// `Mover::verify`.
    pub(crate) fn send_verify(&mut self, cx: &mut Ctx<'_>, v: keel_master::meta::Verify) {
        let steps = VerifySteps::new(v, min_rate());
        let req = steps.next(&self.meta);
        let (to, wire) = wire(cx, &req, 0, (Purpose::Verify, 0), &mut Vec::new());
        self.send(cx, to, Op::Verify(steps), wire, req.timeout);
    }

    /// A server answered op `id` (`None`: its deadline passed first).
    pub fn answered(&mut self, cx: &mut Ctx<'_>, id: u64, answer: Option<Answer>) {
        let Some(op) = self.ops.remove(&id) else {
            return;
        };
        let now = cx.instant();
        match op {
            Op::Move {
                start,
                mut steps,
                mut relied,
                decided,
            } => {
                let confirmed = steps.answered(&mut self.meta, reply(&answer), now);
                note_relied(&mut relied, confirmed, &answer);
                self.drive_move(cx, start, steps, relied, decided);
            }
            Op::Trim {
                mut steps,
                mut relied,
                decided,
            } => {
                let confirmed = steps.answered(&mut self.meta, reply(&answer), now);
                note_relied(&mut relied, confirmed, &answer);
                self.drive_trim(cx, steps, relied, decided);
            }
            Op::Damaged(mut steps) => {
                let _ = steps.answered(&mut self.meta, reply(&answer));
            }
            Op::Verify(steps) => {
                steps.answered(&mut self.meta, reply(&answer));
            }
            Op::Drain { server, draining } => {
                if let Some(Answer::Ok(_)) = answer {
                    self.drain_set(server.no, draining);
                }
            }
        }
    }
}

/// The slowest copy rate the master plans for (`--copy-min-rate` default).
fn min_rate() -> u64 {
    MoverSettings::default().copy_min_rate
}

/// A confirmation's answer that confirmed its copy: what the delete after
/// it relies on, dated by when the server looked, not when its answer
/// arrived (a fault while the answer travels is one it could not show).
fn note_relied(relied: &mut Relied, confirmed: Option<bool>, answer: &Option<Answer>) {
    if confirmed == Some(true)
        && let Some(Answer::Header(h)) = answer
    {
        relied.push((h.replica, h.at));
    }
}

/// A step's request as the simulated message to its server. A delete
/// carries its ground truth: the term it was decided in (`decided`, kept by
/// the simulation itself, not read back from the request, so a delete sent
/// under another term is caught), the copy it means to remove now, and the
/// copies its confirmation relied on (taken: the next delete relies on its
/// own).
fn wire(
    cx: &Ctx<'_>,
    req: &steps::Request,
    factor: u32,
    (purpose, decided): (Purpose, u64),
    relied: &mut Relied,
) -> (usize, Request) {
    let to = idx(&req.server);
    let wire = match &req.rpc {
        Rpc::Copy {
            chunk,
            source,
            size,
            crc32c,
            term,
        } => Request::Copy {
            chunk: chunk.clone(),
            from: idx(source),
            size: *size,
            crc32c: *crc32c,
            factor,
            term: *term,
        },
        Rpc::Stat { chunk } => Request::Stat {
            chunk: chunk.clone(),
        },
        Rpc::Verify { chunk } => Request::Verify {
            chunk: chunk.clone(),
        },
        Rpc::Delete {
            chunk,
            replica,
            term,
        } => {
            let (intent, kind) = match purpose {
                Purpose::Move => (intent_whole(cx.servers, to, chunk), "move source"),
                Purpose::Trim => (intent_whole(cx.servers, to, chunk), "trim"),
                Purpose::Damaged | Purpose::Verify => (Intent::Damaged, "damaged copy"),
            };
            Request::Delete {
                chunk: chunk.clone(),
                replica: *replica,
                term: *term,
                decided,
                intent,
                kind,
                relied: std::mem::take(relied),
            }
        }
    };
    (to, wire)
}

/// A simulated server's answer as the reply the steps read (`None`: the
/// deadline passed first).
fn reply(answer: &Option<Answer>) -> Reply {
    let refused = |code: Code| Reply::Refused {
        code,
        message: code.description().to_owned(),
    };
    match *answer {
        None => Reply::TimedOut,
        Some(Answer::Ok(at)) => Reply::Deleted(Some(at)),
        Some(Answer::Copied(size, crc32c, at, replica)) => Reply::Copied {
            size,
            crc32c,
            stamp: Some(at),
            replica,
        },
        Some(Answer::Header(h)) => Reply::Stat(StatReply {
            header: Some((h.size, h.crc32c)),
            replica: h.replica,
            deleting: h.deleting,
            suspect: h.suspect,
            stamp: Some(h.stamp),
        }),
        Some(Answer::Whole(at)) => Reply::Verified(VerifyOutcome::Whole, Some(at)),
        Some(Answer::Corrupt(at, replica)) => {
            let detail = "crc".into();
            Reply::Verified(VerifyOutcome::Corrupt { detail, replica }, Some(at))
        }
        Some(Answer::NotFound) => refused(Code::NotFound),
        Some(Answer::AlreadyExists) => refused(Code::AlreadyExists),
        Some(Answer::Fenced) => refused(Code::FailedPrecondition),
        Some(Answer::Unavailable) => refused(Code::Unavailable),
        Some(Answer::DataLoss) => refused(Code::DataLoss),
    }
}

/// A move's result as the queue takes it.
fn failure(result: Result<keel_master::mover::MoveDone, MoveError>) -> Result<(), Failure> {
    match result {
        Ok(_) => Ok(()),
        Err(MoveError::Failed { error, retry }) => Err((retry, error)),
        Err(MoveError::Rejected(r)) => Err((false, r.to_string())),
    }
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
