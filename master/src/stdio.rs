//! The seed's JSON-lines front door (`keel-master --stdio`): one Maelstrom-style
//! message per line on stdin (`{"src","dest","body"}`), one reply per line on
//! stdout, answered through the same core as the gRPC service.
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

mod lines;

use keel_balancer::MoveRef;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncWrite, AsyncWriteExt};
use tokio_util::task::TaskTracker;

use crate::balance::Balancer;
use crate::ha::LeaderInfo;
use crate::meta::{Reject, lock};
use crate::mover::Mover;
use crate::rebalance::{self, MoveEnd};

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
    #[serde(serialize_with = "number")]
    pub utilization_pct: f64,
}

/// Body of `rebalance_check_ok`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckOk {
    /// Capacity-weighted average utilization of live servers.
    #[serde(serialize_with = "number")]
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

/// What the protocol needs from the master: the same calls the gRPC service makes.
pub trait Core {
    /// `RebalanceCheck`.
    fn check(&self) -> impl Future<Output = CheckOk> + Send;
    /// `RebalanceExecute`; an error when no listed move could be carried out.
    fn execute(
        &self,
        moves: Vec<MoveRef>,
    ) -> impl Future<Output = Result<ExecuteOk, ProtoError>> + Send;
}

/// Writes f64s that hold whole numbers as integers (`50`, not `50.0`), as the seed does.
fn number<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

/// Per-session state: our node id and the reply counter.
#[derive(Debug, Default)]
pub struct Session {
    node_id: Option<String>,
    next_msg_id: u64,
}

/// A parsed incoming line.
struct Incoming {
    src: String,
    body: Map<String, Value>,
    msg_id: Option<Value>,
}

impl Session {
    /// Handles one line as a [`LineReader`] read it: its bytes must be
    /// UTF-8 text without NUL. Returns the reply line, if any (blank lines
    /// get none).
    pub async fn handle_input<C: Core>(&mut self, core: &C, line: Line) -> Option<String> {
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
        self.handle_line(core, text).await
    }

