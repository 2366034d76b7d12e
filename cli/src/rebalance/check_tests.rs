//! Shapes of `rebalance check` and `rebalance plan` output.

use keel_proto::v1::PlannedMove;
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
                "used_bytes": 78u64 << 20, "capacity_bytes": 100u64 << 20}])
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
        json!([{"chunk": "ch_010", "from": "cs1", "to": "cs4", "bytes": 64u64 << 20}])
    );
    assert_eq!(v["bytes"], 64u64 << 20);
    assert_eq!(v["lower_bound_bytes"], 28u64 << 20);
    let text = render_plan(&r, eta);
    assert!(text.contains("ETA 12.5s"), "{text}");
    assert!(text.contains("ch_010  cs1   cs4  64.0 MiB"), "{text}");
    assert!(text.contains("1 move, 64.0 MiB in all"), "{text}");
    assert!(text.ends_with("note: cs3 stays above the band\n"), "{text}");
    let empty = RebalancePlanResponse::default();
    assert_eq!(render_plan(&empty, eta), "nothing to move\n");
}
