//! Encoding: replies in the seed's exact line shape (Python-style
//! separators, `type`, `in_reply_to`, `msg_id` first in the body).

use serde::Serialize;
use serde_json::{Map, Value};

/// Writes f64s that hold whole numbers as integers (`50`, not `50.0`), as the seed does.
pub(super) fn number<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

pub(super) fn to_map<T: Serialize>(v: &T) -> Map<String, Value> {
    match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    }
}

pub(super) fn json_map<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Reply body with `type`, `in_reply_to`, `msg_id` first, then the payload.
pub(super) fn body(
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
pub(super) fn encode(src: &str, dest: &str, body: &[(String, Value)]) -> String {
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
pub(super) fn pretty_inline(v: &Value) -> String {
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
