//! Trims: which excess replicas to delete, never so that a chunk spans
//! fewer racks than its factor can use.

use super::{Meta, ServerAddr, ServerNo};

/// Excess replicas of one chunk to delete, most utilized holder first. The
/// chunk is busy until the caller calls [`Meta::end_busy`].
#[derive(Debug, Clone, PartialEq)]
pub struct Deletion {
    /// Chunk id.
    pub chunk: String,
    /// Holders to delete from, in order.
    pub servers: Vec<ServerAddr>,
}

impl Meta {
    /// Chunks with more whole replicas on live servers than their factor and
    /// nothing running on them, up to `max`; marks each busy. Replicas on
    /// draining servers go first, then the most utilized holders', never so
    /// that the chunk spans fewer racks than its factor can use, and never a
    /// replica under suspicion (it does not count as whole for deletes).
    pub fn plan_trims(&mut self, max: usize) -> Vec<Deletion> {
        if std::mem::take(&mut self.rescan_for_trim) {
            let over: Vec<Box<str>> = self
                .chunks
                .iter()
                .filter(|(_, c)| self.live_replicas(c) > c.replication as usize)
                .map(|(id, _)| id.into())
                .collect();
            self.trim_candidates.extend(over);
        }
        let mut out = Vec::new();
        let candidates: Vec<Box<str>> = self.trim_candidates.drain().collect();
        for id in candidates {
            if out.len() >= max || self.busy.contains_key(&id) {
                self.trim_candidates.insert(id);
                continue;
            }
            let Some(servers) = self.excess_of(&id) else {
                continue;
            };
            self.begin_delete(&id);
            out.push(Deletion {
                chunk: id.to_string(),
                servers,
            });
        }
        out
    }

    /// The replicas of `id` to delete, in order; `None` when none may go.
    fn excess_of(&self, id: &str) -> Option<Vec<ServerAddr>> {
        let c = self.chunks.get(id)?;
        let mut holders: Vec<ServerNo> = c
            .servers()
            .filter(|&s| self.server(s).alive && !self.is_suspect(id, s))
            .collect();
        let wanted = c.replication as usize;
        holders.len().checked_sub(wanted).filter(|&e| e > 0)?;
        holders.sort_by(|&a, &b| {
            let (a, b) = (self.server(a), self.server(b));
            b.draining
                .cmp(&a.draining)
                .then_with(|| b.utilization_pct().total_cmp(&a.utilization_pct()))
                .then_with(|| a.id.cmp(&b.id))
        });
        // A draining holder's rack does not count: it is leaving, and
        // keeping it for its rack would trim the copy that replaced it.
        let rack = |s: ServerNo| {
            let s = self.server(s);
            (s.has_rack() && !s.draining).then_some(s.rack.as_str())
        };
        let mut drop = Vec::new();
        let mut i = 0;
        while holders.len() > wanted && i < holders.len() {
            let h = holders[i];
            let others = holders.iter().filter(|&&s| s != h).map(|&s| rack(s));
            if keel_balancer::racks::drop_keeps_racks(others, rack(h), wanted) {
                holders.remove(i);
                drop.push(self.addr(h));
            } else {
                i += 1;
            }
        }
        (!drop.is_empty()).then_some(drop)
    }
}
