//! The one leader gate: a standby refuses every change with the same typed
//! refusal and still answers reads from its own view.

use std::time::Instant;

use tokio_util::task::TaskTracker;

use super::*;
use crate::ha::Leadership;
use crate::meta::{AllocRequest, Meta, MetaSettings};
use keel_balancer::MoveRef;

/// The front of a standby that knows `leader` (or none), over servers `a`
/// (holding chunk `x`) and `b`.
fn standby(leader: Option<(&str, u64)>) -> Front {
    let now = Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    crate::meta::tests::put(&mut m, "a", &[("x", 10)], now);
    crate::meta::tests::put(&mut m, "b", &[], now);
    let l = Leadership::elected("http://m2:7000".into());
    l.observe(leader.map(|(a, t)| (a.to_owned(), t)));
    let mover = crate::rebalance::tests::mover_under(m, l.clone());
    let balancer = crate::rebalance::tests::balancer_of(mover);
    Front::new(balancer, TaskTracker::new(), 10.0).with_ha(Ha {
        leadership: l,
        etcd: None,
    })
}

/// Every call that changes something, each answered with its error.
async fn changes(f: &Front) -> Vec<(&'static str, Option<Error>)> {
    let mv = MoveRef::new("x", "a", "b");
    let alloc = AllocRequest {
        chunk: "y".into(),
        size: 1,
        replication: 1,
        on: Vec::new(),
    };
    vec![
        ("execute", f.execute(vec![mv]).await.err()),
        ("run", f.run().await.err()),
        ("pause", f.pause().await.err()),
        ("resume", f.resume().await.err()),
        ("drain", f.drain("a".into(), true).await.err()),
        ("undrain", f.drain("a".into(), false).await.err()),
        ("allocate", f.allocate(alloc).err()),
        ("corruption", f.report_corruption("x", "a", "", None).err()),
    ]
}

#[tokio::test]
async fn a_standby_refuses_every_change_naming_the_leader_it_knows() {
    let f = standby(Some(("http://m1:7000", 7)));
    let want = Error::NotLeader(NotLeader {
        leader: "http://m1:7000".into(),
        term: 7,
        leads_again: false,
        stepped_down: false,
    });
    for (call, refused) in changes(&f).await {
        assert_eq!(refused.as_ref(), Some(&want), "{call}");
    }
    assert_eq!(f.balancer().status().queue.pending, 0, "nothing queued");
    assert!(!f.balancer().status().queue.paused, "the pause was refused");
    // Reads are answered from the standby's own view.
    assert_eq!(f.locate("x", "").map(|l| l.replicas.len()), Ok(1));
    assert_eq!(f.servers().servers.len(), 2);
    assert!(!f.servers().leader.is_self);
    let standing = f.status().await;
    assert_eq!(standing.leader.address, "http://m1:7000");
    assert_eq!(standing.stored_pause, None, "no etcd to read it from");
}

#[tokio::test]
async fn a_standby_that_knows_no_leader_says_so() {
    let f = standby(None);
    let Err(n) = f.leading() else {
        panic!("a standby does not lead");
    };
    assert!(!n.names_leader() && !n.stepped_down);
    for (call, refused) in changes(&f).await {
        assert_eq!(refused, Some(Error::NotLeader(n.clone())), "{call}");
    }
}

#[tokio::test]
async fn the_leader_passes_the_gate_and_refuses_on_the_merits() {
    let f = standby(None);
    f.ha.leadership
        .lead(3, Instant::now() + std::time::Duration::from_secs(60));
    assert_eq!(f.leading(), Ok(()));
    let refused = f.drain("nobody".into(), true).await.err();
    assert_eq!(
        refused,
        Some(Error::UnknownServer {
            server: "nobody".into()
        })
    );
    let pause = f.pause().await.expect("the leader pauses");
    assert!(pause.status.queue.paused && pause.leader.is_self);
}
