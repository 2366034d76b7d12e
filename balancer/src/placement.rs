//! Space helpers over [`Server`]s for the planner's bounds and the
//! simulations; the rule itself is [`crate::admission::admit`].

use crate::model::Server;

/// The most bytes `server` may hold as a move target: capacity minus the
/// floor of `min_free_pct` percent of it that must stay free.
pub fn fill_limit(server: &Server, min_free_pct: f64) -> u64 {
    crate::admission::fill_limit(server.capacity, min_free_pct)
}

/// Whether `server`, already holding `used` bytes (its own plus incoming
/// moves), can take `bytes` more and keep its free-space floor.
pub fn fits_floor(server: &Server, used: u64, bytes: u64, min_free_pct: f64) -> bool {
    crate::admission::fits_floor(server.capacity, used, bytes, min_free_pct)
}
