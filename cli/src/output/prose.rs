//! Sentences that fit the terminal: wrapped on word boundaries, never in
//! the middle of a word. Tables are fitted by [`super::Table`] instead and
//! never pass through here.
//!
//! The width: a terminal's own (or `COLUMNS`), 80 when a terminal does not
//! say; when the stream is a pipe or a file, `COLUMNS` when set, else no
//! wrapping at all, so scripts and `grep` see each sentence whole on one
//! line.

use std::io::IsTerminal;
use std::os::fd::AsFd;

use super::term::width_of;

/// The width assumed for a terminal that does not report one.
pub const DEFAULT_WIDTH: usize = 80;

/// Columns sentences on stdout wrap at; `None`: do not wrap.
pub fn stdout_prose_width() -> Option<usize> {
    prose_width(std::io::stdout())
}

/// Columns sentences on stderr wrap at; `None`: do not wrap.
pub fn stderr_prose_width() -> Option<usize> {
    prose_width(std::io::stderr())
}

fn prose_width<S: IsTerminal + AsFd>(stream: S) -> Option<usize> {
    let terminal = stream.is_terminal();
    width_rule(terminal, width_of(stream))
}

/// The known width; else 80 on a terminal, nothing for a pipe or a file.
fn width_rule(terminal: bool, known: Option<usize>) -> Option<usize> {
    known.or(terminal.then_some(DEFAULT_WIDTH))
}

/// `text` with each line longer than `width` (when given) broken at spaces
/// into lines of at most `width` characters. Continuation lines keep the
/// line's indentation; a word longer than the width stays whole on a line
/// of its own. Line feeds already in `text` are kept.
pub fn wrap(text: &str, width: Option<usize>) -> String {
    let Some(width) = width else {
        return text.to_owned();
    };
    let mut out = String::with_capacity(text.len() + text.len() / width.max(1));
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        wrap_line(line, width, &mut out);
    }
    out
}

fn wrap_line(line: &str, width: usize, out: &mut String) {
    if line.chars().count() <= width {
        out.push_str(line);
        return;
    }
    let rest = line.trim_start_matches(' ');
    let indent = &line[..line.len() - rest.len()];
    out.push_str(indent);
    let mut col = indent.len();
    let mut at_start = true;
    // Spaces owed before the next word; runs of spaces inside a line stay
    // as they are unless the line breaks there.
    let mut spaces = 0;
    for (k, word) in rest.split(' ').enumerate() {
        if k > 0 {
            spaces += 1;
        }
        if word.is_empty() {
            continue;
        }
        let len = word.chars().count();
        if !at_start && col + spaces + len > width {
            out.push('\n');
            out.push_str(indent);
            col = indent.len();
            at_start = true;
        }
        if !at_start {
            out.extend(std::iter::repeat_n(' ', spaces));
            col += spaces;
        }
        out.push_str(word);
        col += len;
        at_start = false;
        spaces = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every word of `text`, in order, whatever the line breaks.
    fn words(text: &str) -> Vec<&str> {
        text.split_whitespace().collect()
    }

    #[test]
    fn the_band_line_breaks_between_words() {
        let band = "average 41.4%, band 31.4% to 51.4% (±10 points): overloaded cs1, cs2; underloaded cs4, cs3";
        let wrapped = wrap(band, Some(80));
        assert_eq!(
            wrapped,
            "average 41.4%, band 31.4% to 51.4% (±10 points): overloaded cs1, cs2;\n\
             underloaded cs4, cs3"
        );
        // From the longest word's length (`underloaded`, 11) up.
        for width in [11, 20, 33, 79, 80] {
            let w = wrap(band, Some(width));
            assert!(
                w.lines().all(|l| l.chars().count() <= width),
                "{width}: {w}"
            );
            assert_eq!(words(&w), words(band), "{width}: no word is cut");
        }
    }

    #[test]
    fn short_lines_pipes_and_line_feeds_are_left_alone() {
        assert_eq!(
            wrap("wrote 12 chunks in 1.2s", Some(80)),
            "wrote 12 chunks in 1.2s"
        );
        let long = "x ".repeat(100);
        assert_eq!(wrap(&long, None), long);
        assert_eq!(wrap("\nadding cs5:\n", Some(8)), "\nadding\ncs5:\n");
        assert_eq!(
            wrap("a  b", Some(10)),
            "a  b",
            "inner spaces kept when no break"
        );
    }

    #[test]
    fn indentation_is_kept_and_long_words_stay_whole() {
        assert_eq!(
            wrap("  one two three four", Some(11)),
            "  one two\n  three\n  four"
        );
        let path = "data in /tmp/keel-demo-0123456789abcdef/logs now";
        assert_eq!(
            wrap(path, Some(12)),
            "data in\n/tmp/keel-demo-0123456789abcdef/logs\nnow"
        );
    }

    #[test]
    fn terminals_default_to_80_and_pipes_do_not_wrap() {
        assert_eq!(width_rule(true, None), Some(DEFAULT_WIDTH));
        assert_eq!(width_rule(true, Some(120)), Some(120));
        assert_eq!(width_rule(false, None), None);
        assert_eq!(width_rule(false, Some(60)), Some(60), "COLUMNS on a pipe");
    }
}
