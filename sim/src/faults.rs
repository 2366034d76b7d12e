//! What the fault injector does, and the one-key etcd's elections.
//!
//! Faults: chunk servers and masters crash and restart; a master freezes
//! past its lease while its messages stay in flight; the leader loses its
//! key and an election follows (sometimes won by the same master again, on
//! a later term); bytes of a copy rot, a file vanishes, a file turns into a
//! different chunk's bytes under the same id; clients read copies and report
//! the bad ones (and now and then a good one); operators move chunks and
//! drain servers ([`crate::drain`]). The
//! network loses, duplicates and holds messages ([`crate::net::Weather`]),
//! and a delete may still run long after its answer timed out.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::master::SimMaster;
use crate::net::{Event, Request, Weather};
use crate::world::{LEASE, World};

/// The network during the fault phase.
pub const STORMY: Weather = Weather {
    loss: 0.03,
    duplicate: 0.03,
    slow: 0.04,
    slow_max: Duration::from_secs(20),
};

/// Handles the events that are not the protocol's own.
pub fn handle(w: &mut World, e: Event) {
    match e {
        Event::Fault if w.sched.now < w.faults_until => {
            inject(w);
            let next = Duration::from_millis(w.rng.range(200, 1_500));
            w.sched.after(next, Event::Fault);
        }
        Event::Heal => heal(w),
        Event::ServerUp(s) if !w.servers[s].up => w.servers[s].restart(),
        Event::MasterUp(m) if w.masters[m].is_none() => master_up(w, m),
        Event::Thaw(m) => thaw(w, m),
        Event::LeaseLapsed(term) => {
            let holder_gone = w.etcd.leader.is_none_or(|l| !runs(w, l));
            if w.etcd.term == term && holder_gone {
                w.etcd.leader = None;
                elect(w);
            }
        }
        Event::Report(chunk, s) => report(w, chunk, s),
        _ => {}
    }
}

/// Master `m` starts afresh: an empty view, a standby that reads who leads.
fn master_up(w: &mut World, m: usize) {
    let master = SimMaster::new(m, w.sched.now);
    // A fresh process has applied no report yet: what its previous run
    // applied says nothing of what this one counts.
    w.applied_built[m]
        .iter_mut()
        .for_each(|b| *b = Duration::ZERO);
    w.master_started[m] = w.sched.now;
    if let Some(l) = w.etcd.leader {
        master
            .lead
            .observe(Some((format!("sim://m{l}"), w.etcd.term)));
    }
    w.masters[m] = Some(master);
    if w.etcd.leader.is_none() {
        elect(w);
    }
}

/// A client read `chunk` from server `s` and reports the copy bad to the
/// leader. A rotten copy failed the read's CRC check on the server, which
/// marks it suspect in its data dir before answering (so every master
/// hears of it from then on); a whole one is a false report.
fn report(w: &mut World, chunk: String, s: usize) {
    let rot = w.servers[s].up && w.servers[s].files.get(&chunk).is_some_and(|f| f.rot);
    if rot {
        w.servers[s].mark_suspect(&chunk);
        if let Some(g) = w.servers[s].files.get(&chunk).map(|f| f.generation) {
            w.found_rotten.insert((s, g));
            w.note_fault(g);
        }
    }
    let Some(l) = w.etcd.leader.filter(|&l| w.leads(l)) else {
        return;
    };
    let id = format!("cs{s}");
    let mut taken = false;
    w.with_master(l, |m, cx| taken = m.corruption_reported(cx, &chunk, &id));
    if w.trace {
        eprintln!("             m{l} took the report: {taken}");
    }
    // From here on the protocol knows: this copy no longer counts as intact.
    if let Some(g) = w.servers[s]
        .files
        .get(&chunk)
        .filter(|f| f.rot && taken)
        .map(|f| f.generation)
    {
        w.found_rotten.insert((s, g));
        w.note_fault(g);
    }
}

/// Whether master `m` is up and not frozen.
fn runs(w: &World, m: usize) -> bool {
    w.masters[m].is_some() && w.frozen_until[m] <= w.sched.now
}

/// etcd hands the key to a running master (maybe the one that just lost
/// it) under a new, higher term; every master reads who leads.
pub fn elect(w: &mut World) {
    let candidates: Vec<usize> = (0..w.masters.len()).filter(|&m| runs(w, m)).collect();
    if candidates.is_empty() {
        w.sched
            .after(Duration::from_secs(1), Event::LeaseLapsed(w.etcd.term));
        return;
    }
    let winner = candidates[w.rng.range(0, candidates.len() as u64 - 1) as usize];
    w.etcd.term += w.rng.range(1, 3);
    w.etcd.leader = Some(winner);
    let (term, now) = (w.etcd.term, w.sched.now);
    for (i, m) in w.masters.iter_mut().enumerate() {
        let Some(m) = m.as_mut() else { continue };
        if i == winner {
            m.win(term, now);
        } else {
            m.lead.observe(Some((format!("sim://m{winner}"), term)));
        }
    }
}

