//! The rack rule, one function for every caller that moves or drops a
//! replica: the planner, the queue, and the master's last check before a move
//! and before a trim. Racks are labels; a server without one counts for none.

use std::collections::BTreeSet;

/// Whether replacing a replica in rack `from` by one in rack `to` keeps the
/// number of distinct racks the chunk spans; `others` are the racks of its
/// other replicas.
pub fn move_keeps_racks<'a>(
    others: impl Iterator<Item = Option<&'a str>> + Clone,
    from: Option<&str>,
    to: Option<&str>,
) -> bool {
    let Some(from) = from else {
        return true;
    };
    let mut others = others.flatten();
    if others.clone().any(|r| r == from) {
        return true;
    }
    // `from` alone spans its rack: `to` must bring a rack no other replica has.
    to.is_some_and(|to| others.all(|r| r != to))
}

/// Whether dropping a replica in rack `dropped` (an excess one) leaves the
/// others spanning at least as many racks as `wanted` replicas could span
/// before: never fewer than `min(wanted, racks now)`.
pub fn drop_keeps_racks<'a>(
    others: impl Iterator<Item = Option<&'a str>> + Clone,
    dropped: Option<&str>,
    wanted: usize,
) -> bool {
    let after: BTreeSet<&str> = others.clone().flatten().collect();
    let before = after.len() + usize::from(dropped.is_some_and(|d| !after.contains(d)));
    after.len() >= before.min(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_never_lowers_the_rack_count() {
        let others = [Some("r2")];
        assert!(move_keeps_racks(others.into_iter(), Some("r1"), Some("r3")));
        assert!(!move_keeps_racks(
            others.into_iter(),
            Some("r1"),
            Some("r2")
        ));
        assert!(!move_keeps_racks(others.into_iter(), Some("r1"), None));
        // r1 is also held elsewhere: anything goes.
        let others = [Some("r1"), Some("r2")];
        assert!(move_keeps_racks(others.into_iter(), Some("r1"), None));
        assert!(move_keeps_racks(others.into_iter(), None, Some("r2")));
    }

    #[test]
    fn a_trim_keeps_as_many_racks_as_the_factor_can_use() {
        // r1, r1, r2 with factor 2: dropping an r1 keeps {r1, r2}.
        assert!(drop_keeps_racks(
            [Some("r1"), Some("r2")].into_iter(),
            Some("r1"),
            2
        ));
        // Dropping the only r2 leaves one rack.
        assert!(!drop_keeps_racks(
            [Some("r1"), Some("r1")].into_iter(),
            Some("r2"),
            2
        ));
        // r1, r2, r3 with factor 2: any one may go, two racks stay.
        assert!(drop_keeps_racks(
            [Some("r1"), Some("r2")].into_iter(),
            Some("r3"),
            2
        ));
        // No labels: nothing to keep.
        assert!(drop_keeps_racks([None, None].into_iter(), None, 3));
    }
}
