//! Which chunks changed since the master last acknowledged a heartbeat.
//!
//! Every change (a chunk added or removed, a read counted) stamps the chunk id
//! with a fresh sequence number. A heartbeat carries the ids stamped so far and
//! remembers the sequence it was built at; only when the master acknowledges it
//! are the stamps up to that sequence forgotten. A failed heartbeat forgets
//! nothing, so its changes ride along with the next one.
//!
//! With several masters (`--master a,b,c`) each is a **consumer** with its
//! own acknowledgement: a change is forgotten once every consumer has
//! acknowledged it, and each one's deltas are the changes after its own.

use std::collections::HashMap;

/// Pending changes, keyed by chunk id.
#[derive(Debug, Default)]
pub struct ChangeLog {
    /// Last sequence number handed out.
    seq: u64,
    /// Chunk id → sequence of its latest change not yet acknowledged by
    /// every consumer.
    dirty: HashMap<String, u64>,
    /// Consumer → the sequence it acknowledged last (missing: 0).
    acked: Vec<u64>,
}

impl ChangeLog {
    /// Records that `id` changed (added, removed, or read).
    pub fn touch(&mut self, id: &str) {
        self.seq += 1;
        match self.dirty.get_mut(id) {
            Some(s) => *s = self.seq,
            None => {
                self.dirty.insert(id.to_owned(), self.seq);
            }
        }
    }

    /// The sequence a report built now covers.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Ids changed since consumer 0's last acknowledgement, in no particular order.
    pub fn dirty(&self) -> impl Iterator<Item = &str> {
        self.dirty_for(0)
    }

    /// Ids changed since `consumer`'s last acknowledgement.
    pub fn dirty_for(&self, consumer: usize) -> impl Iterator<Item = &str> {
        let after = self.acked.get(consumer).copied().unwrap_or(0);
        self.dirty
            .iter()
            .filter(move |(_, s)| **s > after)
            .map(|(id, _)| id.as_str())
    }

    /// Number of ids waiting to be reported.
    pub fn len(&self) -> usize {
        self.dirty.len()
    }

    /// Whether nothing waits to be reported.
    pub fn is_empty(&self) -> bool {
        self.dirty.is_empty()
    }

    /// Expects `n` consumers: nothing is forgotten before each of them has
    /// acknowledged it (a consumer's first report is a full one, but it may
    /// be acknowledged after another consumer's later one).
    pub fn set_consumers(&mut self, n: usize) {
        if self.acked.len() < n {
            self.acked.resize(n, 0);
        }
    }

    /// Consumer 0 has seen every change up to `seq`.
    pub fn ack(&mut self, seq: u64) {
        self.ack_for(0, seq);
    }

    /// `consumer` has seen every change up to `seq`; changes every consumer
    /// has seen are forgotten.
    pub fn ack_for(&mut self, consumer: usize, seq: u64) {
        if self.acked.len() <= consumer {
            self.acked.resize(consumer + 1, 0);
        }
        let mine = &mut self.acked[consumer];
        *mine = (*mine).max(seq);
        let everyone = self.acked.iter().copied().min().unwrap_or(0);
        self.dirty.retain(|_, s| *s > everyone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(log: &ChangeLog) -> Vec<&str> {
        let mut v: Vec<&str> = log.dirty().collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn unacknowledged_changes_are_kept() {
        let mut log = ChangeLog::default();
        log.touch("a");
        log.touch("b");
        let first = log.seq();
        // The heartbeat built at `first` fails: nothing is acked.
        log.touch("c");
        assert_eq!(sorted(&log), ["a", "b", "c"]);
        // A later one succeeds.
        log.ack(log.seq());
        assert!(log.is_empty());
        assert!(first < log.seq());
    }

    #[test]
    fn each_consumer_gets_the_changes_after_its_own_ack() {
        let mut log = ChangeLog::default();
        log.set_consumers(2);
        log.touch("a");
        log.ack_for(0, log.seq());
        log.touch("b");
        let mut one: Vec<&str> = log.dirty_for(1).collect();
        one.sort_unstable();
        assert_eq!(one, ["a", "b"]);
        assert_eq!(log.dirty_for(0).collect::<Vec<_>>(), ["b"]);
        log.ack_for(1, log.seq());
        assert_eq!(log.dirty_for(1).count(), 0);
        assert_eq!(log.len(), 1, "b waits for consumer 0");
        log.ack_for(0, log.seq());
        assert!(log.is_empty());
    }

    #[test]
    fn a_change_after_the_snapshot_survives_its_ack() {
        let mut log = ChangeLog::default();
        log.touch("a");
        let snap = log.seq();
        log.touch("a");
        log.touch("b");
        log.ack(snap);
        assert_eq!(sorted(&log), ["a", "b"]);
        assert_eq!(log.len(), 2);
    }
}
