//! The gates of a move and the bookkeeping of running ones.
//!
//! A copy of chunk `c` from `s` to `t` may start only when the one
//! admission rule (`keel_balancer::admission::admit`) passes on the facts the
//! metadata holds: both servers known and alive, `c` idle, `s` holding a
//! whole replica and `t` no copy, `t` not draining, no fewer racks for a
//! move, and `t` keeping its free-space floor counting the bytes committed
//! to it. The move queue asks the same rule through [`Admits`] before it
//! starts a copy, and [`Meta::begin_move`] asks it again under the same lock,
//! so the two never disagree. While a copy runs, `c` is busy (trimming and
//! other copies leave it alone) and its bytes count against `t`.

use keel_balancer::CopyJob;
use keel_balancer::admission::{Admits, Admitted, Endpoint, MoveFacts, Refusal, admit};

use super::server::Stamp;
use super::{Busy, ChunkRecord, Meta, ReplicaReport, ServerEntry, ServerNo, mark};

/// A server's number, id and address, copied out for RPCs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    /// Number in the server table.
    pub no: ServerNo,
    /// Server id.
    pub id: String,
    /// gRPC address.
    pub address: String,
}

/// What a copy is for (the queue's classes); only balance and operator
/// moves delete their source.
pub use keel_balancer::CopyClass;

/// What keeps a chunk busy, for operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// A move or copy from one server to another.
    Copy {
        /// What for.
        kind: CopyClass,
        /// Source.
        from: ServerNo,
        /// Target.
        to: ServerNo,
    },
    /// Deleting excess or damaged copies.
    Delete,
}

/// Everything a started move needs, copied out of the metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct MoveTicket {
    /// Chunk id.
    pub chunk: String,
    /// Expected size.
    pub size: u64,
    /// Expected CRC32C.
    pub crc32c: u32,
    /// The chunk's replication factor.
    pub replication: u32,
    /// Source server.
    pub from: ServerAddr,
    /// Target server.
    pub to: ServerAddr,
    /// Move or copy.
    pub kind: CopyClass,
}

/// Why a move was refused before anything happened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Reject {
    /// The chunk id breaks the chunk-id rules.
    #[error("bad chunk id: {0}")]
    BadChunkId(String),
    /// No chunk by this id is known.
    #[error("unknown chunk {chunk}")]
    UnknownChunk {
        /// The chunk.
        chunk: String,
    },
    /// The source holds no whole replica.
    #[error("chunk {chunk} is not on {server}")]
    NotOnSource {
        /// The chunk.
        chunk: String,
        /// The named source.
        server: String,
    },
    /// The target already holds a whole replica.
    #[error("{server} already holds chunk {chunk}")]
    TargetHolds {
        /// The chunk.
        chunk: String,
        /// The named target.
        server: String,
    },
    /// The target holds a copy that is not whole; it must be removed first.
    #[error("{server} holds a damaged copy of chunk {chunk}")]
    TargetHoldsDamaged {
        /// The chunk.
        chunk: String,
        /// The named target.
        server: String,
    },
    /// `from` or `to` is empty.
    #[error("{field} is empty")]
    MissingServer {
        /// `from` or `to`.
        field: &'static str,
    },
    /// A server id no heartbeat announced.
    #[error("unknown server {server}")]
    UnknownServer {
        /// The server.
        server: String,
    },
    /// A server marked dead.
    #[error("server {server} is dead")]
    DeadServer {
        /// The server.
        server: String,
    },
    /// Source and target are one server.
    #[error("from and to are the same server ({server})")]
    SameServer {
        /// The server.
        server: String,
    },
    /// The target would keep less free space than the floor.
    #[error(
        "moving chunk {chunk} ({size} bytes) would leave {server} with less than {min_free_pct}% free"
    )]
    BelowFloor {
        /// The chunk.
        chunk: String,
        /// Its size.
        size: u64,
        /// The target.
        server: String,
        /// The floor, in percent of capacity.
        min_free_pct: f64,
    },
    /// The request lists the chunk more than once.
    #[error("chunk {chunk} is listed {times} times in this request")]
    Duplicate {
        /// The chunk.
        chunk: String,
        /// How often it is listed.
        times: usize,
    },
    /// A move, copy or delete of the chunk is already running.
    #[error("chunk {chunk} is already moving")]
    AlreadyMoving {
        /// The chunk.
        chunk: String,
    },
    /// The target is draining: it takes no new data.
    #[error("{server} is draining and takes no new chunks")]
    Draining {
        /// The target.
        server: String,
    },
    /// The move queue refused it.
    #[error("the move queue refused it: {0}")]
    Queue(String),
    /// The chunk would span fewer racks.
    #[error("moving chunk {chunk} to {server} (rack {rack}) would leave it in fewer racks")]
    SameRack {
        /// The chunk.
        chunk: String,
        /// The target.
        server: String,
        /// The shared rack.
        rack: String,
    },
}

