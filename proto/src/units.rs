//! Human-friendly sizes and durations for flags and environment variables:
//! sizes as `64MiB`, `1GiB`, `10MB` or plain bytes; durations as `500ms`,
//! `30s`, `5m`, `1h` or `0`.

use std::time::Duration;

/// Why a size or duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid {what}: {why}")]
pub struct ParseError {
    input: String,
    what: &'static str,
    why: &'static str,
}

fn err(input: &str, what: &'static str, why: &'static str) -> ParseError {
    ParseError {
        input: input.to_owned(),
        what,
        why,
    }
}

/// Splits `"64MiB"` into `("64", "MiB")`.
fn split_number(s: &str) -> (&str, &str) {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    (&s[..end], s[end..].trim())
}

/// Parses a byte size: plain bytes, or a number with a unit
/// (`B`, `KB`, `MB`, `GB`, `TB` powers of 1000; `KiB`, `MiB`, `GiB`, `TiB` powers of 1024;
/// `K`, `M`, `G`, `T` taken as binary).
pub fn parse_size(input: &str) -> Result<u64, ParseError> {
    const WHAT: &str = "size (e.g. 64MiB, 1GiB, 1048576)";
    let s = input.trim();
    let (num, unit) = split_number(s);
    if num.is_empty() {
        return Err(err(input, WHAT, "it does not start with a number"));
    }
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000u64.pow(2),
        "gb" => 1000u64.pow(3),
        "tb" => 1000u64.pow(4),
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        _ => return Err(err(input, WHAT, "unknown unit")),
    };
    let value: f64 = num.parse().map_err(|_| err(input, WHAT, "bad number"))?;
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(err(input, WHAT, "too large"));
    }
    Ok(bytes.round() as u64)
}

/// Parses a duration: `0`, or a number with `ms`, `s`, `m` or `h`.
pub fn parse_duration(input: &str) -> Result<Duration, ParseError> {
    const WHAT: &str = "duration (e.g. 500ms, 30s, 5m)";
    let s = input.trim();
    let (num, unit) = split_number(s);
    if num.is_empty() {
        return Err(err(input, WHAT, "it does not start with a number"));
    }
    let value: f64 = num.parse().map_err(|_| err(input, WHAT, "bad number"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "" if value == 0.0 => 0.0,
        "" => return Err(err(input, WHAT, "a unit is required (ms, s, m, h)")),
        _ => return Err(err(input, WHAT, "unknown unit")),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| err(input, WHAT, "out of range"))
}

/// Formats bytes for people: `64.0 MiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1.5KiB"), Ok(1536));
        assert!(parse_size("").is_err());
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("12parsecs").is_err());
        assert!(parse_size("-5").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(64 << 20), "64.0 MiB");
    }
}
