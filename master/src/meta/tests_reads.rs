//! Read load through heartbeats: what the master keeps, what its views and
//! answers show, and what a dead server's load becomes.

use std::time::{Duration, Instant};

use keel_balancer::{ReadRate, ServerIdx};

use super::tests::{apply, hb, rep};
use super::{Heartbeat, Meta, MetaSettings, ReadReport, ServerReads};

fn with_reads(mut h: Heartbeat, reads: f64, hot: &[(&str, f64)]) -> Heartbeat {
    h.reads = ReadReport {
        load: ServerReads {
            rate: ReadRate::new(reads, reads * 100.0),
            p99_ms: 3.0,
        },
        hot: hot
            .iter()
            .map(|&(c, r)| (c.to_owned(), ReadRate::new(r, r * 100.0)))
            .collect(),
    };
    h
}

/// Three servers all holding `x`, and `y` on `a` alone.
fn three(m: &mut Meta, reads: [f64; 3], now: Instant) {
    for (id, r) in ["a", "b", "c"].into_iter().zip(reads) {
        let mut chunks = vec![rep("x", 10)];
        if id == "a" {
            chunks.push(rep("y", 10));
        }
        let n = chunks.len() as u64;
        let hot = [("x", r), ("y", 1.0), ("nowhere", 50.0)];
        apply(m, with_reads(hb(id, true, chunks, &[], n), r, &hot), now);
    }
}

fn order(m: &Meta, rack: &str) -> Vec<String> {
    let l = m.locate_by_load("x", rack).expect("known chunk");
    l.replicas.into_iter().map(|r| r.id).collect()
}

#[test]
fn heartbeats_fill_the_views_with_reads_and_heat() {
    let mut m = Meta::new(MetaSettings::default());
    let t0 = Instant::now();
    three(&mut m, [90.0, 10.0, 20.0], t0);
    let v = m.balance_view();
    let rates: Vec<f64> = v.servers.iter().map(|s| s.reads.reads_per_sec).collect();
    assert_eq!(rates, [90.0, 10.0, 20.0]);
    let x = m.balance_idx("x").expect("x");
    assert_eq!(v.heat.get(ServerIdx(0), x).reads_per_sec, 90.0);
    // `y` is only on `a`: `b`'s and `c`'s entries for it, and every entry
    // for a chunk nobody holds, are ignored.
    assert_eq!(v.heat.len(), 3 + 1);
    let full = m.cluster_view();
    assert_eq!(full.heat.len(), 4);
    assert_eq!(full.servers[0].reads.reads_per_sec, 90.0);
    assert_eq!(m.load_view().servers[2].reads.reads_per_sec, 20.0);
    // The next heartbeat replaces the list.
    apply(
        &mut m,
        with_reads(hb("a", false, vec![], &[], 2), 5.0, &[]),
        t0,
    );
    assert_eq!(m.balance_view().heat.on(ServerIdx(0)).count(), 0);
    assert_eq!(m.reads_of(0).rate.reads_per_sec, 5.0);
}

#[test]
fn a_dead_server_reads_as_idle_and_its_heat_is_dropped() {
    let mut m = Meta::new(MetaSettings {
        heartbeat_timeout: Duration::from_secs(3),
        ..MetaSettings::default()
    });
    let t0 = Instant::now();
    three(&mut m, [90.0, 10.0, 20.0], t0);
    let t1 = t0 + Duration::from_secs(2);
    for id in ["b", "c"] {
        apply(
            &mut m,
            with_reads(hb(id, false, vec![], &[], 1), 10.0, &[]),
            t1,
        );
    }
    m.sweep_liveness(t0 + Duration::from_secs(4));
    assert_eq!(m.reads_of(0), ServerReads::default());
    assert!(m.servers[0].hot.is_empty());
    let v = m.balance_view();
    assert_eq!(v.servers[0].reads, ReadRate::default());
    assert!(v.heat.on(ServerIdx(0)).next().is_none());
    let a = &m.list_servers(t1)[0];
    assert_eq!(
        (a.reads_per_sec, a.read_p99_ms, a.load),
        (0.0, 0.0, "inside")
    );
    // The dead holder comes last.
    assert_eq!(order(&m, ""), ["b", "c", "a"]);
}

#[test]
fn explain_tells_the_read_rate_on_each_holder_that_lists_it_hot() {
    let mut m = Meta::new(MetaSettings::default());
    let t0 = Instant::now();
    three(&mut m, [90.0, 10.0, 20.0], t0);
    let e = m.explain("x", t0);
    let hot: Vec<_> = e
        .reasons
        .iter()
        .filter(|r| r.starts_with("read at"))
        .collect();
    assert_eq!(hot.len(), 3, "{:?}", e.reasons);
    assert_eq!(
        hot[1],
        "read at 10.0 reads/s on b (one of its hottest chunks; b serves 10.0 reads/s in all, cold)"
    );
    assert!(hot[0].contains("on a") && hot[0].ends_with("90.0 reads/s in all, hot)"));
    // A chunk nobody lists as hot says nothing of reads.
    apply(
        &mut m,
        with_reads(hb("a", false, vec![], &[], 2), 90.0, &[]),
        t0,
    );
    let e = m.explain("y", t0);
    assert!(e.reasons.iter().all(|r| !r.starts_with("read at")));
}

#[test]
fn list_servers_places_each_against_the_load_band() {
    let mut m = Meta::new(MetaSettings::default());
    let t0 = Instant::now();
    three(&mut m, [90.0, 10.0, 20.0], t0);
    let list = m.list_servers(t0);
    let words: Vec<_> = list.iter().map(|s| s.load).collect();
    assert_eq!(words, ["hot", "cold", "cold"]);
    assert_eq!(list[0].read_bytes_per_sec, 9000.0);
    assert_eq!(list[0].read_p99_ms, 3.0);
    let json = serde_json::to_value(&list[0]).expect("serializes");
    for key in ["read_bytes_per_sec", "reads_per_sec", "read_p99_ms", "load"] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
    // Load balancing off: everyone is inside.
    let mut off = Meta::new(MetaSettings {
        load_threshold_pct: 0.0,
        ..MetaSettings::default()
    });
    three(&mut off, [90.0, 10.0, 20.0], t0);
    assert!(off.list_servers(t0).iter().all(|s| s.load == "inside"));
}

#[test]
fn locate_lists_the_least_loaded_holder_first_then_the_readers_rack() {
    let mut m = Meta::new(MetaSettings::default());
    let t0 = Instant::now();
    // Mean 40, step 10: b (10) and c (19) share a step; a (91) is last.
    three(&mut m, [91.0, 10.0, 19.0], t0);
    assert_eq!(order(&m, ""), ["b", "c", "a"]);
    let mut racked = hb("c", false, vec![], &[], 1);
    racked.rack = "r2".into();
    apply(&mut m, with_reads(racked, 19.0, &[]), t0);
    assert_eq!(order(&m, "r2"), ["c", "b", "a"]);
    assert_eq!(order(&m, "r9"), ["b", "c", "a"]);
    // Stable: the same figures give the same order every time.
    for _ in 0..5 {
        assert_eq!(order(&m, ""), ["b", "c", "a"]);
    }
    // The plain locate keeps the id order.
    let plain = m.locate("x").expect("x");
    let ids: Vec<_> = plain.replicas.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
}
