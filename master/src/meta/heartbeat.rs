//! Heartbeats: the only way the master learns servers and their chunks.
//!
//! A full report replaces the server's chunk set; a delta upserts `chunks` and
//! forgets `removed`. When the master lacks the server's full state (first
//! contact, or a delta that does not add up to `chunk_count`) it asks for a
//! full report and ignores deltas until one arrives.

use std::collections::HashSet;
use std::time::Instant;

use super::server::{Fresh, Stamp};
use super::{Excluded, Meta, ServerEntry, ServerNo, Upsert};

/// One replica as a chunk server reports it (already validated).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReplicaReport {
    /// Chunk id.
    pub chunk: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC32C of the chunk.
    pub crc32c: u32,
    /// Replication factor stored beside the chunk; 0 means the master's default.
    pub replication: u32,
    /// Reads served since the server started.
    pub reads: u64,
    /// The identity the server gave this replica (0: not known).
    pub replica_id: u64,
    /// Its server keeps it marked suspect (a verification never ended).
    pub suspect: bool,
}

/// A validated heartbeat.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Heartbeat {
    /// Server id.
    pub id: String,
    /// gRPC address of the server.
    pub address: String,
    /// Rack label, empty when unset.
    pub rack: String,
    /// Bytes counted as 100 %.
    pub capacity: u64,
    /// Bytes in use as the server counts them.
    pub used: u64,
    /// Whether `chunks` is everything the server holds.
    pub full_report: bool,
    /// Replicas held (full report) or added since the last heartbeat (delta).
    pub chunks: Vec<ReplicaReport>,
    /// Chunks gone since the last heartbeat (delta only).
    pub removed: Vec<String>,
    /// Number of chunks the server holds.
    pub chunk_count: u64,
    /// When the server built this report; `None` from a server that does
    /// not stamp its reports (nothing is then filtered).
    pub stamp: Option<Stamp>,
    /// The server's drain mark.
    pub draining: bool,
    /// The server's migration rate now, bytes per second (0 = unlimited).
    pub migrate_rate: u64,
    /// Chunks with a delete running on the server when it built the report.
    pub deleting: Vec<String>,
    /// Its client read load and hottest replicas.
    pub reads: super::ReadReport,
}

/// What applying a heartbeat did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeartbeatOutcome {
    /// The master wants a full report next.
    pub send_full_report: bool,
    /// First heartbeat ever from this server id.
    pub registered: bool,
    /// The server had been marked dead and is alive again.
    pub revived: bool,
    /// The report was older than what the master already applied (it
    /// arrived late) and was ignored, but as a sign of life.
    pub stale: bool,
}

impl Meta {
    /// Applies one heartbeat received at `now`.
    pub fn apply_heartbeat(&mut self, mut hb: Heartbeat, now: Instant) -> HeartbeatOutcome {
        // A replica its server is deleting may vanish at any moment: it
        // counts for nothing (as if the report lacked it).
        if !hb.deleting.is_empty() {
            let before = hb.chunks.len();
            // A set: a page may list many chunks and many deletes.
            let deleting: std::collections::HashSet<&str> =
                hb.deleting.iter().map(String::as_str).collect();
            hb.chunks.retain(|r| !deleting.contains(r.chunk.as_str()));
            let dropped = (before - hb.chunks.len()) as u64;
            hb.chunk_count = hb.chunk_count.saturating_sub(dropped);
        }
        // A dead run's report says nothing of the server now: not even
        // that it lives.
        if let Some(no) = self.server_no(&hb.id)
            && self.is_from_older_run(no, hb.stamp)
        {
            // Also what a server restarted with a lost INCARNATION file and
            // a clock behind its last run sees: say so where operators look.
            tracing::warn!(
                server = %hb.id,
                run = hb.stamp.map(|s| s.incarnation),
                known_run = self.servers[no as usize].stamp.map(|s| s.incarnation),
                "report from an earlier run of the server ignored (a late report of a dead run, \
                 or a server restarted with its run number gone backwards: restore its \
                 INCARNATION file or set its clock right)"
            );
            return HeartbeatOutcome {
                stale: true,
                ..HeartbeatOutcome::default()
            };
        }
        let (no, registered, revived) = self.touch_server(&hb, now);
        let mut out = HeartbeatOutcome {
            send_full_report: false,
            registered,
            revived,
            stale: false,
        };
        let id = self.servers[no as usize].id.clone();
        // A chunk server sends its reports one after another: one stamped
        // before a report already applied was overtaken on the way, and its
        // chunk list is older than what the master knows (a replica deleted
        // since would come back). It still counted as a sign of life above.
        if let (Some(got), Some(known)) = (hb.stamp, self.servers[no as usize].stamp)
            && got.incarnation == known.incarnation
            && got < known
        {
            tracing::info!(server = %id, "report older than one already applied arrived late; ignored");
            out.stale = true;
            return out;
        }
        self.set_drain_mark(no, hb.draining);
        if hb.full_report {
            let skew = self.apply_full(no, &hb.chunks, hb.stamp);
            self.servers[no as usize].synced = true;
            if self.settle_doubts(no, &hb.deleting) {
                // A delete that failed still runs: ask again after it.
                self.servers[no as usize].synced = false;
                out.send_full_report = true;
            }
            let held = self.servers[no as usize].held();
            if held.wrapping_add_signed(skew) != hb.chunk_count {
                tracing::warn!(server = %id, held, chunk_count = hb.chunk_count, "full report disagrees with its own chunk count");
            }
            tracing::debug!(server = %id, chunks = hb.chunks.len(), "full report applied");
        } else if !self.servers[no as usize].synced || self.delta_of_other_run(no, hb.stamp) {
            // A delta builds on the last full report of its own run only.
            self.servers[no as usize].synced = false;
            out.send_full_report = true;
            tracing::debug!(server = %id, "delta ignored until a full report arrives");
        } else {
            let mut skew = 0i64;
            for r in &hb.chunks {
                if self.outdated(no, &r.chunk, true, hb.stamp) {
                    skew += 1;
                } else {
                    self.add_replica(no, r);
                }
            }
            for chunk in &hb.removed {
                if self.outdated(no, chunk, false, hb.stamp) {
                    skew -= 1;
                } else if self.remove_replica(no, chunk) {
                    self.lost_on(no, chunk);
                }
            }
            let held = self.servers[no as usize].held();
            if held.wrapping_add_signed(skew) != hb.chunk_count {
                tracing::warn!(server = %id, held, chunk_count = hb.chunk_count, "delta does not add up; asking for a full report");
                self.servers[no as usize].synced = false;
                out.send_full_report = true;
            }
            out.send_full_report |= self.doubt_deleting(no, &hb.deleting);
        }
        self.advance_stamp(no, hb.stamp);
        // The balancer's view follows now, unless a pass holds it.
        self.chunks.flush(false);
        out
    }

