//! A move or copy the queue started (`Mover::run`), in order: the term
//! this master leads under now is the decision term → the source still
//! holds the chunk and both ends are alive → `CopyChunk` on the target
//! under that term (an `ALREADY_EXISTS` answer is accepted only for a copy
//! no delete may still be running on, after `StatChunk` shows the same
//! chunk) → the copy is recorded → for a move, the source's delete
//! ([`super::release`]). A failed copy says whether another attempt may
//! succeed; the queue decides when.

use std::time::{Duration, Instant};

use tonic::Code;

use super::release::{Release, ReleaseStep, Released};
use super::{Reply, Request, Rpc, SMALL_RPC_TIMEOUT, StatReply, copy_deadline, retryable};
use crate::meta::{Meta, MoveTicket, Stamp};
use crate::mover::{MoveDone, MoveError};

/// What a [`MoveSteps`] wants next.
#[derive(Debug, Clone, PartialEq)]
pub enum MoveStep {
    /// Send this request and give its reply to [`MoveSteps::answered`].
    Send(Request),
    /// The copy is recorded: the new replica counts from now on and the
    /// move counts as done. `existing`: the target's copy of an earlier
    /// attempt was accepted.
    Recorded {
        /// Whether an existing copy was accepted.
        existing: bool,
    },
    /// Ended with this result.
    Done(Result<MoveDone, MoveError>),
}

/// Where a move is.
#[derive(Debug, Clone)]
enum Stage {
    /// Nothing decided yet.
    Start,
    /// `CopyChunk` sent, with this deadline.
    Copying(Duration),
    /// The target said it holds the chunk.
    Existing,
    /// `StatChunk` of the target's copy sent.
    Stat,
    /// The copy landed: to record.
    Copied {
        stamp: Option<Stamp>,
        replica: u64,
        existing: bool,
    },
    /// The source's delete.
    Releasing(Release),
    /// Ended.
    Ended(Result<MoveDone, MoveError>),
}

/// The steps of one attempt of a move or copy.
#[derive(Debug, Clone)]
pub struct MoveSteps {
    /// What to copy, from where, to where.
    ticket: MoveTicket,
    /// Slowest copy rate planned for (sets the copy's deadline).
    min_rate: u64,
    /// The decision term, once taken.
    term: Option<u64>,
    /// Where it is.
    stage: Stage,
}

impl MoveSteps {
    /// An attempt of `ticket` not begun, planning for copies no slower
    /// than `min_rate` bytes/s.
    pub fn new(ticket: MoveTicket, min_rate: u64) -> Self {
        MoveSteps {
            ticket,
            min_rate,
            term: None,
            stage: Stage::Start,
        }
    }

    /// The decision term, once the first step took it.
    pub fn term(&self) -> Option<u64> {
        self.term
    }

    /// The next step at `now`, with `leading` the term this master leads
    /// under now (`None`: it does not lead).
    pub fn next(&mut self, meta: &mut Meta, leading: Option<u64>, now: Instant) -> MoveStep {
        match &mut self.stage {
            Stage::Start => self.start(meta, leading),
            Stage::Existing => self.existing(meta),
            &mut Stage::Copied {
                stamp,
                replica,
                existing,
            } => self.record(meta, stamp, replica, existing),
            Stage::Releasing(r) => match r.next(meta, leading, now) {
                ReleaseStep::Send(req) => MoveStep::Send(req),
                ReleaseStep::Done(released) => {
                    let done = self.released(released);
                    self.end(Ok(done))
                }
            },
            Stage::Ended(r) => MoveStep::Done(r.clone()),
            Stage::Copying(_) | Stage::Stat => {
                self.fatal("asked for a step before the answer".into())
            }
        }
    }

    /// The reply to the request last sent, taken at `now`. Returns, for a
    /// `StatChunk` of a replica that stays, whether it confirmed it.
    pub fn answered(&mut self, meta: &mut Meta, reply: Reply, now: Instant) -> Option<bool> {
        match &mut self.stage {
            &mut Stage::Copying(deadline) => self.copy_answered(reply, deadline),
            Stage::Stat => self.stat_answered(reply),
            Stage::Releasing(r) => return r.answered(meta, reply, now),
            Stage::Start | Stage::Existing | Stage::Copied { .. } | Stage::Ended(_) => {}
        }
        None
    }

    /// The decision term is the one this master leads under now; the copy
    /// goes under it if the ticket still holds.
    fn start(&mut self, meta: &Meta, leading: Option<u64>) -> MoveStep {
        let Some(term) = leading else {
            return self.fatal(
                "this master is not the leader (any more); the copy is left to the leader".into(),
            );
        };
        self.term = Some(term);
        if let Err(why) = self.still_valid(meta) {
            return self.fatal(why);
        }
        let t = &self.ticket;
        let deadline = copy_deadline(t.size, self.min_rate);
        self.stage = Stage::Copying(deadline);
        MoveStep::Send(Request {
            server: t.to.clone(),
            rpc: Rpc::Copy {
                chunk: t.chunk.clone(),
                source: t.from.clone(),
                size: t.size,
                crc32c: t.crc32c,
                term,
            },
            timeout: deadline,
        })
    }

    /// The source still holds the chunk and both ends are alive.
    fn still_valid(&self, meta: &Meta) -> Result<(), String> {
        let t = &self.ticket;
        if !meta.chunk(&t.chunk).is_some_and(|c| c.holds(t.from.no)) {
            return Err(format!("chunk {} is no longer on {}", t.chunk, t.from.id));
        }
        for s in [&t.from, &t.to] {
            if !meta.server(s.no).alive {
                return Err(format!("server {} died", s.id));
            }
        }
        Ok(())
    }

