//! Redundancy: what each chunk has against its factor, corruption reports
//! as hints checked by the reported server, and the counts operators alert on.
//!
//! Every path that can lose a replica makes its chunk a repair candidate: a
//! full report that lacks a recorded replica (a wiped disk, a vanished or
//! damaged file), a delta that reports one gone, a server dead past
//! `--re-replicate-after`, a verified-corrupt replica, a drain mark, and the
//! first sight of a chunk (a partial write, or a view rebuilt after a master
//! restart). A full scan after safe mode and every [`FULL_SCAN_EVERY`] is
//! the backstop. The maintenance pass (`repairs.rs`) works the candidates.

use std::time::Duration;

use super::server::Stamp;
use super::{Meta, ServerAddr, ServerNo, mark};
use crate::error::Error;

/// How often every chunk is checked against its factor, whatever happened.
pub const FULL_SCAN_EVERY: Duration = Duration::from_secs(300);

/// Redundancy as of the last maintenance pass (the dashboard shows it as
/// it is, with the queued copies counted in).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Redundancy {
    /// Chunks with fewer whole replicas on live servers than their factor.
    pub under_replicated: u64,
    /// Chunks with no whole replica on a live server (lost ones included).
    pub unavailable: u64,
    /// Repair copies that wait (no slot yet, no target with room, or a
    /// write still settling).
    pub repairs_waiting: u64,
    /// Drain copies that wait.
    pub drains_waiting: u64,
}

/// A verification to run: ask `server` to reread its replica of `chunk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verify {
    /// Chunk id.
    pub chunk: String,
    /// The reported server.
    pub server: ServerAddr,
}

/// What the reported server found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// The replica is whole: the report was wrong.
    Whole,
    /// The replica is damaged; the server moved it aside. `replica` is the
    /// identity the server gave the damaged copy (0: it named none).
    Corrupt {
        /// What was wrong.
        detail: String,
        /// The damaged copy's identity, from the server's answer.
        replica: u64,
    },
    /// The replica's file is gone.
    Missing,
    /// The server could not be asked; the replica stays under suspicion
    /// and is verified again at a later pass.
    Failed(String),
}

impl Meta {
    /// A replica of `chunk` on `server` was reported corrupt. A hint: the
    /// replica stops counting towards deleting any other replica, and the
    /// caller asks `server` to verify it (the returned ticket; `None` when a
    /// verification already runs or the copy is already not counted).
    pub fn report_corruption(
        &mut self,
        chunk: &str,
        server: &str,
    ) -> Result<Option<Verify>, Error> {
        let Some(no) = self.check_report(chunk, server)? else {
            return Ok(None);
        };
        mark(&mut self.suspect, chunk, no);
        Ok(self.start_verify(chunk, no))
    }

    /// Whether a report of `chunk` on `server` names a replica the master
    /// knows: its server number, `None` when the copy is already not
    /// counted, or why the report is refused. Changes nothing.
    pub fn check_report(&self, chunk: &str, server: &str) -> Result<Option<ServerNo>, Error> {
        let no = self.server_no(server).ok_or_else(|| Error::UnknownServer {
            server: server.to_owned(),
        })?;
        if self.chunks.get(chunk).is_some_and(|c| c.holds(no)) {
            return Ok(Some(no));
        }
        if self.server(no).excluded.contains_key(chunk) {
            return Ok(None);
        }
        Err(match self.chunks.contains_key(chunk) {
            true => Error::NotHolder {
                chunk: chunk.to_owned(),
                server: server.to_owned(),
            },
            false => Error::ChunkNotFound {
                chunk: chunk.to_owned(),
            },
        })
    }

    fn start_verify(&mut self, chunk: &str, no: ServerNo) -> Option<Verify> {
        if !self.verifying.insert((chunk.into(), no)) {
            return None;
        }
        Some(Verify {
            chunk: chunk.to_owned(),
            server: self.addr(no),
        })
    }

    /// Suspect replicas on live servers with no verification running, for
    /// another try.
    pub fn verifications_due(&mut self) -> Vec<Verify> {
        let due: Vec<(Box<str>, ServerNo)> = self
            .suspect
            .iter()
            .flat_map(|(c, ss)| ss.iter().map(move |&s| (c.clone(), s)))
            .filter(|(c, s)| self.server(*s).alive && !self.verifying.contains(&(c.clone(), *s)))
            .collect();
        due.into_iter()
            .filter_map(|(c, s)| self.start_verify(&c, s))
            .collect()
    }

