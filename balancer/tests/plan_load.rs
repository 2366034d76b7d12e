//! The planner's load phase on small clusters whose moves can be worked out
//! by hand: hot chunks leave hot servers densest first for the coolest
//! servers, cooling chunks stay, a chunk no server can take is named, a hot
//! server over its capacity band sheds its hot chunks first; and seed 004's
//! worked example with traffic. Without heat, plans are the byte planner's.

mod common;

use common::moves;
use keel_balancer::load::check;
use keel_balancer::sim::{HeatSpec, RandomSpec, random_cluster, refresh_reads, zipf_heat};
use keel_balancer::{
    ChunkIdx, ClusterView, InFlight, MoveReason, Plan, Policy, ReadRate, ServerIdx, plan,
};
use proptest::prelude::*;

/// Four servers of 1000 bytes at 50 %; `s0` holds hot chunks `h1` (12
/// reads/s, 100 B), `h2` (10 reads/s, 50 B) and `h3` (8 reads/s, 100 B).
/// Background reads: s0 20, s1 20, s2 10, s3 10.
fn hot_s0() -> ClusterView {
    let mut v = ClusterView::new();
    let s: Vec<ServerIdx> = (0..4)
        .map(|i| v.add_server(format!("s{i}"), None, 1000, true))
        .collect();
    let h1 = v.add_chunk("h1", 100, 0, 1, &[s[0]]);
    let h2 = v.add_chunk("h2", 50, 0, 1, &[s[0]]);
    let h3 = v.add_chunk("h3", 100, 0, 1, &[s[0]]);
    v.add_chunk("s0-cold", 250, 0, 1, &[s[0]]);
    for &t in &s[1..] {
        v.add_chunk(format!("{}-cold", v.server(t).id), 500, 0, 1, &[t]);
    }
    for (c, r) in [(h1, 12.0), (h2, 10.0), (h3, 8.0)] {
        v.heat.set(s[0], c, ReadRate::new(r, r * 100.0));
    }
    refresh_reads(&mut v, &[20.0, 20.0, 10.0, 10.0]);
    v
}

/// Applies every move of `p` to a copy of `v`, checking the invariants.
fn applied(v: &ClusterView, p: &Plan) -> ClusterView {
    let mut after = v.clone();
    for m in &p.moves {
        after.apply(m).expect("planned move applies");
        after.check_invariants().expect("invariants hold");
    }
    after
}

fn chunk(v: &ClusterView, id: &str) -> ChunkIdx {
    v.chunk_by_id(id).expect("chunk in the view")
}

#[test]
fn a_hot_server_gives_its_densest_hot_chunks_to_the_coolest_servers() {
    let v = hot_s0();
    let p = plan(&v, &Policy::default(), &InFlight::new());
    // Mean 22.5, band ±5.6, aim 25.3: h2 (0.2 reads/s per byte) to s2,
    // then h1 (0.12) to s3; s0 is then at 28, inside (edge 28.1).
    assert_eq!(moves(&v, &p), ["h2 s0->s2 load", "h1 s0->s3 load"]);
    assert!(p.load_band_reached && p.band_reached);
    assert!(
        p.notes
            .iter()
            .any(|n| n.starts_with("s0 is hot: 50.0 reads/s against a mean of 22.5")),
        "{:?}",
        p.notes
    );
    let report = check(&applied(&v, &p), 20.0, 25.0);
    assert!(report.load_balanced() && report.balanced(), "{report:?}");
}

#[test]
fn cooling_chunks_do_not_move_for_load() {
    let v = hot_s0();
    let mut cooling = InFlight::new();
    cooling.add_cooling(chunk(&v, "h2"));
    let p = plan(&v, &Policy::default(), &cooling);
    // h3 would leave s0 at 300 bytes, under the capacity aim of 305.
    assert_eq!(moves(&v, &p), ["h1 s0->s2 load"]);
    // 38 reads/s left against an edge of 28.1.
    assert!(!p.load_band_reached);
    assert!(
        p.notes
            .iter()
            .any(|n| n.starts_with("s0 stays hot at 38.0")),
        "{:?}",
        p.notes
    );
}

