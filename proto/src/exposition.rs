//! The few pieces of the Prometheus text format both daemons write.

use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};

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

/// A Prometheus histogram with fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), then the sum and the count.
    state: Mutex<(Vec<u64>, f64, u64)>,
}

impl Histogram {
    /// A histogram with these upper bounds (ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            state: Mutex::new((vec![0; bounds.len()], 0.0, 0)),
        }
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = self.bounds.iter().position(|&b| v <= b) {
            st.0[i] += 1;
        }
        st.1 += v;
        st.2 += 1;
    }

    /// Writes the `_bucket`, `_sum` and `_count` samples; `labels` is
    /// empty or `key="value",`.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut cumulative = 0;
        for (b, n) in self.bounds.iter().zip(&st.0) {
            cumulative += n;
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", st.2);
        let labels = labels.trim_end_matches(',');
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), st.1);
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), st.2);
    }
}
