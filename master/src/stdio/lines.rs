//! Lines of the JSON-lines protocol read as bytes with a length cap.
//!
//! The session must survive anything on its input, so lines are read as raw
//! bytes (UTF-8 is checked later, per line, by the session) and never grow
//! past a cap: the bytes of an overlong line are dropped as they arrive, up to
//! its newline, so a 10 GiB line costs no more memory than a short one.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// The longest line the session reads: 1 MiB, without its line ending. A
/// `rebalance_execute` of 5,000 moves fits in a tenth of it.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// One line of input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A line within the cap, without its `\n` or `\r\n`.
    Whole(Vec<u8>),
    /// A line over the cap, discarded up to and including its newline.
    TooLong {
        /// Every byte it had, without its line ending.
        len: u64,
        /// The cap it broke.
        limit: usize,
    },
}

/// Reads [`Line`]s of at most `max` bytes from a buffered reader.
#[derive(Debug)]
pub struct LineReader<R> {
    /// The input.
    inner: R,
    /// Longest line kept whole.
    max: usize,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    /// Lines of `inner`, each kept only when at most `max` bytes long.
    pub fn new(inner: R, max: usize) -> Self {
        LineReader { inner, max }
    }

    /// The next line, or `None` at EOF. A last line without a newline
    /// counts as a line.
    pub async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        let mut kept = Vec::new();
        let mut len = 0u64;
        let mut too_long = false;
        let mut seen_any = false;
        let mut last = 0u8;
        loop {
            let available = self.inner.fill_buf().await?;
            if available.is_empty() {
                if !seen_any {
                    return Ok(None);
                }
                break;
            }
            seen_any = true;
            let newline = available.iter().position(|&b| b == b'\n');
            let part = &available[..newline.unwrap_or(available.len())];
            len += part.len() as u64;
            if let Some(&b) = part.last() {
                last = b;
            }
            if !too_long && kept.len() + part.len() <= self.max + 1 {
                // One byte over the cap is kept so a `\r` before `\n` can be
                // told apart from a line that really is too long.
                kept.extend_from_slice(part);
            } else if !too_long {
                too_long = true;
                kept = Vec::new();
            }
            let used = part.len() + usize::from(newline.is_some());
            self.inner.consume(used);
            if newline.is_some() {
                break;
            }
        }
        if last == b'\r' {
            kept.pop();
            len -= 1;
        }
        if too_long || kept.len() > self.max {
            return Ok(Some(Line::TooLong {
                len,
                limit: self.max,
            }));
        }
        Ok(Some(Line::Whole(kept)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn all(input: &[u8], max: usize, buffer: usize) -> Vec<Line> {
        let reader = tokio::io::BufReader::with_capacity(buffer, input);
        let mut lines = LineReader::new(reader, max);
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().await.expect("in-memory reads") {
            out.push(line);
        }
        out
    }

    fn whole(s: &[u8]) -> Line {
        Line::Whole(s.to_vec())
    }

    #[tokio::test]
    async fn splits_on_newlines_and_strips_cr() {
        for buffer in [1, 3, 8192] {
            assert_eq!(
                all(b"ab\r\n\ncd\xff\n\0tail", 8, buffer).await,
                [whole(b"ab"), whole(b""), whole(b"cd\xff"), whole(b"\0tail")],
                "buffer {buffer}"
            );
            assert_eq!(all(b"", 8, buffer).await, []);
            assert_eq!(all(b"x\n", 8, buffer).await, [whole(b"x")]);
        }
    }

    #[tokio::test]
    async fn overlong_lines_are_counted_and_dropped() {
        for buffer in [1, 5, 8192] {
            let input = b"12345678\n123456789\n12345678\r\n123456789\r\nok\n1234567890";
            assert_eq!(
                all(input, 8, buffer).await,
                [
                    whole(b"12345678"),
                    Line::TooLong { len: 9, limit: 8 },
                    whole(b"12345678"),
                    Line::TooLong { len: 9, limit: 8 },
                    whole(b"ok"),
                    Line::TooLong { len: 10, limit: 8 },
                ],
                "buffer {buffer}"
            );
        }
    }

    #[tokio::test]
    async fn a_line_of_several_mebibytes_is_skipped_whole() {
        let mut input = vec![b'x'; 3 * MAX_LINE_BYTES];
        input.extend_from_slice(b"\n{}\n");
        let reader = tokio::io::BufReader::new(&input[..]);
        let mut lines = LineReader::new(reader, MAX_LINE_BYTES);
        let first = lines.next_line().await.expect("reads");
        assert_eq!(
            first,
            Some(Line::TooLong {
                len: 3 * MAX_LINE_BYTES as u64,
                limit: MAX_LINE_BYTES,
            })
        );
        assert_eq!(lines.next_line().await.expect("reads"), Some(whole(b"{}")));
        assert_eq!(lines.next_line().await.expect("reads"), None);
    }
}
