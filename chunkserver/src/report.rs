//! Which chunks changed since the master last acknowledged a heartbeat.
//!
//! Every change (a chunk added or removed, a read counted) stamps the chunk id
//! with a fresh sequence number. A heartbeat carries the ids stamped so far and
//! remembers the sequence it was built at; only when the master acknowledges it
//! are the stamps up to that sequence forgotten. A failed heartbeat forgets
//! nothing, so its changes ride along with the next one.

use std::collections::HashMap;

/// Pending changes, keyed by chunk id.
#[derive(Debug, Default)]
pub struct ChangeLog {
    /// Last sequence number handed out.
    seq: u64,
    /// Chunk id → sequence of its latest change not yet acknowledged.
    dirty: HashMap<String, u64>,
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

    /// Ids changed since the last acknowledgement, in no particular order.
    pub fn dirty(&self) -> impl Iterator<Item = &str> {
        self.dirty.keys().map(String::as_str)
    }

    /// Number of ids waiting to be reported.
    pub fn len(&self) -> usize {
        self.dirty.len()
    }

    /// Whether nothing waits to be reported.
    pub fn is_empty(&self) -> bool {
        self.dirty.is_empty()
    }

    /// The master has seen every change up to `seq`.
    pub fn ack(&mut self, seq: u64) {
        self.dirty.retain(|_, s| *s > seq);
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
