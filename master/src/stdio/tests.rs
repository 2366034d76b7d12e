//! Unit and property tests of the JSON-lines session.

use tokio_util::task::TaskTracker;

use super::*;
use crate::meta::{Meta, MetaSettings};

/// The real front over `meta`, leading as a single master. No mover loop
/// runs: a move that passed its checks would wait, so tests name only moves
/// the metadata refuses.
fn front_over(meta: Meta, leadership: crate::ha::Leadership) -> Front {
    let mover = crate::rebalance::tests::mover_under(meta, leadership.clone());
    let balancer = crate::rebalance::tests::balancer_of(mover);
    Front::new(balancer, TaskTracker::new(), 10.0).with_ha(crate::ha::Ha {
        leadership,
        etcd: None,
    })
}

/// A front over empty metadata: every move is refused at once.
fn empty() -> Front {
    front_over(
        Meta::new(MetaSettings::default()),
        crate::ha::Leadership::single(),
    )
}

/// A front over four servers of 1,000 bytes: cs1 at 78 %, the others
/// inside the band around the average of 57.5 %.
fn loaded() -> Front {
    let now = std::time::Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    for (server, used) in [("cs1", 780), ("cs2", 510), ("cs3", 510), ("cs4", 500)] {
        let chunk = format!("{server}-data");
        crate::meta::tests::put(&mut m, server, &[(&chunk, used)], now);
    }
    front_over(m, crate::ha::Leadership::single())
}

