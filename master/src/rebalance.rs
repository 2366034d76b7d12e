//! `RebalanceExecute`: every listed move is checked first and each bad one is
//! reported with its reason; the good ones join the one move queue as
//! operator moves (ahead of balance moves, after repairs and drains, under
//! the same slots and retries) and the call waits for their ends; results
//! come back in request order.

use std::collections::HashMap;

use keel_balancer::{CopyJob, MoveRef, QueueError};
use keel_proto::v1 as pb;
use tracing::info;

use crate::balance::{Balancer, OperatorFailure};
use crate::error::Error;
use crate::meta::{CopyClass, Reject, lock};
use crate::mover::{MoveDone, Mover};

/// How one requested move ended.
#[derive(Debug, Clone, PartialEq)]
pub enum MoveEnd {
    /// Copied, recorded (and normally deleted from the source).
    Done(MoveDone),
    /// Refused before anything happened.
    Rejected(Reject),
    /// Started but did not complete; the source replica is intact.
    Failed(String),
    /// This master stopped leading before the move ended: its queue was
    /// cleared. The caller's whole request is refused (see [`stepped_down`]).
    SteppedDown,
}

impl MoveEnd {
    /// Why the move did not complete, in the words both front doors use;
    /// `None` when it did.
    pub fn failure(&self) -> Option<String> {
        match self {
            MoveEnd::Done(_) => None,
            MoveEnd::Rejected(e) => Some(e.to_string()),
            MoveEnd::Failed(e) => Some(e.clone()),
            MoveEnd::SteppedDown => Some("this master is no longer the leader".to_owned()),
        }
    }
}

/// Whether this master stopped leading while the request waited: the
/// front doors then refuse the request as a whole, naming the leader.
pub fn stepped_down(outcomes: &[MoveEnd]) -> bool {
    outcomes.contains(&MoveEnd::SteppedDown)
}

/// A finished `RebalanceExecute`: each move with its outcome, in request
/// order, and the totals of the moves that completed.
#[derive(Debug, Clone, PartialEq)]
pub struct Executed {
    /// Every requested move and how it ended.
    pub results: Vec<(MoveRef, MoveEnd)>,
    /// Moves that completed.
    pub moved: u32,
    /// Bytes copied by the moves that completed.
    pub bytes: u64,
}

impl Executed {
    /// Pairs `moves` with their `outcomes` and adds up the completed ones.
    pub fn new(moves: Vec<MoveRef>, outcomes: Vec<MoveEnd>) -> Self {
        let (mut moved, mut bytes) = (0, 0);
        for outcome in &outcomes {
            if let MoveEnd::Done(d) = outcome {
                moved += 1;
                bytes += d.bytes;
            }
        }
        Executed {
            results: moves.into_iter().zip(outcomes).collect(),
            moved,
            bytes,
        }
    }

    /// The first move that did not complete, with why.
    pub fn first_failure(&self) -> Option<(&MoveRef, &MoveEnd)> {
        self.results
            .iter()
            .find(|(_, o)| !matches!(o, MoveEnd::Done(_)))
            .map(|(m, o)| (m, o))
    }
}

/// Checks every move against the request as a whole and the metadata:
/// `None` for a move that may run, the reason otherwise.
pub fn validate(mover: &Mover, moves: &[MoveRef]) -> Vec<Option<Reject>> {
    let mut times: HashMap<&str, usize> = HashMap::new();
    for m in moves {
        *times.entry(m.chunk.as_str()).or_default() += 1;
    }
    let meta = lock(mover.meta());
    moves
        .iter()
        .map(|m| {
            if let Err(e) = keel_proto::chunk_id::validate(&m.chunk) {
                return Some(Reject::BadChunkId(e.to_string()));
            }
            let n = times.get(m.chunk.as_str()).copied().unwrap_or(1);
            if n > 1 {
                return Some(Reject::Duplicate {
                    chunk: m.chunk.clone(),
                    times: n,
                });
            }
            meta.check_move(&m.chunk, &m.from, &m.to, CopyClass::Operator)
                .err()
        })
        .collect()
}

