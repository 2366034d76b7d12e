//! Small things keelctl says the same way everywhere, in errors and in
//! output alike: durations, counts, and I/O errors as short lower-case
//! phrases. A leaf: it imports nothing of keelctl, so `error` and `output`
//! (which import each other's types) can both use it.

use std::io;
use std::time::Duration;

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

/// An I/O error without the `(os error N)` suffix, starting lower-case.
pub fn io_message(err: &io::Error) -> String {
    let text = err.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    lower_first(&one_line(text))
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if !chars.as_str().starts_with(|n: char| n.is_uppercase()) => {
            c.to_lowercase().chain(chars).collect()
        }
        _ => s.to_owned(),
    }
}

/// Collapses whitespace runs (including newlines) to single spaces.
pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_messages_are_short() {
        let e = io::Error::from_raw_os_error(111);
        assert_eq!(io_message(&e), "connection refused");
        let e = io::Error::from_raw_os_error(2);
        assert_eq!(io_message(&e), "no such file or directory");
        let e = io::Error::other("TLS handshake");
        assert_eq!(io_message(&e), "TLS handshake");
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