    /// A delta lists deletes running on `no`: each replica of them the
    /// master counts there counts for nothing until a full report built
    /// with no delete of it running (as a full report drops it, and as a
    /// failed delete's replica waits, see [`Meta::doubt_replica`]); the
    /// delta's own entry for such a chunk was dropped, so the replica it
    /// replaced would stay counted. Returns whether any did.
    fn doubt_deleting(&mut self, no: ServerNo, deleting: &[String]) -> bool {
        let mut any = false;
        for chunk in deleting {
            if self.chunks.get(chunk).is_some_and(|c| c.holds(no)) {
                self.doubt_replica(chunk, no);
                any = true;
            }
        }
        any
    }

    /// Whether `stamp` comes from a run of the server older than the one
    /// whose reports were applied: a report delayed past a restart, whose
    /// list would bring back replicas lost since. A chunk server's runs
    /// only grow (it keeps the last one in its data dir, whatever its
    /// clock says), so an older run is a dead one, however long the newer
    /// one has been silent: seed 17907 took the first such report as a
    /// clock stepped back and asked for a full report, and seed 27308 then
    /// applied a second late report of the same dead run as that report.
    /// Whether `hb` comes from an earlier run of a server the master knows a
    /// later run of: such a report, or any page of one, is ignored whole.
    pub fn from_older_run(&self, hb: &Heartbeat) -> bool {
        self.server_no(&hb.id)
            .is_some_and(|no| self.is_from_older_run(no, hb.stamp))
    }

    fn is_from_older_run(&self, no: ServerNo, stamp: Option<Stamp>) -> bool {
        let known = self.servers[no as usize].stamp;
        matches!((stamp, known), (Some(s), Some(k)) if s.incarnation < k.incarnation)
    }

    /// Whether a delta stamped `stamp` comes from another run than the
    /// report last applied (seed 107589: a restarted master took a late
    /// full report of the server's previous run, then the current run's
    /// deltas, which build on what the master's previous process had).
    fn delta_of_other_run(&self, no: ServerNo, stamp: Option<Stamp>) -> bool {
        matches!((stamp, self.servers[no as usize].stamp),
            (Some(g), Some(k)) if g.incarnation != k.incarnation)
    }

    /// Whether what a report stamped `stamp` says of `chunk` (`listed`: it
    /// holds it) predates a change the master recorded since.
    pub(super) fn outdated(
        &self,
        no: ServerNo,
        chunk: &str,
        listed: bool,
        stamp: Option<Stamp>,
    ) -> bool {
        let Some(stamp) = stamp else {
            return false;
        };
        let fresh = &self.servers[no as usize].fresh;
        if fresh.is_empty() {
            return false;
        }
        fresh
            .get(chunk)
            .is_some_and(|f| stamp < f.at && f.present != listed)
    }

    /// Records the report's stamp and forgets the changes it covers (and
    /// every change stamped by another run).
    fn advance_stamp(&mut self, no: ServerNo, stamp: Option<Stamp>) {
        let Some(stamp) = stamp else {
            return;
        };
        let s = &mut self.servers[no as usize];
        s.stamp = Some(match s.stamp {
            Some(k) if k.incarnation == stamp.incarnation => k.max(stamp),
            _ => stamp,
        });
        if !s.fresh.is_empty() {
            s.fresh
                .retain(|_, f| f.at.incarnation == stamp.incarnation && f.at > stamp);
        }
    }

