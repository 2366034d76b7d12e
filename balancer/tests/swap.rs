//! Swaps in the load phase, on a cluster small enough to work out by hand:
//! a cold server with no room under its capacity aim takes a hot chunk
//! while one of its cold chunks leaves, both for load; every order in which
//! the three moves of the plan can finish keeps the limits the planner
//! promises; and a swap's cold chunk, cooling, is the last thing capacity
//! sheds.

mod common;

use common::moves;
use keel_balancer::load::{Position, check, position};
use keel_balancer::sim::refresh_reads;
use keel_balancer::space::fill_limit;
use keel_balancer::{ClusterView, InFlight, PlannedMove, Policy, ReadRate, ServerIdx, plan};

/// Four servers of 10,000 bytes, 20,000 bytes in all: average 50 %, band
/// 3,000 to 7,000 bytes, aims 3,050 and 6,950, floor at 9,000.
/// - s0 (5,000 B) holds hot `h1` (60 B, 20 reads/s) and 30 reads/s more:
///   at 50 reads/s it is hot (mean 31.25, edge 39.06, aim 35.2).
/// - s1 (7,600 B, over the band) holds ten cold chunks of 690 B and one of
///   700 B; it reads at 5 reads/s, cold.
/// - s2 (4,700 B) and s3 (2,700 B, under the band) read at 35 reads/s:
///   `h1` would take either to 55, above the aim.
fn cold_and_full() -> ClusterView {
    let mut v = ClusterView::new();
    let s: Vec<ServerIdx> = (0..4)
        .map(|i| v.add_server(format!("s{i}"), None, 10_000, true))
        .collect();
    let h1 = v.add_chunk("h1", 60, 0, 1, &[s[0]]);
    v.heat.set(s[0], h1, ReadRate::new(20.0, 1200.0));
    v.add_chunk("s0-cold", 4940, 0, 1, &[s[0]]);
    for i in 0..10 {
        v.add_chunk(format!("s1-{i}"), 690, 0, 1, &[s[1]]);
    }
    v.add_chunk("s1-big", 700, 0, 1, &[s[1]]);
    v.add_chunk("s2-cold", 4700, 0, 1, &[s[2]]);
    v.add_chunk("s3-cold", 2700, 0, 1, &[s[3]]);
    refresh_reads(&mut v, &[30.0, 5.0, 35.0, 35.0]);
    v
}

#[test]
fn a_cold_server_over_its_band_takes_a_hot_chunk_by_a_swap() {
    let v = cold_and_full();
    let p = plan(&v, &Policy::default(), &InFlight::new());
    // Phase 2 sheds s1 to 6,910 B (690 B to s3, the underloaded one): 40 B
    // under its aim, too little for h1's 60. The only server h1 may go to
    // for reads is s1 (5 + 20 = 25 reads/s, under the aim), so s1 gives its
    // smallest cold chunk to s0 and takes h1: s1 ends at 6,280 B, s0 at
    // 5,630 B, both at 30 and 25 reads/s, inside the load band.
    assert_eq!(
        moves(&v, &p),
        ["s1-0 s1->s3 capacity", "s1-1 s1->s0 load", "h1 s0->s1 load"],
        "{:?}",
        p.notes
    );
    assert!(p.band_reached && p.load_band_reached, "{:?}", p.notes);
    assert!(
        p.notes
            .iter()
            .any(|n| n.starts_with("swap: s1 takes hot h1 from s0 after giving cold s1-1 to s0")),
        "{:?}",
        p.notes
    );
    let mut after = v.clone();
    for m in &p.moves {
        after.apply(m).expect("planned move applies");
    }
    let report = check(&after, 20.0, 25.0);
    assert!(report.balanced() && report.load_balanced(), "{report:?}");
}

/// Every order of `moves`, by Heap's algorithm.
fn orders(moves: &[PlannedMove]) -> Vec<Vec<PlannedMove>> {
    fn heap(k: usize, a: &mut Vec<PlannedMove>, out: &mut Vec<Vec<PlannedMove>>) {
        if k <= 1 {
            out.push(a.clone());
            return;
        }
        for i in 0..k {
            heap(k - 1, a, out);
            a.swap(if k.is_multiple_of(2) { i } else { 0 }, k - 1);
        }
    }
    let mut out = Vec::new();
    heap(moves.len(), &mut moves.to_vec(), &mut out);
    out
}

#[test]
fn every_order_of_the_swap_keeps_the_limits() {
    let v = cold_and_full();
    let p = plan(&v, &Policy::default(), &InFlight::new());
    let all = orders(&p.moves);
    assert_eq!(all.len(), 6);
    let average = 50.0;
    for order in all {
        let mut now = v.clone();
        for m in &order {
            now.apply(m).expect("each move applies in any order");
            now.check_invariants().expect("invariants hold");
            for (i, s) in now.servers.iter().enumerate() {
                let start = v.servers[i].used;
                assert!(s.used <= fill_limit(s.capacity, 10.0), "{order:?}");
                let at = position(s.utilization_pct(), average, 20.0);
                match position(v.servers[i].utilization_pct(), average, 20.0) {
                    // s0 and s2 start inside the band and stay inside.
                    Position::Inside => assert_eq!(at, Position::Inside, "{} {order:?}", s.id),
                    // s3 starts under it and only takes.
                    Position::Under => assert!(s.used >= start, "{} {order:?}", s.id),
                    // s1 starts over it and is shedding: should h1 land
                    // before its bytes leave, it holds h1's 60 B more than
                    // it started with, far under its floor, for a while.
                    Position::Over => assert!(s.used <= start + 60, "{} {order:?}", s.id),
                }
            }
        }
    }
}

#[test]
fn a_swaps_cold_chunk_cooling_is_the_last_thing_capacity_sheds() {
    // After the swap s1-1 sits on s0. Say s0 then fills up to 7,080 B with
    // cold chunks, 80 B over the band: capacity sheds 130 B from it, and
    // one 690 B chunk does it. The smallest that finishes the job, lowest
    // index first, is s1-1; cooling, it goes last, and s0-other goes.
    let mut v = ClusterView::new();
    let s: Vec<ServerIdx> = (0..4)
        .map(|i| v.add_server(format!("s{i}"), None, 10_000, true))
        .collect();
    let swapped = v.add_chunk("s1-1", 690, 0, 1, &[s[0]]);
    v.add_chunk("s0-other", 690, 0, 1, &[s[0]]);
    v.add_chunk("s0-rest", 5700, 0, 1, &[s[0]]);
    v.add_chunk("s1-cold", 4300, 0, 1, &[s[1]]);
    v.add_chunk("s2-cold", 4300, 0, 1, &[s[2]]);
    v.add_chunk("s3-cold", 4320, 0, 1, &[s[3]]);
    let fresh = plan(&v, &Policy::default(), &InFlight::new());
    assert_eq!(
        moves(&v, &fresh),
        ["s1-1 s0->s1 capacity"],
        "{:?}",
        fresh.notes
    );
    let mut cooling = InFlight::new();
    cooling.add_cooling(swapped);
    let p = plan(&v, &Policy::default(), &cooling);
    assert_eq!(moves(&v, &p), ["s0-other s0->s1 capacity"], "{:?}", p.notes);
    assert!(p.band_reached);
}
