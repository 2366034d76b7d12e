//! The invariants, one function each, garage style: `Ok(())` or what broke.
//!
//! 1. [`last_copy`]: no delete ever removes the last whole copy of a chunk,
//!    unless every copy it was confirmed to rely on was lost to a fault
//!    after its server answered for it (a double fault no step can see).
//! 2. [`decided_term`]: no delete decided under an older term is carried out.
//! 3. [`named_replica`]: a delete removes only the replica it was decided
//!    for (never a newer copy, never a whole one when it meant a damaged one).
//! 4. [`check_counted`]: the leader never counts a replica no chunk server
//!    holds as whole for longer than one heartbeat round.
//! 5. [`check_healed`]: once faults stop and room exists, every chunk that
//!    still has a whole copy returns to its factor.
//! 6. [`crate::drain::check_drained`]: once faults stop, a server marked
//!    draining ends `drained`, every chunk at its factor on other servers.

use crate::net::Intent;
use crate::world::{HEARTBEAT_INTERVAL, World};

/// What one delete really did, as the simulated disk saw it.
#[derive(Debug)]
pub struct DeleteFacts<'a> {
    /// Which delete, for the message.
    pub what: &'a str,
    /// Whole copies of its chunk on every disk before it.
    pub before: usize,
    /// And after.
    pub after: usize,
    /// The term its decision was taken under.
    pub decided: u64,
    /// The term it was sent under.
    pub sent: u64,
    /// The term the server had recorded when it ran.
    pub recorded: u64,
    /// What it was decided for.
    pub intent: Intent,
    /// The indexed copy it removed, if any: its generation, and whether it
    /// was intact (not known damaged, and the chunk's own bytes).
    pub removed: Option<(u64, bool)>,
    /// Every copy its master confirmed it relies on was lost to a fault
    /// after that confirmation (a second fault the master could not see).
    pub double_fault: bool,
}

/// Every rule about one delete.
pub fn check_delete(f: &DeleteFacts<'_>) -> Result<(), String> {
    last_copy(f)?;
    decided_term(f)?;
    named_replica(f)
}

/// Invariant 1: no delete removes the last intact copy, unless every copy
/// its master confirmed right before it (`StatChunk`: held, this replica,
/// the chunk's header, no delete running) was then lost to a fault — its
/// rot found, its file vanished — after its server answered, while the
/// answer and then the delete were on their way. No protocol step can see
/// that: it is the double fault this rule excludes. A copy the protocol
/// itself deleted is never such a fault.
pub fn last_copy(f: &DeleteFacts<'_>) -> Result<(), String> {
    if f.before > 0 && f.after == 0 && !f.double_fault {
        return Err(format!(
            "last-whole-copy: {} removed the last whole copy",
            f.what
        ));
    }
    Ok(())
}

/// Invariant 2: a delete runs only under the term it was decided in, and
/// only while no later term is recorded where it runs.
pub fn decided_term(f: &DeleteFacts<'_>) -> Result<(), String> {
    let newest = f.sent.max(f.recorded);
    if f.decided < newest {
        return Err(format!(
            "stale-term: {} ran although term {newest} was known",
            f.what
        ));
    }
    Ok(())
}

/// Invariant 3.
pub fn named_replica(f: &DeleteFacts<'_>) -> Result<(), String> {
    match (f.intent, f.removed) {
        (_, None) | (Intent::Damaged, Some((_, false))) => Ok(()),
        (Intent::Damaged, Some((g, true))) => Err(format!(
            "wrong-replica: {} was meant for a damaged copy and removed whole copy #{g}",
            f.what
        )),
        (Intent::Whole(meant), Some((g, _))) if meant != Some(g) => Err(format!(
            "wrong-replica: {} removed copy #{g}, decided for {}",
            f.what,
            meant.map_or("a copy the server did not hold".into(), |m| format!("#{m}"))
        )),
        _ => Ok(()),
    }
}

