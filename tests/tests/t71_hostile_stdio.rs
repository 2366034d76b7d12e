//! The hostile corpus at the stdio door, `keel-master --stdio`: a line that
//! is not UTF-8, lines holding NUL, a 2 MiB line, a half-sent line left
//! hanging, and 10,000 malformed lines in a row. Each complete line gets one
//! error reply with code 12 (numbered on, with `"dest": ""` when the line
//! names no sender); a valid request after all of it is answered exactly;
//! the gRPC side answers throughout; only EOF ends the master, cleanly.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keel_proto::v1::{ListServersRequest, RebalanceCheckRequest};
use keel_tests::{Cluster, Daemon};
use serde_json::{Value, json};

const INIT: &str = r#"{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}"#;
const REPLY_WAIT: Duration = Duration::from_secs(30);

/// How many malformed lines are sent in a row.
const FLOOD: usize = 10_000;

/// Malformed lines the flood cycles through, none naming a sender.
const FLOOD_KINDS: [&[u8]; 6] = [
    b"\xff\xfe\xfd",
    b"{\"src\":\"c1\",\0\"body\":{}}",
    b"not json at all",
    b"[\"src\", \"c1\"]",
    b"{\"body\":{\"type\":\"rebalance_check\",\"msg_id\":3}}",
    b"\xc3",
];

fn reply(master: &Daemon) -> Result<Value> {
    let line = master.recv_line(REPLY_WAIT)?;
    serde_json::from_str(&line).with_context(|| format!("reply is not JSON: {line}"))
}

/// The next reply must be a code-12 error numbered `msg_id`, to `""` and in
/// reply to nothing; returns its text.
fn malformed(master: &Daemon, msg_id: u64) -> Result<String> {
    let v = reply(master)?;
    let body = &v["body"];
    assert_eq!(body["type"], "error", "{v}");
    assert_eq!(body["code"], 12, "{v}");
    assert_eq!(body["msg_id"], msg_id, "{v}");
    assert_eq!(v["dest"], "", "{v}");
    assert!(body.get("in_reply_to").is_none(), "{v}");
    Ok(body["text"].as_str().unwrap_or_default().to_owned())
}

/// gRPC answers `RebalanceCheck` and `ListServers` promptly.
async fn grpc_answers(c: &Cluster) -> Result<()> {
    let started = Instant::now();
    let mut m = c.master_client().await?;
    let check = m
        .rebalance_check(RebalanceCheckRequest {})
        .await?
        .into_inner();
    assert_eq!(check.average_utilization_pct, 0.0);
    m.list_servers(ListServersRequest {}).await?;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "gRPC took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_on_stdin_stops_the_session_or_grpc() -> Result<()> {
    let mut c = Cluster::new()?;
    let m = c.start_master(&["--stdio"])?;
    m.send_line(INIT)?;
    assert_eq!(reply(m)?["body"]["type"], "init_ok");

    m.send_bytes(b"\xff\n")?;
    let text = malformed(m, 1)?;
    assert!(text.contains("not valid UTF-8"), "{text}");
    m.send_bytes(b"\0\n{\"src\":\"c1\",\"body\":{\"type\":\"init\0\"}}\n")?;
    assert!(malformed(m, 2)?.contains("NUL byte at offset 0"));
    assert!(malformed(m, 3)?.contains("NUL byte at offset 32"));

    let mut big = vec![b' '; 2 << 20];
    big.push(b'\n');
    m.send_bytes(&big)?;
    let text = malformed(m, 4)?;
    assert_eq!(
        text,
        "line of 2097152 bytes is over the limit of 1048576 bytes; it was discarded"
    );

    // Half a line, left hanging: the session waits for its end, gRPC does not.
    m.send_bytes(&vec![b'x'; 512 << 10])?;
    grpc_answers(&c).await?;
    let m = c.master.as_mut().context("master")?;
    m.send_bytes(b"\n")?;
    assert!(malformed(m, 5)?.starts_with("not a JSON message"));

    let mut flood = Vec::new();
    for i in 0..FLOOD {
        flood.extend_from_slice(FLOOD_KINDS[i % FLOOD_KINDS.len()]);
        flood.push(b'\n');
    }
    m.send_bytes(&flood)?;
    for i in 0..FLOOD as u64 {
        malformed(m, 6 + i)?;
    }
    grpc_answers(&c).await?;

    let m = c.master.as_mut().context("master")?;
    m.send_line(r#"{"src":"c1","dest":"n1","body":{"type":"rebalance_check","msg_id":77}}"#)?;
    let check = reply(m)?;
    assert_eq!(
        check,
        json!({"src": "n1", "dest": "c1", "body": {"type": "rebalance_check_ok", "in_reply_to": 77,
            "msg_id": 6 + FLOOD as u64, "average_utilization_pct": 0, "overloaded": [], "underloaded": []}})
    );
    assert!(m.is_running(), "the master must still run");

    m.close_stdin();
    let status = m.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "master did not exit cleanly on EOF: {status:?}"
    );
    Ok(())
}
