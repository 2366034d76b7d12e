//! What keelctl prints: aligned tables, utilization bars, progress lines,
//! read rates, sentences and JSON, fitted to the terminal. Everything but
//! the width lookup is pure string building, so it is unit tested.

use std::io::Write;

use serde::Serialize;

use crate::error::Error;
/// Durations and counts in words live in a leaf module that errors share;
/// commands reach them here, beside the rest of what is printed.
pub use crate::words::{age, count};

mod prose;
mod rates;
mod table;
mod term;

pub use prose::{stderr_prose_width, stdout_prose_width, wrap};
pub use rates::{bytes_per_sec, millis, per_sec};
pub use table::{Align, Cell, Narrow, Table};
pub use term::{
    MoveCounts, Parts, Progress, Rate, cut, progress_line, redraws, stderr_width, stdout_width,
};

/// Cells of utilization bars.
pub const BAR_WIDTH: usize = 12;

/// `[#######.....]` for a percentage, clamped to 0–100.
pub fn bar(pct: f64, width: usize) -> String {
    let frac = if pct.is_finite() {
        (pct / 100.0).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let filled = (frac * width as f64).round() as usize;
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

/// `57.0%`, right-aligned in six characters.
pub fn pct(v: f64) -> String {
    format!("{v:>5.1}%")
}

/// `[#######.....]  57.0%`.
pub fn utilization(v: f64) -> String {
    format!("{} {}", bar(v, BAR_WIDTH), pct(v))
}

/// Bytes for people (`64.0 MiB`).
pub fn size(bytes: u64) -> String {
    keel_proto::units::format_size(bytes)
}

/// `yes` / `no`.
pub fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// A `keelctl: ...` warning on stderr (errors are printed by `main`),
/// wrapped to the terminal.
pub fn warn(msg: &str) {
    let text = wrap(&format!("keelctl: {msg}"), stderr_prose_width());
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// Writes to stderr as is (log tails, which are not sentences).
pub fn print_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Usage(format!("cannot encode JSON: {e}")))?;
    print_stdout(&format!("{text}\n"))
}

/// Writes sentences to stdout, wrapped on word boundaries to the terminal
/// (see [`wrap`]); tables go through [`print_stdout`] as they are.
pub fn print_prose(text: &str) -> Result<(), Error> {
    print_stdout(&wrap(text, stdout_prose_width()))
}

/// Writes to stdout as is; a closed pipe is not worth a panic.
pub fn print_stdout(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::file("cannot write to", "stdout", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars() {
        assert_eq!(bar(57.0, 12), "[#######.....]");
        assert_eq!(bar(0.0, 4), "[....]");
        assert_eq!(bar(150.0, 4), "[####]");
        assert_eq!(bar(-3.0, 4), "[....]");
        assert_eq!(bar(f64::NAN, 4), "[....]");
        assert_eq!(utilization(57.0), "[#######.....]  57.0%");
        assert_eq!(utilization(100.0), "[############] 100.0%");
    }
}