fn rack(s: &ServerEntry) -> Option<&str> {
    s.has_rack().then_some(s.rack.as_str())
}

impl Meta {
    /// The admission rule on what the metadata knows of copying `chunk`
    /// (`c`) from `f` to `t`, with `extra` bytes promised to `t` beyond its
    /// committed bytes and a floor of `min_free_pct`.
    fn admit_copy(
        &self,
        chunk: &str,
        c: &ChunkRecord,
        (f, t): (ServerNo, ServerNo),
        (class, extra): (CopyClass, u64),
        min_free_pct: f64,
    ) -> Result<(), Refusal> {
        let (fs, ts) = (self.server(f), self.server(t));
        let others: smallvec::SmallVec<[Option<&str>; 4]> = c
            .servers()
            .filter(|&s| s != f)
            .map(|s| rack(self.server(s)))
            .collect();
        let facts = MoveFacts {
            class,
            bytes: c.size,
            busy: self.busy.contains_key(chunk),
            same_server: f == t,
            from: Endpoint {
                alive: fs.alive,
                draining: fs.draining,
                rack: rack(fs),
                holds: c.holds(f),
                holds_damaged: fs.excluded.contains_key(chunk),
            },
            to: Endpoint {
                alive: ts.alive,
                draining: ts.draining,
                rack: rack(ts),
                holds: c.holds(t),
                holds_damaged: ts.excluded.contains_key(chunk),
            },
            others: others.iter().copied(),
            to_capacity: ts.capacity,
            to_committed: ts.committed_bytes().saturating_add(extra),
            min_free_pct,
        };
        admit(&facts)
    }

    /// Checks every gate of a copy without changing anything.
    pub fn check_move(
        &self,
        chunk: &str,
        from: &str,
        to: &str,
        kind: CopyClass,
    ) -> Result<MoveTicket, Reject> {
        for (field, id) in [("from", from), ("to", to)] {
            if id.is_empty() {
                return Err(Reject::MissingServer { field });
            }
        }
        let unknown = |s: &str| Reject::UnknownServer {
            server: s.to_owned(),
        };
        let f = self.server_no(from).ok_or_else(|| unknown(from))?;
        let t = self.server_no(to).ok_or_else(|| unknown(to))?;
        let c = self.chunks.get(chunk).ok_or_else(|| Reject::UnknownChunk {
            chunk: chunk.to_owned(),
        })?;
        let ts = self.server(t);
        let (chunk_s, from_s, to_s) = (chunk.to_owned(), from.to_owned(), to.to_owned());
        self.admit_copy(chunk, c, (f, t), (kind, 0), self.settings.min_free_pct)
            .map_err(|r| match r {
                Refusal::SameServer => Reject::SameServer { server: from_s },
                Refusal::Unknown => Reject::UnknownChunk { chunk: chunk_s },
                Refusal::SourceDown => Reject::DeadServer { server: from_s },
                Refusal::TargetDown => Reject::DeadServer { server: to_s },
                Refusal::Busy => Reject::AlreadyMoving { chunk: chunk_s },
                Refusal::NotOnSource => Reject::NotOnSource {
                    chunk: chunk_s,
                    server: from_s,
                },
                Refusal::OnTarget => Reject::TargetHolds {
                    chunk: chunk_s,
                    server: to_s,
                },
                Refusal::DamagedOnTarget => Reject::TargetHoldsDamaged {
                    chunk: chunk_s,
                    server: to_s,
                },
                Refusal::TargetDraining => Reject::Draining { server: to_s },
                Refusal::FewerRacks => Reject::SameRack {
                    chunk: chunk_s,
                    server: to_s,
                    rack: ts.rack.clone(),
                },
                Refusal::BelowFloor => Reject::BelowFloor {
                    chunk: chunk_s,
                    size: c.size,
                    server: to_s,
                    min_free_pct: self.settings.min_free_pct,
                },
            })?;
        Ok(MoveTicket {
            chunk: chunk.to_owned(),
            size: c.size,
            crc32c: c.crc32c,
            replication: c.replication,
            from: self.addr(f),
            to: self.addr(t),
            kind,
        })
    }