    /// Handles one input line and returns the reply line, if any (blank lines get none).
    pub async fn handle_line<C: Core>(&mut self, core: &C, line: &str) -> Option<String> {
        if line.trim().is_empty() {
            return None;
        }
        let (src, in_reply_to, result) = match parse(line) {
            Ok(msg) => {
                let result = self.dispatch(core, &msg).await;
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

    async fn dispatch<C: Core>(
        &mut self,
        core: &C,
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
            "rebalance_check" => Ok(("rebalance_check_ok", to_map(&core.check().await))),
            "rebalance_execute" => {
                let moves = parse_moves(&msg.body)?;
                Ok(("rebalance_execute_ok", to_map(&core.execute(moves).await?)))
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
pub async fn serve<C, R, W>(
    core: &C,
    input: R,
    mut output: W,
    max_line: usize,
) -> Result<(), SessionError>
where
    C: Core,
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut session = Session::default();
    let mut lines = LineReader::new(input, max_line);
    while let Some(line) = lines.next_line().await.map_err(SessionError::Read)? {
        if let Some(reply) = session.handle_input(core, line).await {
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

/// Whom to answer for a line that is refused before parsing: the `src` and
/// `msg_id` it names, if it would parse as a message at all.
fn sender(line: &str) -> (String, Option<Value>) {
    match parse(line) {
        Ok(msg) => (msg.src, msg.msg_id),
        Err((src, _)) => (src.unwrap_or_default(), None),
    }
}

fn parse(line: &str) -> Result<Incoming, (Option<String>, ProtoError)> {
    let value: Value = serde_json::from_str(line).map_err(|e| {
        (
            None,
            ProtoError::new(Code::MalformedRequest, format!("not a JSON message: {e}")),
        )
    })?;
    let Value::Object(mut top) = value else {
        return Err((
            None,
            ProtoError::new(
                Code::MalformedRequest,
                "a message must be a JSON object with src, dest and body",
            ),
        ));
    };
    let src = match top.remove("src") {
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err((
                None,
                ProtoError::new(Code::MalformedRequest, "\"src\" must be a string"),
            ));
        }
        None => {
            return Err((
                None,
                ProtoError::new(Code::MalformedRequest, "missing \"src\""),
            ));
        }
    };
    let body = match top.remove("body") {
        Some(Value::Object(b)) => b,
        Some(_) => {
            return Err((
                Some(src),
                ProtoError::new(Code::MalformedRequest, "\"body\" must be an object"),
            ));
        }
        None => {
            return Err((
                Some(src),
                ProtoError::new(Code::MalformedRequest, "missing \"body\""),
            ));
        }
    };
    let msg_id = body.get("msg_id").cloned();
    if let Some(id) = &msg_id
        && !id.is_u64()
    {
        return Err((
            Some(src),
            ProtoError::new(
                Code::MalformedRequest,
                "\"msg_id\" must be a non-negative integer",
            ),
        ));
    }
    Ok(Incoming { src, body, msg_id })
}

fn field_str<'a>(body: &'a Map<String, Value>, key: &str) -> Result<&'a str, ProtoError> {
    match body.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(ProtoError::new(
            Code::MalformedRequest,
            format!("\"{key}\" must be a string, not {}", kind(other)),
        )),
        None => Err(ProtoError::new(
            Code::MalformedRequest,
            format!("missing \"{key}\" in body"),
        )),
    }
}

fn parse_moves(body: &Map<String, Value>) -> Result<Vec<MoveRef>, ProtoError> {
    let list = match body.get("moves") {
        Some(Value::Array(list)) => list,
        Some(other) => {
            return Err(ProtoError::new(
                Code::MalformedRequest,
                format!("\"moves\" must be an array, not {}", kind(other)),
            ));
        }
        None => {
            return Err(ProtoError::new(
                Code::MalformedRequest,
                "missing \"moves\" in body",
            ));
        }
    };
    if list.is_empty() {
        return Err(ProtoError::new(
            Code::MalformedRequest,
            "\"moves\" is empty",
        ));
    }
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let Value::Object(m) = m else {
                return Err(ProtoError::new(
                    Code::MalformedRequest,
                    format!("moves[{i}] must be an object with chunk, from and to"),
                ));
            };
            let get = |k: &str| {
                field_str(m, k)
                    .map(str::to_owned)
                    .map_err(|e| ProtoError::new(e.code, format!("moves[{i}]: {}", e.text)))
            };
            Ok(MoveRef::new(get("chunk")?, get("from")?, get("to")?))
        })
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn to_map<T: Serialize>(v: &T) -> Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

fn json_map<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Reply body with `type`, `in_reply_to`, `msg_id` first, then the payload.
fn body(
    ty: &str,
    in_reply_to: Option<Value>,
    msg_id: u64,
    payload: Map<String, Value>,
) -> Vec<(String, Value)> {
    let mut out = vec![("type".to_owned(), Value::from(ty))];
    if let Some(id) = in_reply_to {
        out.push(("in_reply_to".to_owned(), id));
    }
    out.push(("msg_id".to_owned(), Value::from(msg_id)));
    out.extend(payload);
    out
}

/// `{"src": .., "dest": .., "body": {..}}` with Python-style separators.
fn encode(src: &str, dest: &str, body: &[(String, Value)]) -> String {
    let fields: Vec<String> = body
        .iter()
        .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), pretty_inline(v)))
        .collect();
    format!(
        "{{\"src\": {}, \"dest\": {}, \"body\": {{{}}}}}",
        Value::from(src),
        Value::from(dest),
        fields.join(", ")
    )
}

