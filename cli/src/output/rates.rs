//! Read load for people, compact enough for a table cell: `12.3/s`,
//! `4.1MiB/s`, `8.2ms`. A figure that is not a finite, non-negative number
//! (nothing a healthy master sends) prints as `-` rather than `NaN/s`.

use keel_proto::units::format_size;

/// Reads per second: `12.3/s`, `4.5k/s`, `1.2M/s`.
pub fn per_sec(v: f64) -> String {
    if !sane(v) {
        return "-".into();
    }
    // Switched at the value that would round to 1000.0, so `999.96` shows
    // as `1.0k/s`, not `1000.0/s`.
    match v {
        v if v < 999.95 => format!("{v:.1}/s"),
        v if v < 999_950.0 => format!("{:.1}k/s", v / 1e3),
        v => format!("{:.1}M/s", v / 1e6),
    }
}

/// Bytes per second, without the space of [`format_size`]: `4.1MiB/s`.
pub fn bytes_per_sec(v: f64) -> String {
    if !sane(v) {
        return "-".into();
    }
    // `as` saturates: a rate past u64 bytes/s shows as the largest size.
    format!("{}/s", format_size(v as u64).replace(' ', ""))
}

/// A service time in milliseconds: `0.4ms`, `12ms`, `1.5s`; `-` for 0,
/// which the chunk servers send when they have no samples.
pub fn millis(v: f64) -> String {
    match v {
        v if !sane(v) || v == 0.0 => "-".into(),
        v if v < 9.95 => format!("{v:.1}ms"),
        v if v < 999.5 => format!("{v:.0}ms"),
        v => format!("{:.1}s", v / 1e3),
    }
}

fn sane(v: f64) -> bool {
    v.is_finite() && v >= 0.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads() {
        assert_eq!(per_sec(0.0), "0.0/s");
        assert_eq!(per_sec(12.34), "12.3/s");
        assert_eq!(per_sec(999.96), "1.0k/s");
        assert_eq!(per_sec(4_520.0), "4.5k/s");
        assert_eq!(per_sec(1.25e6), "1.2M/s");
        assert_eq!(per_sec(f64::NAN), "-");
        assert_eq!(per_sec(-1.0), "-");
    }

    #[test]
    fn bytes() {
        assert_eq!(bytes_per_sec(0.0), "0B/s");
        assert_eq!(bytes_per_sec(512.0), "512B/s");
        assert_eq!(bytes_per_sec(4.1 * 1024.0 * 1024.0), "4.1MiB/s");
        assert_eq!(bytes_per_sec(f64::INFINITY), "-");
    }

    #[test]
    fn service_times() {
        assert_eq!(millis(0.0), "-");
        assert_eq!(millis(0.42), "0.4ms");
        assert_eq!(millis(12.4), "12ms");
        assert_eq!(millis(1_500.0), "1.5s");
        assert_eq!(millis(f64::NAN), "-");
    }
}