    /// Checks the gates and, when they pass, marks the chunk busy and counts
    /// its bytes against the target until [`Meta::end_busy`].
    pub fn begin_move(
        &mut self,
        chunk: &str,
        from: &str,
        to: &str,
        kind: CopyClass,
    ) -> Result<MoveTicket, Reject> {
        let t = self.check_move(chunk, from, to, kind)?;
        let target = &mut self.servers[t.to.no as usize];
        target.incoming = target.incoming.saturating_add(t.size);
        self.busy.insert(
            chunk.into(),
            Busy {
                incoming: Some((t.to.no, t.size)),
                job: Job::Copy {
                    kind,
                    from: t.from.no,
                    to: t.to.no,
                },
            },
        );
        Ok(t)
    }

    /// Marks `chunk` busy for a delete; false when something else runs on it.
    pub fn begin_delete(&mut self, chunk: &str) -> bool {
        if self.busy.contains_key(chunk) {
            return false;
        }
        self.busy.insert(
            chunk.into(),
            Busy {
                incoming: None,
                job: Job::Delete,
            },
        );
        true
    }

    /// The move, copy or delete of `chunk` is over.
    pub fn end_busy(&mut self, chunk: &str) {
        if let Some(Busy {
            incoming: Some((no, size)),
            ..
        }) = self.busy.remove(chunk)
        {
            let s = &mut self.servers[no as usize];
            s.incoming = s.incoming.saturating_sub(size);
        }
    }

    /// [`Meta::record_copy_of`] a replica of unknown identity.
    pub fn record_copy(&mut self, t: &MoveTicket, at: Option<Stamp>) {
        self.record_copy_of(t, at, 0);
    }

    /// The target verified and stored its copy `replica` (its answer
    /// stamped `at`): record it as a whole replica, unless a report of
    /// that server stamped at or after `at` was already applied (it said
    /// whether the copy is still held; a late answer must not bring back a
    /// copy the server has lost since).
    pub fn record_copy_of(&mut self, t: &MoveTicket, at: Option<Stamp>, replica: u64) {
        if let Some(b) = self.busy.get_mut(t.chunk.as_str())
            && let Some((no, size)) = b.incoming.take()
        {
            let s = &mut self.servers[no as usize];
            s.incoming = s.incoming.saturating_sub(size);
        }
        // Copy and stat answers of this version carry a stamp; one without
        // (an older server) is taken at its word, as before.
        if let Some(at) = at
            && self.server(t.to.no).stamp.is_some_and(|k| k >= at)
        {
            tracing::info!(chunk = %t.chunk, server = %t.to.id, "copy answer older than the server's last report: that report says whether the replica is held");
            return;
        }
        self.note_fresh(t.to.no, &t.chunk, at, true);
        let report = ReplicaReport {
            chunk: t.chunk.clone(),
            size: t.size,
            crc32c: t.crc32c,
            replication: t.replication,
            reads: 0,
            replica_id: replica,
            suspect: false,
        };
        self.add_replica(t.to.no, &report);
    }

