//! The terminal: its width, progress lines that fit it, and the transfer
//! rate and ETA those lines show.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::time::Duration;

use super::{age, bar, pct, size};

/// Columns of stdout when it is a terminal (or `COLUMNS` when set): tables
/// printed there fit them. `None` means no limit (a pipe or a file).
pub fn stdout_width() -> Option<usize> {
    width_of(std::io::stdout())
}

/// Columns of stderr, where progress lines are drawn.
pub fn stderr_width() -> Option<usize> {
    width_of(std::io::stderr())
}

pub(super) fn width_of<S: IsTerminal + AsFd>(stream: S) -> Option<usize> {
    let asked = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0);
    if !stream.is_terminal() {
        return asked;
    }
    let told = rustix::termios::tcgetwinsize(stream)
        .ok()
        .map(|w| usize::from(w.ws_col))
        .filter(|&c| c > 0);
    told.or(asked)
}

/// Whether a progress line may redraw itself in place on stderr: a terminal
/// that understands cursor controls. Pipes and `TERM=dumb` get plain lines.
pub fn redraws() -> bool {
    let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
    std::io::stderr().is_terminal() && !dumb
}

/// A line made of parts; on a narrow terminal the least important parts go
/// first, and what still does not fit is cut with `…`.
#[derive(Debug, Default)]
pub struct Parts {
    parts: Vec<Part>,
}

#[derive(Debug)]
struct Part {
    /// Dropped before parts of a lower rank; 0 is never dropped.
    rank: u8,
    /// Text put before it when something precedes it.
    sep: &'static str,
    text: String,
}

impl Parts {
    /// Adds `text`, after `sep`, dropped on a narrow terminal before every
    /// part of a lower `rank` (rank 0 is only cut, never dropped).
    pub fn push(&mut self, rank: u8, sep: &'static str, text: impl Into<String>) -> &mut Self {
        self.parts.push(Part {
            rank,
            sep,
            text: text.into(),
        });
        self
    }

    /// The line within `width` columns when given.
    pub fn fit(&self, width: Option<usize>) -> String {
        let mut kept: Vec<&Part> = self.parts.iter().collect();
        let Some(width) = width else {
            return join(&kept);
        };
        loop {
            let line = join(&kept);
            if line.chars().count() <= width {
                return line;
            }
            // The highest rank goes first; among equals, the rightmost.
            let drop = kept
                .iter()
                .enumerate()
                .filter(|(_, p)| p.rank > 0)
                .max_by_key(|&(i, p)| (p.rank, i))
                .map(|(i, _)| i);
            match drop {
                Some(i) => {
                    kept.remove(i);
                }
                None => return cut(&line, width),
            }
        }
    }
}

fn join(parts: &[&Part]) -> String {
    let mut line = String::new();
    for p in parts {
        if !line.is_empty() {
            line.push_str(p.sep);
        }
        line.push_str(&p.text);
    }
    line
}

/// `line` cut to `width` characters, the last one `…` when cut.
pub fn cut(line: &str, width: usize) -> String {
    if line.chars().count() <= width {
        return line.to_owned();
    }
    let mut out: String = line.chars().take(width.saturating_sub(1)).collect();
    if width > 0 {
        out.push('…');
    }
    out
}

/// Bytes per second over the last few seconds of samples.
#[derive(Debug, Default)]
pub struct Rate {
    samples: VecDeque<(Duration, u64)>,
}

/// How far back the rate looks: long enough to smooth one move's end, short
/// enough to follow a throttle change.
const RATE_WINDOW: Duration = Duration::from_secs(10);

