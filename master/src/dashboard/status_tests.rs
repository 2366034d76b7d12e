use std::time::Duration;

use keel_balancer::queue::{FinishedMove, MoveId, MoveStatus, QueueStatus, WaitReason};
use keel_balancer::{CopyJob, MoveRef};
use serde_json::Value;

use super::*;
use crate::meta::Redundancy;

fn server(id: &str, used: u64, state: ServerState) -> ServerStatus {
    ServerStatus {
        id: id.into(),
        address: format!("http://{id}"),
        rack: "r1".into(),
        capacity: 1000,
        used,
        utilization_pct: used as f64 / 10.0,
        chunks: 1,
        alive: state != ServerState::Dead,
        state,
        last_heartbeat_ms: 5,
        read_bytes_per_sec: 0.0,
        reads_per_sec: 0.0,
        read_p99_ms: 0.0,
        load: "inside",
    }
}

fn pending(chunk: &str, to: &str, waiting: WaitReason) -> MoveStatus {
    MoveStatus {
        id: MoveId(0),
        copy: CopyJob::new(MoveRef::new(chunk, "a", to), 100, CopyClass::Balance),
        state: MoveState::Pending,
        retries: 0,
        last_error: None,
        waiting: Some(waiting),
        age: Duration::from_secs(90),
        running_for: None,
    }
}

fn failed_copy() -> CopyJob {
    pending("f1", "b", WaitReason::NoSlot).copy
}

fn inputs(moves: Vec<MoveStatus>, stuck: bool) -> Inputs {
    let pending = moves.len();
    Inputs {
        balance: BalanceStatus {
            queue: QueueStatus {
                paused: false,
                pending,
                running: 0,
                done: 7,
                failed: 1,
                bytes_moved: 700,
                oldest_pending_age: Some(Duration::from_secs(90)),
                moves,
            },
            recent_failures: vec![FinishedMove {
                id: MoveId(9),
                copy: failed_copy(),
                outcome: keel_balancer::queue::Outcome::Failed {
                    error: "disk full".into(),
                },
                retries: 3,
                at: Duration::from_secs(40),
            }],
            bytes_remaining: 100 * pending as u64,
            balanced: false,
            average_utilization_pct: 50.0,
            safe_mode: false,
            now: Duration::from_secs(100),
            redundancy: Redundancy {
                under_replicated: 2,
                unavailable: 1,
                ..Redundancy::default()
            },
            copies: vec![],
            repairs_done: 3,
            limits: crate::balance::MoveLimits {
                max_concurrent_moves: 6,
                auto: true,
                max_moves_per_server: 4,
            },
        },
        servers: vec![
            server("a", 780, ServerState::Alive),
            server("b", 500, ServerState::Alive),
            server("c", 150, ServerState::Alive),
            server("d", 0, ServerState::Dead),
        ],
        threshold_pct: 20.0,
        load_threshold_pct: 25.0,
        min_free_pct: 10.0,
        stuck_after_ms: 60_000,
        stuck,
        leader: true,
        auth: false,
        now_ms: 100_000,
        recent: (2, 400, Some(90_000)),
        history: HistorySummary::default(),
    }
}

#[test]
fn servers_sit_against_the_band_and_the_floor() {
    let s = build(inputs(vec![], false));
    let bands: Vec<&str> = s.servers.iter().map(|s| s.band).collect();
    assert_eq!(bands, ["over", "within", "under", "none"]);
    assert_eq!((s.band_low_pct, s.band_high_pct), (30.0, 70.0));
    let a = &s.servers[0];
    assert_eq!((a.free_bytes, a.floor_bytes), (220, 100));
    assert_eq!(s.servers[3].status.state, ServerState::Dead);
    assert!(!s.stuck.stuck && s.stuck.cause.is_empty());
    let v: Value = serde_json::to_value(&s).expect("json");
    for key in [
        "servers",
        "queue",
        "rates",
        "redundancy",
        "stuck",
        "history",
        "policy",
    ] {
        assert!(v.get(key).is_some(), "{key} missing in {v}");
    }
    assert_eq!(v["redundancy"]["unavailable"], 1);
    assert_eq!(v["redundancy"]["repairs_done"], 3);
    assert_eq!(v["policy"]["max_concurrent_moves"], 6);
    assert_eq!(v["policy"]["max_concurrent_moves_auto"], true);
    assert_eq!(v["policy"]["max_moves_per_server"], 4);
    assert_eq!(v["policy"]["load_threshold_pct"], 25.0);
    let f = &v["queue"]["recent_failures"][0];
    assert_eq!(
        (&f["state"], &f["last_error"]),
        (&"failed".into(), &"disk full".into())
    );
    assert_eq!(f["age_ms"], 60_000);
}

