//! Everything one running chunk server shares between its requests.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::auth::AttachToken;
use crate::error::Error;
use crate::heartbeat::{Identity, MasterReporter};
use crate::store::Store;
use crate::throttle::Throttle;

/// Shared state of a running server.
pub struct Node {
    /// The chunks on disk.
    pub store: Arc<Store>,
    /// The one bucket for all migration traffic, in and out.
    pub throttle: Arc<Throttle>,
    /// Corruption reports to the master.
    pub reporter: MasterReporter,
    /// Attached to calls to peers.
    pub token: AttachToken,
    /// Who we are.
    pub identity: Identity,
    /// Whether the last heartbeat reached the master.
    pub master_reachable: Arc<AtomicBool>,
}

/// Runs blocking file work off the async threads.
pub async fn blocking<T, F>(what: &str, f: F) -> Result<T, Error>
where
    F: FnOnce() -> Result<T, Error> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::io(what.to_owned(), std::io::Error::other(e)))?
}
