use super::*;

const GOOD: &str = r#"{
  "servers": [
    {"id": "cs1", "capacity": "1GiB", "used": "700MiB", "rack": "r1"},
    {"id": "cs2", "capacity": "1GiB", "used": "300MiB", "rack": "r2", "migrate_bandwidth": "8MiB"},
    {"id": "cs3", "capacity": 1073741824, "used": 0, "rack": "r3"}
  ],
  "chunks": {"replication": 1, "sizes": [{"size": "16MiB", "weight": 3}, {"size": "4MiB"}], "seed": 3},
  "policy": {"threshold_pct": 10},
  "limits": {"max_concurrent_moves": 6, "migrate_bandwidth": "32MiB", "move_overhead": "10ms"}
}"#;

#[test]
fn a_good_file_fills_each_server_to_its_used_bytes() {
    let m = parse(GOOD).expect("parses");
    let used: Vec<u64> = m.view.servers.iter().map(|s| s.used).collect();
    assert_eq!(used, [700 << 20, 300 << 20, 0]);
    assert!(m.notes.is_empty(), "{:?}", m.notes);
    assert_eq!(m.exec.bandwidth, [32 << 20, 8 << 20, 32 << 20]);
    assert_eq!(
        (
            m.exec.queue.max_concurrent_moves,
            m.exec.queue.max_moves_per_server
        ),
        (6, 4),
        "the file's cap, the default per-server slots"
    );
    assert_eq!(m.exec.move_overhead, Duration::from_millis(10));
    assert_eq!(m.policy.threshold_pct, 10.0);
    m.view.check_invariants().expect("consistent view");
    assert_eq!(
        parse(GOOD).expect("again").view,
        m.view,
        "same seed, same cluster"
    );
}

#[test]
fn the_cap_may_be_auto_and_nothing_else_in_words() {
    let auto = GOOD.replace(
        r#""max_concurrent_moves": 6"#,
        r#""max_concurrent_moves": "auto""#,
    );
    let m = parse(&auto).expect("parses");
    assert_eq!(
        m.exec.queue.max_concurrent_moves,
        keel_balancer::slots::AUTO
    );
    let bad = GOOD.replace(
        r#""max_concurrent_moves": 6"#,
        r#""max_concurrent_moves": "many""#,
    );
    let e = parse(&bad).expect_err("refused");
    assert!(e.contains("\"auto\" or a number"), "{e}");
}

