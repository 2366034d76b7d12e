//! The one admission rule: each refusal in its order, and over random views
//! the rule lets through exactly the copies that keep every guarantee.

use std::collections::BTreeSet;

use keel_balancer::admission::{CopyClass, Endpoint, MoveFacts, Refusal, admit, check_in_view};
use keel_balancer::space::fill_limit;
use keel_balancer::{ClusterView, PlannedMove, ServerIdx};
use proptest::prelude::*;

fn facts(class: CopyClass) -> MoveFacts<'static, std::vec::IntoIter<Option<&'static str>>> {
    let end = |holds| Endpoint {
        alive: true,
        rack: None,
        holds,
        ..Endpoint::default()
    };
    MoveFacts {
        class,
        bytes: 10,
        busy: false,
        same_server: false,
        from: end(true),
        to: end(false),
        others: Vec::new().into_iter(),
        to_capacity: 100,
        to_committed: 80,
        min_free_pct: 10.0,
    }
}

#[test]
fn each_refusal_in_its_order() {
    type Break = fn(&mut MoveFacts<'static, std::vec::IntoIter<Option<&'static str>>>);
    let cases: [(Break, Refusal); 10] = [
        (|f| f.same_server = true, Refusal::SameServer),
        (|f| f.from.alive = false, Refusal::SourceDown),
        (|f| f.to.alive = false, Refusal::TargetDown),
        (|f| f.busy = true, Refusal::Busy),
        (|f| f.from.holds = false, Refusal::NotOnSource),
        (|f| f.to.holds = true, Refusal::OnTarget),
        (|f| f.to.holds_damaged = true, Refusal::DamagedOnTarget),
        (|f| f.to.draining = true, Refusal::TargetDraining),
        (
            |f| {
                f.from.rack = Some("r1");
                f.to.rack = Some("r2");
                f.others = vec![Some("r2")].into_iter();
            },
            Refusal::FewerRacks,
        ),
        (|f| f.to_committed = 81, Refusal::BelowFloor),
    ];
    assert_eq!(admit(&facts(CopyClass::Balance)), Ok(()));
    for (i, (brk, why)) in cases.iter().enumerate() {
        let mut f = facts(CopyClass::Balance);
        brk(&mut f);
        assert_eq!(admit(&f), Err(*why), "case {i}");
        // Every earlier rule wins over this one.
        for (earlier, first) in &cases[..i] {
            let mut g = facts(CopyClass::Balance);
            brk(&mut g);
            earlier(&mut g);
            assert_eq!(admit(&g), Err(*first), "case {i} after an earlier break");
        }
    }
}

#[test]
fn copies_that_keep_their_source_are_not_held_to_the_rack_rule() {
    for class in [CopyClass::Repair, CopyClass::Drain] {
        let mut f = facts(class);
        f.from.rack = Some("r1");
        f.to.rack = Some("r2");
        f.others = vec![Some("r2")].into_iter();
        assert_eq!(admit(&f), Ok(()), "{}", class.name());
        // A draining source is fine; a draining target is not.
        f.from.draining = true;
        assert_eq!(admit(&f), Ok(()));
        f.to.draining = true;
        assert_eq!(admit(&f), Err(Refusal::TargetDraining));
    }
}

/// Servers (capacity, rack, alive, incoming) and chunks (size, holders).
fn any_view() -> impl Strategy<Value = ClusterView> {
    let servers = prop::collection::vec(
        (50u64..200, 0usize..3, prop::bool::weighted(0.85), 0u64..40),
        2..7,
    );
    let chunks = prop::collection::vec((1u64..40, prop::collection::vec(0usize..7, 1..4)), 1..12);
    (servers, chunks).prop_map(|(servers, chunks)| {
        let mut v = ClusterView::new();
        for (i, &(capacity, rack, alive, incoming)) in servers.iter().enumerate() {
            let s = v.add_server(
                format!("s{i}"),
                (rack > 0).then(|| format!("r{rack}")),
                capacity,
                alive,
            );
            v.servers[s.0 as usize].incoming = incoming;
        }
        for (i, (size, holders)) in chunks.iter().enumerate() {
            let on: BTreeSet<ServerIdx> = holders
                .iter()
                .map(|&h| ServerIdx((h % servers.len()) as u32))
                .collect();
            let on: Vec<ServerIdx> = on.into_iter().collect();
            v.add_chunk(format!("c{i}"), *size, 0, on.len() as u32, &on);
        }
        v
    })
}

fn racks(v: &ClusterView, replicas: &[ServerIdx]) -> usize {
    replicas
        .iter()
        .filter_map(|&s| v.server(s).rack.as_deref())
        .collect::<BTreeSet<_>>()
        .len()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A move is admitted exactly when both servers are alive, the source
    /// holds the chunk and the target does not, the racks do not narrow, and
    /// the target keeps its floor counting what is on its way in.
    #[test]
    fn a_move_is_admitted_exactly_when_it_keeps_every_guarantee(
        v in any_view(), c in 0u32..12, from in 0u32..7, to in 0u32..7, floor in 0.0f64..30.0,
    ) {
        let n = v.servers.len() as u32;
        let (from, to) = (ServerIdx(from % n), ServerIdx(to % n));
        let chunk = v.chunk(keel_balancer::ChunkIdx(c % v.chunk_count() as u32));
        let mv = PlannedMove { chunk: chunk.idx(), from, to, bytes: chunk.size(), reason: keel_balancer::MoveReason::Capacity, };
        let verdict = check_in_view(&v, &mv, CopyClass::Balance, 0, floor);
        let (src, dst) = (v.server(from), v.server(to));
        let holds = |s| chunk.replicas().contains(&s);
        let mut after = v.clone();
        let applies = after.apply(&mv).is_ok();
        let keeps_racks = applies
            && racks(&after, after.chunk(mv.chunk).replicas()) >= racks(&v, chunk.replicas());
        let fits = dst.used + dst.incoming + mv.bytes <= fill_limit(dst.capacity, floor);
        let placeable = from != to && src.alive && dst.alive && holds(from) && !holds(to) && fits;
        let expected = placeable && keeps_racks;
        prop_assert_eq!(verdict.is_ok(), expected, "{:?} on {:?}: {:?}", mv, v.servers, verdict);
        // A copy that keeps its source never needs the rack rule.
        let copy = check_in_view(&v, &mv, CopyClass::Repair, 0, floor);
        prop_assert_eq!(copy.is_ok(), placeable);
    }
}
