//! Admission of reads: every `ReadChunk` takes a slot before its file is
//! opened, and gives it back when its stream ends (whole, failed, abandoned
//! by its client, or idle for `--stream-idle-timeout`).
//!
//! Two pools, so clients can never starve the moves and repairs:
//! 1. Migration reads (a peer copying for a move or repair; cluster token
//!    only) draw from their own pool of `--max-transfers` slots, the most
//!    copies this server's peers may run against it.
//! 2. Client reads draw from `--max-reads`; one connection may hold at most a
//!    quarter of them ([`per_connection`]), so a client with stalled streams
//!    cannot take every slot from the others.
//!
//! Refusals are immediate (RESOURCE_EXHAUSTED with a sentence): a queued read
//! would hold a stream anyway, and the client can retry or go elsewhere.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use keel_proto::chunk_id::ChunkId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::Error;

/// Default `--max-reads`: each running read holds at most about 3.5 MiB
/// (two batches of frames, the queued frames and one in HTTP/2), so the
/// default bounds reads to about 112 MiB.
pub const DEFAULT_MAX_READS: usize = 32;

/// Client reads one connection may run at once: a quarter of `max_reads`,
/// at least 1.
pub fn per_connection(max_reads: usize) -> usize {
    (max_reads / 4).max(1)
}

/// Client reads running per connection.
type PerConnection = Arc<Mutex<HashMap<SocketAddr, usize>>>;

/// The read slots of one server.
pub struct Reads {
    /// Client reads (`--max-reads`).
    client: Arc<Semaphore>,
    /// `--max-reads`, for messages.
    client_limit: usize,
    /// Migration reads (`--max-transfers`).
    migration: Arc<Semaphore>,
    /// `--max-transfers`, for messages.
    migration_limit: usize,
    /// Client reads by connection.
    connections: PerConnection,
}

/// A running read's slot; freed when dropped.
pub struct ReadSlot {
    /// The slot in its pool.
    _permit: OwnedSemaphorePermit,
    /// The connection's count, for a client read.
    _connection: Option<Counted>,
}

/// One client read counted on its connection; uncounted when dropped.
struct Counted {
    /// The counts.
    connections: PerConnection,
    /// The connection.
    peer: SocketAddr,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.peer);
            }
        }
    }
}

impl Reads {
    /// `max_reads` client reads and `max_migration` migration reads at once.
    pub fn new(max_reads: usize, max_migration: usize) -> Self {
        Reads {
            client: Arc::new(Semaphore::new(max_reads)),
            client_limit: max_reads,
            migration: Arc::new(Semaphore::new(max_migration)),
            migration_limit: max_migration,
            connections: Arc::default(),
        }
    }

    /// Client reads running now.
    pub fn in_flight(&self) -> usize {
        self.client_limit
            .saturating_sub(self.client.available_permits())
    }

    /// A slot for a read of `id` by the client at `peer`, or a refusal.
    pub fn admit(
        &self,
        id: &ChunkId,
        migration: bool,
        peer: Option<SocketAddr>,
    ) -> Result<ReadSlot, Error> {
        let refuse = |why: String| Error::TooManyReads {
            id: id.to_string(),
            why,
        };
        if migration {
            let permit = Arc::clone(&self.migration)
                .try_acquire_owned()
                .map_err(|_| {
                    refuse(format!(
                        "{} migration reads are running, the limit (--max-transfers)",
                        self.migration_limit
                    ))
                })?;
            return Ok(ReadSlot {
                _permit: permit,
                _connection: None,
            });
        }
        // Counted first: a refusal by the pool drops the count again.
        let connection = peer
            .map(|p| self.count_connection(p))
            .transpose()
            .map_err(refuse)?;
        let permit = Arc::clone(&self.client).try_acquire_owned().map_err(|_| {
            refuse(format!(
                "{} reads are running, the limit (--max-reads)",
                self.client_limit
            ))
        })?;
        Ok(ReadSlot {
            _permit: permit,
            _connection: connection,
        })
    }

    /// Counts one more read on `peer`'s connection, unless it holds its share.
    fn count_connection(&self, peer: SocketAddr) -> Result<Counted, String> {
        let share = per_connection(self.client_limit);
        let mut open = self
            .connections
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(peer).or_insert(0);
        if *n >= share {
            return Err(format!(
                "this connection already runs {share} reads, its share of --max-reads {}",
                self.client_limit
            ));
        }
        *n += 1;
        Ok(Counted {
            connections: Arc::clone(&self.connections),
            peer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ChunkId {
        ChunkId::new("c".to_owned()).expect("id")
    }

    #[test]
    fn a_connection_takes_only_its_share_and_migration_has_its_own_pool() {
        let reads = Reads::new(8, 1);
        let (a, b) = ("127.0.0.1:1".parse().ok(), "127.0.0.1:2".parse().ok());
        let held: Vec<_> = (0..2)
            .map(|_| reads.admit(&id(), false, a).expect("share"))
            .collect();
        let e = reads.admit(&id(), false, a).err().expect("over share");
        assert!(e.to_string().contains("its share"), "{e}");
        let more: Vec<_> = (0..6)
            .filter_map(|_| reads.admit(&id(), false, b).ok())
            .collect();
        assert_eq!(more.len(), 2);
        let m = reads.admit(&id(), true, None).expect("migration");
        assert!(reads.admit(&id(), true, None).is_err());
        drop((held, more, m));
        assert!(reads.admit(&id(), false, a).is_ok());
    }

    #[test]
    fn a_refusal_by_the_pool_gives_the_connection_count_back() {
        let reads = Reads::new(4, 1);
        let peers: Vec<Option<SocketAddr>> = (1..=5)
            .map(|p| format!("127.0.0.1:{p}").parse().ok())
            .collect();
        let held: Vec<_> = peers[..4]
            .iter()
            .map(|p| reads.admit(&id(), false, *p).expect("slot"))
            .collect();
        let e = reads
            .admit(&id(), false, peers[4])
            .err()
            .expect("pool full");
        assert!(e.to_string().contains("--max-reads"), "{e}");
        assert_eq!(reads.connections.lock().expect("lock").len(), 4);
        drop(held);
        assert!(reads.connections.lock().expect("lock").is_empty());
    }
}
