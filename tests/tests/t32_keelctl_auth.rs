//! keelctl with a shared token: daemons started with `KEEL_AUTH_TOKEN` refuse
//! keelctl without `--auth-token` (one line naming the flag, exit 1), and with
//! it `servers`, `put` and `get` work, which shows the token reaches the
//! master and every chunk server.

use std::time::Duration;

use anyhow::{Context, Result};
use keel_tests::chunks::pattern;
use keel_tests::keelctl::ctl;
use keel_tests::{Cluster, CsOpts, wait_until};
use serde_json::Value;

const TOKEN: &str = "s3cret-token";

fn refused(c: &Cluster, args: &[&str]) {
    let (code, out, err) = ctl(c, args);
    assert_eq!(code, 1, "keelctl {args:?}: stdout {out:?} stderr {err:?}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.contains("--auth-token"), "names the flag: {err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_is_required_and_sent_everywhere() -> Result<()> {
    let mut c = Cluster::new()?;
    c.envs.push(("KEEL_AUTH_TOKEN".into(), TOKEN.into()));
    c.start_master(&[])?;
    for id in ["cs1", "cs2"] {
        c.add_chunkserver(id, CsOpts::default())?;
    }
    let with = |args: &[&str]| -> Vec<String> {
        let mut v = vec!["--auth-token".to_owned(), TOKEN.to_owned()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    };
    let run = |args: &[String]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl(&c, &args)
    };
    wait_until(
        "2 alive servers seen with the token",
        Duration::from_secs(20),
        || async {
            let (code, out, _) = run(&with(&["--json", "servers"]));
            let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
            code == 0
                && v.as_array()
                    .is_some_and(|a| a.iter().filter(|s| s["state"] == "alive").count() == 2)
        },
    )
    .await?;

    refused(&c, &["servers"]);
    refused(&c, &["--auth-token", "wrong", "rebalance", "check"]);

    let dir = tempfile::tempdir()?;
    let src = dir.path().join("src");
    let data = pattern(3, 100_000);
    std::fs::write(&src, &data)?;
    let src = src.to_str().context("utf-8")?;
    let (code, out, err) = run(&with(&[
        "put",
        "tok-1",
        src,
        "--replication",
        "2",
        "--json",
    ]));
    assert_eq!(code, 0, "put with token: {out} {err}");
    let put: Value = serde_json::from_str(&out)?;
    assert_eq!(put["servers"].as_array().map(Vec::len), Some(2), "{put}");

    let dst = dir.path().join("dst");
    let dst = dst.to_str().context("utf-8")?;
    refused(&c, &["get", "tok-1", dst]);
    let (code, out, err) = run(&with(&["get", "tok-1", dst]));
    assert_eq!(code, 0, "get with token: {out} {err}");
    assert_eq!(std::fs::read(dst)?, data);
    Ok(())
}
