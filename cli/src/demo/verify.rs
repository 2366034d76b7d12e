//! `--exit-when-balanced`: after the moves, read every chunk back the way
//! `get` does (LocateChunk, then a replica) and check it against the size
//! and CRC32C it was written with, and that it still has all its replicas.

use std::path::Path;

use keel_proto::v1::LocateChunkRequest;

use super::data::{REPLICATION, Stored};
use super::error::DemoError;
use crate::client::{Clients, Master};
use crate::error::Error;
use crate::fetch::{Attempt, Failure, fetch};

/// What the check read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Chunks read back and matched.
    pub chunks: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Reads every chunk in `stored` from one of its replicas into `dir`
/// (removed again) and compares it with what was written.
pub async fn chunks(
    clients: &Clients,
    master: &Master,
    dir: &Path,
    stored: &[Stored],
) -> Result<Verified, Error> {
    let folder = dir.join("verify");
    tokio::fs::create_dir_all(&folder)
        .await
        .map_err(|e| DemoError::setup(format!("create {}", folder.display()), e))?;
    let mut out = Verified::default();
    for chunk in stored {
        one(clients, master, &folder, chunk).await?;
        out.chunks += 1;
        out.bytes += chunk.size;
    }
    let _ = tokio::fs::remove_dir_all(&folder).await;
    Ok(out)
}

async fn one(
    clients: &Clients,
    master: &Master,
    folder: &Path,
    chunk: &Stored,
) -> Result<(), Error> {
    let req = LocateChunkRequest {
        chunk: chunk.id.clone(),
        rack: Default::default(),
    };
    let loc = master
        .call("locate chunk", master.client.clone().locate_chunk(req))
        .await?;
    let live: Vec<_> = loc.replicas.iter().filter(|r| r.alive).collect();
    if live.len() < REPLICATION {
        return Err(DemoError::UnderReplicated {
            chunk: chunk.id.clone(),
            live: live.len(),
            want: REPLICATION,
        }
        .into());
    }
    let dest = folder.join(&chunk.id);
    let attempt = Attempt {
        chunk: &chunk.id,
        size: chunk.size,
        crc32c: chunk.crc32c,
        dest: &dest,
    };
    let mut failures = Vec::new();
    for replica in live {
        match fetch(clients, replica, &attempt).await {
            Ok(()) => {
                let _ = tokio::fs::remove_file(&dest).await;
                return Ok(());
            }
            Err(Failure::Local(e)) => return Err(e),
            Err(Failure::Replica { error, .. }) => failures.push(error),
        }
    }
    Err(Error::NoReplicaReadable {
        chunk: chunk.id.clone(),
        failures,
    })
}
