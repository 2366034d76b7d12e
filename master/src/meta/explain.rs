//! `ExplainChunk`: everything the metadata knows about one chunk, and why it
//! is or is not being copied, moved or trimmed, in sentences.

use std::time::Instant;

use super::{Excluded, Job, Meta, ServerNo};

/// One replica (or a copy that is not one) of the explained chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaInfo {
    /// Server id.
    pub server: String,
    /// Its address.
    pub address: String,
    /// Its rack, empty when unset.
    pub rack: String,
    /// `alive`, `dead`, `draining` or `drained`.
    pub server_state: &'static str,
    /// `whole`, `verifying`, `corrupt`, `mismatch`, `missing` or `unreachable`.
    pub health: &'static str,
    /// Whether it counts towards the factor.
    pub counted: bool,
}

/// A job on the chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkJobInfo {
    /// `repair`, `drain`, `move`, `trim` or `verify` (the service adds
    /// the balancer's queued moves as `balance` and `operator`).
    pub kind: String,
    /// Source server, when there is one.
    pub from: String,
    /// Target server, when there is one.
    pub to: String,
    /// `running` or `pending`.
    pub state: String,
    /// More, for operators.
    pub detail: String,
}

/// What `keelctl explain` shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Explanation {
    /// Chunk id.
    pub chunk: String,
    /// Whether the master has ever seen a whole replica of it.
    pub known: bool,
    /// Size in bytes.
    pub size: u64,
    /// CRC32C.
    pub crc32c: u32,
    /// The factor.
    pub replication: u32,
    /// Whole replicas on live servers.
    pub whole_live: u32,
    /// Replicas and copies that are not whole.
    pub replicas: Vec<ReplicaInfo>,
    /// Jobs on it.
    pub jobs: Vec<ChunkJobInfo>,
    /// Why it is or is not being worked on.
    pub reasons: Vec<String>,
    /// `healthy`, `under-replicated`, `unavailable` or `lost`.
    pub status: &'static str,
}

impl Meta {
    /// Explains chunk `id` at `now`.
    pub fn explain(&self, id: &str, now: Instant) -> Explanation {
        let mut e = Explanation {
            chunk: id.to_owned(),
            status: "lost",
            ..Explanation::default()
        };
        if let Some(l) = self.lost.get(id) {
            e.known = true;
            (e.size, e.crc32c, e.replication) = (l.size, l.crc32c, l.replication);
            e.reasons.push("no whole replica is left on any server: the chunk is lost unless a server that held it comes back with it".into());
        }
        self.other_copies(id, &mut e);
        let Some(c) = self.chunks.get(id) else {
            if !e.known {
                e.reasons
                    .push("the master has never seen a whole replica of this chunk".into());
                e.status = "unknown";
            }
            return e;
        };
        e.known = true;
        (e.size, e.crc32c, e.replication) = (c.size, c.crc32c, c.replication);
        let need = self.need(c, now);
        e.whole_live = need.live as u32;
        for no in c.servers() {
            e.replicas.insert(0, self.whole_info(id, no, now));
        }
        e.replicas.sort_by(|a, b| a.server.cmp(&b.server));
        self.jobs_of(id, &mut e);
        e.status = match (need.live, need.live < need.wanted) {
            (0, _) => "unavailable",
            (_, true) => "under-replicated",
            _ => "healthy",
        };
        self.reasons_for(id, need, now, &mut e);
        self.explain_reads(id, &mut e);
        e
    }

    fn whole_info(&self, id: &str, no: ServerNo, now: Instant) -> ReplicaInfo {
        let s = self.server(no);
        let grace = self.settings.re_replicate_after;
        let in_grace = !s.alive
            && s.dead_since
                .is_some_and(|d| now.saturating_duration_since(d) < grace);
        let health = match (self.is_suspect(id, no), s.alive) {
            (true, _) => "verifying",
            (false, true) => "whole",
            (false, false) => "unreachable",
        };
        ReplicaInfo {
            counted: !s.draining && (s.alive || in_grace),
            ..self.info(no, health)
        }
    }

