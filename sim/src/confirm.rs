//! `Mover::confirm_staying` (`master/src/mover/confirm.rs`), one RPC at a
//! time: before a trim or a move's source delete, the replicas that stay
//! are asked in turn (`StatChunk`) until the chunk's factor of them are
//! confirmed, all within `CONFIRM_WITHIN`; fewer, and the delete is not sent.

use keel_master::balance::Start;
use keel_master::meta::{Deletion, Staying};
use std::time::Duration;

use keel_master::mover::{CONFIRM_WITHIN, SMALL_RPC_TIMEOUT};

use crate::chunkserver::Answer;
use crate::master::{Ctx, SimMaster};
use crate::mover::{Op, idx};
use crate::net::Request;

/// The delete waiting for the confirmation.
#[derive(Debug, Clone)]
pub enum Then {
    /// `Mover::trim`'s delete of holder `next`.
    Trim {
        /// The plan.
        d: Deletion,
        /// The holder to delete next.
        next: usize,
        /// The decision term.
        term: u64,
    },
    /// `Mover::release_source`.
    Release {
        /// The queue's start.
        start: Start,
        /// The decision term.
        term: u64,
    },
}

/// A confirmation under way.
#[derive(Debug, Clone)]
pub struct Confirming {
    /// What follows it.
    then: Then,
    /// The replicas that stay.
    staying: Staying,
    /// The holder asked now.
    at: usize,
    /// Confirmed so far.
    confirmed: usize,
    /// When the confirmation must be over.
    deadline: Duration,
    /// The copies confirmed: generation, and when (for the invariants).
    relied: Vec<(u64, Duration)>,
}

impl Then {
    fn target(&self) -> (&str, keel_master::meta::ServerNo) {
        match self {
            Then::Trim { d, next, .. } => (&d.chunk, d.servers[*next].no),
            Then::Release { start, .. } => (&start.ticket.chunk, start.ticket.from.no),
        }
    }
}

impl SimMaster {
    /// Starts confirming the replicas `then`'s delete relies on.
    pub(crate) fn confirm(&mut self, cx: &mut Ctx<'_>, then: Then) {
        let (chunk, from) = then.target();
        let Some(staying) = self.meta.staying(chunk, from) else {
            return self.confirm_failed(cx, then);
        };
        let c = Confirming {
            then,
            staying,
            at: 0,
            confirmed: 0,
            deadline: cx.sched.now + CONFIRM_WITHIN,
            relied: Vec::new(),
        };
        self.confirm_step(cx, c);
    }

    fn confirm_step(&mut self, cx: &mut Ctx<'_>, c: Confirming) {
        if c.confirmed >= c.staying.need {
            return match c.then {
                Then::Trim { d, next, term } => self.trim_delete(cx, d, next, term, c.relied),
                Then::Release { start, term } => self.release(cx, start, term, c.relied),
            };
        }
        let left = c.deadline.saturating_sub(cx.sched.now);
        let Some((server, _)) = c.staying.holders.get(c.at) else {
            return self.confirm_failed(cx, c.then);
        };
        if left.is_zero() {
            return self.confirm_failed(cx, c.then);
        }
        let to = idx(server);
        let req = Request::Stat {
            chunk: c.then.target().0.to_owned(),
        };
        self.send(cx, to, Op::Confirm(c), req, left.min(SMALL_RPC_TIMEOUT));
    }

    /// A holder answered its `StatChunk` (`None`: timed out).
    pub(crate) fn confirm_answered(
        &mut self,
        cx: &mut Ctx<'_>,
        mut c: Confirming,
        answer: Option<Answer>,
    ) {
        let expect = c.staying.holders[c.at].1;
        if let Some(Answer::Header(size, crc, replica, deleting, _)) = answer
            && cx.sched.now <= c.deadline
            && c.staying.confirms(expect, size, crc, replica, deleting)
        {
            c.confirmed += 1;
            c.relied.push((replica, cx.sched.now));
        }
        c.at += 1;
        self.confirm_step(cx, c);
    }

    /// Too few confirmed: the trim stops, the move ends with its source kept.
    fn confirm_failed(&mut self, cx: &mut Ctx<'_>, then: Then) {
        match then {
            Then::Trim { d, .. } => {
                self.meta.trim_stopped(&d.chunk);
                self.meta.end_busy(&d.chunk)
            }
            Then::Release { start, .. } => self.end_copy(cx, start, Ok(())),
        }
    }
}