/// A frozen master wakes: its lease ran out meanwhile, so it stops leading
/// unless the key is still its own.
fn thaw(w: &mut World, m: usize) {
    if w.frozen_until[m] > w.sched.now {
        return;
    }
    let now = w.sched.now;
    let still = w.etcd.leader == Some(m);
    if let Some(master) = w.masters[m].as_mut()
        && master.lead.is_leader()
        && !still
    {
        master.step_down(now);
    }
}

fn pick<T: Copy>(w: &mut World, items: &[T]) -> Option<T> {
    if items.is_empty() {
        return None;
    }
    Some(items[w.rng.range(0, items.len() as u64 - 1) as usize])
}

fn inject(w: &mut World) {
    match w.rng.range(0, 11) {
        0 => crash_server(w),
        1 if !w.mismatches => crash_master(w),
        1 => freeze_master(w),
        2 => freeze_master(w),
        3 => lose_key(w),
        4 => damage(w, Damage::Rot),
        5 => damage(w, Damage::Vanish),
        6 if w.mismatches => damage(w, Damage::Mismatch),
        6 => damage(w, Damage::Vanish),
        7 | 8 => client_read(w),
        9 | 10 => operator_move(w),
        _ => crate::drain::operator_drain(w),
    }
}

fn crash_server(w: &mut World) {
    let up: Vec<usize> = (0..w.servers.len()).filter(|&s| w.servers[s].up).collect();
    let Some(s) = pick(w, &up) else { return };
    w.servers[s].crash();
    let back = Duration::from_millis(w.rng.range(500, 12_000));
    w.sched.after(back, Event::ServerUp(s));
}

fn crash_master(w: &mut World) {
    let up: Vec<usize> = (0..w.masters.len())
        .filter(|&m| w.masters[m].is_some())
        .collect();
    let Some(m) = pick(w, &up) else { return };
    w.masters[m] = None;
    w.frozen_until[m] = w.sched.now;
    if w.etcd.leader == Some(m) {
        w.sched.after(LEASE, Event::LeaseLapsed(w.etcd.term));
    }
    let back = Duration::from_millis(w.rng.range(1_000, 10_000));
    w.sched.after(back, Event::MasterUp(m));
}

fn freeze_master(w: &mut World) {
    let up: Vec<usize> = (0..w.masters.len()).filter(|&m| runs(w, m)).collect();
    let Some(m) = pick(w, &up) else { return };
    let d = Duration::from_millis(w.rng.range(1_000, 12_000));
    w.frozen_until[m] = w.sched.now + d;
    w.sched.after(d, Event::Thaw(m));
    if w.etcd.leader == Some(m) {
        w.sched.after(LEASE, Event::LeaseLapsed(w.etcd.term));
    }
}

/// The leader loses its key (a keep-alive failed): it steps down, and an
/// election follows shortly.
fn lose_key(w: &mut World) {
    let Some(l) = w.etcd.leader.filter(|&l| runs(w, l)) else {
        return;
    };
    let now = w.sched.now;
    if let Some(m) = w.masters[l].as_mut() {
        m.step_down(now);
    }
    w.etcd.leader = None;
    let d = Duration::from_millis(w.rng.range(0, 1_500));
    w.sched.after(d, Event::LeaseLapsed(w.etcd.term));
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Rot,
    Vanish,
    Mismatch,
}

/// Deletes on their way or running: (server, chunk).
fn doomed(w: &World) -> BTreeSet<(usize, String)> {
    w.sched
        .pending()
        .filter_map(|e| match e {
            Event::ToServer {
                to,
                req: Request::Delete { chunk, .. },
                ..
            } => Some((*to, chunk.clone())),
            Event::DeleteRuns {
                on,
                req: Request::Delete { chunk, .. },
                ..
            } => Some((*on, chunk.clone())),
            _ => None,
        })
        .collect()
}