/// Queues the moves that passed [`validate`] and returns one outcome per
/// move, in request order. The queue runs them whether or not the caller
/// stays to hear the end.
pub async fn execute(balancer: &Balancer, moves: Vec<MoveRef>) -> Result<Vec<MoveEnd>, Error> {
    if moves.is_empty() {
        return Err(Error::NoMoves);
    }
    let checks = validate(balancer.mover(), &moves);
    let valid = checks.iter().filter(|c| c.is_none()).count();
    info!(moves = moves.len(), valid, "rebalance execute");
    let sizes: Vec<u64> = {
        let meta = lock(balancer.mover().meta());
        moves
            .iter()
            .map(|m| meta.chunk(&m.chunk).map_or(0, |c| c.size))
            .collect()
    };
    // Every move is queued before any is awaited, so they run side by side.
    let queued: Vec<_> = moves
        .into_iter()
        .zip(checks)
        .zip(sizes)
        .map(|((mv, check), bytes)| match check {
            Some(reason) => Err(reason),
            None => {
                let chunk = mv.chunk.clone();
                balancer
                    .submit_operator(CopyJob::new(mv, bytes, CopyClass::Operator))
                    .map_err(|e| match e {
                        QueueError::ChunkBusy { .. } => Reject::AlreadyMoving { chunk },
                        other => Reject::Queue(other.to_string()),
                    })
            }
        })
        .collect();
    let mut out = Vec::with_capacity(queued.len());
    for q in queued {
        out.push(match q {
            Err(reason) => MoveEnd::Rejected(reason),
            Ok(rx) => match rx.await {
                Ok(Ok(done)) => MoveEnd::Done(done),
                Ok(Err(OperatorFailure::Failed(e))) => MoveEnd::Failed(e),
                Ok(Err(OperatorFailure::SteppedDown)) => MoveEnd::SteppedDown,
                Err(_) => MoveEnd::Failed("the master stopped before the move ended".into()),
            },
        });
    }
    Ok(out)
}

/// The response for `requested` moves, in the order [`Executed`] holds them.
pub fn response(requested: Vec<pb::Move>, executed: Executed) -> pb::RebalanceExecuteResponse {
    let mut resp = pb::RebalanceExecuteResponse {
        moved: executed.moved,
        bytes_transferred: executed.bytes,
        ..Default::default()
    };
    for (mv, (_, outcome)) in requested.into_iter().zip(executed.results) {
        let error = outcome.failure();
        let (state, bytes, error) = match outcome {
            MoveEnd::Done(d) => (pb::MoveOutcome::Done, d.bytes, d.note.unwrap_or_default()),
            MoveEnd::Rejected(_) => (pb::MoveOutcome::Rejected, 0, error.unwrap_or_default()),
            MoveEnd::Failed(_) | MoveEnd::SteppedDown => {
                (pb::MoveOutcome::Failed, 0, error.unwrap_or_default())
            }
        };
        resp.results.push(pb::MoveResult {
            r#move: Some(mv),
            outcome: state as i32,
            bytes,
            error,
        });
    }
    resp
}

#[cfg(test)]
mod tests_support {
    pub use super::tests::{balancer_of, mover_under, mv};

    /// A balancer whose mover sends under `leadership`.
    pub fn elected_balancer(
        meta: crate::meta::Meta,
        leadership: crate::ha::Leadership,
    ) -> super::Balancer {
        balancer_of(mover_under(meta, leadership))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use super::*;
    use crate::meta::{Meta, MetaSettings};
    use crate::metrics::Metrics;
    use crate::mover::{Clients, MoverSettings};

    fn mover(meta: Meta) -> Mover {
        mover_under(meta, crate::ha::Leadership::single())
    }

    pub fn mover_under(meta: Meta, leadership: crate::ha::Leadership) -> Mover {
        let clients = Arc::new(
            Clients::new(None)
                .expect("no token")
                .with_leadership(leadership),
        );
        let meta = Arc::new(Mutex::new(meta));
        Mover::new(
            meta,
            clients,
            Arc::new(Metrics::default()),
            MoverSettings::default(),
        )
    }

    fn balancer(meta: Meta) -> Balancer {
        balancer_of(mover(meta))
    }

    pub fn balancer_of(mover: Mover) -> Balancer {
        let started = Instant::now();
        let settings = crate::balance::BalanceSettings {
            interval: std::time::Duration::ZERO,
            policy: keel_balancer::Policy::default(),
            queue: keel_balancer::queue::QueueConfig::default(),
            started,
            safe_until: started,
            stuck_after: std::time::Duration::from_secs(600),
            load_cooldown: std::time::Duration::from_secs(600),
            load_dwell: std::time::Duration::from_secs(60),
        };
        Balancer::new(mover, tokio_util::task::TaskTracker::new(), settings)
    }

    pub fn mv(c: &str, f: &str, t: &str) -> MoveRef {
        MoveRef::new(c, f, t)
    }

    #[test]
    fn request_level_reasons() {
        let now = Instant::now();
        let mut m = Meta::new(MetaSettings::default());
        crate::meta::tests::put(&mut m, "a", &[("x", 10), ("y", 10)], now);
        crate::meta::tests::put(&mut m, "b", &[], now);
        let mover = mover(m);
        let moves = [
            mv("x", "a", "b"),
            mv("../x", "a", "b"),
            mv("y", "a", "b"),
            mv("y", "a", "b"),
            mv("x2", "", "b"),
        ];
        let r: Vec<Option<String>> = validate(&mover, &moves)
            .into_iter()
            .map(|r| r.map(|e| e.to_string()))
            .collect();
        assert_eq!(r[0], None);
        assert!(
            r[1].as_deref()
                .is_some_and(|e| e.starts_with("bad chunk id"))
        );
        assert_eq!(
            r[2].as_deref(),
            Some("chunk y is listed 2 times in this request")
        );
        assert_eq!(r[3], r[2]);
        assert_eq!(r[4].as_deref(), Some("from is empty"));
    }

    #[tokio::test]
    async fn empty_request_is_invalid_and_all_rejected_is_ok() {
        let b = balancer(Meta::new(MetaSettings::default()));
        assert_eq!(execute(&b, vec![]).await, Err(Error::NoMoves));
        let out = execute(&b, vec![mv("x", "a", "b")]).await.expect("ok");
        assert_eq!(
            out,
            [MoveEnd::Rejected(Reject::UnknownServer {
                server: "a".into()
            })]
        );
        let resp = response(
            vec![pb::Move::default()],
            Executed::new(vec![mv("x", "a", "b")], out),
        );
        assert_eq!((resp.moved, resp.bytes_transferred), (0, 0));
        assert_eq!(resp.results[0].outcome, pb::MoveOutcome::Rejected as i32);
    }
}

#[cfg(test)]
mod step_down_tests {
    use std::time::{Duration, Instant};

