//! Shapes of `keelctl servers` output: the table, its fitting, the JSON.

use super::*;

fn info(id: &str, used: u64, state: ServerState) -> ServerInfo {
    ServerInfo {
        id: id.into(),
        address: format!("http://127.0.0.1:70{}", id.len()),
        rack: String::new(),
        capacity_bytes: 100 << 20,
        used_bytes: used << 20,
        utilization_pct: used as f64,
        chunks: used / 10,
        state: state as i32,
        last_heartbeat_ms: 5,
        migrate_bandwidth_bytes_per_second: 0,
        load: Default::default(),
        read_bytes_per_sec: Default::default(),
        read_p99_ms: Default::default(),
        reads_per_sec: Default::default(),
    }
}

/// `info` with read load, as a master that reports it sends it.
fn loaded(id: &str, used: u64, reads: f64, load: &str) -> ServerInfo {
    ServerInfo {
        reads_per_sec: reads,
        read_bytes_per_sec: reads * 65_536.0,
        read_p99_ms: if reads > 0.0 { 4.25 } else { 0.0 },
        load: load.into(),
        ..info(id, used, ServerState::Alive)
    }
}

#[test]
fn json_has_the_contract_keys_and_the_load_beside_them() {
    let v = serde_json::to_value(ServerJson::from(&info("cs1", 78, ServerState::Alive)))
        .expect("encodes");
    let obj = v.as_object().expect("object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "address",
            "capacity_bytes",
            "chunks",
            "id",
            "load",
            "rack",
            "read_bytes_per_sec",
            "read_p99_ms",
            "reads_per_sec",
            "state",
            "used_bytes",
            "utilization_pct"
        ]
    );
    assert_eq!(obj["state"], "alive");
    assert_eq!(obj["utilization_pct"], 78.0);
    // A master without read load: the figures are its zeros, the mark null.
    assert_eq!(obj["load"], serde_json::Value::Null);
    assert_eq!(obj["reads_per_sec"], 0.0);
    let dead = ServerJson::from(&info("cs2", 1, ServerState::Dead));
    assert_eq!(dead.state, "dead");
    assert_eq!(
        ServerJson::from(&info("cs3", 1, ServerState::Unspecified)).state,
        "dead"
    );
    let hot =
        serde_json::to_value(ServerJson::from(&loaded("cs1", 78, 120.0, "hot"))).expect("encodes");
    assert_eq!(hot["reads_per_sec"], 120.0);
    assert_eq!(hot["read_bytes_per_sec"], 120.0 * 65_536.0);
    assert_eq!(hot["read_p99_ms"], 4.25);
    assert_eq!(hot["load"], "hot");
}

#[test]
fn the_leader_line_tells_a_single_master_from_no_leader() {
    let single = ListServersResponse {
        answered_by_leader: true,
        ..Default::default()
    };
    assert_eq!(leader_line(&single), "");
    // A standby that knows no leader answers with no address and term 0.
    let none = ListServersResponse::default();
    assert_eq!(leader_line(&none), "leader: none known right now\n");
    let standby = ListServersResponse {
        leader: "http://m1:7000".into(),
        term: 7,
        ..Default::default()
    };
    assert_eq!(
        leader_line(&standby),
        "leader: http://m1:7000 (term 7); answered by a standby\n"
    );
    let leader = ListServersResponse {
        answered_by_leader: true,
        ..standby
    };
    assert_eq!(
        leader_line(&leader),
        "leader: http://m1:7000 (term 7), answering\n"
    );
}

#[test]
fn table_shows_bars_and_average() {
    let resp = ListServersResponse {
        servers: vec![
            info("cs1", 78, ServerState::Alive),
            info("cs4", 15, ServerState::Dead),
        ],
        average_utilization_pct: 50.0,
        ..Default::default()
    };
    let text = render(&resp, None);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("ID   ADDRESS"), "{text}");
    assert!(lines[1].contains("[#########...]  78.0%"), "{text}");
    assert!(lines[1].ends_with("alive"), "{text}");
    assert!(lines[2].ends_with("dead"), "{text}");
    assert!(
        text.contains("cluster average [######......]  50.0% over 1 of 2"),
        "{text}"
    );
}

