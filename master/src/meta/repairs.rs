//! Repair planning: which chunks to copy, repairs first (fewest whole
//! replicas first), then drains, and where each copy reads and lands;
//! damaged copies to delete once their chunk is whole again. Decisions only,
//! as in `liveness.rs` and `trims.rs`: the maintenance loop performs the RPCs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use keel_balancer::placement::{self, Candidate};
use keel_balancer::{CopyJob, MoveRef};

use super::{
    ChunkRecord, CopyClass, Excluded, Meta, PENDING_TTL, Redundancy, ServerAddr, ServerNo, mark,
};

/// A copy that restores a missing replica or empties a draining server (a
/// [`CopyClass::Repair`] or [`CopyClass::Drain`] copy, for the move queue).
pub type Repair = CopyJob;

/// Repair and drain copies already in the move queue (pending or running),
/// so a pass plans around them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueuedCopies {
    /// Their chunks: each has its copy already.
    pub chunks: HashSet<String>,
    /// Bytes on their way to each target, by server id.
    pub incoming: HashMap<String, u64>,
    /// Copies reading from each source, by server id.
    pub outgoing: HashMap<String, usize>,
    /// How many are repairs.
    pub repairs: usize,
    /// How many are drain copies.
    pub drains: usize,
}

/// Copies planned so far per server: what the next one's source and target
/// are chosen around, so one pass spreads its copies instead of piling them
/// onto the emptiest server (copies run a few per server at a time).
#[derive(Debug, Default)]
struct Planned {
    /// Bytes on their way in: queued (pending) and planned this pass.
    incoming: HashMap<ServerNo, u64>,
    /// Queued copies reading from each server (the queue reports counts).
    outgoing: HashMap<ServerNo, usize>,
    /// Bytes read by the copies planned this pass.
    sent: HashMap<ServerNo, u64>,
}

impl Planned {
    /// Bytes through `s`'s bucket if it sends `size` more: one bucket
    /// counts what a server sends and receives, so this is the time it
    /// would spend on migration, in bytes. A queued copy reading from `s`
    /// counts as one of `size` bytes (the queue reports only how many).
    fn bucket_with(&self, s: ServerNo, size: u64) -> u64 {
        let get = |m: &HashMap<ServerNo, u64>| m.get(&s).copied().unwrap_or(0);
        let queued = self.outgoing.get(&s).copied().unwrap_or(0) as u64;
        get(&self.incoming)
            .saturating_add(get(&self.sent))
            .saturating_add(queued.saturating_add(1).saturating_mul(size))
    }
}

/// What one maintenance pass decided about redundancy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepairPlan {
    /// Copies to start, most urgent first.
    pub copies: Vec<Repair>,
    /// Damaged copies to delete now that their chunk is back at its factor,
    /// and mismatched ones now that it is whole elsewhere.
    pub damaged: Vec<(String, ServerAddr)>,
}

/// For tests: a repair plan whose copies have begun.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct StartedRepairs {
    /// The begun copies.
    pub copies: Vec<super::MoveTicket>,
    /// Damaged copies to delete.
    pub damaged: Vec<(String, ServerAddr)>,
}

/// One chunk's replicas against its factor.
#[derive(Debug, Clone, Copy)]
pub(super) struct Need {
    /// Whole replicas on live servers, draining ones included.
    pub live: usize,
    /// Whole replicas that will stay: on live servers that are not draining,
    /// or on servers dead for less than the grace period.
    pub staying: usize,
    /// Whole replicas on live servers or dead for less than the grace period.
    pub available: usize,
    /// The factor.
    pub wanted: usize,
}

impl Need {
    /// The copy this chunk needs, if any.
    fn kind(self) -> Option<CopyClass> {
        if self.staying >= self.wanted {
            None
        } else if self.available < self.wanted {
            Some(CopyClass::Repair)
        } else {
            Some(CopyClass::Drain)
        }
    }
}

