//! `Mover::confirm_staying` (`master/src/mover/confirm.rs`), one RPC at a
//! time: the master's own [`Confirmation`] says which holder of the
//! replicas that stay to ask next (`StatChunk`) and within what time, and
//! whether the chunk's factor of them confirmed within `CONFIRM_WITHIN`;
//! fewer, and the delete is not sent. Only the RPCs are simulated.

use std::time::Duration;

use keel_master::balance::Start;
use keel_master::meta::{Deletion, Held};
use keel_master::mover::{ConfirmStep, Confirmation};

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
    /// The master's confirmation.
    steps: Confirmation,
    /// The copies confirmed: generation, and when their server answered
    /// (ground truth for the invariants; the master never sees it).
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
            steps: Confirmation::new(staying, cx.instant()),
            relied: Vec::new(),
        };
        self.confirm_step(cx, c);
    }

    fn confirm_step(&mut self, cx: &mut Ctx<'_>, c: Confirming) {
        match c.steps.next(cx.instant()) {
            ConfirmStep::Confirmed => match c.then {
                Then::Trim { d, next, term } => self.trim_delete(cx, d, next, term, c.relied),
                Then::Release { start, term } => self.release(cx, start, term, c.relied),
            },
            ConfirmStep::Refused(_) => self.confirm_failed(cx, c.then),
            ConfirmStep::Ask { server, timeout } => {
                let req = Request::Stat {
                    chunk: c.then.target().0.to_owned(),
                };
                self.send(cx, idx(&server), Op::Confirm(c), req, timeout);
            }
        }
    }

    /// A holder answered its `StatChunk` (`None`: timed out).
    pub(crate) fn confirm_answered(
        &mut self,
        cx: &mut Ctx<'_>,
        mut c: Confirming,
        answer: Option<Answer>,
    ) {
        let header = match answer {
            Some(Answer::Header(h)) => Some(h),
            _ => None,
        };
        let seen = header.map(|h| Held {
            size: h.size,
            crc32c: h.crc32c,
            replica: h.replica,
            deleting: h.deleting,
            suspect: h.suspect,
        });
        if c.steps.answered(cx.instant(), seen)
            && let Some(h) = header
        {
            // Dated by when the server looked, not when its answer arrived:
            // a fault while the answer travels is one it could not show.
            c.relied.push((h.replica, h.at));
        }
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
