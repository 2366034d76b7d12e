//! The seed's JSON-lines front door, `keel-master --stdio`: the seed's two
//! sample cases fed verbatim (exact `init_ok` line), a session against a real
//! cluster that reproduces the seed's `rebalance_check` numbers and moves a
//! 64 MiB chunk, and a corpus of malformed lines that each get their error
//! while the session goes on. EOF ends the master cleanly.

use std::time::Duration;

use anyhow::{Context, Result};
use keel_proto::v1::LocateChunkRequest;
use keel_tests::{Cluster, CsOpts, Daemon, chunks, master::servers, wait_until};
use serde_json::{Value, json};

const INIT: &str = r#"{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}"#;
const INIT_OK: &str =
    r#"{"src": "n1", "dest": "c0", "body": {"type": "init_ok", "in_reply_to": 1, "msg_id": 0}}"#;
const REPLY_WAIT: Duration = Duration::from_secs(30);

fn ask(master: &mut Daemon, line: &str) -> Result<Value> {
    master.send_line(line)?;
    let reply = master.recv_line(REPLY_WAIT)?;
    serde_json::from_str(&reply).with_context(|| format!("reply is not JSON: {reply}"))
}

fn ends_cleanly(master: &mut Daemon) {
    master.close_stdin();
    let status = master.wait_exit(Duration::from_secs(20));
    assert!(
        status.is_some_and(|s| s.success()),
        "master did not exit cleanly on EOF: {status:?}"
    );
}

#[test]
fn seed_sample_cases_verbatim() -> Result<()> {
    // Case 1: "Check identifies overloaded and underloaded servers".
    let mut c = Cluster::new()?;
    let m = c.start_master(&["--stdio"])?;
    m.send_line(INIT)?;
    assert_eq!(m.recv_line(REPLY_WAIT)?, INIT_OK);
    let check = ask(
        m,
        r#"{"src":"c1","dest":"n1","body":{"type":"rebalance_check","msg_id":2}}"#,
    )?;
    assert_eq!(
        check,
        json!({"src": "n1", "dest": "c1", "body": {"type": "rebalance_check_ok", "in_reply_to": 2, "msg_id": 1,
            "average_utilization_pct": 0, "overloaded": [], "underloaded": []}})
    );
    ends_cleanly(m);

    // Case 2: "Execute rebalance moves chunks" — with no cluster behind it the
    // chunk does not exist, and the master says so.
    let mut c = Cluster::new()?;
    let m = c.start_master(&["--stdio"])?;
    m.send_line(INIT)?;
    assert_eq!(m.recv_line(REPLY_WAIT)?, INIT_OK);
    let exec = ask(
        m,
        r#"{"src":"c1","dest":"n1","body":{"type":"rebalance_execute","msg_id":2,"moves":[{"chunk":"ch_010","from":"cs1","to":"cs4"}]}}"#,
    )?;
    assert_eq!(exec["body"]["type"], "error");
    assert_eq!(exec["body"]["in_reply_to"], 2);
    assert_eq!(exec["body"]["msg_id"], 1);
    assert_eq!(exec["body"]["code"], 20, "{exec}");
    ends_cleanly(m);
    Ok(())
}

/// Utilization per server as in the seed, with capacity 100 MB: `cs1`'s 78 %
/// include the 64 MiB chunk `ch_010`.
const CAPACITY: u64 = 100_000_000;
const CH_010: u64 = 67_108_864;
const LAYOUT: [(&str, &[(&str, u64)]); 4] = [
    (
        "cs1",
        &[("ch_010", CH_010), ("ch_011", 78_000_000 - CH_010)],
    ),
    ("cs2", &[("ch_020", 50_000_000)]),
    ("cs3", &[("ch_030", 57_000_000)]),
    ("cs4", &[("ch_040", 15_000_000)]),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_against_a_real_cluster() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&["--stdio"])?;
    for (id, _) in LAYOUT {
        c.add_chunkserver(
            id,
            CsOpts {
                capacity: CAPACITY.to_string(),
                ..CsOpts::default()
            },
        )?;
    }
    c.wait_alive(4).await?;
    for (id, list) in LAYOUT {
        let url = c.chunkservers[id].url();
        for (chunk, size) in list {
            chunks::write(&url, chunk, &chunks::pattern(*size, *size as usize), 1).await?;
        }
    }
    let url = c.master_url();
    wait_until(
        "the master to see every byte",
        Duration::from_secs(20),
        || {
            let url = url.clone();
            async move {
                servers(&url).await.is_ok_and(|rows| {
                    rows.iter().map(|s| s.used).collect::<Vec<_>>()
                        == [78_000_000, 50_000_000, 57_000_000, 15_000_000]
                })
            }
        },
    )
    .await?;

    let m = c.master.as_mut().context("master")?;
    m.send_line(INIT)?;
    assert_eq!(m.recv_line(REPLY_WAIT)?, INIT_OK);
    let check = ask(
        m,
        r#"{"src":"c1","dest":"n1","body":{"type":"rebalance_check","msg_id":2}}"#,
    )?;
    assert_eq!(
        check,
        json!({"src": "n1", "dest": "c1", "body": {"type": "rebalance_check_ok", "in_reply_to": 2, "msg_id": 1,
            "average_utilization_pct": 50,
            "overloaded": [{"server": "cs1", "utilization_pct": 78}],
            "underloaded": [{"server": "cs4", "utilization_pct": 15}]}})
    );
    let exec = ask(
        m,
        r#"{"src":"c1","dest":"n1","body":{"type":"rebalance_execute","msg_id":3,"moves":[{"chunk":"ch_010","from":"cs1","to":"cs4"}]}}"#,
    )?;
    assert_eq!(
        exec,
        json!({"src": "n1", "dest": "c1", "body": {"type": "rebalance_execute_ok", "in_reply_to": 3, "msg_id": 2,
            "moved": 1, "bytes_transferred": 67108864}})
    );

    // The same core the gRPC front door uses now places ch_010 on cs4 alone.
    let mut client = c.master_client().await?;
    let loc = client
        .locate_chunk(LocateChunkRequest {
            chunk: "ch_010".into(),
            rack: Default::default(),
        })
        .await?
        .into_inner();
    let holders: Vec<&str> = loc.replicas.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(holders, ["cs4"]);
    let data = chunks::read(&c.chunkservers["cs4"].url(), "ch_010").await?;
    assert!(
        data == chunks::pattern(CH_010, CH_010 as usize),
        "moved bytes differ"
    );
    ends_cleanly(c.master.as_mut().context("master")?);
    Ok(())
}