#[test]
fn a_chunk_hotter_than_any_target_can_take_is_named() {
    let mut v = hot_s0();
    let (s0, h1) = (ServerIdx(0), chunk(&v, "h1"));
    v.heat.set(s0, h1, ReadRate::new(60.0, 6000.0));
    refresh_reads(&mut v, &[20.0, 20.0, 10.0, 10.0]);
    let p = plan(&v, &Policy::default(), &InFlight::new());
    assert!(p.moves.iter().all(|m| m.chunk != h1));
    assert!(!p.load_band_reached);
    assert!(
        p.notes
            .iter()
            .any(|n| n == "h1 is hotter than any target can take (60.0 reads/s)"),
        "{:?}",
        p.notes
    );
}

#[test]
fn load_moves_keep_replicas_apart_and_the_capacity_band() {
    let mut v = hot_s0();
    // s2 and s3 hold a replica of h1 and h2; s1 is at its band's upper edge.
    let (h1, h2) = (chunk(&v, "h1"), chunk(&v, "h2"));
    let mut w = ClusterView::new();
    for s in &v.servers {
        w.add_server(s.id.clone(), None, s.capacity, true);
    }
    for c in v.chunks() {
        let mut on = c.replicas().to_vec();
        if c.idx() == h1 || c.idx() == h2 {
            on.extend([ServerIdx(2), ServerIdx(3)]);
        }
        w.add_chunk(c.id(), c.size(), 0, on.len() as u32, &on);
    }
    w.heat = v.heat.clone();
    refresh_reads(&mut w, &[20.0, 20.0, 10.0, 10.0]);
    v = w;
    let p = plan(&v, &Policy::default(), &InFlight::new());
    for m in &p.moves {
        assert!(!v.chunk(m.chunk).is_on(m.to), "{m:?}");
    }
    let after = applied(&v, &p);
    assert!(check(&after, 20.0, 25.0).balanced());
}

#[test]
fn load_moves_fill_targets_only_to_the_capacity_aim() {
    // hot_s0 with s2 at 650 bytes and s3 at 350: the average stays 50 %,
    // so the band's upper edge is 700 bytes and its aim 695. h2 (50 B) to
    // s2 would end it at the edge, where one write makes it overloaded.
    let mut v = ClusterView::new();
    let s: Vec<ServerIdx> = (0..4)
        .map(|i| v.add_server(format!("s{i}"), None, 1000, true))
        .collect();
    let hot = [("h1", 100, 12.0), ("h2", 50, 10.0), ("h3", 100, 8.0)];
    for (id, size, r) in hot {
        let c = v.add_chunk(id, size, 0, 1, &[s[0]]);
        v.heat.set(s[0], c, ReadRate::new(r, r * 100.0));
    }
    v.add_chunk("s0-cold", 250, 0, 1, &[s[0]]);
    for (t, size) in [(1, 500), (2, 650), (3, 350)] {
        v.add_chunk(format!("s{t}-cold"), size, 0, 1, &[s[t]]);
    }
    refresh_reads(&mut v, &[20.0, 20.0, 10.0, 10.0]);
    let p = plan(&v, &Policy::default(), &InFlight::new());
    assert_eq!(moves(&v, &p)[0], "h2 s0->s3 load", "{:?}", p.notes);
    let after = applied(&v, &p);
    for m in &p.moves {
        assert!(
            after.server(m.to).used <= 695,
            "{m:?}: {}",
            after.server(m.to).used
        );
        assert!(after.server(m.from).used >= 305, "{m:?}");
    }
}