    /// Records what the server found; `at` is the stamp of its answer.
    pub fn verified(
        &mut self,
        chunk: &str,
        no: ServerNo,
        outcome: &VerifyOutcome,
        at: Option<Stamp>,
    ) {
        self.verifying.remove(&(chunk.into(), no));
        if matches!(outcome, VerifyOutcome::Failed(_)) {
            return;
        }
        // A whole verdict older than a report already applied says nothing
        // of now: the server may have marked the replica suspect since (a
        // read found rot). The mark stays and the replica is verified again.
        if matches!(outcome, VerifyOutcome::Whole)
            && let Some(at) = at
            && self.server(no).stamp.is_some_and(|k| k > at)
        {
            tracing::info!(chunk, server = %self.server(no).id, "a whole verdict older than the server's last report; verified again");
            return;
        }
        if let Some(s) = self.suspect.get_mut(chunk) {
            s.retain(|&mut x| x != no);
            if s.is_empty() {
                self.suspect.remove(chunk);
            }
        }
        // A trim skipped while this replica was suspect is due again.
        if self.chunks.contains_key(chunk) {
            self.trim_candidates.insert(chunk.into());
        }
        let server = self.server(no).id.clone();
        match outcome {
            VerifyOutcome::Whole => {
                tracing::warn!(chunk, server = %server, "corruption report was wrong: the replica verified whole; it counts again");
            }
            VerifyOutcome::Corrupt { detail, replica } => {
                tracing::error!(chunk, server = %server, detail, replica, "replica verified corrupt; re-created elsewhere, then deleted");
                // The delete names the copy the server found damaged, as its
                // answer says: the master's view may already hold a newer
                // copy there, or none. Without a name nothing is deleted.
                if *replica != 0 {
                    self.damaged_ids.insert((chunk.into(), no), *replica);
                } else {
                    tracing::warn!(chunk, server = %server, "the server named no damaged copy: it stays in its damaged/ for an operator");
                }
                self.note_fresh(no, chunk, at, false);
                self.remove_replica(no, chunk);
                mark(&mut self.corrupt_on, chunk, no);
            }
            VerifyOutcome::Missing => {
                tracing::error!(chunk, server = %server, "replica is missing on its server; re-created elsewhere");
                self.note_fresh(no, chunk, at, false);
                self.remove_replica(no, chunk);
                self.lost_on(no, chunk);
            }
            VerifyOutcome::Failed(_) => {}
        }
    }

    /// Makes every chunk that is below its factor, or has a replica on a
    /// draining server, a repair candidate. One pass over the chunk table.
    pub fn scan_redundancy(&mut self) {
        let ids: Vec<Box<str>> = self
            .chunks
            .iter()
            .filter(|(_, c)| {
                c.servers().filter(|&s| self.server(s).takes_data()).count()
                    < c.replication as usize
            })
            .map(|(id, _)| id.into())
            .collect();
        for id in ids {
            self.chunks.add_candidate(&id);
        }
    }

    /// The server to (un)drain: known and alive (its chunk server keeps the mark).
    pub fn drain_target(&self, server: &str) -> Result<ServerAddr, Error> {
        let no = self.server_no(server).ok_or_else(|| Error::UnknownServer {
            server: server.to_owned(),
        })?;
        if !self.server(no).alive {
            return Err(Error::ServerDead {
                server: server.to_owned(),
            });
        }
        Ok(self.addr(no))
    }

    /// The chunk server set its drain mark to `draining`: follow it now,
    /// before its next heartbeat says so.
    pub fn drain_marked(&mut self, no: ServerNo, draining: bool) {
        self.set_drain_mark(no, draining);
    }

    /// The state of server `no` and the chunks on it that still need a copy
    /// elsewhere (its own count when not yet known: all it holds).
    pub fn drain_state(&self, no: ServerNo) -> (&'static str, u64) {
        let s = self.server(no);
        (s.state().name(), s.drain_left.unwrap_or(s.replicas))
    }

    /// Redundancy as of the last maintenance pass.
    pub fn redundancy(&self) -> Redundancy {
        self.redundancy
    }
}
