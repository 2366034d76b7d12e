//! Drains: an operator drains a chunk server, and now and then undrains
//! it, through the leader as `keelctl drain` does (`Front::drain`: the
//! chunk server's mark first, then the metadata's); and what must hold of
//! a drain once faults stop.
//!
//! The operator leaves room: it drains a server only while the servers
//! that are neither marked nor about to be still number at least the
//! highest factor, so every drain can end.

use std::collections::BTreeSet;

use crate::net::{Event, Request};
use crate::world::World;

/// Servers marked draining, or with a `SetDrain` that sets the mark on its
/// way (held, duplicated or not yet delivered).
fn involved(w: &World) -> BTreeSet<usize> {
    let mut out: BTreeSet<usize> = (0..w.servers.len())
        .filter(|&s| w.servers[s].draining)
        .collect();
    for e in w.sched.pending() {
        if let Event::ToServer {
            to,
            req: Request::SetDrain { draining: true, .. },
            ..
        } = e
        {
            out.insert(*to);
        }
    }
    out
}

/// The operator drains a server that leaves room, or undrains a marked one.
pub fn operator_drain(w: &mut World) {
    let Some(l) = w.etcd.leader.filter(|&l| w.leads(l)) else {
        return;
    };
    let marked: Vec<usize> = (0..w.servers.len())
        .filter(|&s| w.servers[s].draining)
        .collect();
    let (s, draining) = if !marked.is_empty() && w.rng.unit() < 0.5 {
        let i = w.rng.range(0, marked.len() as u64 - 1) as usize;
        (marked[i], false)
    } else {
        let busy = involved(w);
        let highest = w.truth.values().map(|t| t.factor as usize).max();
        let free: Vec<usize> = (0..w.servers.len()).filter(|s| !busy.contains(s)).collect();
        if free.len() <= highest.unwrap_or(usize::MAX) {
            return;
        }
        let i = w.rng.range(0, free.len() as u64 - 1) as usize;
        (free[i], true)
    };
    if w.trace {
        eprintln!("             operator drain of cs{s}: {draining}");
    }
    let id = format!("cs{s}");
    w.with_master(l, |m, cx| m.operator_drain(cx, &id, draining));
}

/// Invariant 6, at the end of the must-heal phase: a server marked
/// draining is `drained` for the leader, and every chunk has its factor
/// in whole copies on servers that are not draining.
pub fn check_drained(w: &World) -> Result<(), String> {
    let marked: Vec<usize> = (0..w.servers.len())
        .filter(|&s| w.servers[s].draining)
        .collect();
    if marked.is_empty() {
        return Ok(());
    }
    let Some(master) = w.etcd.leader.and_then(|l| w.masters[l].as_ref()) else {
        return Ok(());
    };
    for &s in &marked {
        let id = format!("cs{s}");
        let Ok(addr) = master.meta.drain_target(&id) else {
            return Err(format!("not-drained: the leader does not know cs{s} alive"));
        };
        let (state, left) = master.meta.drain_state(addr.no);
        if state != "drained" {
            return Err(format!(
                "not-drained: cs{s} is {state} with {left} chunks left after the must-heal phase"
            ));
        }
    }
    for (chunk, t) in &w.truth {
        let whole = w.whole_copies(chunk);
        let staying = w.whole_copies_off(chunk, &marked);
        if whole > 0 && staying != t.factor as usize {
            let e = master.meta.explain(chunk, w.base + w.sched.now);
            return Err(format!(
                "not-drained: {chunk} has {staying} whole copies off draining servers, factor {}; the leader: {} {}",
                t.factor,
                e.status,
                e.reasons.join("; ")
            ));
        }
    }
    Ok(())
}