/// Each malformed or invalid line, and the Maelstrom code it must get.
const CORPUS: &[(&str, u64)] = &[
    ("not json", 12),
    ("[1, 2]", 12),
    (
        r#"{"dest":"n1","body":{"type":"rebalance_check","msg_id":5}}"#,
        12,
    ),
    (r#"{"src":"c1"}"#, 12),
    (r#"{"src":7,"body":{"type":"rebalance_check"}}"#, 12),
    (r#"{"src":"c1","body":"rebalance_check"}"#, 12),
    (r#"{"src":"c1","body":{"msg_id":6}}"#, 12),
    (r#"{"src":"c1","body":{"type":5,"msg_id":7}}"#, 12),
    (
        r#"{"src":"c1","body":{"type":"rebalance_check","msg_id":"eight"}}"#,
        12,
    ),
    (
        r#"{"src":"c1","body":{"type":"rebalance_check","msg_id":-9}}"#,
        12,
    ),
    (
        r#"{"src":"c1","body":{"type":"frobnicate","msg_id":10}}"#,
        10,
    ),
    (r#"{"src":"c1","body":{"type":"init","msg_id":11}}"#, 12),
    (
        r#"{"src":"c1","body":{"type":"rebalance_execute","msg_id":12}}"#,
        12,
    ),
    (
        r#"{"src":"c1","body":{"type":"rebalance_execute","msg_id":13,"moves":{}}}"#,
        12,
    ),
    (
        r#"{"src":"c1","body":{"type":"rebalance_execute","msg_id":14,"moves":[]}}"#,
        12,
    ),
    (
        r#"{"src":"c1","body":{"type":"rebalance_execute","msg_id":15,"moves":[{"chunk":"a"}]}}"#,
        12,
    ),
    (
        r#"{"src":"c1","body":{"type":"rebalance_execute","msg_id":16,"moves":[{"chunk":"a","from":1,"to":"b"}]}}"#,
        12,
    ),
    (
        r#"{"src":"c1","body":{"type":"rebalance_execute","msg_id":17,"moves":[7]}}"#,
        12,
    ),
    (
        r#"{"src":"c1","body":{"type":"rebalance_execute","msg_id":18,"moves":[{"chunk":"../x","from":"a","to":"b"}]}}"#,
        12,
    ),
    (
        r#"{"src":"c1","body":{"type":"rebalance_execute","msg_id":19,"moves":[{"chunk":"ch_404","from":"cs1","to":"cs2"}]}}"#,
        20,
    ),
];

#[test]
fn malformed_lines_each_get_an_error_and_the_session_goes_on() -> Result<()> {
    let mut c = Cluster::new()?;
    let m = c.start_master(&["--stdio"])?;
    // Before init, requests are refused as temporarily unavailable.
    let early = ask(
        m,
        r#"{"src":"c1","dest":"n1","body":{"type":"rebalance_check","msg_id":1}}"#,
    )?;
    assert_eq!(
        (
            early["body"]["type"].as_str(),
            early["body"]["code"].as_u64()
        ),
        (Some("error"), Some(11))
    );
    assert_eq!(early["body"]["msg_id"], 0);
    m.send_line(INIT)?;
    let init = m.recv_line(REPLY_WAIT)?;
    assert!(init.contains(r#""type": "init_ok""#), "{init}");

    for (expected_msg_id, (line, code)) in (2u64..).zip(CORPUS) {
        let reply = ask(m, line)?;
        let body = &reply["body"];
        assert_eq!(body["type"], "error", "{line} -> {reply}");
        assert_eq!(body["code"].as_u64(), Some(*code), "{line} -> {reply}");
        assert!(
            body["text"].as_str().is_some_and(|t| !t.is_empty()),
            "{line} -> {reply}"
        );
        assert_eq!(body["msg_id"], expected_msg_id, "replies number themselves");
    }
    // Blank lines are ignored; the session still answers.
    m.send_line("")?;
    let check = ask(
        m,
        r#"{"src":"c1","dest":"n1","body":{"type":"rebalance_check","msg_id":99}}"#,
    )?;
    assert_eq!(check["body"]["type"], "rebalance_check_ok");
    assert_eq!(check["body"]["in_reply_to"], 99);
    assert!(m.is_running());
    ends_cleanly(m);
    Ok(())
}
