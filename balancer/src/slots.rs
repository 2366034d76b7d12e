//! The slot table: at most `max_total` copies running cluster-wide and
//! `max_per_server` with any one server as their source or target (the
//! master's `--max-concurrent-moves` and `--max-moves-per-server`). The move
//! queue owns the one table; every copy, whatever it is for, holds a slot
//! from it while it runs.

use std::collections::BTreeMap;

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
}
