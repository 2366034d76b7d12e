//! Planner scenarios on small clusters, asserting the exact moves.

use keel_balancer::load::check;
use keel_balancer::{ClusterView, InFlight, Plan, PlannedMove, Policy, ServerIdx, plan};

/// Servers `(id, capacity)` and chunks `(id, size, reads, holders)`.
fn cluster(servers: &[(&str, u64)], chunks: &[(&str, u64, u64, &[usize])]) -> ClusterView {
    let mut v = ClusterView::new();
    for (id, cap) in servers {
        v.add_server(*id, None, *cap, true);
    }
    for (id, size, reads, on) in chunks {
        let on: Vec<_> = on.iter().map(|&i| ServerIdx(i as u32)).collect();
        v.add_chunk(*id, *size, *reads, on.len() as u32, &on);
    }
    v
}

/// `(chunk, from, to)` ids of each move.
fn named(v: &ClusterView, p: &Plan) -> Vec<(String, String, String)> {
    p.moves
        .iter()
        .map(|m| {
            let id = |s: ServerIdx| v.server(s).id.clone();
            (v.chunk(m.chunk).id().to_owned(), id(m.from), id(m.to))
        })
        .collect()
}

fn moves(list: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    list.iter()
        .map(|(c, f, t)| (c.to_string(), f.to_string(), t.to_string()))
        .collect()
}

/// Applies the plan, checking invariants after every move.
fn apply(v: &mut ClusterView, p: &Plan) {
    for m in &p.moves {
        v.apply(m).expect("planned move applies");
        v.check_invariants().expect("invariants hold");
    }
}

#[test]
fn cold_chunks_that_fit_the_excess_go_first() {
    let mut v = cluster(
        &[("s0", 1000), ("s1", 1000), ("s2", 1000)],
        &[
            ("a", 100, 5, &[0]),
            ("b", 200, 0, &[0]),
            ("c", 50, 0, &[0]),
            ("d", 300, 9, &[0]),
            ("e", 250, 1, &[0]),
            ("f", 300, 0, &[1]),
            ("g", 300, 0, &[2]),
        ],
    );
    let p = plan(&v, &Policy::default(), &InFlight::new());
    // s0 sits at 90 % against a band of 30..70: 200 bytes must go. b (cold,
    // 200) fits; the margin then needs 5 more, and c is the smallest chunk
    // that covers it. Both targets are just under the lower aim, so they
    // share the bytes by room.
    assert_eq!(
        named(&v, &p),
        moves(&[("b", "s0", "s1"), ("c", "s0", "s2")])
    );
    assert_eq!((p.bytes, p.lower_bound_bytes), (250, 200));
    assert!(p.band_reached);
    apply(&mut v, &p);
    assert!(check(&v, 20.0, 0.0).balanced());
    let again = plan(&v, &Policy::default(), &InFlight::new());
    assert!(again.moves.is_empty());
    assert_eq!(again.notes, ["cluster balanced"]);
}

#[test]
fn the_seed_example_fills_the_underloaded_server() {
    let mut chunks = Vec::new();
    let names: Vec<String> = (0..200).map(|i| format!("x{i:03}")).collect();
    let mut n = 0;
    for (server, pct) in [(0usize, 78), (1, 50), (2, 57), (3, 15)] {
        for _ in 0..pct {
            chunks.push((names[n].as_str(), 1, n as u64, [server]));
            n += 1;
        }
    }
    let chunks: Vec<(&str, u64, u64, &[usize])> = chunks
        .iter()
        .map(|(id, s, r, on)| (*id, *s, *r, &on[..]))
        .collect();
    let mut v = cluster(
        &[("cs1", 100), ("cs2", 100), ("cs3", 100), ("cs4", 100)],
        &chunks,
    );
    let p = plan(&v, &Policy::default(), &InFlight::new());
    // cs1 sheds to 69 (the edge 70 less the margin) into cs4; cs4, still
    // short of 30, is then filled to 31 from cs1, the most loaded donor.
    assert_eq!(p.lower_bound_bytes, 15);
    assert_eq!(p.bytes, 16);
    assert!(
        p.moves
            .iter()
            .all(|m| m.from == ServerIdx(0) && m.to == ServerIdx(3))
    );
    // The coldest chunks of cs1 go first.
    let first: Vec<_> = named(&v, &p).into_iter().take(3).map(|m| m.0).collect();
    assert_eq!(first, ["x000", "x001", "x002"]);
    apply(&mut v, &p);
    let r = check(&v, 20.0, 0.0);
    assert!(r.balanced(), "{r:?}");
    assert_eq!(v.servers[3].used, 31);
}

