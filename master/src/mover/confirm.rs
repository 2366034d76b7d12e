//! Right before a trim or a move's source delete: the replicas the delete
//! relies on are asked (`StatChunk`) whether they still hold the copy the
//! master counts. The master's view is up to one heartbeat round old; a
//! copy that vanished within it must not be the one a delete relied on.

use std::time::{Duration, Instant};

use super::SMALL_RPC_TIMEOUT;
use crate::meta::{Held, ServerAddr, Staying};

/// How long the whole confirmation may take: an answer that took longer
/// says what its server held too long ago to rely on.
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(1);

/// The steps of one confirmation without its I/O: which holder to ask
/// next and within what time, and whether enough have confirmed. The
/// mover's steps ([`super::steps`]) drive it with real `StatChunk` calls, the simulation (`sim/`)
/// with simulated ones, so both take the same decisions.
#[derive(Debug, Clone)]
pub struct Confirmation {
    staying: Staying,
    deadline: Instant,
    at: usize,
    confirmed: usize,
}

/// What a [`Confirmation`] wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmStep {
    /// Ask this holder (`StatChunk`), waiting at most `timeout`.
    Ask {
        /// The holder.
        server: ServerAddr,
        /// How long its answer may take.
        timeout: Duration,
    },
    /// Enough replicas confirmed: the delete may go once the view agrees.
    Confirmed,
    /// Too few confirmed within [`CONFIRM_WITHIN`]; why.
    Refused(String),
}

impl Confirmation {
    /// A confirmation of `staying` starting at `now`.
    pub fn new(staying: Staying, now: Instant) -> Self {
        Confirmation {
            staying,
            deadline: now + CONFIRM_WITHIN,
            at: 0,
            confirmed: 0,
        }
    }

    /// The next step at `now`.
    pub fn next(&self, now: Instant) -> ConfirmStep {
        if self.confirmed >= self.staying.need {
            return ConfirmStep::Confirmed;
        }
        let left = self.deadline.saturating_duration_since(now);
        match self.staying.holders.get(self.at) {
            Some((server, _)) if !left.is_zero() => ConfirmStep::Ask {
                server: server.clone(),
                timeout: left.min(SMALL_RPC_TIMEOUT),
            },
            _ => ConfirmStep::Refused(format!(
                "only {} of the {} replicas that stay confirmed held within {CONFIRM_WITHIN:?}, {} wanted",
                self.confirmed,
                self.staying.holders.len(),
                self.staying.need
            )),
        }
    }

    /// The holder last asked answered at `now` with what it holds, or did
    /// not (`None`). Returns
    /// whether the answer confirmed it. An answer taken after the deadline
    /// confirms nothing, whatever the call's own timeout said: a master
    /// frozen meanwhile finds the answer and the expired timer ready at
    /// once, and the answer says what was held too long ago.
    pub fn answered(&mut self, now: Instant, answer: Option<Held>) -> bool {
        let Some(&(_, expect)) = self.staying.holders.get(self.at) else {
            return false;
        };
        self.at += 1;
        let ok =
            now <= self.deadline && answer.is_some_and(|held| self.staying.confirms(expect, &held));
        self.confirmed += usize::from(ok);
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(replica: u64, deleting: bool) -> Held {
        Held {
            size: 10,
            crc32c: 99,
            replica,
            deleting,
            suspect: false,
        }
    }

    fn staying(need: usize) -> Staying {
        let holder = |id: &str, replica| {
            let addr = ServerAddr {
                no: 0,
                id: id.into(),
                address: format!("http://{id}:1"),
            };
            (addr, replica)
        };
        Staying {
            holders: vec![holder("a", 7), holder("b", 8)],
            size: 10,
            crc32c: 99,
            need,
        }
    }

    #[test]
    fn enough_answers_of_the_counted_replicas_confirm() {
        let t0 = Instant::now();
        let mut c = Confirmation::new(staying(1), t0);
        assert!(matches!(c.next(t0), ConfirmStep::Ask { server, .. } if server.id == "a"));
        assert!(!c.answered(t0, Some(held(6, false))), "another replica");
        assert!(matches!(c.next(t0), ConfirmStep::Ask { server, .. } if server.id == "b"));
        assert!(c.answered(t0, Some(held(8, false))));
        assert_eq!(c.next(t0), ConfirmStep::Confirmed);
    }

    #[test]
    fn too_few_or_too_late_refuse() {
        let t0 = Instant::now();
        let mut c = Confirmation::new(staying(2), t0);
        c.answered(t0, Some(held(7, true)));
        c.answered(t0, None);
        assert!(
            matches!(c.next(t0), ConfirmStep::Refused(_)),
            "a delete running, no answer"
        );
        let c = Confirmation::new(staying(1), t0);
        let late = t0 + CONFIRM_WITHIN;
        assert!(
            matches!(c.next(late), ConfirmStep::Refused(_)),
            "past CONFIRM_WITHIN"
        );
        let ConfirmStep::Ask { timeout, .. } = c.next(t0) else {
            panic!("asks first");
        };
        assert_eq!(timeout, CONFIRM_WITHIN);
        // Seed 113451: the answer was on time, the frozen master took it late.
        let mut c = c;
        let late = t0 + CONFIRM_WITHIN + Duration::from_millis(1);
        assert!(!c.answered(late, Some(held(7, false))), "taken too late");
    }

    #[test]
    fn a_replica_its_server_marks_suspect_confirms_nothing() {
        // Seed 96065: a client's read found the staying copy rotten and its
        // server marked it; the header still matched, the heartbeat saying
        // so was on its way, and the trim deleted the last whole copy.
        let t0 = Instant::now();
        let mut c = Confirmation::new(staying(1), t0);
        let marked = Held {
            suspect: true,
            ..held(7, false)
        };
        assert!(!c.answered(t0, Some(marked)), "suspect");
        assert!(c.answered(t0, Some(held(8, false))), "b is whole");
        assert_eq!(c.next(t0), ConfirmStep::Confirmed);
    }
}
