//! keelctl against a real cluster: the seed's example built for real (four
//! equal chunk servers filled with `keelctl put --on` to 78/50/57/15 %, so
//! `rebalance check` finds average 50, cs1 overloaded and cs4 underloaded),
//! the `servers --json` shape, a byte-identical put/get round trip, get
//! falling back when the first replica's server is killed, and one-line
//! errors with exit 1 for bad ids, missing files and unknown chunks.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use keel_proto::v1::LocateChunkRequest;
use keel_tests::chunks::pattern;
use keel_tests::keelctl::{ctl, json};
use keel_tests::{Cluster, CsOpts, wait_until};
use serde_json::Value;

/// Capacity of each server: 10 000 KiB, so every seed percentage is a whole
/// number of KiB (78 % = 7 800 KiB) and the test writes under 20 MiB.
const CAPACITY_KIB: u64 = 10_000;

/// Chunks per server (KiB each) adding up to 78 / 50 / 57 / 15 %.
const SEED: [(&str, &[u64]); 4] = [
    ("cs1", &[3000, 2800, 2000]),
    ("cs2", &[3000, 2000]),
    ("cs3", &[3000, 2700]),
    ("cs4", &[1500]),
];

/// Runs keelctl expecting success; returns stdout.
fn ok(c: &Cluster, args: &[&str]) -> String {
    let (code, out, err) = ctl(c, args);
    assert_eq!(
        code, 0,
        "keelctl {args:?} failed:\nstdout: {out}\nstderr: {err}"
    );
    out
}

/// Asserts exit 1 and exactly one `keelctl: ...` line on stderr containing `needle`.
fn one_line_error(c: &Cluster, args: &[&str], needle: &str) {
    let (code, out, err) = ctl(c, args);
    assert_eq!(code, 1, "keelctl {args:?}: stdout {out:?} stderr {err:?}");
    assert_eq!(err.lines().count(), 1, "not one line: {err:?}");
    assert!(err.starts_with("keelctl: "), "{err:?}");
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
}

fn write_file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("write test file");
    path
}

async fn cluster(n: usize, capacity: &str) -> Result<Cluster> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    for i in 1..=n {
        let opts = CsOpts {
            capacity: capacity.into(),
            ..CsOpts::default()
        };
        c.add_chunkserver(&format!("cs{i}"), opts)?;
    }
    c.wait_alive(n).await?;
    Ok(c)
}