/// Damages a copy, never so that its chunk is left without a whole copy
/// that no delete is on its way to: faults alone never lose data, and
/// neither does a delete rightly decided before them; only the protocol may.
fn damage(w: &mut World, kind: Damage) {
    let doomed = doomed(w);
    let safe = |c: &str, except: usize| {
        w.servers
            .iter()
            .enumerate()
            .filter(|&(s, srv)| {
                s != except
                    && !doomed.contains(&(s, c.to_owned()))
                    && srv.files.get(c).is_some_and(|f| is_whole(w, c, f))
            })
            .count()
    };
    let mut whole = Vec::new();
    for (s, srv) in w.servers.iter().enumerate() {
        for (c, f) in &srv.files {
            if is_whole(w, c, f) && safe(c, s) >= 1 {
                whole.push((s, c.clone()));
            }
        }
    }
    let Some(i) = pick(w, &(0..whole.len()).collect::<Vec<_>>()) else {
        return;
    };
    let (s, chunk) = whole[i].clone();
    if w.trace {
        eprintln!("             {kind:?} of {chunk} on cs{s}");
    }
    match kind {
        Damage::Rot => {
            if let Some(f) = w.servers[s].files.get_mut(&chunk) {
                f.rot = true;
            }
        }
        Damage::Vanish => {
            if let Some(f) = w.servers[s].files.remove(&chunk) {
                w.note_fault(f.generation);
            }
            w.servers[s].touch(&chunk);
            w.note_gone(s, &chunk);
        }
        Damage::Mismatch => {
            // Bytes of another write under the same id: never the same
            // twice, so two damaged copies never agree with each other.
            if let Some(g) = w.servers[s].files.get(&chunk).map(|f| f.generation) {
                w.note_fault(g);
            }
            let mut f = w.new_file(&chunk);
            f.size += 1 + f.generation % 97;
            f.crc32c ^= 0x5eed_0000 | f.generation as u32;
            w.put_file(s, &chunk, f);
            w.note_gone(s, &chunk);
        }
    }
}

fn is_whole(w: &World, c: &str, f: &crate::chunkserver::File) -> bool {
    let t = &w.truth[c];
    !f.rot && f.size == t.size && f.crc32c == t.crc32c
}

/// A client reads a copy: a damaged one is reported to the leader, and now
/// and then a whole one too (reports are hints).
fn client_read(w: &mut World) {
    let mut held = Vec::new();
    for (s, srv) in w.servers.iter().enumerate().filter(|(_, s)| s.up) {
        for (c, f) in &srv.files {
            held.push((s, c.clone(), f.rot));
        }
    }
    let Some(i) = pick(w, &(0..held.len()).collect::<Vec<_>>()) else {
        return;
    };
    let (s, chunk, rot) = held[i].clone();
    if rot || w.rng.unit() < 0.2 {
        let d = Duration::from_millis(w.rng.range(1, 50));
        w.sched.after(d, Event::Report(chunk, s));
    }
}

/// An operator asks the leader to move a chunk from a holder to a server
/// without it.
fn operator_move(w: &mut World) {
    let Some(l) = w.etcd.leader.filter(|&l| w.leads(l)) else {
        return;
    };
    let chunks: Vec<String> = w.truth.keys().cloned().collect();
    let Some(i) = pick(w, &(0..chunks.len()).collect::<Vec<_>>()) else {
        return;
    };
    let chunk = chunks[i].clone();
    let n = w.servers.len();
    let holders: Vec<usize> = (0..n)
        .filter(|&s| w.servers[s].files.contains_key(&chunk))
        .collect();
    let others: Vec<usize> = (0..n).filter(|s| !holders.contains(s)).collect();
    let (Some(from), Some(to)) = (pick(w, &holders), pick(w, &others)) else {
        return;
    };
    let (from, to) = (format!("cs{from}"), format!("cs{to}"));
    w.with_master(l, |m, cx| m.operator_move(cx, &chunk, &from, &to));
}

/// Faults stop: the network calms, every process runs, one master leads,
/// and clients read every copy (so each rotten one is reported) now and once more later.
fn heal(w: &mut World) {
    w.weather = Weather::CALM;
    for m in 0..w.masters.len() {
        if w.frozen_until[m] > w.sched.now {
            w.frozen_until[m] = w.sched.now;
            thaw(w, m);
        }
        if w.masters[m].is_none() {
            master_up(w, m);
        }
    }
    for s in 0..w.servers.len() {
        if !w.servers[s].up {
            w.servers[s].restart();
        }
    }
    if w.etcd.leader.is_none_or(|l| !w.leads(l)) {
        w.etcd.leader = None;
        elect(w);
    }
    for round in [1, 30] {
        for (s, srv) in w.servers.iter().enumerate() {
            for (c, _) in srv.files.iter().filter(|(_, f)| f.rot) {
                let e = Event::Report(c.clone(), s);
                w.sched.after(Duration::from_secs(round), e);
            }
        }
    }
}