#[test]
fn unequal_capacities_balance_by_percentage() {
    // Average 1200 / 4000 = 30 %. big (3000) at 10 % is underloaded; small
    // (1000) at 90 % is overloaded. Each chunk is 10 bytes.
    let mut chunks = Vec::new();
    let names: Vec<String> = (0..120).map(|i| format!("k{i:03}")).collect();
    for (i, name) in names.iter().enumerate() {
        let on: &[usize] = if i < 90 { &[0] } else { &[1] };
        chunks.push((name.as_str(), 10, 0, on));
    }
    let mut v = cluster(&[("small", 1000), ("big", 3000)], &chunks);
    let p = plan(&v, &Policy::default(), &InFlight::new());
    // small must drop to 50 % (500 bytes), big rise to 10 %: already there.
    // 400 bytes is the bound; 405 with the margin rounds to 41 chunks.
    assert_eq!(p.lower_bound_bytes, 400);
    assert_eq!(p.moves.len(), 41);
    apply(&mut v, &p);
    let r = check(&v, 20.0, 0.0);
    assert!(r.balanced(), "{r:?}");
    assert_eq!((v.servers[0].used, v.servers[1].used), (490, 710));
}

#[test]
fn no_valid_move_is_explained_and_nothing_is_planned() {
    // One 600-byte chunk on a full server; the other server, with a 10 %
    // floor, can take at most 900 - 300 = 600... but only 350 fit the band.
    let v = cluster(
        &[("a", 1000), ("b", 1000)],
        &[("huge", 600, 0, &[0]), ("small", 300, 0, &[1])],
    );
    let p = plan(&v, &Policy::new(10.0, 10.0), &InFlight::new());
    assert!(p.moves.is_empty());
    assert!(!p.band_reached);
    assert!(
        p.notes
            .iter()
            .any(|n| n.starts_with("a stays overloaded at 60.0%")),
        "{:?}",
        p.notes
    );
}

#[test]
fn anti_affinity_skips_a_chunk_the_target_holds() {
    // Average 50 %: b (20 %) is underloaded; c (70 %) has 15 bytes left
    // above its floor. a gives one chunk; its coldest, x, already has a
    // replica on b, so the next coldest, y, goes instead.
    let v = cluster(
        &[("a", 100), ("b", 100), ("c", 100)],
        &[
            ("x", 20, 0, &[0, 1]),
            ("y", 20, 5, &[0]),
            ("z", 20, 9, &[0]),
            ("k", 70, 0, &[2]),
        ],
    );
    let p = plan(&v, &Policy::new(20.0, 15.0), &InFlight::new());
    assert_eq!(named(&v, &p), moves(&[("y", "a", "b")]));
    assert!(
        p.notes
            .iter()
            .any(|n| n.starts_with("no valid placement for chunk x on a")),
        "{:?}",
        p.notes
    );
    assert!(p.band_reached);
}

#[test]
fn racks_never_narrow() {
    let mut v = ClusterView::new();
    let a = v.add_server("a", Some("r1".into()), 1000, true);
    let b = v.add_server("b", Some("r2".into()), 1000, true);
    let c = v.add_server("c", Some("r2".into()), 1000, true);
    let d = v.add_server("d", Some("r1".into()), 1000, true);
    for i in 0..8 {
        v.add_chunk(format!("p{i}"), 100, 0, 2, &[a, b]);
    }
    v.add_chunk("q", 100, 0, 1, &[c]);
    // a and b hot, c and d cold. A chunk on a (r1) with its twin on b (r2)
    // may go to d (r1) but not to c (r2): that would leave one rack.
    let p = plan(&v, &Policy::default(), &InFlight::new());
    assert!(!p.moves.is_empty());
    for m in &p.moves {
        let to_rack = v.server(m.to).rack.clone();
        let from_rack = v.server(m.from).rack.clone();
        assert_eq!(to_rack, from_rack, "move {m:?} changes rack");
    }
    apply(&mut v, &p);
    assert!(p.band_reached, "{:?}", p.notes);
    assert!(check(&v, 20.0, 0.0).balanced());
    let _ = d;
}

#[test]
fn dead_servers_and_chunks_in_flight_are_left_alone() {
    let mut v = cluster(
        &[("a", 100), ("b", 100), ("dead", 100), ("c", 100)],
        &[
            ("m", 30, 0, &[0]),
            ("n", 30, 0, &[0]),
            ("o", 30, 0, &[2]),
            ("p", 10, 0, &[1]),
        ],
    );
    v.servers[2].alive = false;
    let mut busy = InFlight::new();
    busy.add_chunk(v.chunk_by_id("m").expect("m"));
    let p = plan(&v, &Policy::default(), &busy);
    // a (60 %) is over 23.3 + 20; m is busy, so n goes, never to the dead server.
    assert_eq!(named(&v, &p), moves(&[("n", "a", "c")]));
    assert!(
        p.notes
            .contains(&"dead is dead: neither source nor target".to_owned())
    );
    assert!(
        p.notes
            .contains(&"1 chunks already queued or moving were left alone".to_owned())
    );
}

