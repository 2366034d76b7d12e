//! Right before a trim or a move's source delete: the replicas the delete
//! relies on are asked (`StatChunk`) whether they still hold the copy the
//! master counts. The master's view is up to one heartbeat round old; a
//! copy that vanished within it must not be the one a delete relied on.

use std::time::{Duration, Instant};

use keel_proto::v1::StatChunkRequest;
use tracing::info;

use super::{Mover, SMALL_RPC_TIMEOUT};
use crate::meta::{ServerAddr, ServerNo, lock};

/// How long the whole confirmation may take: an answer that took longer
/// says what its server held too long ago to rely on.
pub const CONFIRM_WITHIN: Duration = Duration::from_secs(1);

impl Mover {
    /// Confirms with their servers that at least the chunk's factor of the
    /// replicas of `chunk` other than the one on `from` are still held,
    /// whole-looking and not being deleted, all within [`CONFIRM_WITHIN`].
    /// The error says why not.
    pub(super) async fn confirm_staying(&self, chunk: &str, from: ServerNo) -> Result<(), String> {
        let Some(staying) = lock(&self.meta).staying(chunk, from) else {
            return Err(format!("chunk {chunk} is no longer known"));
        };
        let deadline = Instant::now() + CONFIRM_WITHIN;
        let mut confirmed = 0;
        for (server, expect) in &staying.holders {
            let left = deadline.saturating_duration_since(Instant::now());
            if confirmed >= staying.need || left.is_zero() {
                break;
            }
            match self.stat(chunk, server, left.min(SMALL_RPC_TIMEOUT)).await {
                Ok((size, crc, replica, deleting))
                    if staying.confirms(*expect, size, crc, replica, deleting) =>
                {
                    confirmed += 1
                }
                Ok(_) => {
                    info!(chunk, server = %server.id, "a replica a delete relied on is not the one counted")
                }
                Err(e) => {
                    info!(chunk, server = %server.id, error = %e, "a replica a delete relied on could not be confirmed")
                }
            }
        }
        if confirmed < staying.need {
            return Err(format!(
                "only {confirmed} of the {} replicas that stay confirmed held within {CONFIRM_WITHIN:?}, {} wanted",
                staying.holders.len(),
                staying.need
            ));
        }
        Ok(())
    }

    /// `StatChunk` of `chunk` on `server`: size, CRC32C, replica identity,
    /// whether a delete of it runs; `timeout` is its deadline.
    async fn stat(
        &self,
        chunk: &str,
        server: &ServerAddr,
        timeout: Duration,
    ) -> Result<(u64, u32, u64, bool), String> {
        let mut c = self
            .clients
            .client(&server.address)
            .map_err(|s| s.message().to_owned())?;
        let req = self.clients.request(
            StatChunkRequest {
                chunk: chunk.to_owned(),
            },
            timeout,
        );
        let r = match tokio::time::timeout(timeout, c.stat_chunk(req)).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(s)) => return Err(s.message().to_owned()),
            Err(_) => return Err("stat timed out".into()),
        };
        let h = r.header.ok_or("the answer has no header")?;
        Ok((h.size, h.crc32c, r.replica_id, r.deleting))
    }
}
