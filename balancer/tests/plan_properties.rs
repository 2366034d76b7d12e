//! Properties of every plan over random clusters: anti-affinity, racks, the
//! free-space floor, no replica lost, busy chunks and dead servers left
//! alone, an honest `band_reached`, no oscillation; and the band reached
//! whenever a sufficient condition for it holds.

use keel_balancer::admission::check_in_view;
use keel_balancer::load::check;
use keel_balancer::space::fill_limit;
use keel_balancer::{ClusterView, CopyClass, InFlight, Plan, Policy, ServerIdx, plan};
use proptest::collection::vec;
use proptest::prelude::*;

/// Server: (capacity, rack, alive). Chunk: (size, reads, holders).
type Servers = Vec<(u64, usize, bool)>;
type Chunks = Vec<(u64, u64, Vec<usize>)>;

/// Builds a view, skipping replicas that would push a server past 95 %.
fn build(servers: &Servers, racks: usize, chunks: &Chunks) -> ClusterView {
    let mut v = ClusterView::new();
    for (i, &(capacity, rack, alive)) in servers.iter().enumerate() {
        let rack = (racks > 0).then(|| format!("r{}", rack % racks));
        v.add_server(format!("s{i}"), rack, capacity, alive);
    }
    for (i, (size, reads, holders)) in chunks.iter().enumerate() {
        let mut on: Vec<ServerIdx> = Vec::new();
        for &h in holders {
            let s = ServerIdx((h % servers.len()) as u32);
            let server = v.server(s);
            if !on.contains(&s) && (server.used + size) * 100 <= server.capacity * 95 {
                on.push(s);
            }
        }
        if !on.is_empty() {
            v.add_chunk(format!("c{i}"), *size, *reads, on.len() as u32, &on);
        }
    }
    v
}

fn any_cluster() -> impl Strategy<Value = (ClusterView, Vec<bool>)> {
    (2usize..9, 0usize..4).prop_flat_map(|(n, racks)| {
        let servers = vec((500u64..20_000, 0usize..8, prop::bool::weighted(0.85)), n);
        // Skewed: most replicas land on the first two servers.
        let holder = prop_oneof![2 => 0usize..2, 1 => 0usize..n];
        let chunks = vec((1u64..1_500, 0u64..20, vec(holder, 1..4)), 0..160);
        (
            servers,
            Just(racks),
            chunks,
            vec(prop::bool::weighted(0.1), 160),
        )
            .prop_map(|(s, r, c, busy)| (build(&s, r, &c), busy))
    })
}

fn rack_count(v: &ClusterView, replicas: &[ServerIdx]) -> usize {
    let mut racks: Vec<_> = replicas
        .iter()
        .filter_map(|&s| v.server(s).rack.clone())
        .collect();
    racks.sort();
    racks.dedup();
    racks.len()
}

/// Applies `p` move by move, checking every per-move rule; returns the view after.
fn apply_checked(
    before: &ClusterView,
    p: &Plan,
    busy: &InFlight,
    policy: &Policy,
) -> Result<ClusterView, TestCaseError> {
    let mut v = before.clone();
    let mut moved = std::collections::BTreeSet::new();
    for m in &p.moves {
        prop_assert!(moved.insert(m.chunk), "chunk moved twice: {m:?}");
        prop_assert!(!busy.contains(m.chunk), "busy chunk moved: {m:?}");
        prop_assert!(
            v.server(m.from).alive && v.server(m.to).alive,
            "dead server in {m:?}"
        );
        // The queue and the master judge by the same rule: every planned
        // move passes it at the moment it runs.
        prop_assert_eq!(
            check_in_view(&v, m, CopyClass::Balance, 0, policy.min_free_pct),
            Ok(()),
            "the one admission rule refuses planned move {:?}",
            m
        );
        let racks = rack_count(&v, v.chunk(m.chunk).replicas());
        v.apply(m)
            .map_err(|e| TestCaseError::fail(format!("{m:?}: {e}")))?;
        prop_assert!(
            rack_count(&v, v.chunk(m.chunk).replicas()) >= racks,
            "racks narrowed by {m:?}"
        );
        let to = v.server(m.to);
        prop_assert!(
            to.used <= fill_limit(to.capacity, policy.min_free_pct),
            "floor broken by {m:?}"
        );
        v.check_invariants().map_err(TestCaseError::fail)?;
    }
    v.check_replicas_kept(before).map_err(TestCaseError::fail)?;
    Ok(v)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(600))]

    #[test]
    fn every_plan_keeps_the_rules((view, busy_bits) in any_cluster(), threshold in 5.0f64..30.0, floor in 0.0f64..25.0) {
        let policy = Policy::new(threshold, floor);
        let mut busy = InFlight::new();
        for c in view.chunks().filter(|c| busy_bits[c.idx().0 as usize]) {
            busy.add_chunk(c.idx());
        }
        let p = plan(&view, &policy, &busy);
        prop_assert_eq!(p.bytes, p.moves.iter().map(|m| m.bytes).sum::<u64>());
        let after = apply_checked(&view, &p, &busy, &policy)?;
        prop_assert_eq!(p.band_reached, check(&after, threshold, 0.0).balanced(), "notes: {:?}", p.notes);
        if p.band_reached {
            prop_assert!(p.bytes >= p.lower_bound_bytes);
            let again = plan(&after, &policy, &busy);
            prop_assert!(again.moves.is_empty(), "second pass moved {:?}", again.moves);
        }
    }

}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Sufficient for the band: every server alive, replication 1, chunks of
    /// at most 1 % of the smallest capacity, and the average low enough that
    /// the floor never binds inside the band (average + threshold ≤ 90 % − 1).
    #[test]
    fn the_band_is_reached_when_chunks_are_small_and_room_ample(
        caps in vec(10_000u64..50_000, 2..10),
        fill in vec(0u64..90, 10),
        sizes in vec(1u64..=100, 50),
        racked in any::<bool>(),
    ) {
        let mut v = ClusterView::new();
        for (i, &c) in caps.iter().enumerate() {
            v.add_server(format!("s{i}"), racked.then(|| format!("r{}", i % 3)), c, true);
        }
        let mut n = 0;
        for (i, &c) in caps.iter().enumerate() {
            let goal = c * fill[i] / 100;
            let mut used = 0;
            while used + sizes[n % sizes.len()] <= goal {
                let size = sizes[n % sizes.len()];
                v.add_chunk(format!("c{n}"), size, n as u64 % 7, 1, &[ServerIdx(i as u32)]);
                used += size;
                n += 1;
            }
        }
        let policy = Policy::default();
        let average = keel_balancer::load::average_utilization_pct(&v);
        prop_assume!(average + policy.threshold_pct <= 100.0 - policy.min_free_pct - 1.0);
        let p = plan(&v, &policy, &InFlight::new());
        prop_assert!(p.band_reached, "notes: {:?}", p.notes);
        let after = apply_checked(&v, &p, &InFlight::new(), &policy)?;
        prop_assert!(check(&after, policy.threshold_pct, 0.0).balanced());
        prop_assert!(plan(&after, &policy, &InFlight::new()).moves.is_empty());
    }
}
