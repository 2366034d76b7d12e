//! A simulated chunk server: its files in memory, with the real server's
//! rules for copies, deletes, verification, fencing terms and reports.
//!
//! What a file is matters to the invariants, so each one carries a
//! generation (which commit made it) besides what the real server keeps.

use std::collections::BTreeMap;

use keel_master::meta::{Heartbeat, ReplicaReport, Stamp};

/// One chunk file on a simulated disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct File {
    /// Which commit made it (unique in the whole simulation).
    pub generation: u64,
    /// Size its header states.
    pub size: u64,
    /// CRC32C its header states.
    pub crc32c: u32,
    /// The chunk's factor, stored beside it.
    pub factor: u32,
    /// Its bytes were damaged after the commit (the header still looks fine;
    /// only rereading the data finds it).
    pub rot: bool,
    /// Marked suspect by a verification that has not ended (kept on disk).
    pub suspect: bool,
}

/// A simulated chunk server.
#[derive(Debug, Clone)]
pub struct ChunkServer {
    /// Server id, `cs0`, `cs1`, ...
    pub id: String,
    /// Whether the process runs.
    pub up: bool,
    /// The process run (a restart increments it).
    pub incarnation: u64,
    /// Change sequence within the run.
    pub seq: u64,
    /// Highest master term recorded (the `TERM` file: survives restarts).
    pub term: u64,
    /// A higher term waiting for running deletes to end before it is recorded.
    pub deferred_term: u64,
    /// Deletes past the fence whose blocking part still runs.
    pub running_deletes: u32,
    /// Deletes admitted and not ended, by chunk (reported in heartbeats).
    pub deleting: BTreeMap<String, u32>,
    /// `chunks/`, indexed.
    pub files: BTreeMap<String, File>,
    /// `damaged/`: copies verification moved aside.
    pub damaged: BTreeMap<String, File>,
    /// The change sequence of each chunk's last change, for deltas.
    pub touched: BTreeMap<String, u64>,
    /// Per master: the sequence its last answered report covered, or
    /// `None` when the next report to it must be full.
    pub cursor: Vec<Option<u64>>,
    /// The drain mark (the `DRAINING` file: survives restarts), reported
    /// in every heartbeat.
    pub draining: bool,
}

/// A chunk server's answer to the master's requests, as gRPC codes go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Done; the server's stamp right after.
    Ok(Stamp),
    /// A copy landed: its header's size and CRC, the stamp, the new
    /// replica's identity.
    Copied(u64, u32, Stamp, u64),
    /// `StatChunk`: what the server holds under the chunk's id.
    Header(Header),
    /// `VerifyChunk`: whole, or corrupt (moved aside).
    Whole(Stamp),
    /// `VerifyChunk` found the data damaged and moved it to `damaged/`;
    /// the damaged copy's identity.
    Corrupt(Stamp, u64),
    /// NOT_FOUND.
    NotFound,
    /// ALREADY_EXISTS (a copy onto a server that holds the chunk).
    AlreadyExists,
    /// FAILED_PRECONDITION: a deposed master's term.
    Fenced,
    /// UNAVAILABLE: the source could not be read.
    Unavailable,
    /// DATA_LOSS: the source's bytes failed the CRC check.
    DataLoss,
}

/// A `StatChunk` answer: the indexed copy's header and identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Size its header states.
    pub size: u64,
    /// CRC32C its header states.
    pub crc32c: u32,
    /// Its identity (generation).
    pub replica: u64,
    /// Whether a delete of it runs.
    pub deleting: bool,
    /// Whether the server marks it suspect.
    pub suspect: bool,
    /// The server's stamp at the lookup.
    pub stamp: Stamp,
    /// When the server looked (ground truth for the invariants: a fault
    /// after this instant is one the answer could not show).
    pub at: std::time::Duration,
}

impl ChunkServer {
    /// A fresh server for `masters` masters.
    pub fn new(id: String, masters: usize) -> Self {
        ChunkServer {
            id,
            up: true,
            incarnation: 1,
            seq: 0,
            term: 0,
            deferred_term: 0,
            running_deletes: 0,
            deleting: BTreeMap::new(),
            files: BTreeMap::new(),
            damaged: BTreeMap::new(),
            touched: BTreeMap::new(),
            cursor: vec![None; masters],
            draining: false,
        }
    }

    /// The stamp now.
    pub fn stamp(&self) -> Stamp {
        Stamp {
            incarnation: self.incarnation,
            seq: self.seq,
        }
    }

    /// Records a change of `chunk`.
    pub fn touch(&mut self, chunk: &str) {
        self.seq += 1;
        self.touched.insert(chunk.to_owned(), self.seq);
    }

    /// Crashes: running deletes die with the process, reports start over.
    pub fn crash(&mut self) {
        self.up = false;
        self.running_deletes = 0;
        self.deferred_term = 0;
        self.deleting.clear();
    }

    /// Starts again: a new run, full reports to every master.
    pub fn restart(&mut self) {
        self.up = true;
        self.incarnation += 1;
        self.seq = 0;
        self.touched.clear();
        self.cursor.iter_mut().for_each(|c| *c = None);
    }

    /// The fence: a request of a lower term than the highest recorded is
    /// refused; a higher one is recorded unless a delete still runs.
    pub fn admit(&mut self, term: u64) -> bool {
        if term < self.term {
            return false;
        }
        self.record_term(term);
        true
    }