    fn info(&self, no: ServerNo, health: &'static str) -> ReplicaInfo {
        let s = self.server(no);
        ReplicaInfo {
            server: s.id.to_string(),
            address: s.address.clone(),
            rack: s.rack.clone(),
            server_state: s.state().name(),
            health,
            counted: false,
        }
    }

    /// Copies that are not whole replicas: excluded, verified corrupt, missing.
    fn other_copies(&self, id: &str, e: &mut Explanation) {
        for (no, s) in self.servers.iter().enumerate() {
            if let Some(x) = s.excluded.get(id) {
                let health = match x {
                    Excluded::Mismatch { .. } => "mismatch",
                    Excluded::Corrupt => "corrupt",
                };
                e.replicas.push(self.info(no as ServerNo, health));
            }
        }
        for (marks, health) in [(&self.corrupt_on, "corrupt"), (&self.missing_on, "missing")] {
            for &no in marks.get(id).into_iter().flatten() {
                if !e.replicas.iter().any(|r| r.server == *self.server(no).id) {
                    e.replicas.push(self.info(no, health));
                }
            }
        }
    }

    fn jobs_of(&self, id: &str, e: &mut Explanation) {
        if let Some(b) = self.busy.get(id) {
            e.jobs.push(match b.job {
                Job::Copy { kind, from, to } => ChunkJobInfo {
                    kind: kind.name().into(),
                    from: self.server(from).id.to_string(),
                    to: self.server(to).id.to_string(),
                    state: "running".into(),
                    detail: String::new(),
                },
                Job::Delete => ChunkJobInfo {
                    kind: "trim".into(),
                    from: String::new(),
                    to: String::new(),
                    state: "running".into(),
                    detail: "deleting replicas beyond the factor".into(),
                },
            });
        }
        for (c, no) in &self.verifying {
            if c.as_ref() == id {
                e.jobs.push(ChunkJobInfo {
                    kind: "verify".into(),
                    from: self.server(*no).id.to_string(),
                    to: String::new(),
                    state: "running".into(),
                    detail: "a corruption report is being checked by the reported server".into(),
                });
            }
        }
    }

    fn reasons_for(&self, id: &str, need: super::repairs::Need, now: Instant, e: &mut Explanation) {
        let r = &mut e.reasons;
        let (live, wanted) = (need.live, need.wanted);
        if let Some(b) = self.busy.get(id) {
            let what = match b.job {
                Job::Copy { kind, .. } => kind.name(),
                Job::Delete => "trim",
            };
            r.push(format!(
                "a {what} runs on it now; nothing else starts on it until it ends"
            ));
        }
        if live == 0 {
            r.push(
                "its only whole replicas are on dead servers: it is unreadable until one returns"
                    .into(),
            );
        } else if live < wanted {
            r.push(format!(
                "{live} of {wanted} whole replicas are on live servers"
            ));
        }
        let holders = self.chunks.get(id).into_iter().flat_map(|c| c.servers());
        for s in holders.map(|s| self.server(s)) {
            if let (false, Some(d)) = (s.alive, s.dead_since) {
                let left = self
                    .settings
                    .re_replicate_after
                    .saturating_sub(now.saturating_duration_since(d));
                if !left.is_zero() {
                    r.push(format!("{} is dead; its replica counts for another {} s (--re-replicate-after) before it is re-created elsewhere", s.id, left.as_secs()));
                }
            }
            if s.draining && s.alive {
                r.push(format!(
                    "{} is draining: its replica is copied elsewhere, then trimmed",
                    s.id
                ));
            }
        }
        if self.pending.contains_key(id) || self.young.contains_key(id) {
            r.push("a write of it may still be settling: repair waits up to 10 s for its other replicas".into());
        }
        if let Some(why) = self.repair_blocked.get(id) {
            r.push(format!("it needs a copy and cannot get one now: {why}"));
        }
        if self.suspect.contains_key(id) {
            r.push("a replica was reported corrupt and is being verified; until then it does not count towards deleting any other replica".into());
        }
        if need.staying > wanted {
            r.push(format!("{} whole replicas for a factor of {wanted}: the extra ones are trimmed (never so that it spans fewer racks)", need.staying));
        }
        if r.is_empty() {
            r.push(format!(
                "{live} of {wanted} whole replicas on live servers: nothing to repair"
            ));
        }
    }
}