impl Meta {
    /// Queues the chunks of servers dead for longer than the grace period,
    /// then works the repair candidates: counts what is under-replicated or
    /// unavailable, and plans copies, repairs before drains and the chunks
    /// with the fewest whole replicas first, until `max` of each class are
    /// queued; chunks in `queued` already have a repair or drain in the move
    /// queue. Each class has its own budget, so a long drain never keeps a
    /// repair from being planned. A replica on a server dead for less than
    /// the grace period still counts.
    pub fn plan_repairs(&mut self, now: Instant, max: usize, queued: &QueuedCopies) -> RepairPlan {
        self.queue_long_dead(now);
        let mut planned = Planned::default();
        for (id, bytes) in &queued.incoming {
            if let Some(no) = self.server_no(id) {
                *planned.incoming.entry(no).or_default() += bytes;
            }
        }
        for (id, n) in &queued.outgoing {
            if let Some(no) = self.server_no(id) {
                *planned.outgoing.entry(no).or_default() += n;
            }
        }
        let mut plan = RepairPlan::default();
        let mut counts = Redundancy {
            unavailable: self.lost.len() as u64,
            ..Redundancy::default()
        };
        let mut drain_left: HashMap<ServerNo, u64> = HashMap::new();
        let mut work: Vec<(CopyClass, usize, Arc<str>)> = Vec::new();
        let mut mismatch_due: Vec<Arc<str>> = Vec::new();
        for (slot, id) in self.chunks.take_candidates() {
            let Some(c) = self.chunks.get(&id) else {
                continue;
            };
            let need = self.need(c, now);
            if need.live > 0 && self.mismatched.contains_key(&*id) {
                mismatch_due.push(id.clone());
            }
            if need.live < need.wanted {
                counts.under_replicated += 1;
            }
            if need.live == 0 {
                counts.unavailable += 1;
            }
            let Some(kind) = need.kind() else {
                if need.live < need.wanted {
                    // Short only by replicas on servers dead within the
                    // grace period: no copy yet, but it stays a candidate
                    // so every pass counts it, and its marks (a damaged
                    // copy to delete) wait until it is whole on live servers.
                    self.chunks.add_candidate_slot(slot);
                } else {
                    self.settled(&id, &mut plan);
                }
                continue;
            };
            for s in c.servers().filter(|&s| self.server(s).draining) {
                *drain_left.entry(s).or_default() += 1;
            }
            let waits = self.busy.contains_key(&*id)
                || queued.chunks.contains(&*id)
                || self.pending.contains_key(&*id)
                || (kind == CopyClass::Repair && self.settling(&id, now));
            if !waits {
                work.push((kind, need.live, id.clone()));
            }
            self.chunks.add_candidate_slot(slot);
        }
        for id in mismatch_due {
            self.plan_mismatch_deletes(&id, &mut plan);
        }
        // Copies each class may still queue: repairs, then drains.
        let mut budget = [
            max.saturating_sub(queued.repairs),
            max.saturating_sub(queued.drains),
        ];
        work.sort_by(|a, b| {
            (a.0 == CopyClass::Drain, a.1, &a.2).cmp(&(b.0 == CopyClass::Drain, b.1, &b.2))
        });
        for (kind, whole, id) in work {
            let left = &mut budget[usize::from(kind == CopyClass::Drain)];
            let started = *left > 0
                && match self.plan_copy(&id, kind, whole, &planned) {
                    Ok((t, from, to)) => {
                        *left -= 1;
                        self.repair_blocked.remove(&*id);
                        *planned.incoming.entry(to).or_default() += t.bytes;
                        *planned.sent.entry(from).or_default() += t.bytes;
                        plan.copies.push(t);
                        true
                    }
                    Err(why) => {
                        self.note_blocked(&id, why);
                        false
                    }
                };
            if !started {
                match kind {
                    CopyClass::Drain => counts.drains_waiting += 1,
                    _ => counts.repairs_waiting += 1,
                }
            }
        }
        for (no, s) in self.servers.iter_mut().enumerate() {
            s.drain_left = s
                .draining
                .then(|| drain_left.get(&(no as ServerNo)).copied().unwrap_or(0));
        }
        self.redundancy = counts;
        plan
    }

    /// For tests: plans repairs with nothing queued, then begins each copy
    /// as the move queue would when it starts it.
    #[cfg(test)]
    pub(crate) fn start_repairs(&mut self, now: Instant, max: usize) -> StartedRepairs {
        let plan = self.plan_repairs(now, max, &QueuedCopies::default());
        let copies = plan
            .copies
            .iter()
            .map(|c| {
                self.begin_move(c.chunk(), c.from(), c.to(), c.class)
                    .expect("a planned copy begins")
            })
            .collect();
        StartedRepairs {
            copies,
            damaged: plan.damaged,
        }
    }

    /// Whether `id` was first seen below its factor less than
    /// [`PENDING_TTL`] ago (its other replicas may still be arriving).
    fn settling(&mut self, id: &str, now: Instant) -> bool {
        let Some(seen) = self.young.get_mut(id) else {
            return false;
        };
        let since = *seen.get_or_insert(now);
        if now.saturating_duration_since(since) < PENDING_TTL {
            return true;
        }
        self.young.remove(id);
        false
    }

