//! Upkeep decisions: which servers are dead, which excess replicas to trim,
//! which chunks to re-replicate, and what a corruption report changes.
//! Decisions only; the maintenance loop performs the RPCs.

use std::time::Instant;

use super::{ChunkMeta, Excluded, Meta, MoveKind, MoveTicket, ServerAddr, ServerNo};
use crate::error::Error;
use crate::placement::{self, Candidate};

/// Excess replicas of one chunk to delete, most utilized holder first. The
/// chunk is busy until the caller calls [`Meta::end_busy`].
#[derive(Debug, Clone, PartialEq)]
pub struct Deletion {
    /// Chunk id.
    pub chunk: String,
    /// Holders to delete from, in order.
    pub servers: Vec<ServerAddr>,
}

/// A copy that restores a missing replica (a [`MoveKind::Copy`] ticket; the
/// chunk is busy until the mover finishes).
pub type Repair = MoveTicket;

/// Servers whose liveness changed in a sweep.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Liveness {
    /// Ids marked dead by this sweep.
    pub died: Vec<String>,
}

/// What a corruption report changed.
#[derive(Debug, Clone, PartialEq)]
pub struct CorruptionOutcome {
    /// The server whose bad copy should be deleted; `None` while no other
    /// whole replica exists on a live server (never delete the last copy).
    pub delete_from: Option<ServerAddr>,
    /// Whole replicas left on live servers.
    pub live_replicas: usize,
    /// Whether the chunk is now below its replication factor.
    pub under_replicated: bool,
}

impl Meta {
    /// Marks servers silent for longer than the heartbeat timeout as dead.
    pub fn sweep_liveness(&mut self, now: Instant) -> Liveness {
        let timeout = self.settings.heartbeat_timeout;
        let mut out = Liveness::default();
        for s in self.servers.iter_mut().filter(|s| s.alive) {
            let silent = now.saturating_duration_since(s.last_heartbeat);
            if silent > timeout {
                s.alive = false;
                s.dead_since = Some(now);
                tracing::warn!(server = %s.id, silent_ms = silent.as_millis() as u64, "server marked dead");
                out.died.push(s.id.to_string());
            }
        }
        out
    }

    /// Chunks with more whole replicas on live servers than their factor and
    /// nothing running on them, up to `max`; marks each busy.
    pub fn plan_trims(&mut self, max: usize) -> Vec<Deletion> {
        if std::mem::take(&mut self.rescan_for_trim) {
            let over: Vec<Box<str>> = self
                .chunks
                .iter()
                .filter(|(_, c)| self.live_replicas(c) > c.replication as usize)
                .map(|(id, _)| id.clone())
                .collect();
            self.trim_candidates.extend(over);
        }
        let mut out = Vec::new();
        let candidates: Vec<Box<str>> = self.trim_candidates.drain().collect();
        for id in candidates {
            if out.len() >= max || self.busy.contains_key(&id) {
                self.trim_candidates.insert(id);
                continue;
            }
            let Some(c) = self.chunks.get(&id) else {
                continue;
            };
            let mut holders: Vec<ServerNo> =
                c.servers().filter(|&s| self.server(s).alive).collect();
            let Some(excess) = holders
                .len()
                .checked_sub(c.replication as usize)
                .filter(|&e| e > 0)
            else {
                continue;
            };
            holders.sort_by(|&a, &b| {
                let (a, b) = (self.server(a), self.server(b));
                b.utilization_pct()
                    .total_cmp(&a.utilization_pct())
                    .then_with(|| a.id.cmp(&b.id))
            });
            let servers = holders[..excess].iter().map(|&s| self.addr(s)).collect();
            self.begin_delete(&id);
            out.push(Deletion {
                chunk: id.to_string(),
                servers,
            });
        }
        out
    }

