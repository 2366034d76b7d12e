//! Invariant checks over a [`ClusterView`], run after every applied move in
//! tests and simulations: used bytes equal the chunks held, no server holds
//! two replicas of one chunk, no server is over capacity, and no chunk lost a
//! replica between two views.

use crate::ids::ChunkIdx;
use crate::model::ClusterView;

impl ClusterView {
    /// Checks the view on its own: every replica names a real server, no
    /// chunk has two replicas on one server, each server's `used` is the sum
    /// of the sizes of the chunks it holds, and no server is over capacity.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut sums = vec![0u128; self.servers.len()];
        for c in self.chunks() {
            let replicas = c.replicas();
            for (i, s) in replicas.iter().enumerate() {
                let sum = sums.get_mut(s.0 as usize).ok_or_else(|| {
                    format!("chunk {} has a replica on unknown server {:?}", c.id(), s)
                })?;
                *sum += u128::from(c.size());
                if replicas[..i].contains(s) {
                    let server = &self.server(*s).id;
                    return Err(format!("chunk {} has two replicas on {server}", c.id()));
                }
            }
        }
        for (server, sum) in self.servers.iter().zip(sums) {
            if u128::from(server.used) != sum {
                return Err(format!(
                    "{} says {} bytes used but holds {sum}",
                    server.id, server.used
                ));
            }
            if server.used > server.capacity {
                return Err(format!(
                    "{} is over capacity: {} of {} bytes",
                    server.id, server.used, server.capacity
                ));
            }
        }
        Ok(())
    }

    /// Checks that this view holds every chunk of `before` with the same
    /// size and at least as many replicas: nothing was lost on the way.
    pub fn check_replicas_kept(&self, before: &ClusterView) -> Result<(), String> {
        if self.chunk_count() < before.chunk_count() {
            return Err(format!(
                "{} chunks before, {} after",
                before.chunk_count(),
                self.chunk_count()
            ));
        }
        for old in before.chunks() {
            let new = self.chunk(ChunkIdx(old.idx().0));
            if new.id() != old.id() || new.size() != old.size() {
                return Err(format!("chunk {} changed identity or size", old.id()));
            }
            if new.replicas().len() < old.replicas().len() {
                return Err(format!(
                    "chunk {} went from {} replicas to {}",
                    old.id(),
                    old.replicas().len(),
                    new.replicas().len()
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::model::ClusterView;

    #[test]
    fn detects_each_broken_invariant() {
        let mut v = ClusterView::new();
        let a = v.add_server("a", None, 100, true);
        let b = v.add_server("b", None, 100, true);
        v.add_chunk("x", 60, 0, 2, &[a, b]);
        assert_eq!(v.check_invariants(), Ok(()));

        let mut drift = v.clone();
        drift.servers[0].used = 10;
        assert_eq!(
            drift.check_invariants(),
            Err("a says 10 bytes used but holds 60".to_owned())
        );

        let mut dup = v.clone();
        dup.add_chunk("y", 1, 0, 2, &[b, b]);
        assert_eq!(
            dup.check_invariants(),
            Err("chunk y has two replicas on b".to_owned())
        );

        let mut over = v.clone();
        over.add_chunk("z", 50, 0, 1, &[a]);
        assert_eq!(
            over.check_invariants(),
            Err("a is over capacity: 110 of 100 bytes".to_owned())
        );

        assert_eq!(
            v.check_replicas_kept(&over),
            Err("2 chunks before, 1 after".to_owned())
        );
        assert_eq!(over.check_replicas_kept(&v), Ok(()));
    }
}