#[tokio::test]
async fn replies_in_the_seed_shape() {
    let front = loaded();
    let mut s = Session::default();
    let init = r#"{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}"#;
    assert_eq!(
        s.handle_line(&front, init).await.as_deref(),
        Some(
            r#"{"src": "n1", "dest": "c0", "body": {"type": "init_ok", "in_reply_to": 1, "msg_id": 0}}"#
        )
    );
    let check = s
        .handle_line(
            &front,
            r#"{"src":"c1","body":{"type":"rebalance_check","msg_id":2}}"#,
        )
        .await;
    assert_eq!(
        check.as_deref(),
        Some(
            r#"{"src": "n1", "dest": "c1", "body": {"type": "rebalance_check_ok", "in_reply_to": 2, "msg_id": 1, "average_utilization_pct": 57.5, "overloaded": [{"server": "cs1", "utilization_pct": 78}], "underloaded": []}}"#
        )
    );
    let exec = s
        .handle_line(&front, r#"{"src":"c1","body":{"type":"rebalance_execute","msg_id":3,"moves":[{"chunk":"x","from":"a","to":"b"}]}}"#)
        .await;
    assert_eq!(
        exec.as_deref(),
        Some(
            r#"{"src": "n1", "dest": "c1", "body": {"type": "error", "in_reply_to": 3, "msg_id": 2, "code": 20, "text": "move of x from a to b: unknown server a"}}"#
        )
    );
    assert_eq!(s.handle_line(&front, "   ").await, None);
}

#[tokio::test]
async fn texts_escape_hostile_input() {
    let mut s = Session::default();
    let reply = s
        .handle_line(
            &empty(),
            r#"{"src":"c\"1","body":{"type":"a\nb","msg_id":1}}"#,
        )
        .await
        .unwrap_or_default();
    let v: Value = serde_json::from_str(&reply).expect("reply stays valid JSON");
    assert_eq!(v["dest"], "c\"1");
    assert_eq!(v["body"]["code"], 11);
}

/// Runs a whole session over `input` with lines capped at `cap` bytes and
/// returns the reply lines.
async fn session(input: &[u8], cap: usize) -> Vec<String> {
    let mut out = Vec::new();
    serve(&empty(), input, &mut out, cap)
        .await
        .expect("in-memory input and output never fail");
    let out = String::from_utf8(out).expect("replies are UTF-8");
    out.lines().map(str::to_owned).collect()
}

fn json_of(line: &str) -> Value {
    serde_json::from_str(line).expect("every reply is one JSON line")
}

#[tokio::test]
async fn bytes_that_are_not_text_get_code_12_and_the_session_goes_on() {
    let mut input = Vec::new();
    input.extend_from_slice(b"\xff\n");
    input.extend_from_slice(b"{\"src\":\"c1\",\"body\":{\"type\":\"\xc3(\",\"msg_id\":4}}\r\n");
    input.extend_from_slice(b"{\"src\":\"c1\"\0}\n");
    input.extend_from_slice(&[b'{'; 300]);
    input.extend_from_slice(b"\n\n");
    input.extend_from_slice(br#"{"src":"c2","body":{"type":"init","msg_id":9,"node_id":"n1"}}"#);
    let replies = session(&input, 256).await;
    let v: Vec<Value> = replies.iter().map(|l| json_of(l)).collect();
    assert_eq!(v.len(), 5, "{replies:#?}");
    for (i, reply) in v[..4].iter().enumerate() {
        assert_eq!(reply["body"]["type"], "error", "{reply}");
        assert_eq!(reply["body"]["code"], 12, "{reply}");
        assert_eq!(reply["body"]["msg_id"], i as u64, "{reply}");
    }
    let text = |i: usize| v[i]["body"]["text"].as_str().unwrap_or_default().to_owned();
    assert!(
        text(0).contains("not valid UTF-8 (bad byte at offset 0)"),
        "{}",
        text(0)
    );
    assert_eq!(v[0]["dest"], "");
    assert!(v[0]["body"].get("in_reply_to").is_none());
    // JSON apart from one bad byte: answered to its sender.
    assert_eq!(
        (&v[1]["dest"], &v[1]["body"]["in_reply_to"]),
        (&Value::from("c1"), &Value::from(4))
    );
    assert!(text(2).contains("NUL byte at offset 11"), "{}", text(2));
    assert_eq!(
        text(3),
        "line of 300 bytes is over the limit of 256 bytes; it was discarded"
    );
    assert_eq!(
        (&v[3]["dest"], v[3]["body"].get("in_reply_to")),
        (&Value::from(""), None)
    );
    assert_eq!(v[4]["body"]["type"], "init_ok");
    assert_eq!(
        (&v[4]["dest"], &v[4]["body"]["in_reply_to"]),
        (&Value::from("c2"), &Value::from(9))
    );
}

/// A stdout that refuses every write.
struct ClosedPipe;

impl AsyncWrite for ClosedPipe {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        _: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn only_eof_is_an_ordinary_end_and_a_broken_stdout_is_an_error() {
    let mut out = Vec::new();
    let ended = serve(&empty(), &b"\xff\n"[..], &mut out, 64).await;
    assert!(ended.is_ok() && !out.is_empty(), "{ended:?}");
    // Blank input needs no reply, so a closed stdout goes unnoticed.
    assert!(serve(&empty(), &b"\n \n"[..], ClosedPipe, 64).await.is_ok());
    let ended = serve(&empty(), &b"\xff\n"[..], ClosedPipe, 64).await;
    assert!(matches!(ended, Err(SessionError::Write(_))), "{ended:?}");
}

/// Random lines, random JSON and message-shaped JSON: the session never
/// panics, answers every non-blank line with one line of valid JSON whose
/// body has a type, numbers its replies 0, 1, 2, … and answers to the
/// sender with the sender's `msg_id` whenever the message carries both.
mod properties {
    use proptest::collection::{btree_map, vec};
    use proptest::prelude::*;

    use super::*;

    const KEYS: [&str; 10] = [
        "src", "dest", "body", "type", "msg_id", "node_id", "moves", "chunk", "from", "to",
    ];

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::from),
            prop::sample::select(KEYS.to_vec()).prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let key = prop_oneof![
                prop::sample::select(KEYS.to_vec()).prop_map(String::from),
                ".{0,4}"
            ];
            prop_oneof![
                vec(inner.clone(), 0..5).prop_map(Value::Array),
                btree_map(key, inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A message that gets past some or all of the parser's checks:
    /// each field is mostly well formed, sometimes any JSON, sometimes
    /// missing.
    fn message() -> impl Strategy<Value = Value> {
        let types = vec!["init", "rebalance_check", "rebalance_execute", "echo"];
        let ty = prop_oneof![
            6 => prop::sample::select(types).prop_map(Value::from),
            1 => json(),
        ];
        let name = || prop_oneof![6 => "[a-z]{1,3}[0-9]?".prop_map(Value::from), 1 => json()];
        let mv = (name(), name(), name(), 0..16u8).prop_map(|(c, f, t, drop)| {
            let fields = [("chunk", c), ("from", f), ("to", t)];
            Value::Object(kept(fields, drop))
        });
        let moves = prop_oneof![6 => vec(mv, 0..4).prop_map(Value::Array), 1 => json()];
        let msg_id = prop_oneof![6 => any::<u64>().prop_map(Value::from), 1 => json()];
        let src = prop_oneof![6 => "c[0-9]".prop_map(Value::from), 1 => json()];
        let node = prop_oneof![6 => "n[0-9]".prop_map(Value::from), 1 => json()];
        (src, ty, msg_id, node, moves, 0..64u8).prop_map(|(src, ty, id, node, moves, drop)| {
            let body = [
                ("type", ty),
                ("msg_id", id),
                ("node_id", node),
                ("moves", moves),
            ];
            let body = Value::Object(kept(body, drop));
            let top = [("src", src), ("dest", Value::from("n1")), ("body", body)];
            Value::Object(kept(top, drop >> 4))
        })
    }

    /// The fields whose bit in `drop` is clear, or all of them when
    /// `drop` is at least 8 (so most messages keep every field).
    fn kept<const N: usize>(fields: [(&str, Value); N], drop: u8) -> Map<String, Value> {
        let drop = if drop >= 8 { 0 } else { drop };
        fields
            .into_iter()
            .enumerate()
            .filter(|(i, _)| drop & (1 << i) == 0)
            .map(|(_, (k, v))| (k.to_owned(), v))
            .collect()
    }

    fn run(lines: &[String]) -> Vec<Option<String>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let front = empty();
            let mut s = Session::default();
            let mut out = Vec::with_capacity(lines.len());
            for l in lines {
                out.push(s.handle_line(&front, l).await);
            }
            out
        })
    }

    /// `src` and `msg_id` of a line the parser accepts as a message.
    fn sender(line: &str) -> (Value, Option<Value>) {
        let Ok(Value::Object(top)) = serde_json::from_str::<Value>(line) else {
            return (Value::from(""), None);
        };
        let Some(Value::String(src)) = top.get("src") else {
            return (Value::from(""), None);
        };
        let id = match top.get("body") {
            Some(Value::Object(b)) => b.get("msg_id").filter(|v| v.is_u64()).cloned(),
            _ => None,
        };
        (Value::from(src.as_str()), id)
    }

    fn check(lines: &[String]) -> Result<(), TestCaseError> {
        let replies = run(lines);
        let mut next = 0u64;
        for (line, reply) in lines.iter().zip(replies) {
            if line.trim().is_empty() {
                prop_assert!(reply.is_none());
                continue;
            }
            let reply =
                reply.ok_or_else(|| TestCaseError::fail(format!("no reply to {line:?}")))?;
            prop_assert!(!reply.contains('\n'), "{}", reply);
            let v: Value = serde_json::from_str(&reply)
                .map_err(|e| TestCaseError::fail(format!("{e}: {reply}")))?;
            let body = &v["body"];
            prop_assert!(
                v["src"].is_string() && body["type"].is_string(),
                "{}",
                reply
            );
            prop_assert_eq!(body["msg_id"].as_u64(), Some(next), "{}", reply);
            next += 1;
            let (src, id) = sender(line);
            prop_assert_eq!(&v["dest"], &src, "{}", reply);
            prop_assert_eq!(body.get("in_reply_to"), id.as_ref(), "{}", reply);
            if body["type"] == "error" {
                let code = body["code"].as_u64();
                prop_assert!(matches!(code, Some(10..=13 | 20 | 22)), "{}", reply);
                prop_assert!(
                    body["text"].as_str().is_some_and(|t| !t.is_empty()),
                    "{}",
                    reply
                );
            }
        }
        Ok(())
    }

    /// The longest line [`arbitrary_bytes`] sessions keep.
    const CAP: usize = 200;

    /// What each line of `input` must get, in order: `None` no reply (a
    /// blank line), `Some(true)` an error with code 12 (over [`CAP`], not
    /// UTF-8, or holding NUL), `Some(false)` any one reply.
    fn expected(input: &[u8]) -> Vec<Option<bool>> {
        let mut parts: Vec<&[u8]> = input.split(|&b| b == b'\n').collect();
        if parts.last().is_some_and(|p| p.is_empty()) {
            parts.pop();
        }
        parts
            .into_iter()
            .map(|p| {
                let p = p.strip_suffix(b"\r").unwrap_or(p);
                match std::str::from_utf8(p) {
                    _ if p.len() > CAP => Some(true),
                    Err(_) => Some(true),
                    Ok(t) if t.contains('\0') => Some(true),
                    Ok(t) if t.trim().is_empty() => None,
                    Ok(_) => Some(false),
                }
            })
            .collect()
    }

    /// Pieces of a byte stream: any bytes, line endings, NUL, bytes that
    /// are never UTF-8, cut multi-byte characters, runs over [`CAP`], and
    /// whole messages.
    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            3 => any::<Vec<u8>>(),
            3 => prop::sample::select(vec![
                b"\n".to_vec(), b"\r\n".to_vec(), b"\r".to_vec(), vec![0], vec![0xff], vec![0xc3],
                "é".as_bytes().to_vec(), b" ".to_vec(),
            ]),
            1 => (1..3 * CAP).prop_map(|n| vec![b'x'; n]),
            3 => message().prop_map(|m| m.to_string().into_bytes()),
        ];
        vec(piece, 0..16).prop_map(|pieces| pieces.concat())
    }

    fn run_bytes(input: &[u8]) -> Vec<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(session(input, CAP))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn arbitrary_lines(lines in vec(prop_oneof![any::<String>(), "[{}\\[\\]\":,a-z0-9 ]{0,30}"], 1..8)) {
            check(&lines)?;
        }

        #[test]
        fn arbitrary_json(values in vec(json(), 1..8)) {
            let lines: Vec<String> = values.iter().map(Value::to_string).collect();
            check(&lines)?;
        }

        #[test]
        fn message_shaped_json(init in any::<bool>(), values in vec(message(), 1..10)) {
            let mut lines: Vec<String> = values.iter().map(Value::to_string).collect();
            if init {
                let first = r#"{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1"}}"#;
                lines.insert(0, first.to_owned());
            }
            check(&lines)?;
        }

        /// Any bytes through the whole session, line reader included: one
        /// reply per line that is not blank, numbered 0, 1, 2, …, code 12
        /// for every line over the cap, not UTF-8 or holding NUL; an
        /// overlong line is answered to `""` with no `in_reply_to`.
        #[test]
        fn arbitrary_bytes(init in any::<bool>(), input in bytes()) {
            let mut input = input;
            if init {
                let first = br#"{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1"}}"#;
                input.splice(0..0, first.iter().chain(b"\n").copied());
            }
            let want = expected(&input);
            let replies = run_bytes(&input);
            let want: Vec<bool> = want.into_iter().flatten().collect();
            prop_assert_eq!(replies.len(), want.len(), "{:?}", replies);
            for (i, (reply, malformed)) in replies.iter().zip(want).enumerate() {
                let v: Value = serde_json::from_str(reply)
                    .map_err(|e| TestCaseError::fail(format!("{e}: {reply}")))?;
                let body = &v["body"];
                prop_assert!(v["src"].is_string() && v["dest"].is_string(), "{}", reply);
                prop_assert_eq!(body["msg_id"].as_u64(), Some(i as u64), "{}", reply);
                if malformed {
                    prop_assert_eq!(&body["type"], "error", "{}", reply);
                    prop_assert_eq!(body["code"].as_u64(), Some(12), "{}", reply);
                }
                if body["text"].as_str().is_some_and(|t| t.contains("over the limit")) {
                    prop_assert_eq!(&v["dest"], "", "{}", reply);
                    prop_assert!(body.get("in_reply_to").is_none(), "{}", reply);
                }
            }
        }
    }
}

