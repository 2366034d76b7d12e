//! A trim (`Mover::trim`): the excess replicas
//! [`Meta::plan_trims`](crate::meta::Meta::plan_trims) chose, deleted one
//! holder after another, each as a [`super::release`] under the trim's
//! decision term. A holder whose delete failed is doubted and the next one
//! is tried; a holder the view or the replicas that stay no longer allow,
//! or a term this master no longer leads under, stops the trim and makes
//! the chunk a trim candidate again (nothing else would, should this
//! master lead again).

use std::time::Instant;

use super::release::{Release, ReleaseStep, Released};
use super::{Reply, Request};
use crate::meta::{Deletion, Meta, ServerAddr};

/// What a [`TrimSteps`] wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrimStep {
    /// Send this request and give its reply to [`TrimSteps::answered`].
    Send(Request),
    /// The replica on this holder was deleted and its removal recorded.
    Trimmed(ServerAddr),
    /// The delete on this holder failed: its replica counts for nothing
    /// until its server reports it; why. The trim goes on.
    Failed(ServerAddr, String),
    /// The trim stopped before the delete on this holder; why.
    Stopped(ServerAddr, String),
    /// The trim stopped: this master no longer leads under its term.
    Deposed,
    /// Every holder was tried, or the trim stopped.
    Done,
}

/// The steps of one trim.
#[derive(Debug, Clone)]
pub struct TrimSteps {
    /// The plan.
    d: Deletion,
    /// The decision term.
    term: u64,
    /// The holder whose delete is under way.
    at: usize,
    /// That delete.
    current: Option<Release>,
    /// Stopped early.
    stopped: bool,
}

impl TrimSteps {
    /// A trim of `d` decided under `term`, not begun.
    pub fn new(d: Deletion, term: u64) -> Self {
        TrimSteps {
            d,
            term,
            at: 0,
            current: None,
            stopped: false,
        }
    }

    /// The chunk trimmed.
    pub fn chunk(&self) -> &str {
        &self.d.chunk
    }

    /// The decision term.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The next step at `now`, with `leading` the term this master leads
    /// under now (`None`: it does not lead).
    pub fn next(&mut self, meta: &mut Meta, leading: Option<u64>, now: Instant) -> TrimStep {
        if self.stopped {
            return TrimStep::Done;
        }
        let Some(s) = self.d.servers.get(self.at).cloned() else {
            return TrimStep::Done;
        };
        let (chunk, term) = (&self.d.chunk, self.term);
        let r = self
            .current
            .get_or_insert_with(|| Release::new(chunk, &s, term));
        let released = match r.next(meta, leading, now) {
            ReleaseStep::Send(req) => return TrimStep::Send(req),
            ReleaseStep::Done(released) => released,
        };
        self.current = None;
        self.at += 1;
        match released {
            Released::Deleted => TrimStep::Trimmed(s),
            Released::Failed(why) => TrimStep::Failed(s, why),
            Released::Kept(why) => {
                self.stop(meta);
                TrimStep::Stopped(s, why)
            }
            Released::Deposed => {
                self.stop(meta);
                TrimStep::Deposed
            }
        }
    }

    /// The reply to the request last sent, taken at `now`. Returns, for a
    /// `StatChunk` of a replica that stays, whether it confirmed it.
    pub fn answered(&mut self, meta: &mut Meta, reply: Reply, now: Instant) -> Option<bool> {
        self.current.as_mut()?.answered(meta, reply, now)
    }

    fn stop(&mut self, meta: &mut Meta) {
        meta.trim_stopped(&self.d.chunk);
        self.stopped = true;
    }
}