/// A JSON value on one line with `", "` and `": "` separators.
fn pretty_inline(v: &Value) -> String {
    match v {
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(pretty_inline)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(m) => {
            let fields: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), pretty_inline(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        other => other.to_string(),
    }
}

/// The master's core as the JSON-lines protocol sees it: the same metadata,
/// utilization maths and move path as `RebalanceCheck` / `RebalanceExecute`.
#[derive(Debug, Clone)]
pub struct MasterCore {
    /// Mover (and through it the metadata).
    pub mover: Mover,
    /// Where moves run, so shutdown waits for them.
    pub tracker: TaskTracker,
    /// The balancer, whose queue and limits see these moves as operator moves.
    pub balancer: Balancer,
    /// `--threshold-pct`.
    pub threshold_pct: f64,
}

impl Core for MasterCore {
    async fn check(&self) -> CheckOk {
        let view = lock(self.mover.meta()).load_view();
        let report = keel_balancer::load::check(&view, self.threshold_pct);
        let pct = |l: keel_balancer::ServerLoad| ServerPct {
            server: l.server,
            utilization_pct: l.utilization_pct,
        };
        CheckOk {
            average_utilization_pct: report.average_utilization_pct,
            overloaded: report.overloaded.into_iter().map(pct).collect(),
            underloaded: report.underloaded.into_iter().map(pct).collect(),
        }
    }

    async fn execute(&self, moves: Vec<MoveRef>) -> Result<ExecuteOk, ProtoError> {
        let leadership = self.mover.leadership();
        let leader = leadership.leader();
        if !leader.is_self {
            return Err(not_leader(&leader));
        }
        let outcomes = rebalance::execute(&self.balancer, moves.clone())
            .await
            .map_err(|e| ProtoError::new(Code::MalformedRequest, e.to_string()))?;
        if rebalance::stepped_down(&outcomes) {
            let text = crate::service::stepped_down_text(&leadership.leader());
            return Err(ProtoError::new(Code::TemporarilyUnavailable, text));
        }
        execute_reply(&moves, outcomes)
    }
}

/// Code 11 for a change asked of a master that does not lead (a standby
/// with `--etcd`): its own queue never runs, so it answers at once, naming
/// the leader when one is known. Reads are answered from its own view.
fn not_leader(leader: &LeaderInfo) -> ProtoError {
    let text = if leader.address.is_empty() {
        "this master is a standby and no leader is known right now; retry shortly".to_owned()
    } else {
        format!(
            "this master is a standby; the leader is {} (term {}): send rebalance_execute there",
            leader.address, leader.term
        )
    };
    ProtoError::new(Code::TemporarilyUnavailable, text)
}

/// `rebalance_execute_ok` when at least one move was carried out; otherwise
/// the error of the first move, with the code its reason deserves.
fn execute_reply(moves: &[MoveRef], outcomes: Vec<MoveEnd>) -> Result<ExecuteOk, ProtoError> {
    let mut ok = ExecuteOk {
        moved: 0,
        bytes_transferred: 0,
    };
    let mut first_error = None;
    for (mv, outcome) in moves.iter().zip(outcomes) {
        let err = match outcome {
            MoveEnd::Done(d) => {
                ok.moved += 1;
                ok.bytes_transferred += d.bytes;
                continue;
            }
            MoveEnd::Rejected(r) => ProtoError::new(reject_code(&r), r.to_string()),
            MoveEnd::Failed(e) => ProtoError::new(Code::TemporarilyUnavailable, e),
            MoveEnd::SteppedDown => ProtoError::new(
                Code::TemporarilyUnavailable,
                "this master is no longer the leader",
            ),
        };
        let err = ProtoError::new(
            err.code,
            format!(
                "move of {} from {} to {}: {}",
                mv.chunk, mv.from, mv.to, err.text
            ),
        );
        first_error.get_or_insert(err);
    }
    match first_error {
        Some(e) if ok.moved == 0 => Err(e),
        _ => Ok(ok),
    }
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
