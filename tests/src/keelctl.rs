//! Running `keelctl` against a test's cluster: the exit code and both
//! streams, or the JSON a `--json` command printed.

use std::process::{Command, Stdio};

use anyhow::Result;
use serde_json::Value;

use crate::{Cluster, bin};

/// Runs keelctl with `KEEL_MASTER` set to `masters` (one URL, or several
/// comma-separated): (exit code, stdout, stderr).
pub fn run(masters: &str, args: &[&str]) -> Result<(i32, String, String)> {
    let out = Command::new(bin(keel_launch::bins::KEELCTL))
        .args(args)
        .env("KEEL_MASTER", masters)
        .stdin(Stdio::null())
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Runs keelctl against `c`'s master: (exit code, stdout, stderr).
pub fn ctl(c: &Cluster, args: &[&str]) -> (i32, String, String) {
    c.keelctl(args).expect("keelctl runs")
}

/// Runs keelctl expecting exit 0 and JSON on stdout; returns it parsed.
pub fn json(c: &Cluster, args: &[&str]) -> Value {
    let (code, out, err) = ctl(c, args);
    assert_eq!(code, 0, "keelctl {args:?}: stdout {out:?} stderr {err:?}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("keelctl {args:?}: bad JSON {e}: {out}"))
}
