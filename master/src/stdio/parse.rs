//! Decoding: a line into a message, and a message's fields, each refused
//! with code 12 and a sentence saying what is wrong.

use serde_json::{Map, Value};

use super::{Code, ProtoError};
use keel_balancer::MoveRef;

/// A parsed incoming line.
pub(super) struct Incoming {
    /// The sender, whom the reply goes to.
    pub(super) src: String,
    /// The message body.
    pub(super) body: Map<String, Value>,
    /// The sender's id for it, echoed as `in_reply_to`.
    pub(super) msg_id: Option<Value>,
}

/// Whom to answer for a line that is refused before parsing: the `src` and
/// `msg_id` it names, if it would parse as a message at all.
pub(super) fn sender(line: &str) -> (String, Option<Value>) {
    match parse(line) {
        Ok(msg) => (msg.src, msg.msg_id),
        Err((src, _)) => (src.unwrap_or_default(), None),
    }
}

pub(super) fn parse(line: &str) -> Result<Incoming, (Option<String>, ProtoError)> {
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

pub(super) fn field_str<'a>(
    body: &'a Map<String, Value>,
    key: &str,
) -> Result<&'a str, ProtoError> {
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

pub(super) fn parse_moves(body: &Map<String, Value>) -> Result<Vec<MoveRef>, ProtoError> {
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

pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