/// The real front of a standby that knows `leader` (or none).
fn standby_front(leader: Option<(&str, u64)>) -> Front {
    let now = std::time::Instant::now();
    let mut m = Meta::new(MetaSettings::default());
    crate::meta::tests::put(&mut m, "a", &[("x", 10)], now);
    crate::meta::tests::put(&mut m, "b", &[], now);
    let l = crate::ha::Leadership::elected("http://m2:7000".into());
    l.observe(leader.map(|(a, t)| (a.to_owned(), t)));
    front_over(m, l)
}

#[tokio::test]
async fn a_standby_refuses_execute_at_once_with_code_11_and_still_answers_checks() {
    let init = r#"{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}"#;
    let exec = r#"{"src":"c1","body":{"type":"rebalance_execute","msg_id":2,"moves":[{"chunk":"x","from":"a","to":"b"}]}}"#;
    let check = r#"{"src":"c1","body":{"type":"rebalance_check","msg_id":3}}"#;
    for (leader, named) in [
        (
            Some(("http://m1:7000", 7)),
            "the leader is http://m1:7000 (term 7)",
        ),
        (None, "no leader is known right now"),
    ] {
        let front = standby_front(leader);
        let mut s = Session::default();
        s.handle_line(&front, init).await;
        let reply = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            s.handle_line(&front, exec),
        )
        .await
        .expect("answered at once, not queued on the standby");
        let v = json_of(reply.as_deref().expect("a reply"));
        assert_eq!(v["body"]["type"], "error", "{v}");
        assert_eq!(v["body"]["code"], 11, "{v}");
        let text = v["body"]["text"].as_str().expect("text");
        assert!(text.contains("this master is a standby"), "{text}");
        assert!(text.contains(named), "{text}");
        assert_eq!(front.balancer().status().queue.pending, 0, "nothing queued");
        let v = json_of(&s.handle_line(&front, check).await.expect("a reply"));
        assert_eq!(v["body"]["type"], "rebalance_check_ok", "{v}");
    }
}
