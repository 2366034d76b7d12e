//! One chunk server as the master sees it, learned only from its heartbeats.

use std::collections::HashMap;
use std::time::Instant;

/// Why a replica a server reports is kept out of its chunk's replica set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Excluded {
    /// Its size or CRC32C disagree with the chunk's known ones: deleted
    /// (by its identity) once the chunk has a whole replica elsewhere.
    Mismatch {
        /// The identity its server gave it (0: not known).
        replica: u64,
    },
    /// Someone reported it corrupt; it is never trusted again.
    Corrupt,
}

/// A server's state as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Heartbeats arrive; it takes placements and moves.
    Alive,
    /// Silent past `--heartbeat-timeout`.
    Dead,
    /// Marked for drain and still holding chunks the cluster needs.
    Draining,
    /// Marked for drain and holding nothing the cluster still needs.
    Drained,
}

impl ServerState {
    /// The name `keelctl servers --json` and `explain` use.
    pub fn name(self) -> &'static str {
        match self {
            ServerState::Alive => "alive",
            ServerState::Dead => "dead",
            ServerState::Draining => "draining",
            ServerState::Drained => "drained",
        }
    }
}

/// Serialized as its [`name`](ServerState::name), the word the dashboard
/// and `keelctl` show.
impl serde::Serialize for ServerState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Orders a server's reports against its commits and deletes (see
/// `keel.v1.HeartbeatStamp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    /// The chunk server's process run; later runs have larger numbers.
    pub incarnation: u64,
    /// Its change sequence within that run.
    pub seq: u64,
}

/// A commit or delete the master recorded before the server's reports
/// caught up with it: reports stamped earlier must not undo it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fresh {
    /// The server's stamp right after the change.
    pub at: Stamp,
    /// true: a copy landed (an older report's silence must not remove it);
    /// false: a delete (an older report's listing must not bring it back).
    pub present: bool,
}

/// A chunk server entry. Servers are never forgotten: a silent one turns dead
/// and its replicas stay recorded (marked by this flag) until it returns or
/// reports them gone.
#[derive(Debug, Clone)]
pub struct ServerEntry {
    /// Operator-facing id, e.g. `cs1`.
    pub id: Box<str>,
    /// gRPC address peers and the master use, e.g. `http://127.0.0.1:7001`.
    pub address: String,
    /// Failure-domain label; empty when unset.
    pub rack: String,
    /// Bytes counted as 100 %.
    pub capacity: u64,
    /// Bytes in use as the server itself last reported them.
    pub reported_used: u64,
    /// Sum of the sizes of the whole replicas recorded on this server.
    pub used: u64,
    /// Number of whole replicas recorded on this server.
    pub replicas: u64,
    /// Chunks the server holds that are not whole replicas, and why.
    pub excluded: HashMap<Box<str>, Excluded>,
    /// Bytes of recent allocations on this server not yet seen in a heartbeat.
    pub pending: u64,
    /// Bytes of copies running towards this server.
    pub incoming: u64,
    /// Whether the master holds this server's full chunk list (a full report
    /// arrived and every delta since added up).
    pub synced: bool,
    /// When the last heartbeat arrived.
    pub last_heartbeat: Instant,
    /// Whether heartbeats arrive within the timeout.
    pub alive: bool,
    /// When the server was marked dead.
    pub dead_since: Option<Instant>,
    /// Whether the chunks of this (long dead) server were already queued for repair.
    pub repair_queued: bool,
    /// The drain mark, as the server reports it (or as just set).
    pub draining: bool,
    /// Its migration rate as last reported, bytes per second (0 = unlimited).
    pub migrate_rate: u64,
    /// Chunks on this draining server that still need a copy elsewhere, as
    /// of the last maintenance pass (`None` before the first one).
    pub drain_left: Option<u64>,
    /// The stamp of the newest report applied.
    pub stamp: Option<Stamp>,
    /// Changes recorded ahead of this server's reports, by chunk.
    pub fresh: HashMap<Box<str>, Fresh>,
    /// Its client reads as last reported (zeroed when it dies).
    pub reads: super::reads::ServerReads,
    /// Its hottest replicas as last reported, hottest first (at most
    /// [`super::reads::MAX_HOT_CHUNKS`]; dropped when it dies).
    pub hot: Vec<(Box<str>, keel_balancer::ReadRate)>,
}

