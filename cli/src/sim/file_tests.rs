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