#[test]
fn replicas_land_on_distinct_servers_and_racks() {
    let text = GOOD.replace(r#""replication": 1"#, r#""replication": 3"#);
    let m = parse(&text).expect("parses");
    for c in m.view.chunks() {
        let racks: BTreeSet<_> = c
            .replicas()
            .iter()
            .map(|&s| m.view.server(s).rack.clone())
            .collect();
        assert_eq!(racks.len(), 3);
    }
    // 700/300/0 MiB cannot all be three-way replicas: the note says so.
    assert!(m.notes.iter().any(|n| n.contains("cs1")), "{:?}", m.notes);
}

#[test]
fn bad_files_are_refused_with_the_field_named() {
    let cases = [
        ("{", "not a sim file"),
        (
            r#"{"servers": [], "chunks": {"sizes": [{"size": 1}]}}"#,
            "no server",
        ),
        (
            &GOOD.replace(r#""used": "700MiB""#, r#""used": "2GiB""#),
            "servers[0].used",
        ),
        (
            &GOOD.replace(r#""id": "cs2""#, r#""id": "cs1""#),
            "listed twice",
        ),
        (
            &GOOD.replace(r#""16MiB""#, r#""lots""#),
            "chunks.sizes[0].size",
        ),
        (&GOOD.replace(r#""weight": 3"#, r#""weight": -1"#), "weight"),
        (
            &GOOD.replace(r#""threshold_pct": 10"#, r#""threshold_pct": 0"#),
            "threshold_pct",
        ),
        (
            &GOOD.replace(r#""replication": 1"#, r#""replication": 4"#),
            "replication",
        ),
        (
            &GOOD.replace(r#""seed": 3"#, r#""seed": 3, "sead": 4"#),
            "unknown field",
        ),
        (&GOOD.replace(r#""10ms""#, r#""soon""#), "move_overhead"),
        (
            &GOOD.replace(r#""16MiB""#, "1").replace(r#""4MiB""#, "1"),
            "more than",
        ),
    ];
    for (text, want) in cases {
        let err = parse(text).expect_err(want);
        assert!(err.contains(want), "{want:?} not in {err:?}");
    }
}

/// Seed 004 with traffic: node 1 full and holding a hot set, the rest cool.
const HOT: &str = r#"{
  "servers": [
    {"id": "node1", "capacity": "10GiB", "used": "9.5GiB", "reads_per_sec": 20},
    {"id": "node2", "capacity": "10GiB", "used": "4GiB", "reads_per_sec": 20},
    {"id": "node3", "capacity": "10GiB", "used": "4GiB", "reads_per_sec": 20},
    {"id": "node4", "capacity": "10GiB", "used": "4GiB", "reads_per_sec": 20}
  ],
  "chunks": {
    "sizes": [{"size": "256MiB"}],
    "seed": 4,
    "hot": [{"on": "node1", "chunks": 8, "reads_per_sec": 240, "zipf": 0.4}]
  }
}"#;

#[test]
fn hot_sets_put_their_reads_on_their_server() {
    let m = parse(HOT).expect("parses");
    let reads: Vec<f64> = m
        .view
        .servers
        .iter()
        .map(|s| s.reads.reads_per_sec)
        .collect();
    assert!((reads[0] - 260.0).abs() < 1e-9, "{reads:?}");
    assert_eq!(&reads[1..], [20.0, 20.0, 20.0]);
    assert_eq!(m.view.heat.len(), 8);
    assert_eq!(m.policy.load_threshold_pct, 25.0, "the master's default");
    assert_eq!(
        parse(HOT).expect("again").view,
        m.view,
        "same seed, same heat"
    );
    let plan = keel_balancer::plan(&m.view, &m.policy, &keel_balancer::InFlight::new());
    let e = keel_balancer::predict::load_effect(&m.view, &plan, m.policy.load_threshold_pct);
    assert!(e.load_moves > 0 && e.reaches_load_band, "{:?}", plan.notes);
}

#[test]
fn old_files_have_no_load_and_bad_rates_are_refused() {
    let m = parse(GOOD).expect("parses");
    assert!(m.view.heat.is_empty());
    assert!(m.view.servers.iter().all(|s| s.reads.reads_per_sec == 0.0));
    for (from, to, field) in [
        (
            r#""reads_per_sec": 240"#,
            r#""reads_per_sec": -1"#,
            "chunks.hot[0].reads_per_sec",
        ),
        (r#""on": "node1""#, r#""on": "node9""#, "chunks.hot[0].on"),
        (r#""chunks": 8"#, r#""chunks": 0"#, "chunks.hot[0].chunks"),
        (r#""zipf": 0.4"#, r#""zipf": 99"#, "chunks.hot[0].zipf"),
        (
            r#""reads_per_sec": 20}"#,
            r#""reads_per_sec": -5}"#,
            "servers[0].reads_per_sec",
        ),
    ] {
        let bad = HOT.replacen(from, to, 1);
        assert_ne!(bad, HOT, "{from} found");
        let err = parse(&bad).expect_err("refused");
        assert!(err.starts_with(field), "{err}");
    }
    let off = HOT.replace(
        r#""chunks": {"#,
        r#""policy": {"load_threshold_pct": -1}, "chunks": {"#,
    );
    assert!(
        parse(&off)
            .expect_err("refused")
            .starts_with("policy.load_threshold_pct")
    );
}
