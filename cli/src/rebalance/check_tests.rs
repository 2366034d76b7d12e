//! Shapes of `rebalance check` and `rebalance plan` output.

use serde_json::json;

use super::*;

fn load(server: &str, pct: f64) -> ServerLoad {
    ServerLoad {
        server: server.into(),
        utilization_pct: pct,
        used_bytes: (pct as u64) << 20,
        capacity_bytes: 100 << 20,
        read_bytes_per_sec: Default::default(),
        reads_per_sec: Default::default(),
    }
}

fn seed() -> RebalanceCheckResponse {
    RebalanceCheckResponse {
        average_utilization_pct: 50.0,
        overloaded: vec![load("cs1", 78.0)],
        underloaded: vec![load("cs4", 15.0)],
        threshold_pct: 20.0,
        servers: vec![
            load("cs1", 78.0),
            load("cs2", 50.0),
            load("cs3", 57.0),
            load("cs4", 15.0),
        ],
        balanced: false,
        average_reads_per_sec: Default::default(),
        cold: Default::default(),
        hot: Default::default(),
        load_balanced: Default::default(),
        load_threshold_pct: Default::default(),
    }
}

#[test]
fn check_json_is_snake_case_fields() {
    let v = serde_json::to_value(CheckJson::from(&seed())).expect("encodes");
    assert_eq!(v["average_utilization_pct"], 50.0);
    assert_eq!(v["threshold_pct"], 20.0);
    assert_eq!(v["balanced"], false);
    assert_eq!(
        v["overloaded"],
        json!([{"server": "cs1", "utilization_pct": 78.0,
                "used_bytes": 78u64 << 20, "capacity_bytes": 100u64 << 20,
                "reads_per_sec": 0.0, "read_bytes_per_sec": 0.0}])
    );
    assert_eq!(v["underloaded"][0]["server"], "cs4");
    assert_eq!(v["servers"].as_array().map(Vec::len), Some(4));
}

#[test]
fn check_text_marks_outliers() {
    let text = render_check(&seed());
    assert!(
        text.starts_with("average utilization 50.0%, threshold ±20.0 points: band 30.0% to 70.0%"),
        "{text}"
    );
    let line = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(line("cs1").ends_with("overloaded"), "{text}");
    assert!(line("cs3").ends_with("within band"), "{text}");
    assert!(line("cs4").ends_with("underloaded"), "{text}");
    assert!(
        text.contains("not balanced: 1 overloaded [cs1], 1 underloaded [cs4]"),
        "{text}"
    );
    let balanced = RebalanceCheckResponse {
        balanced: true,
        overloaded: vec![],
        underloaded: vec![],
        ..seed()
    };
    assert!(render_check(&balanced).contains("balanced: every server is within the band"));
}

#[test]
fn plan_json_shape() {
    let r = RebalancePlanResponse {
        moves: vec![PlannedMove {
            chunk: "ch_010".into(),
            from: "cs1".into(),
            to: "cs4".into(),
            bytes: 64 << 20,
            reason: "capacity".into(),
        }],
        bytes: 64 << 20,
        lower_bound_bytes: 28 << 20,
        notes: vec!["cs3 stays above the band".into()],
        reaches_band: true,
        average_utilization_pct: 50.0,
        ..RebalancePlanResponse::default()
    };
    let eta = std::time::Duration::from_millis(12_500);
    let v = serde_json::to_value(PlanJson::new(&r, eta)).expect("encodes");
    assert_eq!(v["eta_seconds"], 12.5);
    assert_eq!(
        v["moves"],
        json!([{"chunk": "ch_010", "from": "cs1", "to": "cs4", "bytes": 64u64 << 20,
                "reason": "capacity"}])
    );
    assert_eq!(v["bytes"], 64u64 << 20);
    assert_eq!(v["lower_bound_bytes"], 28u64 << 20);
    let text = render_plan(&r, eta);
    assert!(text.contains("ETA 12.5s"), "{text}");
    assert!(
        text.contains("ch_010  cs1   cs4  64.0 MiB  capacity"),
        "{text}"
    );
    assert!(text.contains("1 move, 64.0 MiB in all"), "{text}");
    assert!(
        text.contains("by reason: 1 for capacity (64.0 MiB); load balancing off\n"),
        "{text}"
    );
    assert!(text.ends_with("note: cs3 stays above the band\n"), "{text}");
    let empty = RebalancePlanResponse::default();
    assert_eq!(render_plan(&empty, eta), "nothing to move\n");
}

/// `seed()` with reads: cs1 holds the hot set, cs4 serves nothing.
fn seed_with_reads() -> RebalanceCheckResponse {
    let reads = |l: ServerLoad, r: f64| ServerLoad {
        reads_per_sec: r,
        read_bytes_per_sec: r * 1_048_576.0,
        ..l
    };
    let s = seed();
    RebalanceCheckResponse {
        servers: vec![
            reads(load("cs1", 78.0), 120.0),
            reads(load("cs2", 50.0), 30.0),
            reads(load("cs3", 57.0), 30.0),
            reads(load("cs4", 15.0), 0.0),
        ],
        overloaded: vec![reads(load("cs1", 78.0), 120.0)],
        underloaded: vec![reads(load("cs4", 15.0), 0.0)],
        average_reads_per_sec: 45.0,
        load_threshold_pct: 25.0,
        hot: vec![reads(load("cs1", 78.0), 120.0)],
        cold: vec![reads(load("cs4", 15.0), 0.0)],
        load_balanced: false,
        ..s
    }
}

