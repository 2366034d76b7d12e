//! The master's request errors and their one mapping to gRPC status codes.

use keel_proto::chunk_id::ChunkIdError;

/// Metadata header naming the leader in a refusal from a master that does
/// not lead, so clients retry there without parsing the text.
pub const LEADER_HEADER: &str = "keel-leader";

/// A call that changes something, refused because this master does not
/// lead. Each front door words it for its callers; the gRPC code and the
/// leader header come from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotLeader {
    /// The leader's advertised address as known now; empty when none is.
    pub leader: String,
    /// Its term (0 when none is known).
    pub term: u64,
    /// Whether this master leads again (it stepped down and won anew).
    pub leads_again: bool,
    /// Whether this master led when the call came and stopped while it
    /// waited; otherwise it was a standby from the start.
    pub stepped_down: bool,
}

impl NotLeader {
    /// Whether a leader other than this master is known, so a caller can
    /// be sent there.
    pub fn names_leader(&self) -> bool {
        !self.leads_again && !self.leader.is_empty()
    }
}

impl From<NotLeader> for Error {
    fn from(n: NotLeader) -> Self {
        Error::NotLeader(n)
    }
}

impl std::fmt::Display for NotLeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (leader, term) = (&self.leader, self.term);
        if !self.stepped_down {
            return if leader.is_empty() {
                f.write_str(
                    "this master is a standby and no leader is known right now; retry shortly",
                )
            } else {
                write!(
                    f,
                    "this master is a standby; the leader is {leader} (term {term})"
                )
            };
        }
        f.write_str("this master is no longer the leader: it stepped down while the request waited; its queued moves were dropped, and any already copying end on their own (done, or fenced and cleaned up)")?;
        if self.leads_again {
            write!(f, "; it leads again at term {term}: send the request again")
        } else if leader.is_empty() {
            f.write_str("; no leader is known right now: retry shortly")
        } else {
            write!(f, "; the leader is {leader} (term {term})")
        }
    }
}