#[test]
fn moves_in_flight_count_as_done() {
    let v = cluster(
        &[("a", 100), ("b", 100)],
        &[("m", 30, 0, &[0]), ("n", 30, 0, &[0])],
    );
    let mut busy = InFlight::new();
    let m = v.chunk_by_id("m").expect("m");
    busy.add_move(PlannedMove {
        chunk: m,
        from: ServerIdx(0),
        to: ServerIdx(1),
        bytes: 30,
        reason: keel_balancer::MoveReason::Capacity,
    });
    let p = plan(&v, &Policy::default(), &busy);
    // Once m lands, a and b are at 30 % each: nothing more to do.
    assert!(p.moves.is_empty());
    assert!(p.band_reached);
    assert_eq!(p.notes, ["cluster balanced"]);
}

#[test]
fn moves_in_flight_are_projected_by_stage() {
    let (a, b, c) = (ServerIdx(0), ServerIdx(1), ServerIdx(2));
    let servers = [("a", 100), ("b", 100), ("c", 100)];
    // Copied, delete pending: m is on a and b. Counting it done frees a
    // (10 %), b keeps 40 %: inside 20 ± 20. Counting b twice would not be.
    let v = cluster(
        &servers,
        &[
            ("m", 40, 0, &[0, 1]),
            ("x", 10, 0, &[0]),
            ("y", 10, 0, &[2]),
        ],
    );
    let mut busy = InFlight::new();
    let m = v.chunk_by_id("m").expect("m");
    busy.add_move(PlannedMove {
        chunk: m,
        from: a,
        to: b,
        bytes: 40,
        reason: keel_balancer::MoveReason::Capacity,
    });
    let p = plan(&v, &Policy::default(), &busy);
    assert!(p.moves.is_empty() && p.band_reached, "{:?}", p.notes);
    // Obsolete: m went to b instead of c. Counting it on c would overload c.
    let v = cluster(
        &servers,
        &[("m", 40, 0, &[1]), ("x", 10, 0, &[0]), ("y", 10, 0, &[2])],
    );
    let mut busy = InFlight::new();
    busy.add_move(PlannedMove {
        chunk: m,
        from: a,
        to: c,
        bytes: 40,
        reason: keel_balancer::MoveReason::Capacity,
    });
    let p = plan(&v, &Policy::default(), &busy);
    assert!(p.moves.is_empty() && p.band_reached, "{:?}", p.notes);
}

#[test]
fn the_free_space_floor_limits_targets() {
    // b is underloaded but its floor (50 %) leaves room for 20 bytes only.
    let v = cluster(
        &[("a", 100), ("b", 100), ("c", 100)],
        &[
            ("x", 10, 0, &[0]),
            ("y", 10, 0, &[0]),
            ("z", 10, 0, &[0]),
            ("w", 60, 0, &[0]),
            ("v", 30, 0, &[1]),
        ],
    );
    let p = plan(&v, &Policy::new(20.0, 50.0), &InFlight::new());
    for m in &p.moves {
        let mut after = v.server(m.to).used;
        after += p
            .moves
            .iter()
            .filter(|o| o.to == m.to)
            .map(|o| o.bytes)
            .sum::<u64>();
        assert!(after <= 50, "{m:?} pushes a target past its floor");
    }
    assert!(!p.moves.is_empty());
}

#[test]
fn bytes_committed_to_a_target_count_against_its_floor() {
    // s1 holds nothing yet, but 850 bytes are allocated or copying into it:
    // with a 10 % floor it has room for 50 more, so only s2 takes data.
    let mut v = cluster(
        &[("s0", 1000), ("s1", 1000), ("s2", 1000)],
        &[
            ("a", 100, 0, &[0]),
            ("b", 100, 0, &[0]),
            ("c", 100, 0, &[0]),
            ("d", 100, 0, &[0]),
            ("e", 100, 0, &[0]),
            ("f", 100, 0, &[0]),
        ],
    );
    v.servers[1].incoming = 850;
    let p = plan(&v, &Policy::new(10.0, 10.0), &InFlight::new());
    assert!(!p.moves.is_empty(), "s0 is over the band");
    for (chunk, _, to) in named(&v, &p) {
        assert_eq!(to, "s2", "{chunk} planned onto s1 past its floor");
    }
}
