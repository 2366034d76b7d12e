//! Everything one running chunk server shares between its requests.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::auth::AttachToken;
use crate::chunk_file::TempChunk;
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

/// Appends `data` to `temp` on a blocking thread. On any error the temp file
/// is dropped, which removes it.
pub async fn append(
    mut temp: TempChunk,
    id: &keel_proto::chunk_id::ChunkId,
    data: Vec<u8>,
) -> Result<TempChunk, Error> {
    let id = id.clone();
    blocking("writing chunk", move || {
        crate::store::append(&mut temp, &id, &data)?;
        Ok(temp)
    })
    .await
}
