//! The move queue as the master keeps it: a [`MoveQueue`] addressed by ids.
//!
//! The queue works on indices into a [`ClusterView`], and the master's views
//! renumber chunks from one snapshot to the next. So every operation here
//! first builds a small view of the metadata — every server, but only the
//! chunks the queue holds plus those the operation names
//! ([`Meta::partial_view`]) — and rebases the queue onto it. That costs time
//! in proportion to the queue, never to the chunk table. Time comes in as
//! `now`, the time since the master started.

use std::collections::BTreeSet;
use std::time::Duration;

use keel_balancer::queue::{
    AfterFailure, FAILED_CHUNK_COOLDOWN, MoveId, MoveNames, MoveQueue, Outcome, QueueConfig,
    QueueStatus,
};
use keel_balancer::{ClusterView, PlannedMove, QueueError, ServerIdx};

use crate::meta::{Meta, find_sorted};
use crate::mover::Move;

/// A move named by ids, with the chunk's size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedMove {
    /// Chunk and servers.
    pub mv: Move,
    /// The chunk's size.
    pub bytes: u64,
}

/// A queued move to start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    /// Report its end with this id.
    pub id: MoveId,
    /// What to move.
    pub mv: Move,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
}

/// What [`QueueState::enqueue`] did with a batch of planned moves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// Moves added.
    pub moves: u32,
    /// Their bytes.
    pub bytes: u64,
    /// Moves left out: their chunk left the source, reached the target, or
    /// already has a move, since the plan was made.
    pub stale: u32,
}

/// What the planner must leave alone, by id (indices differ per view).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InFlightNames {
    /// Pending and running moves: the planner counts them as done.
    pub moves: Vec<NamedMove>,
    /// Chunks whose move recently failed for good.
    pub chunks: Vec<String>,
}

/// The move queue and the ids behind it.
#[derive(Debug)]
pub struct QueueState {
    queue: MoveQueue,
}

impl QueueState {
    /// An empty queue with these limits.
    pub fn new(config: QueueConfig) -> Self {
        QueueState {
            queue: MoveQueue::new(config),
        }
    }

    /// The queue itself, read-only.
    pub fn queue(&self) -> &MoveQueue {
        &self.queue
    }

    /// Stops starting moves.
    pub fn pause(&mut self) {
        self.queue.pause();
    }

    /// Starts moves again from the next tick.
    pub fn resume(&mut self) {
        self.queue.resume();
    }

    /// Moves pending or running.
    pub fn len(&self) -> usize {
        self.queue.pending_len() + self.queue.running_len()
    }

    /// Whether nothing is pending or running.
    pub fn is_empty(&self) -> bool {
        self.queue.is_idle()
    }

    /// Counts and per-move details.
    pub fn status(&self, now: Duration) -> QueueStatus {
        self.queue.status(now)
    }

