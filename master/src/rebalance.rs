//! `RebalanceExecute`: every listed move is checked first and each bad one is
//! reported with its reason; the good ones run concurrently through the
//! mover (bounded by its slots); results come back in request order.

use std::collections::HashMap;

use keel_proto::v1 as pb;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::balance::Balancer;
use crate::error::Error;
use crate::meta::{MoveKind, Reject, lock};
use crate::mover::{Move, MoveDone, MoveError, Mover};

/// How one requested move ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Copied, recorded (and normally deleted from the source).
    Done(MoveDone),
    /// Refused before anything happened.
    Rejected(Reject),
    /// Started but did not complete; the source replica is intact.
    Failed(String),
}

/// Checks every move against the request as a whole and the metadata:
/// `None` for a move that may run, the reason otherwise.
pub fn validate(mover: &Mover, moves: &[Move]) -> Vec<Option<Reject>> {
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
            meta.check_move(&m.chunk, &m.from, &m.to, MoveKind::Move)
                .err()
        })
        .collect()
}

/// Runs the moves that passed [`validate`] and returns one outcome per move,
/// in request order. Moves run as tasks on `tracker`, so a client that hangs
/// up does not cut a copy short, and shutdown waits for them.
pub async fn execute(
    mover: &Mover,
    tracker: &TaskTracker,
    moves: Vec<Move>,
) -> Result<Vec<Outcome>, Error> {
    execute_queued(mover, tracker, moves, None).await
}

/// [`execute`], with each move that runs also recorded in the balancer's
/// queue while it runs: it then holds a slot in the queue's gates, shows in
/// `RebalanceStatus`, and a pending queue move of the same chunk gives way.
pub async fn execute_queued(
    mover: &Mover,
    tracker: &TaskTracker,
    moves: Vec<Move>,
    balancer: Option<&Balancer>,
) -> Result<Vec<Outcome>, Error> {
    if moves.is_empty() {
        return Err(Error::NoMoves);
    }
    let checks = validate(mover, &moves);
    let valid = checks.iter().filter(|c| c.is_none()).count();
    info!(moves = moves.len(), valid, "rebalance execute");
    let handles: Vec<_> = moves
        .into_iter()
        .zip(checks)
        .map(|(mv, check)| match check {
            Some(reason) => Err(reason),
            None => {
                let mover = mover.clone();
                let balancer = balancer.cloned();
                Ok(tracker.spawn(async move {
                    let queued = balancer.as_ref().and_then(|b| b.begin_external(&mv));
                    let result = mover.execute(&mv).await;
                    if let (Some(b), Some(id)) = (balancer, queued) {
                        b.end_external(id, result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                    }
                    result
                }))
            }
        })
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(match h {
            Err(reason) => Outcome::Rejected(reason),
            Ok(task) => match task.await {
                Ok(Ok(done)) => Outcome::Done(done),
                Ok(Err(MoveError::Rejected(r))) => Outcome::Rejected(r),
                Ok(Err(e @ MoveError::Failed { .. })) => Outcome::Failed(e.to_string()),
                Err(e) => Outcome::Failed(format!("the move task ended unexpectedly: {e}")),
            },
        });
    }
    Ok(out)
}

/// The response for `requested` moves and their outcomes.
pub fn response(requested: Vec<pb::Move>, outcomes: Vec<Outcome>) -> pb::RebalanceExecuteResponse {
    let mut resp = pb::RebalanceExecuteResponse::default();
    for (mv, outcome) in requested.into_iter().zip(outcomes) {
        let (state, bytes, error) = match outcome {
            Outcome::Done(d) => {
                resp.moved += 1;
                resp.bytes_transferred += d.bytes;
                (pb::MoveOutcome::Done, d.bytes, d.note.unwrap_or_default())
            }
            Outcome::Rejected(e) => (pb::MoveOutcome::Rejected, 0, e.to_string()),
            Outcome::Failed(e) => (pb::MoveOutcome::Failed, 0, e),
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

/// Domain moves from the request (a missing field reads as empty).
pub fn moves(requested: &[pb::Move]) -> Vec<Move> {
    requested
        .iter()
        .map(|m| Move {
            chunk: m.chunk.clone(),
            from: m.from.clone(),
            to: m.to.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    use super::*;
    use crate::meta::{Meta, MetaSettings};
    use crate::metrics::Metrics;
    use crate::mover::{Clients, MoverSettings, Slots};

    fn mover(meta: Meta) -> Mover {
        let clients = Arc::new(Clients::new(None).expect("no token"));
        let meta = Arc::new(Mutex::new(meta));
        Mover::new(
            meta,
            clients,
            Slots::new(4, 2),
            Arc::new(Metrics::default()),
            MoverSettings::default(),
        )
    }

    fn mv(c: &str, f: &str, t: &str) -> Move {
        Move {
            chunk: c.into(),
            from: f.into(),
            to: t.into(),
        }
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
        let mover = mover(Meta::new(MetaSettings::default()));
        let tracker = TaskTracker::new();
        assert_eq!(execute(&mover, &tracker, vec![]).await, Err(Error::NoMoves));
        let out = execute(&mover, &tracker, vec![mv("x", "a", "b")])
            .await
            .expect("ok");
        assert_eq!(
            out,
            [Outcome::Rejected(Reject::UnknownServer {
                server: "a".into()
            })]
        );
        let resp = response(vec![pb::Move::default()], out);
        assert_eq!((resp.moved, resp.bytes_transferred), (0, 0));
        assert_eq!(resp.results[0].outcome, pb::MoveOutcome::Rejected as i32);
    }
}
