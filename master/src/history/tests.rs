use super::*;
use crate::meta::ServerState;

fn server(id: &str, used: u64) -> ServerStatus {
    ServerStatus {
        id: id.into(),
        address: String::new(),
        rack: String::new(),
        capacity: 1000,
        used,
        utilization_pct: used as f64 / 10.0,
        chunks: 0,
        alive: true,
        state: ServerState::Alive,
        last_heartbeat_ms: 0,
        read_bytes_per_sec: 0.0,
        reads_per_sec: 0.0,
        read_p99_ms: 0.0,
        load: "inside",
    }
}

fn moved(chunk: &str, from: &str, to: &str, bytes: u64, outcome: MoveOutcome) -> MoveRecord {
    MoveRecord {
        chunk: chunk.into(),
        from: from.into(),
        to: to.into(),
        bytes,
        kind: "balance",
        started_ms: 1,
        ended_ms: 2,
        outcome,
        source_deleted: outcome == MoveOutcome::Done,
        error: String::new(),
    }
}

fn used(r: &Rebalance) -> Vec<u64> {
    r.start.iter().map(|s| s.used_bytes).collect()
}

/// Replays every kept move onto the start.
fn replayed(r: &Rebalance) -> Vec<u64> {
    let mut s = r.start.clone();
    for m in &r.moves {
        apply(&mut s, m, true);
    }
    s.iter().map(|s| s.used_bytes).collect()
}

#[test]
fn a_rebalance_opens_when_copies_start_on_an_idle_queue() {
    let h = History::new(10);
    let servers = || vec![server("a", 800), server("b", 100)];
    // Nothing starts: nothing opens.
    h.tick(false, false, || panic!("no servers read without a start"));
    assert_eq!(h.summary().id, 0);
    h.tick(false, true, servers);
    let r = h.snapshot();
    assert_eq!((r.id, r.finished, used(&r)), (1, false, vec![800, 100]));
    // More starts within it read nothing; a retried failure moves no bytes.
    h.tick(false, true, || panic!("the rebalance is open"));
    h.push(moved("c1", "a", "b", 100, MoveOutcome::Done), false);
    h.push(moved("c2", "a", "b", 50, MoveOutcome::Retrying), false);
    h.push(moved("c2", "a", "b", 50, MoveOutcome::Done), true);
    let r = h.snapshot();
    assert!(r.finished);
    assert_eq!(replayed(&r), [650, 250]);
    assert_eq!(
        h.summary(),
        Summary {
            id: 1,
            moves: 3,
            finished: true
        }
    );
    // The next start opens rebalance 2 from the servers as they are then.
    h.tick(false, true, || vec![server("a", 650), server("b", 250)]);
    let r = h.snapshot();
    assert_eq!((r.id, r.moves.len(), used(&r)), (2, 0, vec![650, 250]));
}

#[test]
fn an_idle_queue_ends_a_rebalance_whose_last_moves_never_ran() {
    let h = History::new(10);
    h.tick(false, true, || vec![server("a", 800)]);
    h.push(moved("c1", "a", "b", 100, MoveOutcome::Done), false);
    // The remaining moves were dropped as obsolete: no record says idle.
    h.tick(true, false, || panic!("nothing starts"));
    assert!(h.snapshot().finished);
    h.tick(false, true, || vec![server("a", 700)]);
    assert_eq!(h.summary().id, 2);
}

#[test]
fn a_full_ring_folds_its_oldest_moves_into_the_start() {
    let h = History::new(3);
    h.tick(false, true, || vec![server("a", 1000), server("b", 0)]);
    for i in 0..10 {
        h.push(
            moved(&format!("c{i}"), "a", "b", 10, MoveOutcome::Done),
            false,
        );
    }
    let r = h.snapshot();
    assert_eq!((r.moves.len(), r.folded), (3, 7));
    assert_eq!(r.moves.front().map(|m| m.chunk.as_str()), Some("c7"));
    // Start plus the kept moves is still the cluster as it is now.
    assert_eq!(used(&r), [930, 70]);
    assert_eq!(replayed(&r), [900, 100]);
}

#[test]
fn a_repair_adds_to_its_target_only() {
    let mut s = vec![
        ServerStart {
            id: "a".into(),
            rack: String::new(),
            capacity_bytes: 100,
            used_bytes: 50,
        },
        ServerStart {
            id: "b".into(),
            rack: String::new(),
            capacity_bytes: 100,
            used_bytes: 0,
        },
    ];
    let mut m = moved("c", "a", "b", 20, MoveOutcome::Done);
    m.source_deleted = false;
    apply(&mut s, &m, true);
    assert_eq!((s[0].used_bytes, s[1].used_bytes), (50, 20));
    apply(&mut s, &m, false);
    assert_eq!((s[0].used_bytes, s[1].used_bytes), (50, 0));
}

#[test]
fn rates_count_done_moves_in_the_window() {
    let h = History::new(10);
    let mut m = moved("c1", "a", "b", 100, MoveOutcome::Done);
    m.started_ms = 500;
    m.ended_ms = 1000;
    h.tick(false, true, || vec![server("a", 200), server("b", 0)]);
    h.push(m.clone(), false);
    m.ended_ms = 5000;
    h.push(m.clone(), false);
    m.outcome = MoveOutcome::Failed;
    h.push(m, false);
    assert_eq!(h.done_since(2000), (1, 100, Some(500)));
    assert_eq!(h.done_since(0), (2, 200, Some(500)));
}
