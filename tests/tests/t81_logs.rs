//! `--log-format json` on every binary: each line a daemon or `keelctl`
//! writes is one JSON object with a timestamp, a level, a target and a
//! message, carrying the event's fields (a chunk id, a server id) so a
//! log shipper can index them; the default text format is plain text. One
//! move id follows a move through the master and both chunk servers.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use keel_tests::chunks::{pattern, write};
use keel_tests::master::wait_known;
use keel_tests::{Cluster, CsOpts, bin, wait_until};
use serde_json::Value;

/// Every non-empty line of `text`, parsed; an error names the first that is not a JSON object.
fn json_lines(what: &str, text: &str) -> Result<Vec<Value>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).with_context(|| format!("{what}: not JSON: {l}"))?;
            anyhow::ensure!(v.is_object(), "{what}: not an object: {l}");
            for key in ["timestamp", "level", "target"] {
                anyhow::ensure!(v.get(key).is_some(), "{what}: no {key}: {l}");
            }
            Ok(v)
        })
        .collect()
}

/// `field` of the span `name` a JSON log line happened in.
fn span_field<'a>(line: &'a Value, name: &str, field: &str) -> Option<&'a str> {
    line["spans"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == name)?
        .get(field)?
        .as_str()
}

/// The log a daemon of `c` wrote so far (`master` or a chunk server id).
fn log_of(c: &Cluster, who: &str) -> String {
    std::fs::read_to_string(c.dir.path().join(format!("{who}.log"))).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_writes_one_json_object_per_line() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&["--log-format", "json"])?;
    let json = CsOpts {
        extra: vec!["--log-format".into(), "json".into()],
        ..CsOpts::default()
    };
    c.add_chunkserver("cs1", json)?;
    c.add_chunkserver("cs2", CsOpts::default())?;
    c.wait_alive(2).await?;
    write(&c.cs("cs1").url(), "logged", &pattern(1, 4096), 1).await?;
    let url = c.master_url();
    let u = &url;
    wait_known(u, &["logged"]).await?;
    let moved = Command::new(bin("keelctl"))
        .args([
            "rebalance",
            "execute",
            "--move",
            "logged:cs1:cs2",
            "--log-format",
            "json",
        ])
        .env("KEEL_MASTER", &url)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .output()?;
    anyhow::ensure!(
        moved.status.success(),
        "keelctl: {}",
        String::from_utf8_lossy(&moved.stderr)
    );
    json_lines("keelctl", &String::from_utf8_lossy(&moved.stderr))?;

    // The master logged the copy with its chunk and servers as fields.
    wait_until(
        "the master to log the copy",
        Duration::from_secs(10),
        || async {
            let text = log_of(&c, "master");
            json_lines("master", &text).is_ok_and(|lines| {
                lines.iter().any(|l| {
                    l["message"] == "copy done" && l["chunk"] == "logged" && l["to"] == "cs2"
                })
            })
        },
    )
    .await?;
    let master = json_lines("master", &log_of(&c, "master"))?;
    anyhow::ensure!(master.iter().any(|l| l["message"] == "master ready"));
    let cs1 = json_lines("cs1", &log_of(&c, "cs1"))?;
    anyhow::ensure!(
        cs1.iter().any(|l| l["level"] == "INFO"),
        "cs1 logged nothing at INFO"
    );
    // The default stays text.
    let text = log_of(&c, "cs2");
    anyhow::ensure!(
        !text.is_empty() && text.lines().all(|l| !l.starts_with('{')),
        "cs2 should log text"
    );
    anyhow::ensure!(!text.contains('\u{1b}'), "no colour codes off a terminal");

    // One id follows the move through the three processes: the master's span
    // of the move, the target's copy (cs2, text) and the source's delete
    // (cs1, JSON).
    let span = master
        .iter()
        .find(|l| l["message"] == "copy done")
        .and_then(|l| span_field(l, "move", "id"))
        .context("the master's copy done line carries the move's span id")?
        .to_owned();
    anyhow::ensure!(span.starts_with('m'), "move id {span}");
    anyhow::ensure!(
        text.lines()
            .any(|l| l.contains("chunk copied") && l.contains(&format!("move_id={span}"))),
        "cs2's copy names move {span}: {text}"
    );
    wait_until("cs1 to log the delete", Duration::from_secs(10), || async {
        json_lines("cs1", &log_of(&c, "cs1")).is_ok_and(|lines| {
            lines.iter().any(|l| {
                l["message"] == "chunk deleted"
                    && span_field(l, "delete_chunk", "move_id") == Some(span.as_str())
            })
        })
    })
    .await?;
    Ok(())
}

#[test]
fn a_bad_log_format_is_refused_with_a_sentence() -> Result<()> {
    for b in ["keel-master", "keel-chunkserver", "keelctl"] {
        let out = Command::new(bin(b))
            .args(["--log-format", "xml"])
            .stdin(Stdio::null())
            .output()?;
        anyhow::ensure!(!out.status.success(), "{b} accepted --log-format xml");
        let err = String::from_utf8_lossy(&out.stderr);
        anyhow::ensure!(err.contains("xml") && err.contains("json"), "{b}: {err}");
    }
    Ok(())
}