    /// Records `term` once no delete runs (see `chunkserver/src/fence.rs`).
    pub fn record_term(&mut self, term: u64) {
        if self.running_deletes > 0 {
            self.deferred_term = self.deferred_term.max(term);
        } else {
            self.term = self.term.max(term);
        }
    }

    /// `SetDrain` under `term`: the fence, then the mark, durably.
    pub fn set_drain(&mut self, draining: bool, term: u64) -> Answer {
        if !self.admit(term) {
            return Answer::Fenced;
        }
        self.draining = draining;
        Answer::Ok(self.stamp())
    }

    /// A delete of `chunk` was admitted (before the fence): reported as
    /// running until [`ChunkServer::delete_ended`] or [`ChunkServer::delete_refused`].
    pub fn delete_begun(&mut self, chunk: &str) {
        *self.deleting.entry(chunk.to_owned()).or_default() += 1;
    }

    /// The fence refused a delete of `chunk`.
    pub fn delete_refused(&mut self, chunk: &str) {
        if let Some(n) = self.deleting.get_mut(chunk) {
            *n -= 1;
            if *n == 0 {
                self.deleting.remove(chunk);
            }
        }
    }

    /// A delete's blocking part ended.
    pub fn delete_ended(&mut self, chunk: &str) {
        self.delete_refused(chunk);
        self.running_deletes = self.running_deletes.saturating_sub(1);
        if self.running_deletes == 0 && self.deferred_term > self.term {
            self.term = self.deferred_term;
        }
    }

    /// The blocking part of `DeleteChunk` of replica `replica` (0: whatever
    /// is held, indexed and damaged), `Store::delete_replica`'s rule: the
    /// damaged copy goes when it is the one named, the indexed one when it
    /// is; another replica stays (NOT_FOUND). Returns the answer and the
    /// indexed and damaged files removed.
    pub fn delete(&mut self, chunk: &str, replica: u64) -> (Answer, Option<File>, Option<File>) {
        let damaged_meant = replica == 0
            || self
                .damaged
                .get(chunk)
                .is_some_and(|f| f.generation == replica);
        let damaged = if damaged_meant {
            self.damaged.remove(chunk)
        } else {
            None
        };
        let named = self
            .files
            .get(chunk)
            .is_some_and(|f| replica == 0 || f.generation == replica);
        if !named {
            let answer = match damaged {
                Some(_) => Answer::Ok(self.stamp()),
                None => Answer::NotFound,
            };
            return (answer, None, damaged);
        }
        let whole = self.files.remove(chunk);
        self.touch(chunk);
        (Answer::Ok(self.stamp()), whole, damaged)
    }

    /// `VerifyChunk` begins: the replica is marked suspect first, durably,
    /// so a crash before the verdict leaves it reported suspect.
    pub fn mark_suspect(&mut self, chunk: &str) {
        if let Some(f) = self.files.get_mut(chunk)
            && !f.suspect
        {
            f.suspect = true;
            self.touch(chunk);
        }
    }

    /// `VerifyChunk`'s verdict: rereads the copy; a damaged one goes to
    /// `damaged/` (keeping its identity), a whole one loses its mark.
    pub fn verify(&mut self, chunk: &str) -> Answer {
        match self.files.get(chunk).copied() {
            None => Answer::NotFound,
            Some(mut f) if f.rot => {
                self.files.remove(chunk);
                f.suspect = false;
                self.damaged.insert(chunk.to_owned(), f);
                self.touch(chunk);
                Answer::Corrupt(self.stamp(), f.generation)
            }
            Some(f) => {
                if f.suspect {
                    if let Some(f) = self.files.get_mut(chunk) {
                        f.suspect = false;
                    }
                    self.touch(chunk);
                }
                Answer::Whole(self.stamp())
            }
        }
    }

    /// The report to master `m`: full when it has no cursor, else the
    /// changes since its cursor. Returns it with the sequence it covers.
    pub fn report(&self, m: usize, address: &str) -> (Heartbeat, u64) {
        let rep = |c: &str, f: &File| ReplicaReport {
            chunk: c.to_owned(),
            size: f.size,
            crc32c: f.crc32c,
            replication: f.factor,
            reads: 0,
            replica_id: f.generation,
            suspect: f.suspect,
        };
        let mut hb = Heartbeat {
            id: self.id.clone(),
            address: address.to_owned(),
            capacity: 1 << 40,
            used: self.files.values().map(|f| f.size).sum(),
            chunk_count: self.files.len() as u64,
            stamp: Some(self.stamp()),
            deleting: self.deleting.keys().cloned().collect(),
            draining: self.draining,
            ..Heartbeat::default()
        };
        match self.cursor.get(m).copied().flatten() {
            None => {
                hb.full_report = true;
                hb.chunks = self.files.iter().map(|(c, f)| rep(c, f)).collect();
            }
            Some(since) => {
                for (c, _) in self.touched.iter().filter(|(_, s)| **s > since) {
                    match self.files.get(c) {
                        Some(f) => hb.chunks.push(rep(c, f)),
                        None => hb.removed.push(c.clone()),
                    }
                }
            }
        }
        (hb, self.seq)
    }
}
