//! The balancer's answers in protobuf: `RebalancePlan`, `RebalanceRun` and
//! `RebalanceStatus` (which `RebalancePause` and `RebalanceResume` return too).

use std::time::Duration;

use keel_balancer::MoveReason;
use keel_balancer::queue::{FinishedMove, MoveState, MoveStatus, Outcome};
use keel_proto::v1 as pb;

use super::{BalanceStatus, PassPlan, PassReport};
use crate::meta::CopyClass;

/// Moves listed in a plan or status answer; counts and bytes always cover all.
pub const MAX_LISTED: usize = 100_000;

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `RebalancePlanResponse`: every planned move up to [`MAX_LISTED`] (a note
/// says how many more there are; `bytes` covers them all).
pub fn plan_response(mut p: PassPlan) -> pb::RebalancePlanResponse {
    p.moves.truncate(MAX_LISTED);
    if p.planned > p.moves.len() {
        let more = p.planned - p.moves.len();
        p.notes.push(format!(
            "{more} more moves not listed; bytes counts them too"
        ));
    }
    // A plan from before reasons were kept lists its moves as capacity.
    let reasons = p
        .reasons
        .iter()
        .copied()
        .chain(std::iter::repeat(MoveReason::Capacity));
    pb::RebalancePlanResponse {
        moves: p
            .moves
            .into_iter()
            .zip(reasons)
            .map(|(m, reason)| pb::PlannedMove {
                chunk: m.mv.chunk,
                from: m.mv.from,
                to: m.mv.to,
                bytes: m.bytes,
                reason: reason.as_str().to_owned(),
            })
            .collect(),
        bytes: p.bytes,
        lower_bound_bytes: p.lower_bound_bytes,
        notes: p.notes,
        reaches_band: p.reaches_band,
        average_utilization_pct: p.average_utilization_pct,
        reaches_load_band: p.reaches_load_band,
        load_threshold_pct: p.load_threshold_pct,
        // The queue's limits are the service's to fill in.
        ..Default::default()
    }
}

/// `RebalanceRunResponse`: what the pass queued.
pub fn run_response(r: PassReport) -> pb::RebalanceRunResponse {
    let mut notes = r.plan.notes;
    if r.enqueued.stale > 0 {
        notes.push(format!(
            "{} planned moves were left out: their chunk moved or started moving meanwhile",
            r.enqueued.stale
        ));
    }
    pb::RebalanceRunResponse {
        enqueued: r.enqueued.moves,
        bytes: r.enqueued.bytes,
        notes,
    }
}

/// `RebalanceStatusResponse`: counts, then running moves, pending moves
/// (oldest first) and the latest failures, up to [`MAX_LISTED`] rows. A
/// failed move's `age_ms` is the time since it was dropped.
pub fn status_response(s: BalanceStatus) -> pb::RebalanceStatusResponse {
    let q = s.queue;
    let pending_of = |k: CopyClass| {
        q.moves
            .iter()
            .filter(|m| m.state == MoveState::Pending && m.copy.class == k)
            .count() as u64
    };
    let (repairs_queued, drains_queued) =
        (pending_of(CopyClass::Repair), pending_of(CopyClass::Drain));
    let (running, pending): (Vec<MoveStatus>, Vec<MoveStatus>) = q
        .moves
        .into_iter()
        .partition(|m| m.state == MoveState::Running);
    let mut moves: Vec<pb::QueuedMove> = running
        .into_iter()
        .chain(pending)
        .take(MAX_LISTED)
        .map(queued_move)
        .collect();
    let room = MAX_LISTED.saturating_sub(moves.len());
    moves.extend(
        s.recent_failures
            .into_iter()
            .take(room)
            .map(|f| failed_move(f, s.now)),
    );
    let running_of = |k: CopyClass| s.copies.iter().filter(|c| c.kind == k).count() as u64;
    let (repairs_running, drains_running) =
        (running_of(CopyClass::Repair), running_of(CopyClass::Drain));
    let copies = s
        .copies
        .iter()
        .take(MAX_LISTED)
        .map(|c| pb::QueuedMove {
            chunk: c.chunk.clone(),
            from: c.from.clone(),
            to: c.to.clone(),
            bytes: c.bytes,
            state: pb::QueuedMoveState::Running as i32,
            kind: c.kind.name().to_owned(),
            ..pb::QueuedMove::default()
        })
        .collect();
    let r = s.redundancy;
    pb::RebalanceStatusResponse {
        under_replicated: r.under_replicated,
        unavailable: r.unavailable,
        repairs_running,
        repairs_waiting: r.repairs_waiting + repairs_queued,
        drains_running,
        drains_waiting: r.drains_waiting + drains_queued,
        repairs_done: s.repairs_done,
        copies,
        paused: q.paused,
        pending: q.pending as u64,
        running: q.running as u64,
        done: q.done,
        failed: q.failed,
        oldest_pending_age_ms: q.oldest_pending_age.map(millis).unwrap_or(0),
        bytes_moved: q.bytes_moved,
        bytes_remaining: s.bytes_remaining,
        moves,
        balanced: s.balanced,
        average_utilization_pct: s.average_utilization_pct,
        safe_mode: s.safe_mode,
        max_concurrent_moves: u32::try_from(s.limits.max_concurrent_moves).unwrap_or(u32::MAX),
        max_concurrent_moves_auto: s.limits.auto,
        max_moves_per_server: u32::try_from(s.limits.max_moves_per_server).unwrap_or(u32::MAX),
        ..Default::default()
    }
}

fn queued_move(m: MoveStatus) -> pb::QueuedMove {
    let state = match m.state {
        MoveState::Pending => pb::QueuedMoveState::Pending,
        MoveState::Running => pb::QueuedMoveState::Running,
    };
    let kind = m.copy.class.name().to_owned();
    pb::QueuedMove {
        chunk: m.copy.mv.chunk,
        from: m.copy.mv.from,
        to: m.copy.mv.to,
        bytes: m.copy.bytes,
        state: state as i32,
        retries: m.retries,
        last_error: m.last_error.unwrap_or_default(),
        waiting_reason: m.waiting.map(|w| w.to_string()).unwrap_or_default(),
        age_ms: millis(m.age),
        kind,
    }
}

fn failed_move(f: FinishedMove, now: Duration) -> pb::QueuedMove {
    let last_error = match f.outcome {
        Outcome::Failed { error } => error,
        _ => String::new(),
    };
    let kind = f.copy.class.name().to_owned();
    pb::QueuedMove {
        chunk: f.copy.mv.chunk,
        from: f.copy.mv.from,
        to: f.copy.mv.to,
        bytes: f.copy.bytes,
        state: pb::QueuedMoveState::Failed as i32,
        retries: f.retries,
        last_error,
        waiting_reason: String::new(),
        age_ms: millis(now.saturating_sub(f.at)),
        kind,
    }
}

/// Adds the queue's pending or running copies of `e.chunk`, and why a
/// pending one waits, to an explanation.
pub fn explain_queued(s: &BalanceStatus, e: &mut crate::meta::Explanation) {
    for m in s.queue.moves.iter().filter(|m| m.copy.mv.chunk == e.chunk) {
        let c = &m.copy;
        // A running copy is in the metadata's busy jobs too.
        if m.state == MoveState::Running && e.jobs.iter().any(|j| j.state == "running") {
            continue;
        }
        let state = match m.state {
            MoveState::Pending => "pending",
            MoveState::Running => "running",
        };
        let detail = m
            .waiting
            .as_ref()
            .map(|w| w.to_string())
            .unwrap_or_default();
        if m.state == MoveState::Pending {
            let why = match c.class {
                CopyClass::Repair => "to restore its replication factor",
                CopyClass::Drain => "off a draining server",
                CopyClass::Operator => "as an operator asked",
                CopyClass::Balance => "to even out utilization",
            };
            let verb = if c.class.deletes_source() {
                "move"
            } else {
                "copy"
            };
            e.reasons.push(format!(
                "queued to {verb} from {} to {} {why}; waiting: {}",
                c.mv.from,
                c.mv.to,
                if detail.is_empty() {
                    "for its turn"
                } else {
                    &detail
                }
            ));
        }
        e.jobs.push(crate::meta::ChunkJobInfo {
            kind: c.class.name().into(),
            from: c.mv.from.clone(),
            to: c.mv.to.clone(),
            state: state.into(),
            detail,
        });
    }
}
