//! Everything one running chunk server shares between its requests.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use keel_proto::chunk_id::ChunkId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::AttachToken;
use crate::corruption::MasterReporter;
use crate::error::{Error, Purpose};
use crate::fence::Fence;
use crate::heartbeat::Identity;
use crate::store::Store;
use crate::throttle::Throttle;

/// Shared state of a running server.
pub struct Node {
    /// The chunks on disk.
    pub store: Arc<Store>,
    /// The one bucket for all migration traffic, in and out.
    pub throttle: Arc<Throttle>,
    /// Client service times: the read p99 window, and the controller of
    /// `--migrate-bandwidth auto`.
    pub latency: Arc<crate::latency::ClientLatency>,
    /// Bytes moved, for `/metrics`.
    pub traffic: Arc<crate::traffic::Traffic>,
    /// Corruption reports to the master.
    pub reporter: MasterReporter,
    /// Attached to calls to peers.
    pub token: AttachToken,
    /// Who we are.
    pub identity: Identity,
    /// Per master (`--master a,b,c`): whether its last heartbeat reached it.
    pub master_reachable: Vec<Arc<AtomicBool>>,
    /// The highest master term seen: copies and deletes of lower ones are refused.
    pub fence: Arc<Fence>,
    /// Admission and idle timeout of writes and copies.
    pub transfers: Transfers,
    /// Who may write: the cluster token or a write capability.
    pub write_gate: crate::write_gate::WriteGate,
    /// Read slots: client reads and migration reads.
    pub reads: crate::reads::Reads,
    /// Verification slots and recent verdicts.
    pub verifier: Arc<crate::verify::Verifier>,
}

/// Bounds what writes and copies may hold: how many run at once
/// (`--max-transfers`) and how long one may wait for its next frame
/// (`--stream-idle-timeout`).
pub struct Transfers {
    /// One permit per running write or copy.
    slots: Arc<Semaphore>,
    /// One permit per write still waiting for its header: until the header
    /// names a chunk no transfer slot is taken, yet the half-received first
    /// message (up to the method's message limit) is already buffered.
    headers: Arc<Semaphore>,
    /// `--max-transfers`, for messages.
    limit: usize,
    /// `--stream-idle-timeout`: a stream with no frame for this long ends
    /// and releases its temp file, reservation and id.
    pub idle_timeout: Duration,
}

impl Transfers {
    /// Allows `limit` concurrent transfers, each idle at most `idle_timeout`.
    pub fn new(limit: usize, idle_timeout: Duration) -> Self {
        Transfers {
            slots: Arc::new(Semaphore::new(limit)),
            headers: Arc::new(Semaphore::new(limit)),
            limit,
            idle_timeout,
        }
    }

    /// Transfers running now.
    pub fn in_flight(&self) -> usize {
        self.limit.saturating_sub(self.slots.available_permits())
    }

    /// Takes a slot for a write that has not sent its header yet, or refuses
    /// at once; the write drops it once its header is in.
    pub fn await_header(&self) -> Result<OwnedSemaphorePermit, Error> {
        Arc::clone(&self.headers)
            .try_acquire_owned()
            .map_err(|_| Error::TooManyHeaders { limit: self.limit })
    }

    /// Takes a slot for a transfer of `id`, or refuses at once (never
    /// queues: a waiting client would hold a connection stream anyway).
    /// The slot is freed when the permit is dropped.
    pub fn admit(&self, id: &ChunkId, attempt: Purpose) -> Result<OwnedSemaphorePermit, Error> {
        Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| Error::TooManyTransfers {
                id: id.to_string(),
                attempt,
                limit: self.limit,
            })
    }
}
