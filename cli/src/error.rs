//! keelctl's errors and how each is said to a person: one line, no Debug
//! dumps, gRPC codes turned into sentences.

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::path::PathBuf;

use keel_proto::chunk_id::ChunkIdError;
use tonic::{Code, Status};

use crate::words::{age, count, io_message, one_line};

/// Everything that makes keelctl exit with status 1.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The chunk id breaks the chunk-id rules.
    #[error(transparent)]
    BadChunkId(#[from] ChunkIdError),

    /// A flag value that clap could not check on its own.
    #[error("{0}")]
    Usage(String),

    /// A local file could not be read or written.
    #[error("{action} {}: {}", path.display(), io_message(source))]
    File {
        /// What keelctl was doing, e.g. `cannot read`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },

    /// No connection could be made.
    #[error("cannot reach {peer}: {reason}")]
    Unreachable {
        /// e.g. `the master at http://127.0.0.1:7000`.
        peer: String,
        /// Root cause, e.g. `connection refused`.
        reason: String,
    },

    /// An address keelctl will not dial (e.g. `http://` with TLS set up):
    /// nothing was sent to it.
    #[error("refusing to contact {peer}: {reason}")]
    Refused {
        /// e.g. `master http://127.0.0.1:7000`.
        peer: String,
        /// Why, e.g. plaintext refused under TLS.
        reason: String,
    },

    /// An RPC answered with a non-OK status.
    #[error("{}", rpc_sentence(peer, op, status))]
    Rpc {
        /// Who answered.
        peer: String,
        /// What was asked, in words (`rebalance check`).
        op: &'static str,
        /// The answer.
        status: Box<Status>,
    },

    /// The master knows no chunk by this id.
    #[error("chunk {chunk:?} not found")]
    ChunkNotFound {
        /// The id asked for.
        chunk: String,
    },

    /// The master allocated no server for a new chunk.
    #[error("the master chose no server for chunk {chunk:?}")]
    NoPlacement {
        /// The chunk being put.
        chunk: String,
    },

    /// Some replica writes of a put failed.
    #[error("{}", replica_writes(chunk, stored, failed))]
    ReplicaWrites {
        /// The chunk being put.
        chunk: String,
        /// Servers that stored it.
        stored: Vec<String>,
        /// Why each other server did not (each error names its server).
        failed: Vec<Error>,
    },

    /// A chunk server acknowledged other bytes than were sent.
    #[error(
        "{peer} stored {got_size} bytes with crc32c {got_crc:#010x}, but {size} bytes with crc32c \
         {crc:#010x} were sent (did the file change while it was being sent?)"
    )]
    StoredMismatch {
        /// The server.
        peer: String,
        /// Size it acknowledged.
        got_size: u64,
        /// CRC32C it acknowledged.
        got_crc: u32,
        /// Size sent.
        size: u64,
        /// CRC32C sent.
        crc: u32,
    },

    /// A replica served bytes that do not match their record.
    #[error("{peer} served a bad copy: {what}")]
    BadCopy {
        /// The server.
        peer: String,
        /// What did not match.
        what: String,
    },

    /// A data stream moved nothing for `--stream-idle-timeout`.
    #[error(
        "{peer} stalled: {op} moved no bytes for {} (see --stream-idle-timeout)",
        age(*idle)
    )]
    Stalled {
        /// The server.
        peer: String,
        /// What was under way, in words (`read chunk`).
        op: &'static str,
        /// The limit that passed.
        idle: std::time::Duration,
    },

    /// The master lists no replica of the chunk.
    #[error("the master lists no replica of chunk {chunk:?}")]
    NoReplicas {
        /// The chunk asked for.
        chunk: String,
    },

    /// Every replica of the chunk failed.
    #[error("no replica of chunk {chunk:?} could be read ({})", list(failures))]
    NoReplicaReadable {
        /// The chunk asked for.
        chunk: String,
        /// Why each server tried failed (each error names its server).
        failures: Vec<Error>,
    },

    /// `rebalance execute`: some moves were not done.
    #[error("{}", moves_incomplete(*requested, not_done, *missing))]
    MovesIncomplete {
        /// Moves asked for.
        requested: usize,
        /// `CHUNK FROM->TO OUTCOME: REASON` of each move not done.
        not_done: Vec<String>,
        /// Moves the master returned no result for.
        missing: usize,
    },

    /// `rebalance run --wait`: moves failed while waiting.
    #[error("{failed} of {total} moves failed (see `keelctl rebalance status`)")]
    MovesFailed {
        /// Failed moves.
        failed: u64,
        /// Done plus failed moves.
        total: u64,
    },

    /// `rebalance run --wait-timeout` passed.
    #[error(
        "stopped waiting after {}: moves are still queued and go on (see `keelctl rebalance status`)",
        age(*after)
    )]
    WaitTimedOut {
        /// The limit.
        after: std::time::Duration,
    },

    /// `keelctl health`: the daemon answered, but not `SERVING`.
    #[error("{peer} is {status}")]
    NotServing {
        /// e.g. `the daemon at http://127.0.0.1:7000`.
        peer: String,
        /// The health status's protocol name, e.g. `NOT_SERVING`.
        status: String,
    },

    /// `keelctl demo` failed.
    #[error(transparent)]
    Demo(#[from] crate::demo::error::DemoError),

    /// The async runtime could not start.
    #[error("cannot start the runtime: {}", io_message(.0))]
    Runtime(io::Error),

    /// Ctrl-C: the command stopped (a get leaves no temp file behind; queued
    /// moves go on at the master).
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// Wraps an I/O error on `path`.
    pub fn file(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::File {
            action,
            path: path.into(),
            source,
        }
    }

    /// Wraps a gRPC status from `peer` answering `op`.
    pub fn rpc(peer: &str, op: &'static str, status: Status) -> Self {
        Error::Rpc {
            peer: peer.to_owned(),
            op,
            status: Box::new(status),
        }
    }

    /// The gRPC code, when this is an RPC error.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Rpc { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    /// Time left in the master's safe mode, when this is a refusal for
    /// that reason (the master says so in [`keel_proto::SAFE_MODE_HEADER`]).
    pub fn safe_mode_left(&self) -> Option<std::time::Duration> {
        let Error::Rpc { status, .. } = self else {
            return None;
        };
        safe_mode_left(status)
    }

    /// Process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Interrupted => 130,
            _ => 1,
        }
    }
}

