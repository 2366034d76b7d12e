//! The slot table: at most `max_total` copies running cluster-wide and
//! `max_per_server` with any one server as their source or target (the
//! master's `--max-concurrent-moves` and `--max-moves-per-server`). The move
//! queue owns the one table; every copy, whatever it is for, holds a slot
//! from it while it runs.
//!
//! The binding limit is per server: a server's slots are what share its
//! migration bucket. The cluster-wide cap defaults to [`AUTO`], which adds
//! nothing to the per-server slots and so grows with the cluster
//! ([`auto_cap`]); a fixed cap of 4 kept only four buckets busy however
//! many servers had bytes to move.

use std::collections::BTreeMap;

/// `--max-concurrent-moves auto`: no cluster-wide cap beyond the one the
/// per-server slots imply (see [`auto_cap`]).
pub const AUTO: usize = usize::MAX;

/// The cluster-wide cap `auto` amounts to with `live` servers and
/// `per_server` slots each: every copy holds a slot on two servers, so no
/// more than `live × per_server / 2` copies can ever run at once.
///
/// ```
/// assert_eq!(keel_balancer::slots::auto_cap(16, 2), 16);
/// assert_eq!(keel_balancer::slots::auto_cap(3, 1), 1);
/// ```
pub fn auto_cap(live: usize, per_server: usize) -> usize {
    live.saturating_mul(per_server) / 2
}

/// The cluster-wide cap in force: `max_total`, or [`auto_cap`] when it is
/// [`AUTO`]. What operators see; the table itself needs no server count.
pub fn effective_cap(max_total: usize, live: usize, per_server: usize) -> usize {
    if max_total == AUTO {
        auto_cap(live, per_server)
    } else {
        max_total
    }
}

/// Running copies against the limits. Servers are named by a key the
/// caller chooses (a view index, the master's server number).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlotTable {
    max_total: usize,
    max_per_server: usize,
    total: usize,
    per_server: BTreeMap<u32, usize>,
}

impl SlotTable {
    /// An empty table with these limits (0 lets nothing run).
    pub fn new(max_total: usize, max_per_server: usize) -> Self {
        SlotTable {
            max_total,
            max_per_server,
            ..Self::default()
        }
    }

    /// Changes the limits; copies running now keep their slots.
    pub fn set_limits(&mut self, max_total: usize, max_per_server: usize) {
        self.max_total = max_total;
        self.max_per_server = max_per_server;
    }

    /// Copies running with `server` as source or target.
    pub fn on(&self, server: u32) -> usize {
        self.per_server.get(&server).copied().unwrap_or(0)
    }

    /// Copies running now.
    pub fn running(&self) -> usize {
        self.total
    }

    /// Whether a copy between `from` and `to` could take a slot now.
    pub fn fits(&self, from: u32, to: u32) -> bool {
        self.total < self.max_total
            && self.on(from) < self.max_per_server
            && self.on(to) < self.max_per_server
    }

    /// Takes a slot for a copy between `from` and `to` if one is free.
    pub fn take(&mut self, from: u32, to: u32) -> bool {
        if !self.fits(from, to) {
            return false;
        }
        self.total += 1;
        for s in [from, to] {
            *self.per_server.entry(s).or_default() += 1;
        }
        true
    }

    /// Gives back the slot of a copy between `from` and `to`.
    pub fn release(&mut self, from: u32, to: u32) {
        self.total = self.total.saturating_sub(1);
        for s in [from, to] {
            if let Some(n) = self.per_server.get_mut(&s) {
                *n -= 1;
                if *n == 0 {
                    self.per_server.remove(&s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_and_slots_come_back() {
        let mut s = SlotTable::new(3, 2);
        assert!(s.take(0, 1) && s.take(0, 2));
        assert!(!s.take(0, 3), "server 0 is in two copies");
        assert!(s.take(3, 4));
        assert!(!s.take(5, 6), "three copies cluster-wide");
        assert_eq!((s.running(), s.on(0)), (3, 2));
        s.release(0, 1);
        assert!(s.fits(0, 5));
        s.release(0, 2);
        s.release(3, 4);
        assert_eq!(s, SlotTable::new(3, 2));
    }

    #[test]
    fn auto_is_bound_by_the_servers_alone() {
        // Eight servers with two slots each: every server in two copies
        // makes eight copies, the most `auto` can ever see running.
        let mut s = SlotTable::new(AUTO, 2);
        for i in 0..8u32 {
            assert!(s.take(i, (i + 1) % 8), "copy {i}");
        }
        assert_eq!(s.running(), auto_cap(8, 2));
        assert!(!s.fits(0, 4), "every server is in two copies");
        assert_eq!(effective_cap(AUTO, 8, 2), 8);
        assert_eq!(effective_cap(4, 8, 2), 4, "an explicit number still caps");
    }
}
