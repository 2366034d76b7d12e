//! The few pieces of the Prometheus text format both daemons write.

use std::fmt::Write as _;

/// One sample without labels, with its `# HELP` and `# TYPE` lines.
pub fn scalar(out: &mut String, name: &str, kind: &str, help: &str, value: f64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// `keel_build_info{binary, version} 1`: which binary and version answer.
pub fn build_info(out: &mut String, binary: &str, version: &str) {
    let _ = writeln!(
        out,
        "# HELP keel_build_info The running binary's version.\n# TYPE keel_build_info gauge\nkeel_build_info{{binary=\"{binary}\",version=\"{version}\"}} 1"
    );
}
