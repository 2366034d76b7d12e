//! Hostile gRPC input, table-driven, against every method of both services
//! on a live cluster (a master and three chunk servers holding two chunks):
//! messages above `keel_proto::MAX_MESSAGE_BYTES`, bytes that are not
//! protobuf, path-traversal, empty, 200-character, NUL and non-ASCII ids in
//! every id field, absurd sizes and replication factors, unknown chunks and
//! servers, duplicated, contradictory and 10 000-long move lists, write
//! streams that lie, break off or repeat their header, wrong checksums,
//! heartbeats with bad fields (a bad entry in a report is refused alone),
//! copies from bogus sources.
//!
//! Each row names the gRPC code it must get and a word of the message
//! (`RebalanceExecute` rows: every move REJECTED with its reason), and after
//! each row the cluster must be exactly as before: `ListServers`,
//! `LocateChunk` of the chunks involved, the move queue's counters, each
//! chunk server's `ServerStatus`, and every file under every data dir. The
//! number of inputs tried is printed.

mod call;
mod chunkserver_rows;
mod ids;
mod master_rows;
mod wire;

use std::time::{Duration, Instant};

use anyhow::Result;
use keel_proto::v1::MoveOutcome;
use keel_tests::chunks::{pattern, write};
use keel_tests::faults::{Known, Snapshot, converge, placement_ok, snapshot};
use keel_tests::{Cluster, CsOpts};
use tonic::{Code, Status};

use crate::call::{Call, Env, Reply};

/// One input and what it must get.
pub struct Row {
    /// What the input is, for the report.
    pub what: String,
    /// The request.
    pub call: Call,
    /// The answer it must get.
    pub expect: Expect,
}

/// The answer a row must get.
pub enum Expect {
    /// Refused with one of these codes and a non-empty message containing
    /// this text.
    Refused(&'static [Code], &'static str),
    /// `RebalanceExecute` answers OK with nothing moved and every move
    /// REJECTED with a reason containing this text.
    Rejected(&'static str),
    /// `AllocateChunk` answers with the replication factor clamped to the
    /// live servers (a placement, which stores nothing).
    Clamped(u32),
    /// `Heartbeat` answers OK and refuses the bad entry alone, with a reason
    /// containing this text (the rest of the report is applied).
    RefusedAlone(&'static str),
}

/// A row.
pub fn row(what: impl Into<String>, call: Call, expect: Expect) -> Row {
    Row {
        what: what.into(),
        call,
        expect,
    }
}

/// Bytes of chunk `good` (on cs1 and cs2).
pub fn good() -> Vec<u8> {
    pattern(71, 1 << 20)
}

/// Bytes of chunk `solo` (on cs3).
pub fn solo() -> Vec<u8> {
    pattern(72, 700_000)
}

/// Chunks whose location every snapshot records: the two that exist and
/// the names the rows try to create.
const WATCHED: [&str; 6] = ["good", "solo", "fresh", "other", "huge", "nope"];

/// Longest any one row may take.
const ROW_LIMIT: Duration = Duration::from_secs(30);

async fn cluster() -> Result<Cluster> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    for id in ["cs1", "cs2", "cs3"] {
        c.add_chunkserver(id, CsOpts::default())?;
    }
    c.wait_alive(3).await?;
    for s in ["cs1", "cs2"] {
        write(&c.chunkservers[s].url(), "good", &good(), 2).await?;
    }
    write(&c.chunkservers["cs3"].url(), "solo", &solo(), 1).await?;
    let known = [Known::of("good", &good(), 2), Known::of("solo", &solo(), 1)];
    converge(
        "chunks located",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || placement_ok(&c, &known),
    )
    .await?;
    Ok(c)
}

fn judge(expect: &Expect, r: Result<Reply, Status>) -> Result<(), String> {
    match (expect, r) {
        (Expect::Refused(codes, needle), Err(s)) => {
            let msg = s.message();
            if codes.contains(&s.code()) && !msg.is_empty() && msg.contains(needle) {
                return Ok(());
            }
            Err(format!(
                "got {:?} {msg:?}, want {codes:?} with {needle:?}",
                s.code()
            ))
        }
        (Expect::Rejected(needle), Ok(Reply::Execute(r))) => {
            let all = r.results.iter().all(|m| {
                m.outcome == MoveOutcome::Rejected as i32
                    && !m.error.is_empty()
                    && m.error.contains(needle)
            });
            if r.moved == 0 && r.bytes_transferred == 0 && all && !r.results.is_empty() {
                return Ok(());
            }
            let first: Vec<_> = r.results.iter().take(3).collect();
            Err(format!(
                "moved {}, first results {first:?}, want all rejected with {needle:?}",
                r.moved
            ))
        }
        (Expect::RefusedAlone(needle), Ok(Reply::Heartbeat(r)))
            if r.refused.len() == 1 && r.refused[0].reason.contains(needle) =>
        {
            Ok(())
        }
        (Expect::Clamped(n), Ok(Reply::Allocate(a)))
            if a.replication == *n && a.servers.len() == *n as usize =>
        {
            Ok(())
        }
        (_, other) => Err(format!("unexpected answer {other:?}")),
    }
}

/// Waits up to 5 s for the cluster to look like `before` again (a refused
/// stream is cleaned up a moment after the client sees its status).
async fn unchanged(c: &Cluster, before: &Snapshot) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = snapshot(c, &WATCHED).await.map_err(|e| format!("{e:#}"))?;
        if &now == before {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "state changed:\nbefore {before:#?}\nafter {now:#?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn all_rows(env: &Env) -> Vec<Row> {
    let mut rows = ids::chunk_id_rows(env);
    rows.extend(ids::server_id_rows(env));
    rows.extend(master_rows::heartbeat_rows(env));
    rows.extend(master_rows::lookup_rows());
    rows.extend(master_rows::move_rows());
    rows.extend(chunkserver_rows::write_rows());
    rows.extend(chunkserver_rows::copy_rows(env));
    rows.extend(chunkserver_rows::missing_rows());
    rows.extend(wire::rows());
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_is_refused_and_changes_nothing() -> Result<()> {
    let started = Instant::now();
    let c = cluster().await?;
    let env = Env {
        master: c.master_url(),
        master_http: c
            .master
            .as_ref()
            .and_then(|m| m.http_addr)
            .map(|a| a.to_string())
            .unwrap_or_default(),
        cs: c
            .chunkservers
            .iter()
            .map(|(id, d)| (id.clone(), d.url()))
            .collect(),
    };
    let rows = all_rows(&env);
    let mut before = snapshot(&c, &WATCHED).await?;
    let (mut wrong_answer, mut changed) = (vec![], vec![]);
    for r in &rows {
        let answer = match tokio::time::timeout(ROW_LIMIT, r.call.send(&env)).await {
            Ok(a) => a,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer in {ROW_LIMIT:?}"
            ))),
        };
        if let Err(why) = judge(&r.expect, answer) {
            wrong_answer.push(format!("{}: {why}", r.what));
        }
        if let Err(why) = unchanged(&c, &before).await {
            changed.push(format!("{}: {why}", r.what));
            before = snapshot(&c, &WATCHED).await?;
        }
    }
    eprintln!(
        "hostile inputs: {} tried, {} answered as expected, {} changed state ({:.0} s)",
        rows.len(),
        rows.len() - wrong_answer.len(),
        changed.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        wrong_answer.is_empty() && changed.is_empty(),
        "wrong answers:\n{}\n\nstate changes:\n{}",
        wrong_answer.join("\n"),
        changed.join("\n")
    );
    Ok(())
}
