//! `AllocateChunk`: choosing servers for a new chunk, and remembering the
//! choice briefly so parallel puts spread instead of piling onto the server
//! that looked emptiest a moment ago.

use std::time::{Duration, Instant};

use smallvec::SmallVec;

use super::{Meta, ServerAddr, ServerNo};
use crate::error::Error;
use keel_balancer::placement::{self, Candidate};

/// How long an allocation counts against its servers before a heartbeat
/// shows the chunk (a few heartbeats at the default interval).
pub const PENDING_TTL: Duration = Duration::from_secs(10);

/// A validated allocation request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AllocRequest {
    /// Chunk id (valid).
    pub chunk: String,
    /// Size in bytes.
    pub size: u64,
    /// Wanted replicas; 0 means the master's default.
    pub replication: u32,
    /// Servers to pin the replicas to; empty lets the master choose.
    pub on: Vec<String>,
}

/// Where a new chunk should be written.
#[derive(Debug, Clone, PartialEq)]
pub struct Allocation {
    /// Chosen servers, best first.
    pub servers: Vec<ServerAddr>,
    /// Replication factor to store beside the chunk.
    pub replication: u32,
}

/// A recent allocation not yet confirmed by the chosen servers' heartbeats.
#[derive(Debug, Clone)]
pub(super) struct Pending {
    size: u64,
    servers: SmallVec<[ServerNo; 3]>,
    at: Instant,
}

impl Meta {
    /// Chooses servers for a new chunk and remembers the choice for
    /// [`PENDING_TTL`].
    pub fn allocate(&mut self, req: &AllocRequest, now: Instant) -> Result<Allocation, Error> {
        self.expire_pending(now);
        if self.chunks.contains_key(req.chunk.as_str()) {
            return Err(Error::ChunkExists {
                chunk: req.chunk.clone(),
            });
        }
        let (chosen, replication) = if req.on.is_empty() {
            let live = self.servers.iter().filter(|s| s.takes_data()).count();
            if live == 0 {
                return Err(Error::NoLiveServers);
            }
            let replication = match req.replication {
                0 => self.settings.default_replication,
                n => n,
            }
            .min(live as u32);
            (self.choose_servers(req, replication)?, replication)
        } else {
            self.pinned_servers(req)?
        };
        self.forget_pending(&req.chunk);
        self.factors.record(&req.chunk, replication, now);
        for &no in &chosen {
            let s = &mut self.servers[no as usize];
            s.pending = s.pending.saturating_add(req.size);
        }
        let servers = chosen.iter().map(|&no| self.addr(no)).collect();
        self.pending.insert(
            req.chunk.as_str().into(),
            Pending {
                size: req.size,
                servers: chosen.into_iter().collect(),
                at: now,
            },
        );
        Ok(Allocation {
            servers,
            replication,
        })
    }

    /// Free choice: `replication` live servers by placement rules.
    fn choose_servers(&self, req: &AllocRequest, replication: u32) -> Result<Vec<ServerNo>, Error> {
        let min_free = self.settings.min_free_pct;
        let candidates: Vec<Candidate<'_>> = self
            .servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.takes_data())
            .map(|(i, s)| Candidate {
                no: i as ServerNo,
                id: &s.id,
                rack: &s.rack,
                capacity: s.capacity,
                committed: s.committed_bytes(),
                fits: s.fits(req.size, min_free),
            })
            .collect();
        let chosen = placement::choose(&candidates, req.size, replication as usize, &[]);
        if chosen.len() < replication as usize {
            return Err(Error::NoSpace {
                chunk: req.chunk.clone(),
                size: req.size,
                why: format!(
                    "{} of {} live servers can take it while keeping {}% free; {} needed",
                    chosen.len(),
                    candidates.len(),
                    min_free,
                    replication
                ),
            });
        }
        Ok(chosen)
    }

    /// Pinned placement: every server known, alive, listed once, with room.
    fn pinned_servers(&self, req: &AllocRequest) -> Result<(Vec<ServerNo>, u32), Error> {
        let mut chosen = Vec::with_capacity(req.on.len());
        for id in &req.on {
            let no = self
                .server_no(id)
                .ok_or_else(|| Error::UnknownServer { server: id.clone() })?;
            if chosen.contains(&no) {
                return Err(Error::DuplicateServer { server: id.clone() });
            }
            chosen.push(no);
        }
        let replication = match req.replication {
            0 => req.on.len() as u32,
            n => n,
        };
        if replication as usize != req.on.len() {
            return Err(Error::PinnedReplicationMismatch {
                replication,
                pinned: req.on.len(),
            });
        }
        for &no in &chosen {
            let s = self.server(no);
            if !s.alive {
                return Err(Error::ServerDead {
                    server: s.id.to_string(),
                });
            }
            if s.draining {
                return Err(Error::ServerDraining {
                    server: s.id.to_string(),
                });
            }
            if !s.fits(req.size, self.settings.min_free_pct) {
                return Err(Error::NoSpace {
                    chunk: req.chunk.clone(),
                    size: req.size,
                    why: format!(
                        "{} would keep less than {}% of its capacity free",
                        s.id, self.settings.min_free_pct
                    ),
                });
            }
        }
        Ok((chosen, replication))
    }

    /// Id and address of server `no`.
    pub(super) fn addr(&self, no: ServerNo) -> ServerAddr {
        let s = self.server(no);
        ServerAddr {
            no,
            id: s.id.to_string(),
            address: s.address.clone(),
        }
    }

    /// A heartbeat showed `chunk` on `no`: its bytes now count as used.
    pub(super) fn settle_pending(&mut self, chunk: &str, no: ServerNo) {
        let Some(p) = self.pending.get_mut(chunk) else {
            return;
        };
        if let Some(i) = p.servers.iter().position(|&s| s == no) {
            p.servers.swap_remove(i);
            let s = &mut self.servers[no as usize];
            s.pending = s.pending.saturating_sub(p.size);
        }
        if p.servers.is_empty() {
            self.pending.remove(chunk);
        }
    }

    /// Drops an earlier allocation of `chunk` (a retried put).
    fn forget_pending(&mut self, chunk: &str) {
        if let Some(p) = self.pending.remove(chunk) {
            for no in p.servers {
                let s = &mut self.servers[no as usize];
                s.pending = s.pending.saturating_sub(p.size);
            }
        }
    }

    /// Drops allocations older than [`PENDING_TTL`].
    pub fn expire_pending(&mut self, now: Instant) {
        let old: Vec<Box<str>> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.at) >= PENDING_TTL)
            .map(|(id, _)| id.clone())
            .collect();
        for id in old {
            self.forget_pending(&id);
        }
    }
}
