//! Running `keelctl` against a test's cluster: the exit code and both
//! streams, or the JSON a `--json` command printed.

use serde_json::Value;

use crate::Cluster;

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