#[test]
fn a_hot_replica_moved_for_capacity_obeys_the_load_aim() {
    // s0 is overloaded by bytes but not hot; every chunk it holds is read
    // (2 reads/s each), so shedding bytes moves reads. s1 is underloaded
    // and the first target by bytes, but at 19.5 reads/s it would end at
    // 21.5: inside the band (edge 21.9) yet above the aim (19.7) and
    // hotter than s0 once s0 has shed. Only s2 may take such a chunk.
    let mut v = ClusterView::new();
    let s: Vec<ServerIdx> = (0..3)
        .map(|i| v.add_server(format!("s{i}"), None, 1000, true))
        .collect();
    for i in 0..9 {
        let c = v.add_chunk(format!("h{i}"), 100, 0, 1, &[s[0]]);
        v.heat.set(s[0], c, ReadRate::new(2.0, 200.0));
    }
    v.add_chunk("s1-cold", 200, 0, 1, &[s[1]]);
    v.add_chunk("s2-cold", 500, 0, 1, &[s[2]]);
    refresh_reads(&mut v, &[0.0, 19.5, 15.0]);
    let p = plan(&v, &Policy::default(), &InFlight::new());
    assert!(!p.moves.is_empty(), "{:?}", p.notes);
    let after = applied(&v, &p);
    let mean = 17.5;
    for m in &p.moves {
        assert_ne!(m.to, s[1], "{:?}", moves(&v, &p));
        let (to, from) = (after.server(m.to).reads, after.server(m.from).reads);
        assert!(to.reads_per_sec <= mean + 4.375 / 2.0, "{m:?}");
        assert!(to.reads_per_sec <= from.reads_per_sec.max(mean), "{m:?}");
    }
}

/// Four servers of 1000 bytes; s0 at 90 % with three hot chunks, the
/// others at 40 %.
fn hot_and_full() -> ClusterView {
    let mut v = ClusterView::new();
    let s: Vec<ServerIdx> = (0..4)
        .map(|i| v.add_server(format!("s{i}"), None, 1000, true))
        .collect();
    for i in 0..6 {
        v.add_chunk(format!("s0-cold{i}"), 100, 0, 1, &[s[0]]);
    }
    let hot: Vec<ChunkIdx> = (1..=3)
        .map(|i| v.add_chunk(format!("h{i}"), 100, 0, 1, &[s[0]]))
        .collect();
    for &t in &s[1..] {
        v.add_chunk(format!("{}-cold", v.server(t).id), 400, 0, 1, &[t]);
    }
    for (c, r) in hot.into_iter().zip([6.0, 5.0, 4.0]) {
        v.heat.set(s[0], c, ReadRate::new(r, r * 100.0));
    }
    refresh_reads(&mut v, &[15.0, 10.0, 10.0, 10.0]);
    v
}

#[test]
fn a_hot_server_over_its_band_sheds_hot_chunks_first() {
    let v = hot_and_full();
    let bytes_only = Policy {
        load_threshold_pct: 0.0,
        ..Policy::default()
    };
    let capacity = plan(&v, &bytes_only, &InFlight::new());
    let p = plan(&v, &Policy::default(), &InFlight::new());
    assert!(
        capacity
            .moves
            .iter()
            .all(|m| m.reason == MoveReason::Capacity)
    );
    assert_eq!(moves(&v, &p)[0], "h1 s0->s1 load");
    assert!(p.band_reached && p.load_band_reached, "{:?}", p.notes);
    let report = check(&applied(&v, &p), 20.0, 25.0);
    assert!(report.balanced() && report.load_balanced(), "{report:?}");
    println!(
        "capacity-only {} bytes, traffic-aware {} bytes",
        capacity.bytes, p.bytes
    );
}

/// Seed 004's worked example with traffic: eight nodes of 10 000 bytes in
/// chunks of 250, node 1 at 95 % holding the hot set, the others at 40 %.
fn seed_004_with_traffic() -> ClusterView {
    let mut v = ClusterView::new();
    for n in 1..=8 {
        let s = v.add_server(format!("node{n}"), None, 10_000, true);
        let chunks = if n == 1 { 38 } else { 16 };
        for i in 0..chunks {
            v.add_chunk(format!("n{n}-{i:02}"), 250, i, 1, &[s]);
        }
    }
    let spec = HeatSpec {
        total_reads_per_sec: 800.0,
        background: 0.2,
        // Node 1 must lose 84 % of its hot reads to reach the band, and no
        // hot chunk may be hotter than a cool node can take: fourteen hot
        // chunks with a mild skew allow both.
        hot_chunks: 14,
        exponent: 0.4,
        on: Some(ServerIdx(0)),
    };
    zipf_heat(4, &mut v, &spec);
    v
}