/// Waits until `keelctl --json servers` reports `used` bytes for `id`.
async fn wait_used(c: &Cluster, id: &str, used: u64) -> Result<()> {
    wait_until(
        &format!("{id} to report {used} used bytes"),
        Duration::from_secs(20),
        || async {
            let (code, out, _) = ctl(c, &["--json", "servers"]);
            let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
            code == 0
                && v.as_array().is_some_and(|a| {
                    a.iter()
                        .any(|s| s["id"] == id && s["used_bytes"].as_u64() == Some(used))
                })
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_example_check_and_servers() -> Result<()> {
    let c = cluster(4, &format!("{CAPACITY_KIB}KiB")).await?;
    let files = tempfile::tempdir()?;
    let mut seed = 1;
    for (server, sizes) in SEED {
        for (i, kib) in sizes.iter().enumerate() {
            let chunk = format!("ch_{}{i}", &server[2..]);
            let path = write_file(files.path(), &chunk, &pattern(seed, (*kib * 1024) as usize));
            seed += 1;
            let path = path.to_str().context("utf-8 path")?;
            let put = json(
                &c,
                &[
                    "put",
                    &chunk,
                    path,
                    "--on",
                    server,
                    "--replication",
                    "1",
                    "--json",
                ],
            );
            assert_eq!(put["servers"], serde_json::json!([server]), "{put}");
            assert_eq!(put["size"].as_u64(), Some(kib * 1024));
        }
        wait_used(&c, server, sizes.iter().sum::<u64>() * 1024).await?;
    }

    let check = json(&c, &["--json", "rebalance", "check"]);
    let close = |v: &Value, want: f64| v.as_f64().is_some_and(|x| (x - want).abs() < 1e-6);
    assert!(close(&check["average_utilization_pct"], 50.0), "{check}");
    assert!(close(&check["threshold_pct"], 20.0), "{check}");
    assert_eq!(check["balanced"], false, "{check}");
    let names = |key: &str| -> Vec<String> {
        check[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|l| l["server"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(names("overloaded"), ["cs1"], "{check}");
    assert_eq!(names("underloaded"), ["cs4"], "{check}");
    assert!(
        close(&check["overloaded"][0]["utilization_pct"], 78.0),
        "{check}"
    );
    assert!(
        close(&check["underloaded"][0]["utilization_pct"], 15.0),
        "{check}"
    );
    for key in ["server", "utilization_pct", "used_bytes", "capacity_bytes"] {
        assert!(
            check["overloaded"][0].get(key).is_some(),
            "{key} missing: {check}"
        );
    }

    let servers = json(&c, &["servers", "--json"]);
    let servers = servers.as_array().context("servers is an array")?;
    assert_eq!(servers.len(), 4);
    let want_pct = [("cs1", 78.0), ("cs2", 50.0), ("cs3", 57.0), ("cs4", 15.0)];
    for s in servers {
        let mut keys: Vec<&str> = s
            .as_object()
            .context("object")?
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        // The contract keys, and the read load beside them (DESIGN.md).
        assert_eq!(
            keys,
            [
                "address",
                "capacity_bytes",
                "chunks",
                "id",
                "load",
                "rack",
                "read_bytes_per_sec",
                "read_p99_ms",
                "reads_per_sec",
                "state",
                "used_bytes",
                "utilization_pct"
            ]
        );
        assert_eq!(s["state"], "alive");
        assert_eq!(s["capacity_bytes"].as_u64(), Some(CAPACITY_KIB * 1024));
        let (_, pct) = want_pct
            .iter()
            .find(|(id, _)| s["id"] == *id)
            .context("known id")?;
        assert!(close(&s["utilization_pct"], *pct), "{s}");
    }
    let cs1_chunks = servers
        .iter()
        .find(|s| s["id"] == "cs1")
        .map(|s| s["chunks"].clone());
    assert_eq!(cs1_chunks, Some(serde_json::json!(3)));

    let table = ok(&c, &["servers"]);
    assert!(table.contains("[#########...]  78.0%"), "{table}");
    assert!(
        table.contains("cluster average [######......]  50.0%"),
        "{table}"
    );
    let text = ok(&c, &["rebalance", "check"]);
    assert!(
        text.contains("not balanced: 1 overloaded [cs1], 1 underloaded [cs4]"),
        "{text}"
    );
    Ok(())
}

/// The replica the master lists first for `chunk`.
async fn first_replica(c: &Cluster, chunk: &str) -> Result<String> {
    let req = LocateChunkRequest {
        chunk: chunk.into(),
        rack: Default::default(),
    };
    let resp = c
        .master_client()
        .await?
        .locate_chunk(req)
        .await?
        .into_inner();
    Ok(resp.replicas.first().context("no replica")?.id.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_round_trip_and_fallback() -> Result<()> {
    let mut c = cluster(3, "1GiB").await?;
    let files = tempfile::tempdir()?;
    // Not a multiple of the frame size, so the last frame is short.
    let data = pattern(42, 3 * keel_proto::FRAME_BYTES + 1234);
    let src = write_file(files.path(), "src", &data);
    let put = json(
        &c,
        &[
            "--json",
            "put",
            "rt-1",
            src.to_str().context("utf-8")?,
            "--replication",
            "3",
        ],
    );
    assert_eq!(
        put["crc32c"].as_u64(),
        Some(u64::from(crc32c::crc32c(&data)))
    );
    assert_eq!(put["servers"].as_array().map(Vec::len), Some(3), "{put}");

    let dst = files.path().join("dst");
    let dst_s = dst.to_str().context("utf-8")?;
    let got = json(&c, &["get", "rt-1", dst_s, "--json"]);
    assert_eq!(std::fs::read(&dst)?, data, "round trip is byte-identical");
    assert_eq!(got["size"].as_u64(), Some(data.len() as u64));
    assert_eq!(got["crc32c"], put["crc32c"]);

    // Kill the server keelctl would read from first; get must fall back.
    let first = first_replica(&c, "rt-1").await?;
    c.cs(&first).kill9();
    let still_first = first_replica(&c, "rt-1").await? == first;
    std::fs::remove_file(&dst)?;
    let (code, out, err) = ctl(&c, &["--json", "get", "rt-1", dst_s]);
    assert_eq!(code, 0, "get after kill: {out} {err}");
    let got: Value = serde_json::from_str(&out)?;
    assert_ne!(
        got["server"],
        first.as_str(),
        "read from the killed server?"
    );
    assert_eq!(std::fs::read(&dst)?, data);
    if still_first {
        assert!(
            err.contains(&first),
            "fallback not reported on stderr: {err:?}"
        );
    }
    let leftovers: Vec<_> = std::fs::read_dir(files.path())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_one_line_and_exit_1() -> Result<()> {
    let c = cluster(1, "1GiB").await?;
    let files = tempfile::tempdir()?;
    let src = write_file(files.path(), "src", b"hello");
    let src = src.to_str().context("utf-8")?;
    let out = files.path().join("out");
    let out = out.to_str().context("utf-8")?;

    one_line_error(&c, &["put", "../etc", src], "starts with '.'");
    one_line_error(&c, &["put", "a/b", src], "'/'");
    one_line_error(&c, &["--json", "get", "", out], "empty");
    one_line_error(
        &c,
        &["put", "fine-id", "/no/such/file"],
        "no such file or directory",
    );
    one_line_error(&c, &["get", "ch9", out], "chunk \"ch9\" not found");
    one_line_error(
        &c,
        &["--master", "127.0.0.1:1", "servers"],
        "cannot reach the master at http://127.0.0.1:1",
    );
    assert!(!Path::new(out).exists(), "a failed get left {out}");

    let (code, _, err) = ctl(&c, &["rebalance", "execute", "--move", "c1:cs1"]);
    assert_eq!(code, 2, "usage errors exit 2: {err}");
    let (code, _, _) = ctl(&c, &["frobnicate"]);
    assert_eq!(code, 2);
    Ok(())
}