    /// Queues the chunks of servers dead for longer than the grace period, then
    /// plans up to `max` copies for chunks below their factor. A replica on a
    /// server dead for less than the grace period still counts.
    pub fn plan_repairs(&mut self, now: Instant, max: usize) -> Vec<Repair> {
        self.queue_long_dead(now);
        let mut out = Vec::new();
        let candidates: Vec<Box<str>> = self.repair_candidates.drain().collect();
        for id in candidates {
            if out.len() >= max || self.busy.contains_key(&id) {
                self.repair_candidates.insert(id);
                continue;
            }
            match self.plan_one_repair(&id, now) {
                Ok(Some(t)) => {
                    // Re-checked next pass: it may need more than one copy.
                    self.repair_candidates.insert(id);
                    out.push(t);
                }
                Ok(None) => {
                    self.repair_blocked.remove(&id);
                    self.corrupt_on.remove(&id);
                }
                Err(why) => {
                    // Retried every pass; logged once per chunk and reason.
                    if self.repair_blocked.get(&id) != Some(&why) {
                        tracing::warn!(chunk = %id, why = %why, "chunk is under-replicated and cannot be repaired now");
                        self.repair_blocked.insert(id.clone(), why);
                    }
                    self.repair_candidates.insert(id);
                }
            }
        }
        out
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
            let ids: Vec<Box<str>> = self
                .chunks
                .iter()
                .filter(|(_, c)| c.holds(no))
                .map(|(id, _)| id.clone())
                .collect();
            let s = &mut self.servers[no as usize];
            s.repair_queued = true;
            tracing::warn!(server = %s.id, chunks = ids.len(), "server dead past the grace period; re-replicating its chunks");
            self.repair_candidates.extend(ids);
        }
    }

    /// One copy towards the factor of `id`, `None` when it has enough.
    fn plan_one_repair(&mut self, id: &str, now: Instant) -> Result<Option<Repair>, String> {
        let Some(c) = self.chunks.get(id) else {
            return Ok(None);
        };
        let grace = self.settings.re_replicate_after;
        let counted = c
            .servers()
            .filter(|&s| {
                let s = self.server(s);
                s.alive
                    || s.dead_since
                        .is_some_and(|d| now.saturating_duration_since(d) < grace)
            })
            .count();
        if counted >= c.replication as usize {
            return Ok(None);
        }
        let mut live: Vec<ServerNo> = c.servers().filter(|&s| self.server(s).alive).collect();
        live.sort_by(|&a, &b| {
            self.server(a)
                .utilization_pct()
                .total_cmp(&self.server(b).utilization_pct())
        });
        let source = *live.first().ok_or("no whole replica on a live server")?;
        let target = self
            .repair_target(id, c)
            .ok_or("no live server without a replica has room for it")?;
        let (from, to) = (
            self.server(source).id.to_string(),
            self.server(target).id.to_string(),
        );
        self.begin_move(id, &from, &to, MoveKind::Copy)
            .map(Some)
            .map_err(|r| r.to_string())
    }

    /// Where a new replica of `c` goes: placement rules among live servers
    /// without a copy, preferring servers whose copy was not reported corrupt.
    fn repair_target(&self, id: &str, c: &ChunkMeta) -> Option<ServerNo> {
        let racks: Vec<&str> = c.servers().map(|s| self.server(s).rack.as_str()).collect();
        let min_free = self.settings.min_free_pct;
        let tainted = self.corrupt_on.get(id);
        let candidates: Vec<Candidate<'_>> = self
            .servers
            .iter()
            .enumerate()
            .filter(|(i, s)| s.alive && !c.holds(*i as ServerNo) && !s.excluded.contains_key(id))
            .map(|(i, s)| Candidate {
                no: i as ServerNo,
                id: &s.id,
                rack: &s.rack,
                capacity: s.capacity,
                committed: s.committed_bytes(),
                fits: s.fits(c.size, min_free),
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

    /// A replica of `chunk` on `server` is corrupt: it stops counting as whole
    /// and is never trusted again. Idempotent.
    pub fn report_corruption(
        &mut self,
        chunk: &str,
        server: &str,
    ) -> Result<CorruptionOutcome, Error> {
        let no = self.server_no(server).ok_or_else(|| Error::UnknownServer {
            server: server.to_owned(),
        })?;
        let held_whole = self.chunks.get(chunk).is_some_and(|c| c.holds(no));
        if held_whole {
            self.remove_replica(no, chunk);
        } else if !self.server(no).excluded.contains_key(chunk) {
            return Err(match self.chunks.contains_key(chunk) {
                true => Error::NotHolder {
                    chunk: chunk.to_owned(),
                    server: server.to_owned(),
                },
                false => Error::ChunkNotFound {
                    chunk: chunk.to_owned(),
                },
            });
        }
        self.servers[no as usize]
            .excluded
            .insert(chunk.into(), Excluded::Corrupt);
        let tainted = self.corrupt_on.entry(chunk.into()).or_default();
        if !tainted.contains(&no) {
            tainted.push(no);
        }
        let (live, replication) = match self.chunks.get(chunk) {
            Some(c) => (self.live_replicas(c), c.replication as usize),
            None => (0, 1),
        };
        if held_whole {
            tracing::error!(
                chunk,
                server,
                live_replicas = live,
                "replica reported corrupt; no longer counted"
            );
        }
        let under_replicated = live < replication;
        if under_replicated && live > 0 {
            self.repair_candidates.insert(chunk.into());
        }
        Ok(CorruptionOutcome {
            delete_from: (live > 0).then(|| self.addr(no)),
            live_replicas: live,
            under_replicated,
        })
    }

    /// The bad copy of `chunk` on `no` was deleted.
    pub fn forget_excluded(&mut self, chunk: &str, no: ServerNo) {
        self.servers[no as usize].excluded.remove(chunk);
    }
}