    /// An `ALREADY_EXISTS` answer: a copy a delete may still be running on
    /// (it failed or timed out, and its server has not reported since) is
    /// no copy to accept, since releasing the source and then the delete
    /// landing would lose both; otherwise the target is asked what it holds.
    fn existing(&mut self, meta: &Meta) -> MoveStep {
        let t = &self.ticket;
        if meta.is_doubted(&t.chunk, t.to.no) {
            let why = format!(
                "{} holds chunk {} but a delete of it may still be running; waiting until {} reports what it holds",
                t.to.id, t.chunk, t.to.id
            );
            return self.retry(why);
        }
        let req = Request {
            server: t.to.clone(),
            rpc: Rpc::Stat {
                chunk: t.chunk.clone(),
            },
            timeout: SMALL_RPC_TIMEOUT,
        };
        self.stage = Stage::Stat;
        MoveStep::Send(req)
    }

    /// The copy landed: recorded, then the source's delete for a move.
    fn record(
        &mut self,
        meta: &mut Meta,
        stamp: Option<Stamp>,
        replica: u64,
        existing: bool,
    ) -> MoveStep {
        let t = &self.ticket;
        meta.record_copy_of(t, stamp, replica);
        self.stage = match self.term {
            Some(term) if t.kind.deletes_source() => {
                Stage::Releasing(Release::new(&t.chunk, &t.from, term))
            }
            _ => Stage::Ended(Ok(self.done(None))),
        };
        MoveStep::Recorded { existing }
    }

    fn copy_answered(&mut self, reply: Reply, deadline: Duration) {
        let t = &self.ticket;
        let to = &t.to.id;
        match reply {
            Reply::Copied {
                size,
                crc32c,
                stamp,
                replica,
            } if size == t.size && crc32c == t.crc32c => {
                self.stage = Stage::Copied {
                    stamp,
                    replica,
                    existing: false,
                }
            }
            Reply::Copied { size, crc32c, .. } => {
                let why = format!(
                    "{to} stored {size} bytes with crc32c {crc32c:#010x}, expected {} bytes with {:#010x}",
                    t.size, t.crc32c
                );
                self.fatal(why);
            }
            Reply::Refused {
                code: Code::AlreadyExists,
                ..
            } => self.stage = Stage::Existing,
            Reply::Refused { code, message } => {
                let why = format!("{to} answered {code:?}: {message}");
                if retryable(code) {
                    self.retry(why);
                } else {
                    self.fatal(why);
                }
            }
            Reply::TimedOut => {
                self.retry(format!("copy to {to} timed out after {deadline:?}"));
            }
            Reply::NotSent(why) => {
                self.fatal(why);
            }
            _ => {
                self.fatal(format!("{to} gave an answer that is no CopyChunk's"));
            }
        }
    }

    /// The target says it already holds the chunk (an earlier attempt whose
    /// answer was lost): its copy is accepted only if it is the same chunk
    /// and not being deleted.
    fn stat_answered(&mut self, reply: Reply) {
        let t = &self.ticket;
        let to = &t.to.id;
        match reply {
            Reply::Stat(StatReply { deleting: true, .. }) => {
                let why = format!(
                    "{to} holds chunk {} but is deleting it; tried again once the delete ends",
                    t.chunk
                );
                self.retry(why);
            }
            Reply::Stat(s) if s.header == Some((t.size, t.crc32c)) => {
                self.stage = Stage::Copied {
                    stamp: s.stamp,
                    replica: s.replica,
                    existing: true,
                }
            }
            Reply::Refused { message, .. } => {
                self.retry(format!("stat on {to} failed: {message}"));
            }
            Reply::TimedOut => {
                self.retry(format!("stat on {to} timed out"));
            }
            Reply::NotSent(why) => {
                self.fatal(why);
            }
            _ => {
                self.fatal(format!("{to} holds a different chunk under id {}", t.chunk));
            }
        }
    }

    /// The move's result once its source's delete ended.
    fn released(&self, r: Released) -> MoveDone {
        let from = &self.ticket.from.id;
        let note = match r {
            Released::Deleted => {
                return MoveDone {
                    source_deleted: true,
                    ..self.done(None)
                };
            }
            Released::Kept(why) => why,
            Released::Deposed => format!(
                "the move was decided under term {}, and this master no longer leads under it",
                self.term.unwrap_or_default()
            ),
            Released::Failed(why) => format!(
                "delete on {from} failed: {why}; the replica counts again once {from} reports it"
            ),
        };
        self.done(Some(format!("source replica not released: {note}")))
    }

    fn done(&self, note: Option<String>) -> MoveDone {
        MoveDone {
            bytes: self.ticket.size,
            source_deleted: false,
            note,
        }
    }

    fn retry(&mut self, error: String) -> MoveStep {
        self.end(Err(MoveError::Failed { error, retry: true }))
    }

    fn fatal(&mut self, error: String) -> MoveStep {
        self.end(Err(MoveError::Failed {
            error,
            retry: false,
        }))
    }

    fn end(&mut self, r: Result<MoveDone, MoveError>) -> MoveStep {
        self.stage = Stage::Ended(r.clone());
        MoveStep::Done(r)
    }
}