    /// Whether the source replica of a finished copy may go: the master must
    /// still count that replica on the source, and itself see at least
    /// `replication` whole replicas on live servers other than the source,
    /// none of them under suspicion of corruption. The error says why not.
    ///
    /// A source the master no longer counts (its copy vanished, or a failed
    /// delete left it in doubt) has no identity to name: a delete sent then
    /// would carry replica 0, "whatever is held", and remove a copy that
    /// lands there later while it is held up on the way (seed 38051).
    pub fn source_deletable(&self, chunk: &str, from: ServerNo) -> Result<(), String> {
        let Some(c) = self.chunks.get(chunk) else {
            return Err(format!("chunk {chunk} is no longer known"));
        };
        if !c.holds(from) {
            return Err(format!(
                "{} no longer holds a replica of {chunk} the master counts",
                self.server(from).id
            ));
        }
        let others = c
            .servers()
            .filter(|&s| s != from && self.server(s).alive && !self.is_suspect(chunk, s))
            .count();
        if others < c.replication as usize {
            return Err(format!(
                "only {others} whole replicas on live servers besides the source, {} wanted",
                c.replication
            ));
        }
        Ok(())
    }

    /// A trim of `chunk` stopped before its end (the replicas that stay
    /// could not be confirmed, or the view changed): the next pass
    /// considers it again.
    pub fn trim_stopped(&mut self, chunk: &str) {
        if self.chunks.contains_key(chunk) {
            self.trim_candidates.insert(chunk.into());
        }
    }

    /// A replica was deleted on `no` (or found missing there); the server's
    /// answer was stamped `at`.
    pub fn record_removal(&mut self, chunk: &str, no: ServerNo, at: Option<Stamp>) {
        self.note_fresh(no, chunk, at, false);
        self.remove_replica(no, chunk);
    }

    /// A delete of `chunk` on `no` failed: it may have happened anyway (the
    /// server deleted, then its answer was lost), so the replica no longer
    /// counts, and the server's next heartbeat must be a full report, which
    /// brings it back if it is still there. Counting it meanwhile could let a
    /// trim delete the last real copy elsewhere.
    ///
    /// Until then it is accepted as no copy either (see [`Meta::is_doubted`]):
    /// a copy answered `ALREADY_EXISTS` by that server waits.
    pub fn doubt_replica(&mut self, chunk: &str, no: ServerNo) {
        self.remove_replica(no, chunk);
        mark(&mut self.doubted, chunk, no);
        self.servers[no as usize].synced = false;
    }

    /// Whether a delete of `chunk` on `no` failed and may still run: its
    /// server has not yet sent a full report built with no delete of it
    /// running.
    pub fn is_doubted(&self, chunk: &str, no: ServerNo) -> bool {
        !self.doubted.is_empty() && self.doubted.get(chunk).is_some_and(|s| s.contains(&no))
    }

    /// A full report of `server` arrived, built while the deletes of
    /// `deleting` ran there: every other doubted replica of it is settled
    /// (the report said what the server holds). Returns whether some stay
    /// in doubt (another full report is then needed).
    pub fn settle_doubts_of(&mut self, server: &str, deleting: &[String]) -> bool {
        match self.server_no(server) {
            Some(no) => self.settle_doubts(no, deleting),
            None => false,
        }
    }

    /// [`Meta::settle_doubts_of`] by server number.
    pub(super) fn settle_doubts(&mut self, no: ServerNo, deleting: &[String]) -> bool {
        if self.doubted.is_empty() {
            return false;
        }
        let deleting: std::collections::HashSet<&str> =
            deleting.iter().map(String::as_str).collect();
        let mut left = false;
        self.doubted.retain(|chunk, servers| {
            servers.retain(|s| *s != no || deleting.contains(&**chunk));
            left |= servers.contains(&no);
            !servers.is_empty()
        });
        left
    }
}

/// The metadata answers the admission rule for the move queue, with the
/// queue's floor (the master gives its queue and its metadata the same
/// `--min-free-pct`).
impl Admits for Meta {
    fn check(&self, copy: &CopyJob, extra: u64, min_free_pct: f64) -> Result<Admitted, Refusal> {
        let f = self.server_no(copy.from()).ok_or(Refusal::Unknown)?;
        let t = self.server_no(copy.to()).ok_or(Refusal::Unknown)?;
        let c = self
            .chunks
            .get(copy.chunk())
            .filter(|c| c.size == copy.bytes)
            .ok_or(Refusal::Unknown)?;
        let job = (copy.class, extra);
        self.admit_copy(copy.chunk(), c, (f, t), job, min_free_pct)?;
        Ok(Admitted { from: f, to: t })
    }
}
