//! Space arithmetic over one server, the one copy every caller uses:
//! utilization, and the free-space floor that allocation, repair, the
//! admission rule, the planner's bounds and the dashboard all apply.
//!
//! The floor is `ceil(capacity × min_free_pct / 100)` bytes with the
//! percentage clamped to `0..=100`, so it never exceeds the capacity; a
//! server may hold up to `capacity − floor` bytes as a target. The master's
//! flag is validated to `0..=100`, where clamping changes nothing.

/// `100 * used / capacity`; without capacity a server counts as full.
pub fn utilization_pct(used: u64, capacity: u64) -> f64 {
    if capacity == 0 {
        100.0
    } else {
        100.0 * used as f64 / capacity as f64
    }
}

/// Bytes of a server of `capacity` that must stay free: `min_free_pct`
/// percent of it, rounded up, at most the capacity.
pub fn floor_bytes(capacity: u64, min_free_pct: f64) -> u64 {
    // `as` saturates (and maps NaN to 0), so an odd percentage cannot wrap.
    (capacity as f64 * min_free_pct.clamp(0.0, 100.0) / 100.0).ceil() as u64
}

/// The most bytes a server of `capacity` may hold as a copy's or a new
/// replica's target: capacity minus its floor.
pub fn fill_limit(capacity: u64, min_free_pct: f64) -> u64 {
    capacity.saturating_sub(floor_bytes(capacity, min_free_pct))
}

/// Whether a server of `capacity` with `committed` bytes (recorded use plus
/// what is on its way in) can take `bytes` more and keep its floor.
pub fn fits_floor(capacity: u64, committed: u64, bytes: u64, min_free_pct: f64) -> bool {
    committed.saturating_add(bytes) <= fill_limit(capacity, min_free_pct)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_rounds_up_and_fits_up_to_the_limit() {
        assert_eq!(floor_bytes(1000, 10.0), 100);
        assert_eq!(floor_bytes(1001, 10.0), 101, "100.1 rounds up");
        assert_eq!(fill_limit(1000, 10.0), 900);
        assert!(fits_floor(1000, 500, 400, 10.0));
        assert!(!fits_floor(1000, 500, 401, 10.0));
        assert!(
            !fits_floor(1000, u64::MAX, 1, 10.0),
            "saturates, never wraps"
        );
    }

    #[test]
    fn a_percentage_out_of_range_is_clamped() {
        assert_eq!(floor_bytes(1000, 150.0), 1000);
        assert_eq!(floor_bytes(1000, -5.0), 0);
        assert_eq!(floor_bytes(1000, f64::NAN), 0);
        // Unclamped, these gave the same limits: a floor above the capacity
        // left nothing, a negative one everything.
        assert_eq!(fill_limit(1000, 150.0), 0);
        assert_eq!(fill_limit(1000, -5.0), 1000);
    }

    #[test]
    fn a_server_without_capacity_is_full() {
        assert_eq!(utilization_pct(0, 0), 100.0);
        assert_eq!(utilization_pct(25, 100), 25.0);
        assert!(fits_floor(0, 0, 0, 0.0));
        assert!(!fits_floor(0, 0, 1, 0.0));
    }
}
