//! `rebalance status`, `pause` and `resume`: the master's background move
//! queue, its counts and every move's state, retries and reason for waiting.

use std::time::Duration;

use keel_proto::v1::{
    QueuedMove, QueuedMoveState, RebalancePauseRequest, RebalanceResumeRequest,
    RebalanceStatusRequest, RebalanceStatusResponse,
};
use serde::Serialize;

use crate::client::Master;
use crate::error::Error;
use crate::output::{self, Align, Narrow, Table};

/// A queued move in `--json` output.
#[derive(Debug, Serialize, PartialEq)]
pub struct QueuedMoveJson {
    /// Chunk id.
    pub chunk: String,
    /// Source server.
    pub from: String,
    /// Target server.
    pub to: String,
    /// Chunk size.
    pub bytes: u64,
    /// `pending`, `running`, `done`, `failed` or `unknown`.
    pub state: &'static str,
    /// Failed attempts so far.
    pub retries: u32,
    /// The last attempt's error.
    pub last_error: String,
    /// Why a pending move is not running now.
    pub waiting_reason: String,
    /// Milliseconds since it was queued.
    pub age_ms: u64,
    /// `balance`, `operator`, `repair` or `drain`.
    pub kind: String,
}

/// `rebalance status --json` (also what `pause` and `resume` print).
#[derive(Debug, Serialize, PartialEq)]
pub struct StatusJson {
    /// No new moves start.
    pub paused: bool,
    /// Several masters: the leader's address (empty without etcd or when unknown).
    pub leader: String,
    /// The leader's term (0 without etcd).
    pub term: u64,
    /// The master is still in its start-up safe mode.
    pub safe_mode: bool,
    /// No server outside the band.
    pub balanced: bool,
    /// Capacity-weighted average over live servers.
    pub average_utilization_pct: f64,
    /// Moves waiting to start.
    pub pending: u64,
    /// Moves copying now.
    pub running: u64,
    /// Moves finished.
    pub done: u64,
    /// Moves dropped after retries.
    pub failed: u64,
    /// Age of the oldest pending move.
    pub oldest_pending_age_ms: u64,
    /// Bytes moved so far.
    pub bytes_moved: u64,
    /// Bytes of pending and running moves.
    pub bytes_remaining: u64,
    /// The moves the master still lists.
    pub moves: Vec<QueuedMoveJson>,
    /// Chunks below their factor on live servers.
    pub under_replicated: u64,
    /// Chunks with no whole replica on a live server.
    pub unavailable: u64,
    /// Repair copies running now.
    pub repairs_running: u64,
    /// Repair copies waiting.
    pub repairs_waiting: u64,
    /// Drain copies running now.
    pub drains_running: u64,
    /// Drain copies waiting.
    pub drains_waiting: u64,
    /// Repair and drain copies completed since the master started.
    pub repairs_done: u64,
    /// Repair and drain copies running now.
    pub copies: Vec<QueuedMoveJson>,
    /// Copies at once, cluster-wide, in force (0 from an older master).
    pub max_concurrent_moves: u32,
    /// Whether that cap is `auto` (it follows the live servers).
    pub max_concurrent_moves_auto: bool,
    /// Copies at once per server (0 from an older master).
    pub max_moves_per_server: u32,
}

/// Lower-case name of a queued move's state.
pub fn state_name(state: i32) -> &'static str {
    match QueuedMoveState::try_from(state) {
        Ok(QueuedMoveState::Pending) => "pending",
        Ok(QueuedMoveState::Running) => "running",
        Ok(QueuedMoveState::Done) => "done",
        Ok(QueuedMoveState::Failed) => "failed",
        _ => "unknown",
    }
}

impl From<&QueuedMove> for QueuedMoveJson {
    fn from(m: &QueuedMove) -> Self {
        QueuedMoveJson {
            chunk: m.chunk.clone(),
            from: m.from.clone(),
            to: m.to.clone(),
            bytes: m.bytes,
            state: state_name(m.state),
            retries: m.retries,
            last_error: m.last_error.clone(),
            waiting_reason: m.waiting_reason.clone(),
            age_ms: m.age_ms,
            kind: m.kind.clone(),
        }
    }
}

impl From<&RebalanceStatusResponse> for StatusJson {
    fn from(r: &RebalanceStatusResponse) -> Self {
        StatusJson {
            paused: r.paused,
            leader: r.leader.clone(),
            term: r.term,
            safe_mode: r.safe_mode,
            balanced: r.balanced,
            average_utilization_pct: r.average_utilization_pct,
            pending: r.pending,
            running: r.running,
            done: r.done,
            failed: r.failed,
            oldest_pending_age_ms: r.oldest_pending_age_ms,
            bytes_moved: r.bytes_moved,
            bytes_remaining: r.bytes_remaining,
            moves: r.moves.iter().map(QueuedMoveJson::from).collect(),
            under_replicated: r.under_replicated,
            unavailable: r.unavailable,
            repairs_running: r.repairs_running,
            repairs_waiting: r.repairs_waiting,
            drains_running: r.drains_running,
            drains_waiting: r.drains_waiting,
            repairs_done: r.repairs_done,
            copies: r.copies.iter().map(QueuedMoveJson::from).collect(),
            max_concurrent_moves: r.max_concurrent_moves,
            max_concurrent_moves_auto: r.max_concurrent_moves_auto,
            max_moves_per_server: r.max_moves_per_server,
        }
    }
}