/// Invariant 4, for the master that leads now: a replica it counts whole
/// on a live server must be in that server's index, unless the newest
/// report it applied from that server was built less than one heartbeat
/// round after the copy went.
pub fn check_counted(w: &World) -> Result<(), String> {
    let Some(m) = w.etcd.leader.filter(|&m| w.leads(m)) else {
        return Ok(());
    };
    let Some(master) = w.masters[m].as_ref() else {
        return Ok(());
    };
    for chunk in w.truth.keys() {
        let Some(c) = master.meta.chunk(chunk) else {
            continue;
        };
        for no in c.servers() {
            let entry = master.meta.server(no);
            if !entry.alive || master.meta.is_suspect(chunk, no) {
                continue;
            }
            let Some(s) = World::server_index(&entry.id) else {
                continue;
            };
            let held = w.servers[s]
                .files
                .get(chunk)
                .is_some_and(|f| c.matches(f.size, f.crc32c));
            if held {
                continue;
            }
            let Some(&gone) = w.gone_at.get(&(s, chunk.clone())) else {
                continue;
            };
            if w.applied_built[m][s] > gone + HEARTBEAT_INTERVAL {
                return Err(format!(
                    "phantom-replica: t={:?}: m{m} counts {chunk} on cs{s} as whole; it went at {gone:?} and a report built at {:?} was applied",
                    w.sched.now, w.applied_built[m][s]
                ));
            }
        }
    }
    Ok(())
}

/// Invariant 5, at the end of the must-heal phase.
pub fn check_healed(w: &World) -> Result<(), String> {
    for (chunk, t) in &w.truth {
        let whole = w.whole_copies(chunk);
        if whole > 0 && whole != t.factor as usize {
            let on: Vec<String> = w
                .servers
                .iter()
                .filter_map(|s| s.files.get(chunk).map(|f| format!("{}{}", s.id, bad(f, t))))
                .collect();
            return Err(format!(
                "not-healed: {chunk} has {whole} whole copies, factor {}, after the must-heal phase (files on {})",
                t.factor,
                on.join(" ")
            ));
        }
    }
    Ok(())
}

/// How a file differs from its chunk, for messages.
fn bad(f: &crate::chunkserver::File, t: &crate::world::Truth) -> &'static str {
    if f.size != t.size || f.crc32c != t.crc32c {
        "(mismatched)"
    } else if f.rot {
        "(rotten)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(intent: Intent, removed: Option<(u64, bool)>) -> DeleteFacts<'static> {
        DeleteFacts {
            what: "delete",
            before: 2,
            after: 1,
            decided: 3,
            sent: 3,
            recorded: 3,
            intent,
            removed,
            double_fault: false,
        }
    }

    #[test]
    fn a_delete_of_the_named_replica_holds() {
        assert!(check_delete(&facts(Intent::Whole(Some(7)), Some((7, true)))).is_ok());
        assert!(check_delete(&facts(Intent::Damaged, Some((7, false)))).is_ok());
        assert!(check_delete(&facts(Intent::Damaged, None)).is_ok());
    }

    #[test]
    fn a_delete_of_another_replica_breaks_named_replica() {
        let newer = check_delete(&facts(Intent::Whole(Some(7)), Some((9, true))));
        assert!(newer.is_err_and(|e| e.starts_with("wrong-replica")));
        let whole = check_delete(&facts(Intent::Damaged, Some((9, true))));
        assert!(whole.is_err_and(|e| e.contains("meant for a damaged copy")));
    }

    #[test]
    fn the_last_copy_and_an_older_term_break_their_invariants() {
        let mut f = facts(Intent::Whole(Some(7)), Some((7, true)));
        f.after = 0;
        assert!(check_delete(&f).is_err_and(|e| e.starts_with("last-whole-copy")));
        f.double_fault = true;
        assert!(check_delete(&f).is_ok(), "a fault after the confirmation");
        let mut f = facts(Intent::Whole(Some(7)), Some((7, true)));
        f.sent = 4;
        assert!(check_delete(&f).is_err_and(|e| e.starts_with("stale-term")));
        let mut f = facts(Intent::Whole(Some(7)), Some((7, true)));
        f.recorded = 5;
        assert!(check_delete(&f).is_err_and(|e| e.starts_with("stale-term")));
    }
}
