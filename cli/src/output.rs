//! What keelctl prints: aligned tables, utilization bars, progress lines and
//! JSON. Everything here is pure string building, so it is unit tested.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::error::Error;

/// Cells of utilization bars.
pub const BAR_WIDTH: usize = 12;

/// Column alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Text columns.
    Left,
    /// Number columns.
    Right,
}

/// A table printed with columns padded to their widest cell.
#[derive(Debug, Default)]
pub struct Table {
    headers: Vec<&'static str>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these columns.
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Table {
            headers: columns.iter().map(|c| c.0).collect(),
            align: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are blank, extra ones dropped).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether no row was added.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines, without trailing spaces.
    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.headers.len())
            .map(|i| {
                let cells = self.rows.iter().filter_map(|r| r.get(i));
                cells
                    .map(|c| c.chars().count())
                    .chain([self.headers[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        let mut out = String::new();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let cells: Vec<String> = (0..widths.len())
                .map(|i| {
                    pad(
                        row.get(i).map_or("", String::as_str),
                        widths[i],
                        self.align[i],
                    )
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

fn pad(cell: &str, width: usize, align: Align) -> String {
    let fill = " ".repeat(width.saturating_sub(cell.chars().count()));
    match align {
        Align::Left => format!("{cell}{fill}"),
        Align::Right => format!("{fill}{cell}"),
    }
}

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

/// A progress line: bar, percent, bytes and moves.
pub fn progress_line(done_bytes: u64, total_bytes: u64, moves: MoveCounts, note: &str) -> String {
    let frac = if total_bytes == 0 {
        if moves.total() == 0 {
            // Nothing planned (yet): an empty bar, not a full one.
            0.0
        } else {
            100.0 * moves.finished() as f64 / moves.total() as f64
        }
    } else {
        100.0 * done_bytes as f64 / total_bytes as f64
    };
    let mut line = format!(
        "{} {}  {} / {}  moves {}/{} ({} running, {} failed)",
        bar(frac, 24),
        pct(frac),
        size(done_bytes),
        size(total_bytes),
        moves.finished(),
        moves.total(),
        moves.running,
        moves.failed,
    );
    if !note.is_empty() {
        line.push_str("  ");
        line.push_str(note);
    }
    line
}

/// Move counts of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MoveCounts {
    /// Waiting to start.
    pub pending: u64,
    /// Copying now.
    pub running: u64,
    /// Finished.
    pub done: u64,
    /// Dropped after retries.
    pub failed: u64,
}

impl MoveCounts {
    /// Done plus failed.
    pub fn finished(&self) -> u64 {
        self.done + self.failed
    }

    /// Everything counted.
    pub fn total(&self) -> u64 {
        self.finished() + self.pending + self.running
    }
}

/// Whether a progress line may redraw itself in place on stderr: a terminal
/// that understands cursor controls. Pipes and `TERM=dumb` get plain lines.
pub fn redraws() -> bool {
    use std::io::IsTerminal;
    let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
    std::io::stderr().is_terminal() && !dumb
}

/// A `keelctl: ...` warning line on stderr (errors are printed by `main`).
pub fn warn(msg: &str) {
    let _ = writeln!(std::io::stderr(), "keelctl: {msg}");
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: Serialize>(value: &T) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::Usage(format!("cannot encode JSON: {e}")))?;
    print_stdout(&format!("{text}\n"))
}

/// Writes to stdout; a closed pipe is not worth a panic.
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
    fn tables_align() {
        let mut t = Table::new(&[
            ("ID", Align::Left),
            ("USED", Align::Right),
            ("X", Align::Left),
        ]);
        t.row(vec!["cs1".into(), "78.0 MiB".into(), "".into()]);
        t.row(vec!["cs10".into(), "5 B".into(), "alive".into()]);
        assert_eq!(
            t.render(),
            "ID        USED  X\ncs1   78.0 MiB\ncs10       5 B  alive\n"
        );
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

    #[test]
    fn progress() {
        let m = MoveCounts {
            pending: 1,
            running: 1,
            done: 2,
            failed: 0,
        };
        assert_eq!(
            progress_line(50 << 20, 100 << 20, m, "paused"),
            "[############............]  50.0%  50.0 MiB / 100.0 MiB  moves 2/4 (1 running, 0 failed)  paused"
        );
        let line = progress_line(0, 0, MoveCounts::default(), "");
        assert!(
            line.starts_with("[........................]   0.0%"),
            "{line}"
        );
    }
}