#[test]
fn seed_004_with_traffic_evens_out_both_with_few_more_bytes() {
    let v = seed_004_with_traffic();
    let before = check(&v, 20.0, 25.0);
    assert_eq!(before.hot.len(), 1, "node 1 is hot: {before:?}");
    let capacity = plan(
        &v,
        &Policy {
            load_threshold_pct: 0.0,
            ..Policy::default()
        },
        &InFlight::new(),
    );
    let p = plan(&v, &Policy::default(), &InFlight::new());
    let after = check(&applied(&v, &p), 20.0, 25.0);
    println!(
        "seed 004 with traffic: capacity-only {} bytes in {} moves, traffic-aware {} bytes in {} moves ({} for load); node1 {:.0} -> {:.0} reads/s against a mean of {:.0}",
        capacity.bytes,
        capacity.moves.len(),
        p.bytes,
        p.moves.len(),
        p.moves
            .iter()
            .filter(|m| m.reason == MoveReason::Load)
            .count(),
        before.hot[0].reads.reads_per_sec,
        after.servers[0].reads.reads_per_sec,
        after.average_reads_per_sec,
    );
    assert!(after.balanced(), "capacity band: {after:?}");
    assert!(after.load_balanced(), "load band: {:?}", p.notes);
    assert!(p.band_reached && p.load_band_reached);
    assert!(
        p.bytes as f64 <= 1.3 * capacity.bytes as f64,
        "{} bytes against {} capacity-only",
        p.bytes,
        capacity.bytes
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Without heat nothing can move for load: the plan is the byte
    /// planner's, whatever the load band and the servers' reads/s.
    #[test]
    fn without_heat_plans_are_the_byte_planners(
        seed in any::<u64>(),
        pct in 0.0f64..80.0,
        reads in proptest::collection::vec(0.0f64..500.0, 12),
        with_reads in any::<bool>(),
    ) {
        let spec = RandomSpec {
            servers: 3 + (seed % 9) as usize,
            chunks: 60,
            max_capacity: 10_000,
            max_chunk: 600,
            max_replication: 1 + (seed % 3) as u32,
            racks: (seed % 4) as usize,
            dead: 0.1,
        };
        let mut v = random_cluster(seed, &spec);
        if with_reads {
            for (s, r) in v.servers.iter_mut().zip(&reads) {
                s.reads = ReadRate::new(*r, *r * 100.0);
            }
        }
        let off = Policy { load_threshold_pct: 0.0, ..Policy::default() };
        let on = Policy { load_threshold_pct: pct, ..Policy::default() };
        let (a, b) = (plan(&v, &off, &InFlight::new()), plan(&v, &on, &InFlight::new()));
        prop_assert_eq!(&a.moves, &b.moves);
        prop_assert_eq!(&a.notes, &b.notes);
        prop_assert_eq!(a.bytes, b.bytes);
        prop_assert_eq!(a.band_reached, b.band_reached);
        if !with_reads {
            prop_assert_eq!(a, b);
        }
    }
}

#[test]
fn nonsense_rates_count_as_none() {
    let mut v = hot_s0();
    let h3 = chunk(&v, "h3");
    v.heat.set(ServerIdx(0), h3, ReadRate::new(f64::NAN, -1.0));
    v.servers[1].reads = ReadRate::new(f64::INFINITY, 0.0);
    v.servers[2].reads = ReadRate::new(-5.0, 0.0);
    let p = plan(&v, &Policy::default(), &InFlight::new());
    assert!(p.moves.iter().all(|m| m.chunk != h3), "{:?}", p.moves);
    let again = plan(&v, &Policy::default(), &InFlight::new());
    assert_eq!(p, again, "deterministic");
}
