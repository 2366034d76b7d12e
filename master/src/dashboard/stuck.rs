//! The stuck banner's words: the queue's own verdict (`keel_queue_stuck`,
//! set where the queue publishes its gauges) with the likely cause named
//! from the waiting reasons of the pending moves.
//!
//! Causes are read from the queue's [`WaitReason`] variants, never from
//! their words: rewording a reason cannot turn a cause into `unknown`, and a
//! new reason does not compile until it is given a cause here.

use keel_balancer::queue::{MoveState, MoveStatus, QueueStatus, WaitReason};
use serde::Serialize;

/// The stuck verdict and its likely cause.
#[derive(Debug, Clone, Serialize)]
pub struct Stuck {
    /// Moves pending and none finished for `--stuck-after`.
    pub stuck: bool,
    /// `target at floor`, `no slot`, `a move retrying`, `paused`,
    /// `chunk busy` or `unknown`; empty when not stuck.
    pub cause: String,
    /// One sentence for operators.
    pub detail: String,
}

/// Why pending moves wait, as the banner groups them; in the order a tie is
/// broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    TargetAtFloor,
    Retrying,
    NoSlot,
    ChunkBusy,
    Paused,
}

impl Cause {
    /// Every cause, in the order a tie is broken.
    const ALL: [Cause; 5] = [
        Cause::TargetAtFloor,
        Cause::Retrying,
        Cause::NoSlot,
        Cause::ChunkBusy,
        Cause::Paused,
    ];

    fn of(reason: &WaitReason) -> Cause {
        match reason {
            WaitReason::TargetAtFloor => Cause::TargetAtFloor,
            WaitReason::Retrying(_) => Cause::Retrying,
            WaitReason::NoSlot => Cause::NoSlot,
            WaitReason::ChunkBusy => Cause::ChunkBusy,
            WaitReason::Paused => Cause::Paused,
        }
    }

    /// The banner's name for it.
    fn name(self) -> &'static str {
        match self {
            Cause::TargetAtFloor => "target at floor",
            Cause::Retrying => "a move retrying",
            Cause::NoSlot => "no slot",
            Cause::ChunkBusy => "chunk busy",
            Cause::Paused => "paused",
        }
    }

    /// What holds the moves, with what operators can do.
    fn detail(self) -> &'static str {
        match self {
            Cause::TargetAtFloor => "their target's free space is at the --min-free-pct floor",
            Cause::Retrying => "a copy failed and backs off before its next attempt",
            Cause::NoSlot => {
                "every slot is taken (--max-concurrent-moves, --max-moves-per-server) by copies that do not finish"
            }
            Cause::ChunkBusy => "another job runs on their chunk",
            Cause::Paused => "the balancer is paused (keelctl rebalance resume)",
        }
    }

    /// The names the banner lists for a move held by this cause.
    fn named(self, m: &MoveStatus) -> Option<&str> {
        match self {
            Cause::TargetAtFloor => Some(&m.copy.mv.to),
            Cause::Retrying => Some(&m.copy.mv.chunk),
            _ => None,
        }
    }
}

/// The cause a pending move waits for, if it waits for one (not its turn).
fn cause_of(m: &MoveStatus) -> Option<Cause> {
    m.waiting.as_ref().map(Cause::of)
}

/// Names the likely cause from the pending moves' reasons: the most common
/// one, ties broken in the order of [`Cause::ALL`]. The names it lists come
/// from the first `listed` moves (running first), the ones the page shows.
pub fn stuck(stuck: bool, q: &QueueStatus, listed: usize) -> Stuck {
    if !stuck {
        return Stuck {
            stuck,
            cause: String::new(),
            detail: String::new(),
        };
    }
    let pending = || q.moves.iter().filter(|m| m.state == MoveState::Pending);
    let count = |c: Cause| pending().filter(|m| cause_of(m) == Some(c)).count();
    let mut counts: Vec<(usize, usize, Cause)> = Cause::ALL
        .iter()
        .enumerate()
        .map(|(rank, &c)| (count(c), rank, c))
        .collect();
    counts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let (n, _, cause) = counts[0];
    if n == 0 {
        return Stuck {
            stuck,
            cause: "unknown".into(),
            detail: format!(
                "{} moves pending and none finished; no waiting reason recorded yet",
                q.pending
            ),
        };
    }
    let running = q.moves.iter().filter(|m| m.state == MoveState::Running);
    let mut names: Vec<&str> = running
        .chain(pending())
        .take(listed)
        .filter(|m| m.state == MoveState::Pending && cause_of(m) == Some(cause))
        .filter_map(|m| cause.named(m))
        .collect();
    names.sort_unstable();
    names.dedup();
    names.truncate(5);
    let which = if names.is_empty() {
        String::new()
    } else {
        format!(" ({})", names.join(", "))
    };
    Stuck {
        stuck,
        cause: cause.name().into(),
        detail: format!(
            "{n} of {} pending moves wait because {}{which}",
            q.pending,
            cause.detail()
        ),
    }
}