    /// Chunks whose move was dropped as failed within the cooldown.
    fn cooling(&self, now: Duration) -> impl Iterator<Item = &str> + '_ {
        self.queue
            .history()
            .rev()
            .take_while(move |f| now.saturating_sub(f.at) < FAILED_CHUNK_COOLDOWN)
            .filter(|f| matches!(f.outcome, Outcome::Failed { .. }))
            .map(|f| f.names.chunk.as_str())
    }

    /// Builds the partial view of the queue's chunks plus `extra` and
    /// rebases the queue onto it.
    fn sync(&mut self, meta: &Meta, extra: &[&str], now: Duration) -> ClusterView {
        let ids = self.queue.chunk_ids();
        let view = meta.partial_view(ids.chain(self.cooling(now)).chain(extra.iter().copied()));
        self.queue.rebase(&view, now);
        view
    }

    /// One pass of the queue: the moves to start now, by id. The others
    /// keep why they wait; moves made obsolete are dropped, and pending
    /// moves naming a dead server are cancelled.
    pub fn start_ready(&mut self, meta: &Meta, now: Duration) -> Vec<Start> {
        if self.queue.pending_len() == 0 {
            return Vec::new();
        }
        let view = self.sync(meta, &[], now);
        self.cancel_dead(&view, now);
        self.queue
            .next_ready(now, &view)
            .into_iter()
            .filter_map(|s| {
                let names = MoveNames::of(&view, &s.mv)?;
                Some(Start {
                    id: s.id,
                    mv: move_of(names),
                    attempt: s.attempt,
                })
            })
            .collect()
    }

    /// Cancels pending moves from or to a server the metadata holds dead:
    /// they could only wait, and while queued the planner counts them as
    /// done, so the next pass would not plan around the dead server.
    fn cancel_dead(&mut self, view: &ClusterView, now: Duration) {
        let dead = |s: ServerIdx| !view.get_server(s).is_some_and(|s| s.alive);
        let mut servers = BTreeSet::new();
        let doomed: Vec<MoveId> = self
            .queue
            .pending()
            .filter(|(_, mv, _)| dead(mv.from) || dead(mv.to))
            .map(|(id, _, n)| {
                servers.extend(
                    [&n.from, &n.to]
                        .into_iter()
                        .filter(|id| view.server_by_id(id).is_none_or(dead))
                        .cloned(),
                );
                id
            })
            .collect();
        for id in &doomed {
            // Pending a moment ago under the same lock: cancelling cannot fail.
            let _ = self.queue.cancel(*id, now);
        }
        if !doomed.is_empty() {
            tracing::info!(cancelled = doomed.len(), dead = ?servers, "queued moves cancelled: a server they name is dead; the next pass plans without it");
        }
    }

    /// Queues planned moves that still fit the metadata, in order.
    pub fn enqueue(&mut self, meta: &Meta, moves: &[NamedMove], now: Duration) -> Enqueued {
        let extra: Vec<&str> = moves.iter().map(|m| m.mv.chunk.as_str()).collect();
        let view = self.sync(meta, &extra, now);
        let mut out = Enqueued::default();
        for m in moves {
            let queued = resolve(meta, &view, m)
                .ok_or(())
                .and_then(|mv| self.queue.enqueue(mv, now, &view).map_err(|_| ()));
            match queued {
                Ok(_) => {
                    out.moves += 1;
                    out.bytes += m.bytes;
                }
                Err(()) => out.stale += 1,
            }
        }
        out
    }

    /// Records an operator's move (`RebalanceExecute`) as running, so it
    /// holds a slot in the queue's gates and shows in the status. A pending
    /// queue move of the same chunk gives way to it. `None` when the move
    /// does not fit the metadata or its chunk is already running a move (the
    /// mover's own gates will refuse it with the reason).
    pub fn begin_external(&mut self, meta: &Meta, mv: &Move, now: Duration) -> Option<MoveId> {
        let size = meta.chunk(&mv.chunk)?.size;
        let named = NamedMove {
            mv: mv.clone(),
            bytes: size,
        };
        let view = self.sync(meta, &[mv.chunk.as_str()], now);
        let planned = resolve(meta, &view, &named)?;
        match self.queue.on_started(planned, now, &view) {
            Ok(id) => Some(id),
            Err(QueueError::ChunkBusy { existing, .. }) => {
                self.queue.cancel(existing, now).ok()?;
                self.queue.on_started(planned, now, &view).ok()
            }
            Err(_) => None,
        }
    }

    /// A started move (queued or external) ended. `Err` carries the error;
    /// the answer says whether the queue retries it or dropped it.
    pub fn finish(
        &mut self,
        id: MoveId,
        result: Result<(), String>,
        now: Duration,
    ) -> Result<Option<AfterFailure>, QueueError> {
        match result {
            Ok(()) => self.queue.on_done(id, now).map(|()| None),
            Err(e) => self.queue.on_failed(id, e, now).map(Some),
        }
    }

    /// What the planner must leave alone now, by id.
    pub fn in_flight(&self, now: Duration) -> InFlightNames {
        let moves = self
            .queue
            .status(now)
            .moves
            .into_iter()
            .map(|m| NamedMove {
                mv: move_of(m.names),
                bytes: m.mv.bytes,
            })
            .collect();
        InFlightNames {
            moves,
            chunks: self.cooling(now).map(str::to_owned).collect(),
        }
    }

    /// Bytes of the moves pending or running.
    pub fn bytes_remaining(status: &QueueStatus) -> u64 {
        status.moves.iter().map(|m| m.mv.bytes).sum()
    }
}

/// `m` in the indices of `view`, if its chunk is still on the source and
/// not on the target. Server indices are the master's server numbers.
fn resolve(meta: &Meta, view: &ClusterView, m: &NamedMove) -> Option<PlannedMove> {
    let chunk = find_sorted(view, &m.mv.chunk)?;
    let from = ServerIdx(meta.server_no(&m.mv.from)?);
    let to = ServerIdx(meta.server_no(&m.mv.to)?);
    let c = view.chunk(chunk);
    if c.size() != m.bytes || !c.is_on(from) || c.is_on(to) {
        return None;
    }
    Some(PlannedMove {
        chunk,
        from,
        to,
        bytes: m.bytes,
    })
}

fn move_of(n: MoveNames) -> Move {
    Move {
        chunk: n.chunk,
        from: n.from,
        to: n.to,
    }
}