impl Rate {
    /// Records that `bytes` were done in all at `at` (time since any fixed
    /// start).
    pub fn sample(&mut self, at: Duration, bytes: u64) {
        self.samples.push_back((at, bytes));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|&(t, _)| at.saturating_sub(t) >= RATE_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Bytes per second, once two samples a moment apart exist.
    pub fn per_second(&self) -> Option<f64> {
        let (&(t0, b0), &(t1, b1)) = (self.samples.front()?, self.samples.back()?);
        let secs = t1.saturating_sub(t0).as_secs_f64();
        (secs >= 0.5).then(|| b1.saturating_sub(b0) as f64 / secs)
    }

    /// Time left for `remaining` bytes at the current rate.
    pub fn eta(&self, remaining: u64) -> Option<Duration> {
        let rate = self.per_second().filter(|&r| r > 0.0)?;
        Duration::try_from_secs_f64(remaining as f64 / rate).ok()
    }
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

/// What one progress line shows.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress<'a> {
    /// Bytes done.
    pub done_bytes: u64,
    /// Bytes in all.
    pub total_bytes: u64,
    /// The moves.
    pub moves: MoveCounts,
    /// Bytes per second, once known.
    pub rate: Option<f64>,
    /// Time left, once known.
    pub eta: Option<Duration>,
    /// A state worth saying (paused, safe mode); kept when narrow.
    pub note: &'a str,
}

/// A progress line: bar, percent, bytes, moves, rate and ETA, fitted to
/// `width` (the bar narrows first, then the details go).
pub fn progress_line(p: &Progress<'_>, width: Option<usize>) -> String {
    let frac = if p.total_bytes == 0 {
        if p.moves.total() == 0 {
            // Nothing planned (yet): an empty bar, not a full one.
            0.0
        } else {
            100.0 * p.moves.finished() as f64 / p.moves.total() as f64
        }
    } else {
        100.0 * p.done_bytes as f64 / p.total_bytes as f64
    };
    let layout = |bar_width: usize| {
        let mut parts = Parts::default();
        parts
            .push(4, "", bar(frac, bar_width))
            .push(0, " ", pct(frac).trim_start().to_owned())
            .push(
                3,
                "  ",
                format!("{} / {}", size(p.done_bytes), size(p.total_bytes)),
            )
            .push(
                0,
                "  ",
                format!("moves {}/{}", p.moves.finished(), p.moves.total()),
            )
            .push(
                5,
                " ",
                format!("({} running, {} failed)", p.moves.running, p.moves.failed),
            );
        if let Some(rate) = p.rate {
            parts.push(2, "  ", format!("{}/s", size(rate as u64)));
        }
        if let Some(eta) = p.eta {
            parts.push(1, "  ", format!("ETA {}", age(eta)));
        }
        if !p.note.is_empty() {
            parts.push(0, "  ", p.note);
        }
        parts
    };
    let full = layout(24).fit(None);
    match width {
        Some(w) if full.chars().count() > w => layout(10).fit(Some(w)),
        _ => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(note: &str) -> Progress<'_> {
        Progress {
            done_bytes: 50 << 20,
            total_bytes: 100 << 20,
            moves: MoveCounts {
                pending: 1,
                running: 1,
                done: 2,
                failed: 0,
            },
            rate: Some(f64::from(12u32 << 20)),
            eta: Some(Duration::from_secs(245)),
            note,
        }
    }

    #[test]
    fn wide_lines_show_everything() {
        assert_eq!(
            progress_line(&p("paused"), None),
            "[############............] 50.0%  50.0 MiB / 100.0 MiB  moves 2/4 (1 running, 0 failed)  12.0 MiB/s  ETA 4m05s  paused"
        );
        let empty = progress_line(&Progress::default(), Some(200));
        assert!(
            empty.starts_with("[........................] 0.0%"),
            "{empty}"
        );
    }

    #[test]
    fn narrow_lines_keep_percent_moves_eta_and_note() {
        for width in [20, 40, 60, 79, 100] {
            let line = progress_line(&p("paused"), Some(width));
            assert!(line.chars().count() <= width, "{width}: {line}");
        }
        let line = progress_line(&p(""), Some(79));
        assert_eq!(
            line,
            "[#####.....] 50.0%  50.0 MiB / 100.0 MiB  moves 2/4  12.0 MiB/s  ETA 4m05s"
        );
        let line = progress_line(&p("paused"), Some(40));
        assert_eq!(line, "50.0%  moves 2/4  ETA 4m05s  paused");
        assert_eq!(progress_line(&p("paused"), Some(10)), "50.0%  mo…");
    }

    #[test]
    fn rate_follows_the_last_seconds() {
        let mut r = Rate::default();
        assert_eq!(r.per_second(), None);
        r.sample(Duration::ZERO, 0);
        r.sample(Duration::from_millis(100), 10);
        assert_eq!(r.per_second(), None, "too short to tell");
        for s in 1..=30u64 {
            // 1 MiB/s for 20 s, then 4 MiB/s.
            let bytes = if s <= 20 {
                s << 20
            } else {
                (20 << 20) + ((s - 20) << 22)
            };
            r.sample(Duration::from_secs(s), bytes);
        }
        let rate = r.per_second().expect("rate");
        assert!((rate - f64::from(4u32 << 20)).abs() < 1.0, "{rate}");
        assert_eq!(r.eta(8 << 20), Some(Duration::from_secs(2)));
    }

    #[test]
    fn cuts_mark_the_cut() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
        assert_eq!(cut("abc", 0), "");
    }
}