fn list(items: &[Error]) -> String {
    let parts: Vec<String> = items.iter().map(Error::to_string).collect();
    parts.join("; ")
}

fn replica_writes(chunk: &str, stored: &[String], failed: &[Error]) -> String {
    let done = if stored.is_empty() {
        format!("chunk {chunk:?} was not stored anywhere")
    } else {
        format!("chunk {chunk:?} was stored on {} only", stored.join(", "))
    };
    format!("{done}: {}", list(failed))
}

fn moves_incomplete(requested: usize, not_done: &[String], missing: usize) -> String {
    let mut line = format!(
        "{} of {} did not complete",
        not_done.len() + missing,
        count(requested as u64, "move")
    );
    if !not_done.is_empty() {
        line.push_str(": ");
        line.push_str(&not_done.join("; "));
    }
    if missing > 0 {
        line.push_str(&format!("; the master returned no result for {missing}"));
    }
    line
}

/// Turns a gRPC status into one sentence naming who answered and what was asked.
pub fn rpc_sentence(peer: &str, op: &str, status: &Status) -> String {
    let msg = crate::tls::annotate(peer, status_message(status));
    match status.code() {
        Code::Unimplemented => format!("{peer} does not support {op} yet (UNIMPLEMENTED)"),
        // It answered: the refusal is no outage.
        Code::Unavailable if safe_mode_left(status).is_some() => {
            format!("{peer} refused {op}: {msg}")
        }
        Code::Unavailable => format!("cannot reach {peer}: {msg}"),
        Code::Unauthenticated => format!(
            "{peer} refused {op}: {msg} (set --auth-token, KEEL_AUTH_TOKEN or --token-file to the cluster's or a client token)"
        ),
        Code::PermissionDenied => format!("{peer} refused {op}: permission denied: {msg}"),
        Code::DeadlineExceeded => format!("{peer} did not finish {op} in time: {msg}"),
        Code::Cancelled => format!("{op} on {peer} was cancelled: {msg}"),
        Code::DataLoss => format!("{peer} reported data loss during {op}: {msg}"),
        Code::Internal | Code::Unknown => format!("{peer} failed {op}: {msg}"),
        Code::Ok => format!("{op} on {peer} answered OK with an error: {msg}"),
        _ => format!("{op} refused by {peer}: {msg}"),
    }
}