impl ServerEntry {
    /// A server first heard of `now`.
    pub fn new(id: &str, now: Instant) -> Self {
        ServerEntry {
            id: id.into(),
            address: String::new(),
            rack: String::new(),
            capacity: 0,
            reported_used: 0,
            used: 0,
            replicas: 0,
            excluded: HashMap::new(),
            pending: 0,
            incoming: 0,
            synced: false,
            last_heartbeat: now,
            alive: true,
            dead_since: None,
            repair_queued: false,
            draining: false,
            migrate_rate: 0,
            drain_left: None,
            stamp: None,
            fresh: HashMap::new(),
            reads: super::reads::ServerReads::default(),
            hot: Vec::new(),
        }
    }

    /// Alive, draining, drained or dead.
    pub fn state(&self) -> ServerState {
        match (self.alive, self.draining, self.drain_left) {
            (false, _, _) => ServerState::Dead,
            (true, false, _) => ServerState::Alive,
            (true, true, Some(0)) => ServerState::Drained,
            (true, true, _) => ServerState::Draining,
        }
    }

    /// Whether new replicas may land here: alive and not draining.
    pub fn takes_data(&self) -> bool {
        self.alive && !self.draining
    }

    /// `100 * used / capacity`; a server without capacity counts as full.
    pub fn utilization_pct(&self) -> f64 {
        if self.capacity == 0 {
            100.0
        } else {
            100.0 * self.used as f64 / self.capacity as f64
        }
    }

    /// Chunks the server holds, whole or not (what its `chunk_count` counts).
    pub fn held(&self) -> u64 {
        self.replicas + self.excluded.len() as u64
    }

    /// Bytes that will be in use once running copies and recent allocations
    /// land: the larger of the recorded and reported use, plus those.
    pub fn committed_bytes(&self) -> u64 {
        self.used
            .max(self.reported_used)
            .saturating_add(self.pending)
            .saturating_add(self.incoming)
    }

    /// Whether `size` more bytes fit above the free-space floor, counting
    /// the committed bytes ([`keel_balancer::space::fits_floor`], the floor
    /// every caller applies).
    pub fn fits(&self, size: u64, min_free_pct: f64) -> bool {
        keel_balancer::space::fits_floor(self.capacity, self.committed_bytes(), size, min_free_pct)
    }

    /// Free bytes as recorded (capacity minus recorded use).
    pub fn free_bytes(&self) -> u64 {
        self.capacity
            .saturating_sub(self.used.max(self.reported_used))
    }

    /// Whether the server has a rack label.
    pub fn has_rack(&self) -> bool {
        !self.rack.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_counts_pending_and_incoming() {
        let mut s = ServerEntry::new("a", Instant::now());
        s.capacity = 1000;
        s.used = 500;
        assert!(s.fits(400, 10.0));
        assert!(!s.fits(401, 10.0));
        s.pending = 100;
        assert!(!s.fits(400, 10.0));
        s.pending = 0;
        s.reported_used = 600;
        assert!(!s.fits(301, 10.0));
        assert!(s.fits(300, 10.0));
        s.incoming = 300;
        assert!(!s.fits(1, 10.0));
        assert_eq!(s.utilization_pct(), 50.0);
    }

    #[test]
    fn zero_capacity_is_full() {
        let s = ServerEntry::new("a", Instant::now());
        assert_eq!(s.utilization_pct(), 100.0);
        assert!(!s.fits(1, 0.0));
        assert!(s.fits(0, 0.0));
    }
}