    use super::tests_support::*;
    use super::*;
    use crate::ha::Leadership;
    use crate::meta::{Meta, MetaSettings};

    fn pending(b: &Balancer) -> u64 {
        b.status().queue.pending as u64
    }

    #[tokio::test]
    async fn a_step_down_fails_waiting_operators_and_clears_the_queue() {
        let now = Instant::now();
        let mut m = Meta::new(MetaSettings::default());
        crate::meta::tests::put(&mut m, "a", &[("x", 10), ("y", 10)], now);
        crate::meta::tests::put(&mut m, "b", &[], now);
        let l = Leadership::elected("http://m1:7000".into());
        l.lead(5, now + Duration::from_secs(60));
        // No mover loop runs: queued moves stay pending until cleared.
        let b = elected_balancer(m, l.clone());
        let waiting = {
            let b = b.clone();
            tokio::spawn(async move { execute(&b, vec![mv("x", "a", "b")]).await })
        };
        while pending(&b) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        l.step_down();
        b.step_down();
        let out = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting operator is answered at once")
            .expect("joins")
            .expect("ok");
        assert_eq!(out, [MoveEnd::SteppedDown]);
        assert!(stepped_down(&out));
        assert_eq!(pending(&b), 0, "the queue is cleared");

        // While standing by, an operator's move is refused at once.
        let out = execute(&b, vec![mv("y", "a", "b")]).await.expect("ok");
        assert_eq!(out, [MoveEnd::SteppedDown]);
        assert_eq!(pending(&b), 0);

        // Leading again: an empty queue that takes moves.
        b.lead();
        l.lead(9, Instant::now() + Duration::from_secs(60));
        let b2 = b.clone();
        let again = tokio::spawn(async move { execute(&b2, vec![mv("y", "a", "b")]).await });
        while pending(&b) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        again.abort();
    }

    #[tokio::test]
    async fn work_planned_under_an_earlier_term_is_not_queued_under_the_next() {
        let now = Instant::now();
        let mut m = Meta::new(MetaSettings::default());
        crate::meta::tests::put(&mut m, "a", &[("x", 10)], now);
        crate::meta::tests::put(&mut m, "b", &[], now);
        let l = Leadership::elected("http://m1:7000".into());
        l.lead(5, now + Duration::from_secs(60));
        let b = elected_balancer(m, l.clone());
        let repair = || {
            vec![CopyJob {
                rank: 1,
                ..CopyJob::new(MoveRef::new("x", "a", "b"), 10, CopyClass::Repair)
            }]
        };
        // Planned in one term; the master steps down and wins again before
        // the plan is queued.
        let planned_in = b.generation();
        l.step_down();
        b.step_down();
        b.lead();
        l.lead(9, Instant::now() + Duration::from_secs(60));
        assert_eq!(
            b.enqueue_urgent(repair(), planned_in),
            0,
            "planned in term 5"
        );
        assert_eq!(pending(&b), 0);
        assert_eq!(
            b.enqueue_urgent(repair(), b.generation()),
            1,
            "planned in term 9"
        );
    }
}