/// The safe-mode time left that a master's refusal carries, if any.
fn safe_mode_left(status: &Status) -> Option<std::time::Duration> {
    let ms = status.metadata().get(keel_proto::SAFE_MODE_HEADER)?;
    let ms: u64 = ms.to_str().ok()?.parse().ok()?;
    Some(std::time::Duration::from_millis(ms))
}

/// The status message on one line; for transport failures, the root cause.
pub fn status_message(status: &Status) -> String {
    if let Some(io) = find_io_error(status) {
        return io_message(io);
    }
    let mut msg = one_line(status.message());
    // A transport failure's words (e.g. an HTTP/2 goodbye's reason) are in its source.
    if let Some(src) = StdError::source(status) {
        let cause = root_cause(src);
        if !msg.contains(&cause) {
            msg = if msg.is_empty() {
                cause
            } else {
                format!("{msg}: {cause}")
            };
        }
    }
    if msg.is_empty() {
        status.code().description().to_owned()
    } else {
        msg
    }
}

/// The first `io::Error` in an error's source chain.
pub fn find_io_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a io::Error> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        cur = e.source();
    }
    None
}

/// The deepest cause of a transport error, in words, e.g. `connection refused`.
pub fn root_cause(err: &(dyn StdError + 'static)) -> String {
    if let Some(io) = find_io_error(err) {
        return io_message(io);
    }
    let mut last = err;
    while let Some(next) = last.source() {
        last = next;
    }
    one_line(&last.to_string())
}

/// How a peer is named in messages.
pub struct Peer<'a> {
    /// Server id, or `None` for the master.
    pub id: Option<&'a str>,
    /// gRPC URL.
    pub url: &'a str,
}

impl fmt::Display for Peer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            None => write!(f, "the master at {}", self.url),
            Some(id) => write!(f, "chunk server {id} at {}", self.url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "the master at http://127.0.0.1:7000";

    #[test]
    fn codes_become_sentences() {
        let s = |code, msg: &str| rpc_sentence(M, "rebalance plan", &Status::new(code, msg));
        assert_eq!(
            s(Code::Unimplemented, ""),
            "the master at http://127.0.0.1:7000 does not support rebalance plan yet (UNIMPLEMENTED)"
        );
        assert_eq!(
            s(Code::InvalidArgument, "bad\nthing"),
            "rebalance plan refused by the master at http://127.0.0.1:7000: bad thing"
        );
        assert!(s(Code::Unauthenticated, "missing token").contains("--auth-token"));
        assert!(s(Code::Internal, "").ends_with("failed rebalance plan: Internal error"));
    }

    #[test]
    fn errors_render_on_one_line() {
        let e = Error::ChunkNotFound {
            chunk: "ch9".into(),
        };
        assert_eq!(e.to_string(), "chunk \"ch9\" not found");
        let e = Error::file(
            "cannot read",
            "/nope",
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert_eq!(e.to_string(), "cannot read /nope: entity not found");
        let p = Peer {
            id: Some("cs1"),
            url: "http://h:1",
        };
        assert_eq!(p.to_string(), "chunk server cs1 at http://h:1");
        let e = Error::ReplicaWrites {
            chunk: "c1".into(),
            stored: vec!["cs1".into()],
            failed: vec![Error::NoReplicas { chunk: "x".into() }],
        };
        assert_eq!(
            e.to_string(),
            "chunk \"c1\" was stored on cs1 only: the master lists no replica of chunk \"x\""
        );
    }
}