#[test]
fn check_json_has_the_load_fields() {
    let v = serde_json::to_value(CheckJson::from(&seed_with_reads())).expect("encodes");
    assert_eq!(v["average_reads_per_sec"], 45.0);
    assert_eq!(v["load_threshold_pct"], 25.0);
    assert_eq!(v["load_balanced"], false);
    assert_eq!(v["hot"][0]["server"], "cs1");
    assert_eq!(v["hot"][0]["reads_per_sec"], 120.0);
    assert_eq!(v["hot"][0]["read_bytes_per_sec"], 120.0 * 1_048_576.0);
    assert_eq!(v["cold"][0]["server"], "cs4");
    assert_eq!(v["servers"][1]["reads_per_sec"], 30.0);
}

#[test]
fn check_text_names_the_hot_and_cold_servers_after_the_capacity_verdict() {
    let text = render_check(&seed_with_reads());
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[2].ends_with("STATUS         READS  LOAD"), "{text}");
    let line = |id: &str| lines.iter().find(|l| l.starts_with(id)).copied();
    assert!(
        line("cs1").is_some_and(|l| l.ends_with("overloaded   120.0/s  hot")),
        "{text}"
    );
    assert!(
        line("cs2").is_some_and(|l| l.ends_with("within band   30.0/s")),
        "{text}"
    );
    assert!(
        line("cs4").is_some_and(|l| l.ends_with("underloaded    0.0/s  cold")),
        "{text}"
    );
    assert!(
        text.ends_with(
            "not balanced: 1 overloaded [cs1], 1 underloaded [cs4]\n\
             read load: mean 45.0/s per live server, band ±25% of the mean: 33.8/s to 56.2/s\n\
             not balanced by load: 1 hot [cs1 120.0/s], 1 cold [cs4 0.0/s]\n"
        ),
        "{text}"
    );
    let even = RebalanceCheckResponse {
        hot: vec![],
        cold: vec![],
        load_balanced: true,
        ..seed_with_reads()
    };
    assert!(
        render_check(&even)
            .ends_with("balanced by load: every server's reads/s are within the load band\n")
    );
    let off = RebalanceCheckResponse {
        load_threshold_pct: 0.0,
        hot: vec![],
        cold: vec![],
        ..seed_with_reads()
    };
    let text = render_check(&off);
    assert!(
        text.ends_with(
            "read load: mean 45.0/s per live server; load balancing off (--load-threshold-pct 0)\n"
        ),
        "{text}"
    );
    // A master without read load: the check reads as it always did.
    assert!(!render_check(&seed()).contains("READS"));
    assert!(!render_check(&seed()).contains("read load"));
}

#[test]
fn plan_moves_say_why_and_the_split_is_counted() {
    let mv = |chunk: &str, reason: &str, mib: u64| PlannedMove {
        chunk: chunk.into(),
        from: "cs1".into(),
        to: "cs4".into(),
        bytes: mib << 20,
        reason: reason.into(),
    };
    let r = RebalancePlanResponse {
        moves: vec![
            mv("cold_1", "capacity", 64),
            mv("hot_1", "load", 8),
            mv("cold_2", "capacity", 64),
        ],
        bytes: 136 << 20,
        reaches_band: true,
        reaches_load_band: true,
        load_threshold_pct: 25.0,
        ..RebalancePlanResponse::default()
    };
    let eta = std::time::Duration::from_secs(3);
    let v = serde_json::to_value(PlanJson::new(&r, eta)).expect("encodes");
    assert_eq!(v["moves"][1]["reason"], "load");
    assert_eq!(v["reaches_load_band"], true);
    assert_eq!(v["load_threshold_pct"], 25.0);
    assert_eq!(
        v["by_reason"],
        json!({"capacity": {"moves": 2, "bytes": 128u64 << 20},
               "load": {"moves": 1, "bytes": 8u64 << 20}})
    );
    let text = render_plan(&r, eta);
    assert!(
        text.starts_with("CHUNK   FROM  TO      BYTES  REASON\n"),
        "{text}"
    );
    assert!(
        text.contains("hot_1   cs1   cs4   8.0 MiB  load\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "by reason: 2 for capacity (128.0 MiB), 1 for load (8.0 MiB); \
             load band (±25% of the mean reads/s) reached: yes\n"
        ),
        "{text}"
    );
}

#[test]
fn without_a_server_list_each_outlier_is_one_row() {
    let r = RebalanceCheckResponse {
        servers: vec![],
        ..seed_with_reads()
    };
    let text = render_check(&r);
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("cs")).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(rows[0].ends_with("overloaded   120.0/s  hot"), "{text}");
    assert!(rows[1].ends_with("underloaded    0.0/s  cold"), "{text}");
}
