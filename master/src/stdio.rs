//! The seed's JSON-lines front door (`keel-master --stdio`): one Maelstrom-style
//! message per line on stdin (`{"src","dest","body"}`), one reply per line on
//! stdout, answered by the same [`Front`] as the gRPC service: this module
//! only decodes the lines and encodes the answers.
//!
//! Replies use the seed's exact shape — Python-style separators (`", "`,
//! `": "`) and `type`, `in_reply_to`, `msg_id` first in the body — so a
//! harness that compares lines byte for byte passes too.
//!
//! Nothing on the input ends the session; only EOF does. Every line that is
//! not blank gets exactly one reply. Lines are read as bytes with a cap of
//! [`MAX_LINE_BYTES`] (see [`LineReader`]); a line that is over it, not UTF-8,
//! holds a NUL byte or is not a message gets an `error` body with code 12
//! (malformed request). A reply goes to the message's `src` with its
//! `msg_id` as `in_reply_to`; when a line is too broken to name its sender
//! (not JSON, no `src`, over the cap) the reply has `"dest": ""` and no
//! `in_reply_to`: an empty `dest` says the sender is unknown, where reusing
//! the last sender seen could misdirect the error. A line that is JSON apart from invalid UTF-8 is answered
//! to the `src` it names. A failure to read stdin or write stdout ends the
//! session with a [`SessionError`], which the caller logs; it is never a
//! reason to stop the gRPC side.
//!
//! # Layout
//! - this file: the session, its replies' bodies, and the front's answers
//!   as replies.
//! - `lines.rs`: lines read as bytes with a length cap.
//! - `parse.rs`: a line into a message and its fields.
//! - `encode.rs`: replies in the seed's line shape.

mod encode;
mod lines;
mod parse;

use keel_balancer::{LoadReport, ServerLoad};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt};

use crate::error::Error;
use crate::front::Front;
use crate::meta::Reject;
use crate::rebalance::{Executed, MoveEnd};

use self::encode::{body, encode, json_map, to_map};
use self::parse::{Incoming, field_str, parse, parse_moves, sender};
pub use lines::{Line, LineReader, MAX_LINE_BYTES};

/// Maelstrom error codes used here. With several masters, a
/// `rebalance_execute` sent to a standby, or cut short because this master
/// stopped leading, gets code 11 with the leader's address in its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 10: the message type is not supported.
    NotSupported = 10,
    /// 11: try again later (e.g. before `init`).
    TemporarilyUnavailable = 11,
    /// 12: the message is malformed.
    MalformedRequest = 12,
    /// 13: the node failed in a way it cannot describe better.
    Crash = 13,
    /// 20: a named chunk or server does not exist.
    KeyDoesNotExist = 20,
    /// 22: the request is well formed but cannot be carried out now.
    PreconditionFailed = 22,
}

/// An error reply: code and readable text.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtoError {
    /// Maelstrom error code.
    pub code: Code,
    /// Human-readable explanation.
    pub text: String,
}

impl ProtoError {
    fn new(code: Code, text: impl Into<String>) -> Self {
        ProtoError {
            code,
            text: text.into(),
        }
    }
}

/// One server in a `rebalance_check_ok` list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerPct {
    /// Server id.
    pub server: String,
    /// Utilization in percent.
    #[serde(serialize_with = "encode::number")]
    pub utilization_pct: f64,
}

/// Body of `rebalance_check_ok`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckOk {
    /// Capacity-weighted average utilization of live servers.
    #[serde(serialize_with = "encode::number")]
    pub average_utilization_pct: f64,
    /// Servers above the band, most loaded first.
    pub overloaded: Vec<ServerPct>,
    /// Servers below the band, least loaded first.
    pub underloaded: Vec<ServerPct>,
}

/// Body of `rebalance_execute_ok`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExecuteOk {
    /// Moves completed.
    pub moved: u32,
    /// Bytes copied by the completed moves.
    pub bytes_transferred: u64,
}

/// Per-session state: our node id and the reply counter.
#[derive(Debug, Default)]
pub struct Session {
    node_id: Option<String>,
    next_msg_id: u64,
}

