//! Every way a chunk-server operation can fail, and the one mapping to gRPC statuses.

use std::path::PathBuf;

use keel_proto::capability::CapabilityError;
use keel_proto::chunk_id::ChunkIdError;
use tonic::{Code, Status};

/// What kind of operation holds a chunk id while its bytes arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A client's `WriteChunk`.
    Write,
    /// A `CopyChunk` pulling from a peer.
    Copy,
}

/// A chunk-server error. Each variant maps to one gRPC code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The chunk id breaks the id rules.
    #[error(transparent)]
    InvalidId(#[from] ChunkIdError),
    /// A request field is missing or malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// A write without a valid capability (and without the cluster token).
    #[error(transparent)]
    Capability(#[from] CapabilityError),
    /// The chunk is not stored here.
    #[error("chunk {id} not found")]
    NotFound {
        /// The chunk asked for.
        id: String,
    },
    /// A delete named a replica this server does not hold: it holds
    /// another one of the chunk (a newer copy), which stays.
    #[error(
        "chunk {id}: replica {meant} is not held here (this server holds replica {held}, which stays)"
    )]
    OtherReplica {
        /// The chunk.
        id: String,
        /// The replica the delete named.
        meant: u64,
        /// The replica held.
        held: u64,
    },
    /// The chunk is already stored here.
    #[error("chunk {id} already exists")]
    AlreadyExists {
        /// The chunk.
        id: String,
    },
    /// A write or copy of the same id is running right now.
    #[error("{}", in_flight_message(.id, *.attempt))]
    InFlight {
        /// The chunk.
        id: String,
        /// What the refused request was trying to do.
        attempt: Purpose,
    },
    /// Accepting the chunk would exceed the capacity.
    #[error(
        "no space for chunk {id}: it needs {size} bytes, {used} bytes are used and {reserved} \
         reserved of a capacity of {capacity} bytes"
    )]
    NoSpace {
        /// The chunk.
        id: String,
        /// Its size.
        size: u64,
        /// Bytes of committed chunks.
        used: u64,
        /// Bytes held for writes and copies in flight.
        reserved: u64,
        /// `--capacity`.
        capacity: u64,
    },
    /// More or fewer bytes arrived than the header declared.
    #[error("chunk {id}: header declares {declared} bytes but {received} {verb} received")]
    SizeMismatch {
        /// The chunk.
        id: String,
        /// Size in the header.
        declared: u64,
        /// Bytes received (or at least received, when too many).
        received: u64,
        /// "were" or "or more were".
        verb: &'static str,
    },
    /// The bytes that arrived do not match the declared CRC32C.
    #[error(
        "chunk {id}: checksum mismatch: header declares crc32c {declared:#010x}, data has {actual:#010x}"
    )]
    ChecksumMismatch {
        /// The chunk.
        id: String,
        /// CRC32C in the header.
        declared: u32,
        /// CRC32C of the bytes received.
        actual: u32,
    },
    /// A stored chunk failed verification; its bytes are never served.
    #[error("chunk {id} is corrupt on this server: {detail}")]
    Corrupt {
        /// The chunk.
        id: String,
        /// What did not match.
        detail: String,
    },
    /// A copy could not reach its source.
    #[error("source {source_id} at {address} is unreachable: {detail}")]
    SourceUnavailable {
        /// Source server id.
        source_id: String,
        /// Source address.
        address: String,
        /// Cause.
        detail: String,
    },
    /// The copy source does not hold the chunk.
    #[error("source {source_id} does not hold chunk {id}")]
    SourceMissing {
        /// Source server id.
        source_id: String,
        /// The chunk.
        id: String,
    },
    /// The source's copy is not what the master expected.
    #[error("source {source_id} holds chunk {id} as {found}, but {expected} was expected")]
    SourceMismatch {
        /// Source server id.
        source_id: String,
        /// The chunk.
        id: String,
        /// What the source announced.
        found: String,
        /// What the request expected.
        expected: String,
    },
    /// A copy failed once started; `code` is the gRPC code to report.
    #[error("copy of chunk {id} from {source_id} failed after {received} bytes: {detail}")]
    CopyFailed {
        /// The chunk.
        id: String,
        /// Source server id.
        source_id: String,
        /// Bytes received before the failure.
        received: u64,
        /// Cause.
        detail: String,
        /// Code reported to the caller (UNAVAILABLE, ABORTED or DATA_LOSS).
        code: Code,
    },
    /// The client's stream broke off (cancelled, or a message tonic refused,
    /// e.g. one above the size limit); `code` is what the stream reported.
    #[error("client stream for chunk {id} broke off: {detail}")]
    ClientAborted {
        /// The chunk.
        id: String,
        /// Cause.
        detail: String,
        /// Code of the stream's error (CANCELLED when the client went away).
        code: Code,
    },
    /// `--max-transfers` writes and copies are already running.
    #[error(
        "{} of chunk {id} refused: this server already runs its limit of {limit} writes and \
         copies (--max-transfers); retry later or on another replica",
        purpose_noun(*.attempt)
    )]
    TooManyTransfers {
        /// The chunk.
        id: String,
        /// What the refused request was trying to do.
        attempt: Purpose,
        /// `--max-transfers`.
        limit: usize,
    },
    /// `--max-transfers` writes are already waiting for their header.
    #[error(
        "write refused: {limit} writes are already waiting for their first message \
         (--max-transfers); send the header at once, retry later or on another replica"
    )]
    TooManyHeaders {
        /// `--max-transfers`.
        limit: usize,
    },
    /// No read slot was free (see [`crate::reads`]).
    #[error("read of chunk {id} refused: {why}; retry later or on another replica")]
    TooManyReads {
        /// The chunk.
        id: String,
        /// Which limit, in words.
        why: String,
    },
    /// A read's client took no data for `--stream-idle-timeout`; its file
    /// and buffers were released.
    #[error(
        "read of chunk {id} abandoned: the client took no data for {secs} s \
         (--stream-idle-timeout) after {sent} bytes"
    )]
    ReadIdle {
        /// The chunk.
        id: String,
        /// The idle timeout, in seconds.
        secs: f64,
        /// Bytes handed to the connection before it stalled.
        sent: u64,
    },
    /// Only the cluster token may ask for a migration read.
    #[error(
        "read of chunk {id} refused: `migration: true` is for peers holding the cluster \
         token (--auth-token); clients read without it"
    )]
    MigrationNeedsCluster {
        /// The chunk.
        id: String,
    },
    /// A client's write stream sent nothing for `--stream-idle-timeout`; its
    /// temp file, reservation and id were released.
    #[error(
        "write of chunk {id} abandoned: the client sent nothing for {secs} s \
         (--stream-idle-timeout) after {received} bytes; the chunk id is free again"
    )]
    StreamIdle {
        /// The chunk.
        id: String,
        /// The idle timeout, in seconds.
        secs: f64,
        /// Bytes received before the stream went quiet.
        received: u64,
    },
    /// A master whose term is below the highest seen (a deposed leader)
    /// asked for a change.
    #[error(
        "refusing {what} from a master at term {term}: a master at term {highest} has \
         taken over since, so the sender is no longer the leader"
    )]
    Fenced {
        /// The refused request, e.g. "a delete".
        what: &'static str,
        /// Its term.
        term: u64,
        /// The highest term this server has seen.
        highest: u64,
    },
    /// An I/O error on this server's disk.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data dir belongs to another server id.
    #[error(
        "data dir {dir} belongs to chunk server {stored:?}, but this process was started with \
         --id {given:?}; refusing to start (use the matching --id or another --data-dir)"
    )]
    IdMismatch {
        /// The data dir.
        dir: PathBuf,
        /// Id stored there.
        stored: String,
        /// Id given on the command line.
        given: String,
    },
    /// A start-up setting is unusable.
    #[error("{0}")]
    Config(String),
}

