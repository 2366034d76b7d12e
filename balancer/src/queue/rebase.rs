//! Carrying the queue over to a view whose indices differ: every move's
//! chunk and servers are found again by id.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::status::Outcome;
use super::{MoveId, MoveQueue};
use crate::model::{ChunkIdx, ClusterView, ServerIdx};

impl MoveQueue {
    /// Re-resolves every move's indices in `view` by the ids kept from
    /// enqueueing. Pending moves whose chunk or servers `view` lacks are
    /// dropped as obsolete; running ones keep their old indices until they
    /// are reported. Costs one pass over `view`'s chunks; a caller whose
    /// views keep positions stable never needs it. Returns the number of
    /// moves dropped.
    pub fn rebase(&mut self, view: &ClusterView, now: Duration) -> usize {
        let chunks = self.find_chunks(view);
        let servers: HashMap<&str, ServerIdx> = view
            .servers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), ServerIdx(i as u32)))
            .collect();
        let mut gone = Vec::new();
        self.by_chunk.clear();
        for (&id, entry) in self.pending.iter_mut().chain(self.running.iter_mut()) {
            let n = &entry.names;
            let found = (
                chunks.get(n.chunk.as_str()),
                servers.get(n.from.as_str()),
                servers.get(n.to.as_str()),
            );
            match found {
                (Some(&chunk), Some(&from), Some(&to)) => {
                    entry.mv.chunk = chunk;
                    entry.mv.from = from;
                    entry.mv.to = to;
                }
                _ => gone.push(id),
            }
            self.by_chunk.insert(entry.mv.chunk, id);
        }
        self.failed_at
            .retain(|name, (chunk, _)| match chunks.get(name.as_str()) {
                Some(&found) => {
                    *chunk = found;
                    true
                }
                None => false,
            });
        self.drop_obsolete(gone, now)
    }

    /// Indices in `view` of every chunk the queue knows by id.
    fn find_chunks<'v>(&self, view: &'v ClusterView) -> HashMap<&'v str, ChunkIdx> {
        let wanted: HashSet<&str> = self
            .pending
            .values()
            .chain(self.running.values())
            .map(|e| e.names.chunk.as_str())
            .chain(self.failed_at.keys().map(String::as_str))
            .collect();
        let mut found = HashMap::new();
        if wanted.is_empty() {
            return found;
        }
        for c in view.chunks() {
            if wanted.contains(c.id()) {
                found.insert(c.id(), c.idx());
            }
        }
        found
    }

    /// Drops the pending moves among `ids` as obsolete.
    fn drop_obsolete(&mut self, ids: Vec<MoveId>, now: Duration) -> usize {
        let mut dropped = 0;
        for id in ids {
            if let Some(entry) = self.pending.remove(&id) {
                self.finish(id, entry, Outcome::Obsolete, now);
                dropped += 1;
            }
        }
        dropped
    }
}