    /// Logs once per chunk and reason why it cannot be copied now.
    fn note_blocked(&mut self, id: &str, why: String) {
        if self.repair_blocked.get(id) != Some(&why) {
            tracing::warn!(chunk = %id, why = %why, "chunk needs a copy and cannot get one now");
            self.repair_blocked.insert(id.into(), why);
        }
    }

    /// `id` is back at its factor: forget its marks, and have its damaged
    /// copies deleted.
    fn settled(&mut self, id: &str, plan: &mut RepairPlan) {
        self.repair_blocked.remove(id);
        self.young.remove(id);
        self.missing_on.remove(id);
        if let Some(bad) = self.corrupt_on.remove(id) {
            for no in bad {
                // A damaged copy whose identity is unknown is never deleted:
                // a delete naming no replica could take a whole one.
                let named = self.damaged_ids.contains_key(&(Box::<str>::from(id), no));
                if named && self.server(no).alive {
                    self.deleting_damaged.insert((id.into(), no));
                    plan.damaged.push((id.to_owned(), self.addr(no)));
                }
            }
        }
    }

    /// Copies of `id` whose size or CRC32C disagree with the chunk's, on
    /// live servers: the chunk is whole elsewhere, so they go (each named
    /// by its identity), and repairs may use their servers again.
    fn plan_mismatch_deletes(&mut self, id: &str, plan: &mut RepairPlan) {
        let Some(servers) = self.mismatched.remove(id) else {
            return;
        };
        let mut keep = smallvec::SmallVec::<[ServerNo; 2]>::new();
        for no in servers {
            let s = self.server(no);
            if !matches!(s.excluded.get(id), Some(Excluded::Mismatch { .. })) {
                continue;
            }
            let key = (Box::<str>::from(id), no);
            if !s.alive || self.deleting_damaged.contains(&key) {
                keep.push(no);
                continue;
            }
            tracing::warn!(chunk = %id, server = %s.id, "deleting a copy whose size or checksum disagree with its chunk's");
            self.deleting_damaged.insert(key);
            plan.damaged.push((id.to_owned(), self.addr(no)));
            keep.push(no);
        }
        if !keep.is_empty() {
            self.mismatched.insert(id.into(), keep);
        }
    }

    /// The identity of the damaged or mismatched copy of `chunk` on `no`
    /// (0: not known).
    pub fn damaged_replica(&self, chunk: &str, no: ServerNo) -> u64 {
        match self.server(no).excluded.get(chunk) {
            Some(Excluded::Mismatch { replica }) => *replica,
            _ => self
                .damaged_ids
                .get(&(chunk.into(), no))
                .copied()
                .unwrap_or(0),
        }
    }

    /// A delete of the damaged or mismatched copy of `chunk` on `no`
    /// failed: the next pass that finds the chunk whole plans it again.
    pub fn damaged_delete_failed(&mut self, chunk: &str, no: ServerNo) {
        let key = (chunk.into(), no);
        self.deleting_damaged.remove(&key);
        if self.damaged_ids.contains_key(&key) {
            mark(&mut self.corrupt_on, chunk, no);
        }
        if self.chunks.contains_key(chunk) {
            self.chunks.add_candidate(chunk);
        }
    }

    /// `c`'s replicas against its factor at `now`.
    pub(super) fn need(&self, c: &ChunkRecord, now: Instant) -> Need {
        let grace = self.settings.re_replicate_after;
        let mut need = Need {
            live: 0,
            staying: 0,
            available: 0,
            wanted: c.replication as usize,
        };
        for s in c.servers().map(|s| self.server(s)) {
            let in_grace = !s.alive
                && s.dead_since
                    .is_some_and(|d| now.saturating_duration_since(d) < grace);
            need.live += usize::from(s.alive);
            need.available += usize::from(s.alive || in_grace);
            need.staying += usize::from(!s.draining && (s.alive || in_grace));
        }
        need
    }

    fn queue_long_dead(&mut self, now: Instant) {
        let grace = self.settings.re_replicate_after;
        let due: Vec<ServerNo> = (0..self.servers.len() as ServerNo)
            .filter(|&no| {
                let s = self.server(no);
                !s.alive
                    && !s.repair_queued
                    && s.dead_since
                        .is_some_and(|d| now.saturating_duration_since(d) >= grace)
            })
            .collect();
        for no in due {
            self.queue_chunks_of(no);
            let s = &mut self.servers[no as usize];
            s.repair_queued = true;
            tracing::warn!(server = %s.id, chunks = s.replicas, "server dead past the grace period; re-replicating its chunks");
        }
    }

