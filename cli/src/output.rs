//! What keelctl prints: aligned tables, utilization bars, progress lines,
//! sentences and JSON, fitted to the terminal. Everything but the width
//! lookup is pure string building, so it is unit tested.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::error::Error;

mod prose;
mod table;
mod term;

pub use prose::{stderr_prose_width, stdout_prose_width, wrap};
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

/// `850ms`, `12.3s`, `4m05s`, `2h10m`.
pub fn age(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    match s {
        _ if ms < 1000 => format!("{ms}ms"),
        0..60 => format!("{:.1}s", d.as_secs_f64()),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// `1 move`, `3 moves`.
pub fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
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

    #[test]
    fn counts() {
        assert_eq!(count(1, "move"), "1 move");
        assert_eq!(count(0, "move"), "0 moves");
    }

    #[test]
    fn ages() {
        assert_eq!(age(Duration::from_millis(850)), "850ms");
        assert_eq!(age(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(age(Duration::from_secs(245)), "4m05s");
        assert_eq!(age(Duration::from_secs(7800)), "2h10m");
    }
}