    /// Remembers a copy or delete on `no` whose answer carried `at`, so a
    /// report built before it cannot undo it.
    pub fn note_fresh(&mut self, no: ServerNo, chunk: &str, at: Option<Stamp>, present: bool) {
        let Some(at) = at else {
            return;
        };
        let s = &mut self.servers[no as usize];
        if s.stamp.is_some_and(|k| k >= at) {
            return;
        }
        s.fresh.insert(chunk.into(), Fresh { at, present });
    }

    /// Follows the drain mark a server reports.
    pub(super) fn set_drain_mark(&mut self, no: ServerNo, draining: bool) {
        let s = &mut self.servers[no as usize];
        if s.draining == draining {
            return;
        }
        s.draining = draining;
        s.drain_left = None;
        tracing::info!(server = %s.id, draining, "drain mark changed");
        if draining {
            self.queue_chunks_of(no);
        } else {
            self.rescan_for_trim = true;
        }
    }

    /// Registers the server or refreshes its address, rack, capacity and
    /// liveness. Returns (number, newly registered, revived).
    fn touch_server(&mut self, hb: &Heartbeat, now: Instant) -> (ServerNo, bool, bool) {
        let (no, registered) = match self.server_no(&hb.id) {
            Some(no) => (no, false),
            None => {
                let no = self.servers.len() as ServerNo;
                self.servers.push(ServerEntry::new(&hb.id, now));
                self.server_nos.insert(hb.id.as_str().into(), no);
                tracing::info!(server = %hb.id, address = %hb.address, rack = %hb.rack, capacity = hb.capacity, "server registered");
                (no, true)
            }
        };
        let s = &mut self.servers[no as usize];
        if !registered && s.address != hb.address {
            tracing::info!(server = %hb.id, old = %s.address, new = %hb.address, "server address changed");
        }
        s.address.clone_from(&hb.address);
        s.rack.clone_from(&hb.rack);
        s.capacity = hb.capacity;
        s.reported_used = hb.used;
        s.migrate_rate = hb.migrate_rate;
        s.last_heartbeat = now;
        let revived = !s.alive;
        if revived {
            let dead_for = s.dead_since.map(|d| now.saturating_duration_since(d));
            tracing::info!(server = %hb.id, dead_for = ?dead_for, "server alive again");
            s.alive = true;
            s.dead_since = None;
            s.repair_queued = false;
            self.rescan_for_trim = true;
        }
        // Every report, late or not, carries the server's reads now.
        self.record_reads(no, &hb.reads);
        (no, registered, revived)
    }

    /// Replaces the chunk set of server `no` with `reports`, except where a
    /// change recorded since the report was built says otherwise. Returns
    /// how many more chunks the server counted than the master now holds.
    fn apply_full(
        &mut self,
        no: ServerNo,
        reports: &[super::ReplicaReport],
        stamp: Option<Stamp>,
    ) -> i64 {
        let before = self.servers[no as usize].replicas;
        let old_excluded = std::mem::take(&mut self.servers[no as usize].excluded);
        let mut kept = 0u64;
        let mut skew = 0i64;
        for r in reports {
            if old_excluded.get(r.chunk.as_str()) == Some(&Excluded::Corrupt) {
                let s = &mut self.servers[no as usize];
                s.excluded
                    .insert(r.chunk.as_str().into(), Excluded::Corrupt);
                continue;
            }
            if self.outdated(no, &r.chunk, true, stamp) {
                skew += 1;
                continue;
            }
            if self.add_replica(no, r) == Upsert::Refreshed {
                kept += 1;
            }
        }
        if kept == before {
            return skew;
        }
        // Some replica recorded before is missing from the report: find and
        // forget every such one (a scan, but only when a report drops chunks).
        let reported: HashSet<&str> = reports.iter().map(|r| r.chunk.as_str()).collect();
        let (forgotten, kept_fresh) = self.forget_unreported(no, |id| reported.contains(id), stamp);
        skew -= kept_fresh;
        if forgotten > 0 {
            tracing::warn!(server = %self.servers[no as usize].id, forgotten, "full report lacks replicas the master had recorded; they count as lost and are re-created elsewhere");
        }
        skew
    }

    /// Forgets the replicas of `no` that a full report stamped `stamp` did
    /// not list (`reported`), except copies that landed after it was built;
    /// each forgotten one counts as lost. Returns (forgotten, kept as fresh).
    pub(super) fn forget_unreported(
        &mut self,
        no: ServerNo,
        reported: impl Fn(&str) -> bool,
        stamp: Option<Stamp>,
    ) -> (usize, i64) {
        let stale: Vec<Box<str>> = self
            .chunks
            .iter()
            .filter(|(id, c)| c.holds(no) && !reported(id))
            .map(|(id, _)| id.into())
            .collect();
        let (mut forgotten, mut fresh) = (0, 0);
        for id in &stale {
            if self.outdated(no, id, false, stamp) {
                fresh += 1;
            } else if self.remove_replica(no, id) {
                self.lost_on(no, id);
                forgotten += 1;
            }
        }
        (forgotten, fresh)
    }
}