fn purpose_noun(attempt: Purpose) -> &'static str {
    match attempt {
        Purpose::Write => "write",
        Purpose::Copy => "copy",
    }
}

fn in_flight_message(id: &str, attempt: Purpose) -> String {
    match attempt {
        Purpose::Write => format!("chunk {id} is being written or copied right now"),
        Purpose::Copy => format!("a copy of chunk {id} is already in flight"),
    }
}

impl Error {
    /// An [`Error::Io`] with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The gRPC code this error is reported with.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidId(_)
            | Error::InvalidRequest(_)
            | Error::SizeMismatch { .. }
            | Error::Config(_) => Code::InvalidArgument,
            Error::NotFound { .. } | Error::OtherReplica { .. } | Error::SourceMissing { .. } => {
                Code::NotFound
            }
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::InFlight {
                attempt: Purpose::Write,
                ..
            } => Code::AlreadyExists,
            Error::InFlight {
                attempt: Purpose::Copy,
                ..
            } => Code::Aborted,
            Error::NoSpace { .. }
            | Error::TooManyTransfers { .. }
            | Error::TooManyHeaders { .. }
            | Error::TooManyReads { .. } => Code::ResourceExhausted,
            Error::StreamIdle { .. } | Error::ReadIdle { .. } => Code::DeadlineExceeded,
            Error::MigrationNeedsCluster { .. } => Code::PermissionDenied,
            Error::ChecksumMismatch { .. } | Error::Corrupt { .. } => Code::DataLoss,
            Error::SourceUnavailable { .. } => Code::Unavailable,
            Error::SourceMismatch { .. } | Error::IdMismatch { .. } | Error::Fenced { .. } => {
                Code::FailedPrecondition
            }
            Error::CopyFailed { code, .. } => *code,
            Error::ClientAborted { code, .. } => *code,
            Error::Io { .. } => Code::Internal,
            Error::Capability(e) => e.code(),
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_depends_on_the_refused_request() {
        let w = Error::InFlight {
            id: "c1".into(),
            attempt: Purpose::Write,
        };
        let c = Error::InFlight {
            id: "c1".into(),
            attempt: Purpose::Copy,
        };
        assert_eq!(Status::from(w).code(), Code::AlreadyExists);
        let s = Status::from(c);
        assert_eq!(s.code(), Code::Aborted);
        assert_eq!(s.message(), "a copy of chunk c1 is already in flight");
    }

    #[test]
    fn no_space_names_the_numbers() {
        let e = Error::NoSpace {
            id: "c".into(),
            size: 10,
            used: 5,
            reserved: 1,
            capacity: 12,
        };
        let s = Status::from(e);
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(s.message().contains("needs 10 bytes"), "{}", s.message());
        assert!(
            s.message().contains("capacity of 12 bytes"),
            "{}",
            s.message()
        );
    }
}
