//! The stuck banner's words: the queue's own verdict (`keel_queue_stuck`,
//! set where the queue publishes its gauges) with the likely cause named
//! from the waiting reasons of the pending moves.

use serde::Serialize;

use super::status::Queue;

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

/// Causes in the order a tie is broken, with what operators can do.
const CAUSES: [(&str, &str); 5] = [
    (
        "target at floor",
        "their target's free space is at the --min-free-pct floor",
    ),
    (
        "a move retrying",
        "a copy failed and backs off before its next attempt",
    ),
    (
        "no slot",
        "every slot is taken (--max-concurrent-moves, --max-moves-per-server) by copies that do not finish",
    ),
    ("chunk busy", "another job runs on their chunk"),
    (
        "paused",
        "the balancer is paused (keelctl rebalance resume)",
    ),
];

fn cause_of(waiting: &str) -> &'static str {
    match waiting {
        "target free space at floor" => CAUSES[0].0,
        w if w.starts_with("retrying") => CAUSES[1].0,
        "no slot" => CAUSES[2].0,
        "another job runs on the chunk" => CAUSES[3].0,
        "paused" => CAUSES[4].0,
        _ => "unknown",
    }
}

/// Names the likely cause from the pending moves' reasons: the most common
/// one, ties broken in the order of [`CAUSES`].
pub fn stuck(stuck: bool, q: &Queue) -> Stuck {
    if !stuck {
        return Stuck {
            stuck,
            cause: String::new(),
            detail: String::new(),
        };
    }
    let mut counts: Vec<(usize, usize, &str)> = CAUSES
        .iter()
        .enumerate()
        .map(|(rank, (cause, _))| {
            let n = q
                .reasons
                .iter()
                .filter(|(w, _)| cause_of(w) == *cause)
                .map(|(_, n)| n)
                .sum();
            (n, rank, *cause)
        })
        .collect();
    counts.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let (n, rank, cause) = counts[0];
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
    let pending = q.moves.iter().filter(|m| m.state == "pending");
    let mut names: Vec<&str> = match cause {
        "target at floor" => pending
            .filter(|m| cause_of(&m.waiting) == cause)
            .map(|m| m.to.as_str())
            .collect(),
        "a move retrying" => pending
            .filter(|m| cause_of(&m.waiting) == cause)
            .map(|m| m.chunk.as_str())
            .collect(),
        _ => vec![],
    };
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
        cause: cause.into(),
        detail: format!(
            "{n} of {} pending moves wait because {}{which}",
            q.pending, CAUSES[rank].1
        ),
    }
}