/// Fetches the queue's state.
pub async fn fetch(master: &Master) -> Result<RebalanceStatusResponse, Error> {
    let req = RebalanceStatusRequest {};
    master
        .call(
            "rebalance status",
            master.client.clone().rebalance_status(req),
        )
        .await
}

/// Runs `rebalance status`.
pub async fn status(master: &Master, json: bool) -> Result<(), Error> {
    let resp = fetch(master).await?;
    show(&resp, "", json)
}

/// Runs `rebalance pause`.
pub async fn pause(master: &Master, json: bool) -> Result<(), Error> {
    let req = RebalancePauseRequest {};
    let resp = master
        .call_changing("rebalance pause", || {
            let mut c = master.client.clone();
            async move { c.rebalance_pause(req).await }
        })
        .await?;
    let head = match resp.running {
        0 => "balancer paused: no new move starts\n\n".to_owned(),
        n => format!(
            "balancer paused: no new move starts; {} running will finish\n\n",
            output::count(n, "move")
        ),
    };
    show(&resp, &head, json)
}

/// Runs `rebalance resume`.
pub async fn resume(master: &Master, json: bool) -> Result<(), Error> {
    let req = RebalanceResumeRequest {};
    let resp = master
        .call_changing("rebalance resume", || {
            let mut c = master.client.clone();
            async move { c.rebalance_resume(req).await }
        })
        .await?;
    show(&resp, "balancer resumed\n\n", json)
}

fn show(resp: &RebalanceStatusResponse, head: &str, json: bool) -> Result<(), Error> {
    if json {
        output::print_json(&StatusJson::from(resp))
    } else {
        output::print_stdout(&format!("{head}{}", render(resp, output::stdout_width())))
    }
}

/// The human view: state, counts, ages, bytes, and the table of moves
/// fitted to `width` columns.
pub fn render(r: &RebalanceStatusResponse, width: Option<usize>) -> String {
    let mover = match (r.paused, r.safe_mode) {
        (true, _) => "paused",
        (false, true) => "in safe mode (no background pass yet)",
        (false, false) => "active",
    };
    let mut out = format!(
        "balancer {mover}; cluster {} (average {})\n",
        if r.balanced {
            "balanced"
        } else {
            "not balanced"
        },
        output::pct(r.average_utilization_pct).trim_start(),
    );
    out.push_str(&crate::servers::leader_text(
        &r.leader,
        r.term,
        r.answered_by_leader,
    ));
    if !r.answered_by_leader {
        out.push_str(
            "the leader runs the move queue: the moves below are this standby's own (none while it stands by); the pause is the one stored in etcd\n",
        );
    }
    out.push_str(&format!(
        "moves: {} pending, {} running, {} done, {} failed",
        r.pending, r.running, r.done, r.failed
    ));
    if r.pending > 0 {
        let oldest = Duration::from_millis(r.oldest_pending_age_ms);
        out.push_str(&format!("; oldest pending {}", output::age(oldest)));
    }
    out.push_str(&format!(
        "\nbytes: {} moved, {} remaining\n",
        output::size(r.bytes_moved),
        output::size(r.bytes_remaining)
    ));
    out.push_str(&format!(
        "redundancy: {} under-replicated, {} unavailable; repairs {} running, {} waiting; drains {} running, {} waiting; {} done\n",
        r.under_replicated,
        r.unavailable,
        r.repairs_running,
        r.repairs_waiting,
        r.drains_running,
        r.drains_waiting,
        r.repairs_done
    ));
    out.push_str(&limits_text(r));
    // Repairs and drains are in the one queue's moves (their kind shows in
    // the state column); `copies` repeats the running ones for scripts.
    if !r.moves.is_empty() {
        out.push('\n');
        out.push_str(&moves_table(&r.moves, width));
    }
    out
}

/// The slot limits in force, e.g. `slots: auto (16) copies at once, 4 per
/// server`; nothing from a master that does not report them.
fn limits_text(r: &RebalanceStatusResponse) -> String {
    if r.max_moves_per_server == 0 {
        return String::new();
    }
    let cap = match r.max_concurrent_moves_auto {
        true => format!("auto ({})", r.max_concurrent_moves),
        false => r.max_concurrent_moves.to_string(),
    };
    format!(
        "slots: {cap} copies at once, {} per server\n",
        r.max_moves_per_server
    )
}