/// Why a request was refused. Each variant maps to one gRPC code in
/// `impl From<Error> for tonic::Status`; the message is the `Display` text.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A chunk id broke the chunk-id rules.
    #[error("{0}")]
    BadChunkId(#[from] ChunkIdError),
    /// A server id is empty or holds characters outside `[A-Za-z0-9._-]`.
    #[error("server id {id:?} is invalid: {why}")]
    BadServerId {
        /// The refused id.
        id: String,
        /// What is wrong with it.
        why: String,
    },
    /// A heartbeat came without a usable address.
    #[error("server {server}: address {address:?} is not a usable gRPC address: {why}")]
    BadAddress {
        /// Id of the reporting server.
        server: String,
        /// The refused address.
        address: String,
        /// What is wrong with it.
        why: String,
    },
    /// A heartbeat listed one chunk twice, or as both present and removed.
    #[error("heartbeat of {server} lists chunk {chunk} more than once")]
    DuplicateInHeartbeat {
        /// Id of the reporting server.
        server: String,
        /// The repeated chunk.
        chunk: String,
    },
    /// A chunk size beyond [`crate::convert::MAX_CHUNK_BYTES`].
    #[error("chunk {chunk}: size {size} exceeds the largest supported chunk ({max} bytes)")]
    ChunkTooLarge {
        /// The chunk.
        chunk: String,
        /// Its claimed size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// No chunk by this id is known.
    #[error("chunk {chunk} is not known to the master")]
    ChunkNotFound {
        /// The chunk asked for.
        chunk: String,
    },
    /// `AllocateChunk` for a chunk that already has replicas.
    #[error("chunk {chunk} already exists")]
    ChunkExists {
        /// The chunk asked for.
        chunk: String,
    },
    /// A server id no heartbeat ever announced.
    #[error("server {server} is not known to the master")]
    UnknownServer {
        /// The server named.
        server: String,
    },
    /// A pinned server is known but not alive.
    #[error("server {server} is dead")]
    ServerDead {
        /// The server named.
        server: String,
    },
    /// A pinned server is being drained: it takes no new data.
    #[error("server {server} is draining and takes no new chunks (undrain it first)")]
    ServerDraining {
        /// The server named.
        server: String,
    },
    /// The same server was pinned twice.
    #[error("server {server} is listed more than once")]
    DuplicateServer {
        /// The repeated server.
        server: String,
    },
    /// Pinned placement and replication factor disagree.
    #[error("replication {replication} does not match the {pinned} pinned servers")]
    PinnedReplicationMismatch {
        /// Replication factor requested.
        replication: u32,
        /// Number of servers pinned.
        pinned: usize,
    },
    /// Not enough servers can take the chunk above the free-space floor.
    #[error("no room for chunk {chunk} ({size} bytes): {why}")]
    NoSpace {
        /// The chunk being placed.
        chunk: String,
        /// Its size in bytes.
        size: u64,
        /// Which servers fell short.
        why: String,
    },
    /// No chunk server is alive.
    #[error("no chunk server is alive")]
    NoLiveServers,
    /// A server holds no whole replica of a chunk.
    #[error("server {server} holds no replica of chunk {chunk}")]
    NotHolder {
        /// The chunk named.
        chunk: String,
        /// The server named.
        server: String,
    },
    /// `RebalanceExecute` without moves.
    #[error("the request lists no moves")]
    NoMoves,
    /// `RebalanceRun` before safe mode is over: the view may still lack servers.
    #[error(
        "the master is in safe mode for another {remaining_ms} ms (servers are still reporting); try again then"
    )]
    SafeMode {
        /// Time left, in milliseconds.
        remaining_ms: u64,
    },
    /// A replication factor outside `1..=MAX_REPLICATION`.
    #[error("{context}: {why}")]
    BadReplication {
        /// Where it came from.
        context: String,
        /// What is wrong with it.
        why: String,
    },
    /// The chunk server could not keep its drain mark.
    #[error("could not {action} {server}: {detail}")]
    DrainMark {
        /// `drain` or `undrain`.
        action: &'static str,
        /// The server.
        server: String,
        /// Its answer.
        detail: String,
    },
    /// The planner could not finish (a bug; nothing was queued).
    #[error("the balancer's planner failed: {0}")]
    Planner(String),
    /// A heartbeat from a new server id while `--max-servers` ids are known.
    #[error("server {server} refused: the master already knows {limit} server ids (--max-servers)")]
    TooManyServers {
        /// The new id.
        server: String,
        /// `--max-servers`.
        limit: usize,
    },
    /// `AllocateChunk` while too many allocations await their heartbeats.
    #[error(
        "chunk {chunk}: {limit} allocations are already waiting for their writes \
         (--max-pending-allocations); retry in a few seconds"
    )]
    TooManyAllocations {
        /// The chunk asked for.
        chunk: String,
        /// The limit.
        limit: usize,
    },
    /// A plan (`RebalancePlan`, `RebalanceRun`) is already being computed.
    #[error(
        "another rebalance plan is being computed and did not finish within {waited_ms} ms; \
         retry when it is done"
    )]
    PlanBusy {
        /// How long this request waited for it.
        waited_ms: u64,
    },
    /// A change asked of a master that does not lead (see [`NotLeader`]).
    #[error("{0}")]
    NotLeader(NotLeader),
    /// etcd did not take the pause, so neither did the queue.
    #[error("could not record the pause in etcd, so nothing changed: {detail}")]
    PauseNotRecorded {
        /// etcd's answer.
        detail: String,
    },
    /// The task applying a full report ended without an answer (a bug).
    #[error("applying a full report failed: {detail}")]
    ReportTask {
        /// How the task ended.
        detail: String,
    },
    /// A corruption report over its rate limit (see `corruption_limits`).
    #[error("corruption report of chunk {chunk} on {server} dropped: {why}; retry later")]
    ReportsLimited {
        /// The chunk.
        chunk: String,
        /// The reported server.
        server: String,
        /// Which limit, in words.
        why: String,
    },
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        use tonic::Code;
        let code = match &e {
            Error::BadChunkId(_)
            | Error::BadServerId { .. }
            | Error::BadAddress { .. }
            | Error::DuplicateInHeartbeat { .. }
            | Error::ChunkTooLarge { .. }
            | Error::UnknownServer { .. }
            | Error::DuplicateServer { .. }
            | Error::PinnedReplicationMismatch { .. }
            | Error::BadReplication { .. }
            | Error::NoMoves => Code::InvalidArgument,
            Error::DrainMark { .. } => Code::Unavailable,
            Error::ChunkNotFound { .. } | Error::NotHolder { .. } => Code::NotFound,
            Error::ChunkExists { .. } => Code::AlreadyExists,
            Error::ServerDead { .. } | Error::ServerDraining { .. } => Code::FailedPrecondition,
            Error::NoSpace { .. }
            | Error::TooManyServers { .. }
            | Error::TooManyAllocations { .. }
            | Error::PlanBusy { .. }
            | Error::ReportsLimited { .. } => Code::ResourceExhausted,
            Error::NoLiveServers => Code::Unavailable,
            Error::SafeMode { .. } => Code::Unavailable,
            Error::Planner(_) | Error::ReportTask { .. } => Code::Internal,
            Error::PauseNotRecorded { .. } => Code::Unavailable,
            // A standby that knows no leader cannot send the caller anywhere.
            Error::NotLeader(n) if !n.stepped_down && n.leader.is_empty() => Code::Unavailable,
            Error::NotLeader(_) => Code::FailedPrecondition,
        };
        let mut status = tonic::Status::new(code, e.to_string());
        match e {
            Error::SafeMode { remaining_ms } => {
                // Machine-readable, so clients wait it out without parsing text.
                status
                    .metadata_mut()
                    .insert(keel_proto::SAFE_MODE_HEADER, remaining_ms.into());
            }
            Error::NotLeader(n) if n.names_leader() => {
                if let Ok(v) = n.leader.parse() {
                    status.metadata_mut().insert(LEADER_HEADER, v);
                }
            }
            _ => {}
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_deliberate() {
        let s: tonic::Status = Error::ChunkExists { chunk: "c".into() }.into();
        assert_eq!(s.code(), tonic::Code::AlreadyExists);
        assert_eq!(s.message(), "chunk c already exists");
        let s: tonic::Status = Error::SafeMode { remaining_ms: 1500 }.into();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert!(s.message().contains("safe mode for another 1500 ms"));
        let left = s.metadata().get(keel_proto::SAFE_MODE_HEADER);
        assert_eq!(left.and_then(|v| v.to_str().ok()), Some("1500"));
        let s: tonic::Status = Error::ServerDead {
            server: "cs2".into(),
        }
        .into();
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
    }

    fn not_leader(leader: &str, term: u64, stepped_down: bool) -> tonic::Status {
        Error::NotLeader(NotLeader {
            leader: leader.into(),
            term,
            leads_again: false,
            stepped_down,
        })
        .into()
    }

    #[test]
    fn the_step_down_refusal_names_what_is_known() {
        let s = not_leader("http://m2:7000", 8, true);
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(
            s.message().contains("no longer the leader"),
            "{}",
            s.message()
        );
        assert!(
            s.message()
                .contains("the leader is http://m2:7000 (term 8)")
        );
        assert_eq!(
            s.metadata()
                .get(LEADER_HEADER)
                .and_then(|v| v.to_str().ok()),
            Some("http://m2:7000")
        );
        let s = not_leader("", 0, true);
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(s.message().contains("no leader is known right now"));
        assert!(s.metadata().get(LEADER_HEADER).is_none());
    }

    #[test]
    fn a_standby_refers_callers_to_the_leader_it_knows() {
        let s = not_leader("http://m1:7000", 4, false);
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            s.message(),
            "this master is a standby; the leader is http://m1:7000 (term 4)"
        );
        let header = s.metadata().get(LEADER_HEADER);
        assert_eq!(header.and_then(|v| v.to_str().ok()), Some("http://m1:7000"));
        let s = not_leader("", 0, false);
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert!(s.metadata().get(LEADER_HEADER).is_none());
    }
}