impl Session {
    /// Handles one line as a [`LineReader`] read it: its bytes must be
    /// UTF-8 text without NUL. Returns the reply line, if any (blank lines
    /// get none).
    pub async fn handle_input(&mut self, front: &Front, line: Line) -> Option<String> {
        let bytes = match line {
            Line::Whole(bytes) => bytes,
            Line::TooLong { len, limit } => {
                let text = format!(
                    "line of {len} bytes is over the limit of {limit} bytes; it was discarded"
                );
                let e = ProtoError::new(Code::MalformedRequest, text);
                return Some(self.reply(String::new(), None, Err(e)));
            }
        };
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) => text,
            Err(e) => {
                let lossy = String::from_utf8_lossy(&bytes);
                let (src, in_reply_to) = sender(&lossy);
                let text = format!(
                    "line is not valid UTF-8 (bad byte at offset {}); messages are UTF-8 JSON",
                    e.valid_up_to()
                );
                let e = ProtoError::new(Code::MalformedRequest, text);
                return Some(self.reply(src, in_reply_to, Err(e)));
            }
        };
        if let Some(at) = text.find('\0') {
            let text = format!("line holds a NUL byte at offset {at}; messages are JSON text");
            let e = ProtoError::new(Code::MalformedRequest, text);
            return Some(self.reply(String::new(), None, Err(e)));
        }
        self.handle_line(front, text).await
    }

    /// Handles one input line and returns the reply line, if any (blank lines get none).
    pub async fn handle_line(&mut self, front: &Front, line: &str) -> Option<String> {
        if line.trim().is_empty() {
            return None;
        }
        let (src, in_reply_to, result) = match parse(line) {
            Ok(msg) => {
                let result = self.dispatch(front, &msg).await;
                (msg.src, msg.msg_id, result)
            }
            Err((src, e)) => (src.unwrap_or_default(), None, Err(e)),
        };
        Some(self.reply(src, in_reply_to, result))
    }

    /// The reply line to `dest`, numbered with the next `msg_id`.
    fn reply(
        &mut self,
        dest: String,
        in_reply_to: Option<Value>,
        result: Result<(&'static str, Map<String, Value>), ProtoError>,
    ) -> String {
        let body = match result {
            Ok((ty, payload)) => body(ty, in_reply_to, self.next_msg_id, payload),
            Err(e) => body(
                "error",
                in_reply_to,
                self.next_msg_id,
                json_map([
                    ("code", Value::from(e.code as u8)),
                    ("text", Value::from(e.text)),
                ]),
            ),
        };
        self.next_msg_id += 1;
        let me = self.node_id.as_deref().unwrap_or("n0");
        encode(me, &dest, &body)
    }

    async fn dispatch(
        &mut self,
        front: &Front,
        msg: &Incoming,
    ) -> Result<(&'static str, Map<String, Value>), ProtoError> {
        let ty = field_str(&msg.body, "type")?;
        match ty {
            "init" => {
                let node = field_str(&msg.body, "node_id")?;
                self.node_id = Some(node.to_owned());
                Ok(("init_ok", Map::new()))
            }
            _ if self.node_id.is_none() => Err(ProtoError::new(
                Code::TemporarilyUnavailable,
                format!("{ty:?} before init: send init first"),
            )),
            "rebalance_check" => Ok(("rebalance_check_ok", to_map(&check_ok(front.check())))),
            "rebalance_execute" => {
                let moves = parse_moves(&msg.body)?;
                let executed = front.execute(moves).await.map_err(refused)?;
                Ok(("rebalance_execute_ok", to_map(&execute_ok(executed)?)))
            }
            other => Err(ProtoError::new(
                Code::NotSupported,
                format!(
                    "message type {other:?} is not supported (supported: init, rebalance_check, rebalance_execute)"
                ),
            )),
        }
    }
}

/// Why a session ended before EOF: stdin or stdout failed, never input content.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Reading the input failed.
    #[error("reading stdin: {0}")]
    Read(#[source] std::io::Error),
    /// Writing a reply failed (e.g. nobody reads stdout any more).
    #[error("writing stdout: {0}")]
    Write(#[source] std::io::Error),
}

/// Runs a session until EOF on `input`, reading lines of at most `max_line`
/// bytes ([`MAX_LINE_BYTES`] for stdin). `Ok` means EOF.
pub async fn serve<R, W>(
    front: &Front,
    input: R,
    mut output: W,
    max_line: usize,
) -> Result<(), SessionError>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut session = Session::default();
    let mut lines = LineReader::new(input, max_line);
    while let Some(line) = lines.next_line().await.map_err(SessionError::Read)? {
        if let Some(reply) = session.handle_input(front, line).await {
            let written = async {
                output.write_all(reply.as_bytes()).await?;
                output.write_all(b"\n").await?;
                output.flush().await
            };
            written.await.map_err(SessionError::Write)?;
        }
    }
    Ok(())
}

/// `rebalance_check_ok` for the front's check.
fn check_ok(report: LoadReport) -> CheckOk {
    let pct = |l: ServerLoad| ServerPct {
        server: l.server,
        utilization_pct: l.utilization_pct,
    };
    CheckOk {
        average_utilization_pct: report.average_utilization_pct,
        overloaded: report.overloaded.into_iter().map(pct).collect(),
        underloaded: report.underloaded.into_iter().map(pct).collect(),
    }
}

/// A refused `rebalance_execute` as a whole. Code 11 for a master that does
/// not lead (a standby with `--etcd`, or one that stepped down while the
/// moves waited): a standby's own queue never runs, so it answers at once,
/// naming the leader when one is known.
fn refused(e: Error) -> ProtoError {
    match e {
        Error::NotLeader(n) if !n.stepped_down && n.names_leader() => ProtoError::new(
            Code::TemporarilyUnavailable,
            format!("{n}: send rebalance_execute there"),
        ),
        Error::NotLeader(n) => ProtoError::new(Code::TemporarilyUnavailable, n.to_string()),
        other => ProtoError::new(Code::MalformedRequest, other.to_string()),
    }
}

/// `rebalance_execute_ok` when at least one move was carried out; otherwise
/// the error of the first move, with the code its reason deserves.
fn execute_ok(executed: Executed) -> Result<ExecuteOk, ProtoError> {
    if executed.moved == 0
        && let Some((mv, outcome)) = executed.first_failure()
    {
        let code = match outcome {
            MoveEnd::Rejected(r) => reject_code(r),
            _ => Code::TemporarilyUnavailable,
        };
        let why = outcome.failure().unwrap_or_default();
        return Err(ProtoError::new(
            code,
            format!("move of {} from {} to {}: {why}", mv.chunk, mv.from, mv.to),
        ));
    }
    Ok(ExecuteOk {
        moved: executed.moved,
        bytes_transferred: executed.bytes,
    })
}

fn reject_code(r: &Reject) -> Code {
    match r {
        Reject::UnknownChunk { .. } | Reject::UnknownServer { .. } => Code::KeyDoesNotExist,
        Reject::BadChunkId(_) | Reject::MissingServer { .. } => Code::MalformedRequest,
        _ => Code::PreconditionFailed,
    }
}

#[cfg(test)]
mod tests;