fn moves_table(moves: &[QueuedMove], width: Option<usize>) -> String {
    let mut t = Table::new(&[
        ("CHUNK", Align::Left),
        ("FROM", Align::Left),
        ("TO", Align::Left),
        ("BYTES", Align::Right),
        ("STATE", Align::Left),
        ("RETRIES", Align::Right),
        ("AGE", Align::Right),
        ("WAITING / LAST ERROR", Align::Left),
    ])
    // The reason a move waits is the column worth the room.
    .narrowing(&[Narrow::Drop(5), Narrow::Drop(6), Narrow::Drop(3)]);
    for m in moves {
        t.row(vec![
            m.chunk.clone(),
            m.from.clone(),
            m.to.clone(),
            output::size(m.bytes),
            match m.kind.as_str() {
                "" | "balance" => state_name(m.state).into(),
                kind => format!("{} {kind}", state_name(m.state)),
            },
            m.retries.to_string(),
            output::age(Duration::from_millis(m.age_ms)),
            why(m),
        ]);
    }
    t.render_in(width)
}

/// The waiting reason and the last error, whichever are set.
fn why(m: &QueuedMove) -> String {
    match (m.waiting_reason.is_empty(), m.last_error.is_empty()) {
        (true, true) => String::new(),
        (false, true) => m.waiting_reason.clone(),
        (true, false) => format!("last error: {}", m.last_error),
        (false, false) => format!("{}; last error: {}", m.waiting_reason, m.last_error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> RebalanceStatusResponse {
        RebalanceStatusResponse {
            paused: false,
            pending: 1,
            running: 1,
            done: 3,
            failed: 0,
            oldest_pending_age_ms: 12_300,
            bytes_moved: 192 << 20,
            bytes_remaining: 128 << 20,
            moves: vec![QueuedMove {
                chunk: "ch_7".into(),
                from: "cs1".into(),
                to: "cs4".into(),
                bytes: 64 << 20,
                state: QueuedMoveState::Pending as i32,
                retries: 1,
                last_error: "cs4 unreachable".into(),
                waiting_reason: "no slot".into(),
                age_ms: 12_300,
                kind: "balance".into(),
            }],
            balanced: false,
            average_utilization_pct: 50.0,
            safe_mode: false,
            answered_by_leader: true,
            ..RebalanceStatusResponse::default()
        }
    }

    #[test]
    fn the_slot_limits_show_auto_and_its_value() {
        let auto = RebalanceStatusResponse {
            max_concurrent_moves: 16,
            max_concurrent_moves_auto: true,
            max_moves_per_server: 4,
            ..status()
        };
        let text = render(&auto, None);
        assert!(
            text.contains("slots: auto (16) copies at once, 4 per server\n"),
            "{text}"
        );
        let fixed = RebalanceStatusResponse {
            max_concurrent_moves_auto: false,
            max_concurrent_moves: 4,
            ..auto
        };
        assert!(render(&fixed, None).contains("slots: 4 copies at once"));
        assert!(!render(&status(), None).contains("slots:"), "older master");
    }

    #[test]
    fn a_standby_names_the_leader_and_says_it_runs_the_queue() {
        let standby = RebalanceStatusResponse {
            answered_by_leader: false,
            paused: true,
            leader: "http://m1:7000".into(),
            term: 9,
            ..status()
        };
        let text = render(&standby, None);
        assert!(text.starts_with("balancer paused"), "{text}");
        assert!(
            text.contains("leader: http://m1:7000 (term 9); answered by a standby\nthe leader runs the move queue"),
            "{text}"
        );
        let no_leader = RebalanceStatusResponse {
            leader: String::new(),
            term: 0,
            ..standby
        };
        let text = render(&no_leader, None);
        assert!(text.contains("leader: none known right now\n"), "{text}");
        assert!(!render(&status(), None).contains("leader"));
    }

    #[test]
    fn json_has_every_field_in_snake_case() {
        let v = serde_json::to_value(StatusJson::from(&status())).expect("encodes");
        for key in [
            "paused",
            "safe_mode",
            "balanced",
            "average_utilization_pct",
            "pending",
            "running",
            "done",
            "failed",
            "oldest_pending_age_ms",
            "bytes_moved",
            "bytes_remaining",
            "moves",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["moves"][0]["state"], "pending");
        assert_eq!(v["moves"][0]["waiting_reason"], "no slot");
    }

    #[test]
    fn text_shows_counts_age_and_reasons() {
        let text = render(&status(), None);
        assert!(text.starts_with("balancer active; cluster not balanced (average 50.0%)"));
        assert!(
            text.contains("moves: 1 pending, 1 running, 3 done, 0 failed; oldest pending 12.3s")
        );
        assert!(text.contains("bytes: 192.0 MiB moved, 128.0 MiB remaining"));
        assert!(
            text.contains("pending        1  12.3s  no slot; last error: cs4 unreachable"),
            "{text}"
        );
    }
}