/// The row the page reads keeps its names and values: the metadata's
/// `ServerStatus` under the dashboard's names (`alive` left out, `state` as
/// its word), plus the dashboard's free space, floor and band.
#[test]
fn a_server_row_keeps_its_json_shape() {
    let s = build(inputs(vec![], false));
    let rows = serde_json::to_value(&s.servers).expect("json");
    let row = |id: &str, state: &str, used: u64, util: f64, band: &str| {
        serde_json::json!({
            "id": id, "address": format!("http://{id}"), "rack": "r1",
            "state": state, "capacity_bytes": 1000, "used_bytes": used,
            "free_bytes": 1000 - used, "floor_bytes": 100,
            "utilization_pct": util, "band": band, "chunks": 1,
            "last_heartbeat_ms": 5, "read_bytes_per_sec": 0.0,
            "reads_per_sec": 0.0, "read_p99_ms": 0.0, "load": "inside",
        })
    };
    let want = serde_json::json!([
        row("a", "alive", 780, 78.0, "over"),
        row("b", "alive", 500, 50.0, "within"),
        row("c", "alive", 150, 15.0, "under"),
        row("d", "dead", 0, 0.0, "none"),
    ]);
    assert_eq!(rows, want);
    // Every state is its lowercase word.
    for (state, word) in [
        (ServerState::Draining, "draining"),
        (ServerState::Drained, "drained"),
    ] {
        let mut i = inputs(vec![], false);
        i.servers = vec![server("e", 10, state)];
        let v = serde_json::to_value(build(i)).expect("json");
        assert_eq!(v["servers"][0]["state"], word);
        assert_eq!(v["servers"][0]["band"], "none");
    }
}

#[test]
fn rates_cover_the_window_or_the_rebalance_if_shorter() {
    // 400 bytes in the 10 s since the rebalance began; 200 bytes left.
    let s = build(inputs(
        vec![pending("x", "c", WaitReason::NoSlot); 2],
        false,
    ));
    assert_eq!(s.rates.bytes_per_sec, 40.0);
    assert_eq!(s.rates.moves_per_sec, 0.2);
    assert_eq!(s.rates.eta_secs, Some(5.0));
    let mut idle = inputs(vec![], false);
    idle.recent = (0, 0, None);
    let s = build(idle);
    assert_eq!((s.rates.bytes_per_sec, s.rates.eta_secs), (0.0, None));
}

#[test]
fn a_stuck_queue_names_the_most_common_reason() {
    let moves = vec![
        pending("x1", "c", WaitReason::TargetAtFloor),
        pending("x2", "b", WaitReason::TargetAtFloor),
        pending("x3", "c", WaitReason::NoSlot),
        pending("x4", "c", WaitReason::Retrying("copy failed".into())),
    ];
    let s = build(inputs(moves.clone(), true));
    assert!(s.stuck.stuck);
    assert_eq!(s.stuck.cause, "target at floor");
    assert!(
        s.stuck.detail.contains("2 of 4 pending moves"),
        "{}",
        s.stuck.detail
    );
    assert!(s.stuck.detail.contains("(b, c)"), "{}", s.stuck.detail);
    assert_eq!(s.queue.reasons.get("no slot"), Some(&1));

    // A tie goes to the floor before a retry; a retry names its chunk.
    let s = build(inputs(moves[1..].to_vec(), true));
    assert_eq!(s.stuck.cause, "target at floor");
    let s = build(inputs(
        vec![pending("x9", "c", WaitReason::Retrying("boom".into()))],
        true,
    ));
    assert_eq!(s.stuck.cause, "a move retrying");
    assert!(s.stuck.detail.contains("x9"), "{}", s.stuck.detail);
    // The verdict is the queue's: reasons alone do not make it stuck.
    assert!(!build(inputs(moves, false)).stuck.stuck);
}

/// The cause comes from the reason's variant, not its words: every reason
/// the queue gives names its own cause, whatever its text says (a retry's
/// error can say anything, e.g. "no slot").
#[test]
fn every_wait_reason_names_its_cause_whatever_its_words() {
    let cases = [
        (WaitReason::TargetAtFloor, "target at floor"),
        (WaitReason::NoSlot, "no slot"),
        (WaitReason::ChunkBusy, "chunk busy"),
        (WaitReason::Paused, "paused"),
        (WaitReason::Retrying(String::new()), "a move retrying"),
        (WaitReason::Retrying("no slot".into()), "a move retrying"),
        (WaitReason::Retrying("paused".into()), "a move retrying"),
    ];
    for (reason, cause) in cases {
        let words = reason.to_string();
        let s = build(inputs(vec![pending("x", "c", reason)], true));
        assert_eq!(s.stuck.cause, cause, "{words}");
        assert!(
            s.stuck
                .detail
                .starts_with("1 of 1 pending moves wait because")
        );
        // The page still shows the queue's own words.
        assert_eq!(s.queue.reasons.get(&words), Some(&1), "{words}");
    }
    // Only a move waiting for its turn has no cause.
    let mut turn = pending("x", "c", WaitReason::NoSlot);
    turn.waiting = None;
    let s = build(inputs(vec![turn], true));
    assert_eq!(s.stuck.cause, "unknown");
    assert_eq!(s.queue.reasons.get("its turn"), Some(&1));
}

#[test]
fn an_empty_cluster_is_an_empty_list() {
    let mut i = inputs(vec![], false);
    i.servers.clear();
    let v = serde_json::to_value(build(i)).expect("json");
    assert_eq!(v["servers"], serde_json::json!([]));
    assert_eq!(v["queue"]["moves"], serde_json::json!([]));
}