#[test]
fn table_fits_an_80_column_terminal() {
    let mut servers: Vec<ServerInfo> = (1..=12)
        .map(|i| {
            let mut s = info(&format!("cs{i}"), 10 * i, ServerState::Alive);
            s.address = format!("http://127.0.0.1:{}", 40_000 + i);
            s.rack = format!("rack-{}", i % 3);
            s.capacity_bytes = 1 << 40;
            s.chunks = 123_456;
            s
        })
        .collect();
    servers[3].state = ServerState::Draining as i32;
    let resp = ListServersResponse {
        servers,
        average_utilization_pct: 40.0,
        ..Default::default()
    };
    let wide = render(&resp, None);
    assert!(wide.lines().any(|l| l.len() > 80), "{wide}");
    let fitted = render(&resp, Some(80));
    assert!(fitted.lines().all(|l| l.chars().count() <= 80), "{fitted}");
    let lines: Vec<&str> = fitted.lines().collect();
    assert!(
        lines[0].contains("RACK") && lines[0].contains("CHUNKS"),
        "{fitted}"
    );
    assert!(lines[4].contains("127.0.0.1:40004") && !lines[4].contains("http"));
    assert!(lines[4].ends_with("draining"), "{fitted}");
    let narrow = render(&resp, Some(50));
    assert!(narrow.lines().all(|l| l.chars().count() <= 50), "{narrow}");
    assert!(narrow.lines().nth(1).is_some_and(|l| l.starts_with("cs1 ")));
}

fn hot_cluster() -> ListServersResponse {
    let mut servers = vec![
        loaded("cs1", 78, 120.0, "hot"),
        loaded("cs2", 50, 30.0, "inside"),
        loaded("cs3", 57, 30.0, "inside"),
        loaded("cs4", 15, 0.0, "cold"),
        info("cs5", 0, ServerState::Dead),
    ];
    for (i, s) in servers.iter_mut().enumerate() {
        s.address = format!("http://127.0.0.1:{}", 40_001 + i);
        s.rack = format!("rack-{}", i % 2);
        s.capacity_bytes = 1 << 40;
        s.chunks = 123_456;
        s.migrate_bandwidth_bytes_per_second = 64 << 20;
    }
    ListServersResponse {
        servers,
        average_utilization_pct: 50.0,
        ..Default::default()
    }
}

#[test]
fn table_marks_the_hot_server_and_sums_the_reads() {
    let text = render(&hot_cluster(), None);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].ends_with("MIGRATE    READS  READ BYTES    P99  LOAD  STATE"),
        "{text}"
    );
    assert!(
        lines[1].ends_with("64.0 MiB/s  120.0/s    7.5MiB/s  4.2ms  hot   alive"),
        "{text}"
    );
    assert!(
        lines[2].ends_with("30.0/s    1.9MiB/s  4.2ms        alive"),
        "{text}"
    );
    assert!(
        lines[4].ends_with("0.0/s        0B/s      -  cold  alive"),
        "{text}"
    );
    // A master that does not report load for a server: dashes, not zeros.
    assert!(
        lines[5].ends_with("-           -      -  -     dead"),
        "{text}"
    );
    assert_eq!(
        lines[8],
        "client reads 180.0/s (11.2MiB/s), 45.0/s per live server; hot cs1; cold cs4"
    );
}

#[test]
fn at_100_columns_the_reads_and_the_mark_stay() {
    let fitted = render(&hot_cluster(), Some(100));
    assert!(fitted.lines().all(|l| l.chars().count() <= 100), "{fitted}");
    let lines: Vec<&str> = fitted.lines().collect();
    for column in ["ADDRESS", "RACK", "USED", "CHUNKS", "READS", "P99", "LOAD"] {
        assert!(lines[0].contains(column), "{column}: {fitted}");
    }
    assert!(lines[1].contains("120.0/s") && lines[1].ends_with("hot   alive"));
    let narrow = render(&hot_cluster(), Some(50));
    assert!(narrow.lines().all(|l| l.chars().count() <= 50), "{narrow}");
    assert!(
        narrow
            .lines()
            .nth(1)
            .is_some_and(|l| l.ends_with("hot   alive"))
    );
    assert!(
        narrow.contains("client reads 180.0/s; hot cs1; cold cs4"),
        "{narrow}"
    );
}

#[test]
fn no_reads_line_from_a_master_without_load() {
    let resp = ListServersResponse {
        servers: vec![info("cs1", 78, ServerState::Alive)],
        average_utilization_pct: 78.0,
        ..Default::default()
    };
    let text = render(&resp, None);
    assert!(!text.contains("client reads"), "{text}");
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.ends_with("-  -     alive"))
    );
}