    /// One copy of `id`: from the live holder whose migration bucket has the
    /// fewest bytes already planned through it, in and out, then the least
    /// utilized (never a suspect one while another exists), to the best
    /// target by placement rules counting the bytes already planned for
    /// each. A drain reads from any holder, the draining one included, so
    /// its copies spread over every server's bandwidth: the draining server
    /// only sends, so it takes more of the reads than a holder that also
    /// receives (about 2 in 5 with four targets, where counting copies per
    /// source gave it 1 in 5 and left its bucket half idle).
    fn plan_copy(
        &self,
        id: &str,
        kind: CopyClass,
        whole: usize,
        planned: &Planned,
    ) -> Result<(Repair, ServerNo, ServerNo), String> {
        let c = self.chunks.get(id).ok_or("the chunk is no longer known")?;
        let mut live: Vec<ServerNo> = c.servers().filter(|&s| self.server(s).alive).collect();
        let load = |s: ServerNo| planned.bucket_with(s, c.size);
        live.sort_by(|&a, &b| {
            let (sa, sb) = (self.server(a), self.server(b));
            self.is_suspect(id, a)
                .cmp(&self.is_suspect(id, b))
                .then_with(|| load(a).cmp(&load(b)))
                .then_with(|| sa.utilization_pct().total_cmp(&sb.utilization_pct()))
        });
        let source = *live.first().ok_or("no whole replica on a live server")?;
        let target = self
            .repair_target(id, c, &planned.incoming)
            .ok_or("no live server without a replica has room for it above its free-space floor")?;
        let (from, to) = (
            self.server(source).id.to_string(),
            self.server(target).id.to_string(),
        );
        let t = self
            .check_move(id, &from, &to, kind)
            .map_err(|r| r.to_string())?;
        let copy = CopyJob {
            rank: u32::try_from(whole).unwrap_or(u32::MAX),
            ..CopyJob::new(MoveRef::new(t.chunk, from, to), t.size, kind)
        };
        Ok((copy, source, target))
    }

    /// Where a new replica of `c` goes: placement rules among live servers
    /// that take data and hold no copy, counting `planned` bytes on their way
    /// to each, preferring racks the staying replicas do not span and
    /// servers whose copy was not found corrupt.
    fn repair_target(
        &self,
        id: &str,
        c: &ChunkRecord,
        planned: &HashMap<ServerNo, u64>,
    ) -> Option<ServerNo> {
        let racks: Vec<&str> = c
            .servers()
            .map(|s| self.server(s))
            .filter(|s| !s.draining)
            .map(|s| s.rack.as_str())
            .collect();
        let min_free = self.settings.min_free_pct;
        let tainted = self.corrupt_on.get(id);
        let candidates: Vec<Candidate<'_>> = self
            .servers
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                s.takes_data() && !c.holds(*i as ServerNo) && !s.excluded.contains_key(id)
            })
            .map(|(i, s)| {
                let extra = planned.get(&(i as ServerNo)).copied().unwrap_or(0);
                Candidate {
                    no: i as ServerNo,
                    id: &s.id,
                    rack: &s.rack,
                    capacity: s.capacity,
                    committed: s.committed_bytes().saturating_add(extra),
                    fits: s.fits(c.size.saturating_add(extra), min_free),
                }
            })
            .collect();
        let untainted: Vec<Candidate<'_>> = candidates
            .iter()
            .filter(|c| tainted.is_none_or(|t| !t.contains(&c.no)))
            .cloned()
            .collect();
        placement::choose(&untainted, c.size, 1, &racks)
            .first()
            .or(placement::choose(&candidates, c.size, 1, &racks).first())
            .copied()
    }

    /// The bad copy of `chunk` on `no` was deleted.
    pub fn forget_excluded(&mut self, chunk: &str, no: ServerNo) {
        self.servers[no as usize].excluded.remove(chunk);
        let key = (chunk.into(), no);
        self.damaged_ids.remove(&key);
        self.deleting_damaged.remove(&key);
        if let Some(s) = self.mismatched.get_mut(chunk) {
            s.retain(|x| *x != no);
            if s.is_empty() {
                self.mismatched.remove(chunk);
            }
        }
        // Repairs may use that server again.
        if self.chunks.contains_key(chunk) {
            self.chunks.add_candidate(chunk);
        }
    }
}
