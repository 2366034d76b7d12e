//! The read-load half of `rebalance check` and `plan`: the load band in
//! words, which servers are hot or cold, and the verdict. The band is the
//! balancer's own (`keel_balancer::traffic`): `mean × (1 ± pct/100)`, never
//! narrower than the noise floor on either side.

use keel_balancer::traffic::LOAD_NOISE_FLOOR_READS_PER_SEC;
use keel_proto::v1::{RebalanceCheckResponse, ServerLoad};

use crate::output;

/// Whether the check says anything about load: a band is set or reads were
/// counted. A master that predates read load sends neither, and its check
/// reads as before.
pub fn shown(r: &RebalanceCheckResponse) -> bool {
    on(r.load_threshold_pct)
        || r.average_reads_per_sec > 0.0
        || r.servers.iter().any(|s| s.reads_per_sec > 0.0)
}

/// `read load: mean 45.0/s per live server, band ±25% of the mean: 33.8/s
/// to 56.2/s`, or that load balancing is off.
pub fn band(mean: f64, pct: f64) -> String {
    let head = format!("read load: mean {} per live server", output::per_sec(mean));
    if !on(pct) {
        return format!("{head}; load balancing off (--load-threshold-pct 0)");
    }
    let slack = (mean * pct / 100.0).max(LOAD_NOISE_FLOOR_READS_PER_SEC);
    format!(
        "{head}, band ±{pct}% of the mean: {} to {}",
        output::per_sec((mean - slack).max(0.0)),
        output::per_sec(mean + slack)
    )
}

/// Whether a load band of `pct` is set: 0 (or anything not above it, NaN
/// included) turns load balancing off, as in the balancer.
pub fn on(pct: f64) -> bool {
    pct > 0.0
}

/// `hot` or `cold` when the check lists `server` so, else blank.
pub fn mark(r: &RebalanceCheckResponse, server: &str) -> &'static str {
    if r.hot.iter().any(|l| l.server == server) {
        "hot"
    } else if r.cold.iter().any(|l| l.server == server) {
        "cold"
    } else {
        ""
    }
}

/// The load verdict, naming the hot and cold servers with their reads/s;
/// none when load balancing is off (the band line says so).
pub fn verdict(r: &RebalanceCheckResponse) -> Option<String> {
    if !on(r.load_threshold_pct) {
        return None;
    }
    if r.hot.is_empty() && r.cold.is_empty() {
        return Some("balanced by load: every server's reads/s are within the load band".into());
    }
    let named = |v: &[ServerLoad]| {
        v.iter()
            .map(|l| format!("{} {}", l.server, output::per_sec(l.reads_per_sec)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!(
        "not balanced by load: {} hot [{}], {} cold [{}]",
        r.hot.len(),
        named(&r.hot),
        r.cold.len(),
        named(&r.cold)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_band_keeps_the_noise_floor() {
        assert_eq!(
            band(45.0, 25.0),
            "read load: mean 45.0/s per live server, band ±25% of the mean: 33.8/s to 56.2/s"
        );
        // 25 % of 4 reads/s is less than the floor of 2 on either side.
        assert!(band(4.0, 25.0).ends_with("2.0/s to 6.0/s"));
        assert!(band(4.0, 0.0).ends_with("load balancing off (--load-threshold-pct 0)"));
        assert!(band(4.0, f64::NAN).contains("off"));
    }
}
