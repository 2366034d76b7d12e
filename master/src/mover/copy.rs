//! One `CopyChunk` with its deadline; the move queue retries a failed one
//! (one retry policy for every copy).

use std::time::Duration;

use keel_proto::v1::{CopyChunkRequest, StatChunkRequest};
use tonic::Code;
use tracing::{debug, warn};

use super::{MoveError, Mover, SMALL_RPC_TIMEOUT};
use crate::convert;
use crate::meta::{MoveTicket, Stamp, lock};

/// Fixed part of a copy's deadline (connection set-up, fsync, rename).
pub const COPY_MARGIN: Duration = Duration::from_secs(30);

/// Outcome of one failed attempt.
#[derive(Debug)]
enum Attempt {
    /// Worth another try (the peer was unreachable, busy or slow).
    Retry(String),
    /// Another try would fail the same way.
    Fatal(String),
}

/// The deadline of copying `size` bytes at no less than `min_rate` bytes/s.
pub fn copy_deadline(size: u64, min_rate: u64) -> Duration {
    let transfer =
        Duration::try_from_secs_f64(size as f64 / min_rate.max(1) as f64).unwrap_or(Duration::MAX);
    COPY_MARGIN.saturating_add(transfer)
}

/// Whether a failed `CopyChunk` may succeed when tried again.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Aborted
            | Code::DeadlineExceeded
            | Code::Internal
            | Code::Unknown
            | Code::Cancelled
    )
}

impl Mover {
    /// One copy of `t` decided under `term`, after checking it can still
    /// run: the target's stamp after the commit (when it sent one) and the
    /// new replica's identity. A failure says whether another attempt may
    /// succeed; the queue decides when.
    pub(super) async fn copy(
        &self,
        t: &MoveTicket,
        term: u64,
    ) -> Result<(Option<Stamp>, u64), MoveError> {
        if let Err(why) = self.still_valid(t) {
            return Err(MoveError::Failed {
                error: why,
                retry: false,
            });
        }
        self.copy_once(t, term).await.map_err(|a| match a {
            Attempt::Fatal(error) => MoveError::Failed {
                error,
                retry: false,
            },
            Attempt::Retry(error) => {
                warn!(chunk = %t.chunk, to = %t.to.id, error = %error, "copy failed; the queue retries it");
                MoveError::Failed { error, retry: true }
            }
        })
    }

    /// The source still holds the chunk and both ends are alive.
    fn still_valid(&self, t: &MoveTicket) -> Result<(), String> {
        let m = lock(&self.meta);
        if !m.chunk(&t.chunk).is_some_and(|c| c.holds(t.from.no)) {
            return Err(format!("chunk {} is no longer on {}", t.chunk, t.from.id));
        }
        for s in [&t.from, &t.to] {
            if !m.server(s.no).alive {
                return Err(format!("server {} died", s.id));
            }
        }
        Ok(())
    }

    /// One attempt: the target's stamp after the commit when it sent one,
    /// and the new replica's identity.
    async fn copy_once(&self, t: &MoveTicket, term: u64) -> Result<(Option<Stamp>, u64), Attempt> {
        let deadline = copy_deadline(t.size, self.settings.copy_min_rate);
        let mut client = self
            .clients
            .client(&t.to.address)
            .map_err(|s| Attempt::Fatal(s.message().to_owned()))?;
        let req = CopyChunkRequest {
            chunk: t.chunk.clone(),
            source_id: t.from.id.clone(),
            source_address: t.from.address.clone(),
            expected_size: t.size,
            expected_crc32c: t.crc32c,
            term: 0,
        };
        let req = self
            .clients
            .fenced_at(req, deadline, term)
            .map_err(|s| Attempt::Fatal(s.message().to_owned()))?;
        let resp = match tokio::time::timeout(deadline, client.copy_chunk(req)).await {
            Err(_) => {
                return Err(Attempt::Retry(format!(
                    "copy to {} timed out after {deadline:?}",
                    t.to.id
                )));
            }
            Ok(Err(s)) if s.code() == Code::AlreadyExists => return self.verify_existing(t).await,
            Ok(Err(s)) => {
                let msg = format!("{} answered {:?}: {}", t.to.id, s.code(), s.message());
                return Err(if retryable(s.code()) {
                    Attempt::Retry(msg)
                } else {
                    Attempt::Fatal(msg)
                });
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        if resp.size != t.size || resp.crc32c != t.crc32c {
            return Err(Attempt::Fatal(format!(
                "{} stored {} bytes with crc32c {:#010x}, expected {} bytes with {:#010x}",
                t.to.id, resp.size, resp.crc32c, t.size, t.crc32c
            )));
        }
        Ok((convert::stamp(resp.stamp), resp.replica_id))
    }

    /// The target says it already holds the chunk (an earlier attempt whose
    /// answer was lost): accept it only if its copy is the same chunk and
    /// no delete of it may still be running (a delete that failed or timed
    /// out leaves the replica in doubt until its server reports what it
    /// holds; accepting it meanwhile would release the source and then lose
    /// both copies when the delete lands).
    async fn verify_existing(&self, t: &MoveTicket) -> Result<(Option<Stamp>, u64), Attempt> {
        if lock(&self.meta).is_doubted(&t.chunk, t.to.no) {
            return Err(Attempt::Retry(format!(
                "{} holds chunk {} but a delete of it may still be running; waiting until {} reports what it holds",
                t.to.id, t.chunk, t.to.id
            )));
        }
        let mut client = self
            .clients
            .client(&t.to.address)
            .map_err(|s| Attempt::Fatal(s.message().to_owned()))?;
        let req = self.clients.request(
            StatChunkRequest {
                chunk: t.chunk.clone(),
            },
            SMALL_RPC_TIMEOUT,
        );
        let stat = match tokio::time::timeout(SMALL_RPC_TIMEOUT, client.stat_chunk(req)).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(s)) => {
                return Err(Attempt::Retry(format!(
                    "stat on {} failed: {}",
                    t.to.id,
                    s.message()
                )));
            }
            Err(_) => return Err(Attempt::Retry(format!("stat on {} timed out", t.to.id))),
        };
        if stat.deleting {
            return Err(Attempt::Retry(format!(
                "{} holds chunk {} but is deleting it; tried again once the delete ends",
                t.to.id, t.chunk
            )));
        }
        match stat.header {
            Some(h) if h.size == t.size && h.crc32c == t.crc32c => {
                debug!(chunk = %t.chunk, to = %t.to.id, "target already holds a matching copy");
                Ok((convert::stamp(stat.stamp), stat.replica_id))
            }
            _ => Err(Attempt::Fatal(format!(
                "{} holds a different chunk under id {}",
                t.to.id, t.chunk
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_grows_with_size() {
        assert_eq!(copy_deadline(0, 1 << 20), COPY_MARGIN);
        assert_eq!(
            copy_deadline(64 << 20, 1 << 20),
            COPY_MARGIN + Duration::from_secs(64)
        );
        assert!(copy_deadline(1 << 40, 0) > Duration::from_secs(1_000_000));
    }

    #[test]
    fn permanent_errors_are_not_retried() {
        assert!(retryable(Code::Unavailable) && retryable(Code::Aborted));
        for c in [
            Code::NotFound,
            Code::DataLoss,
            Code::FailedPrecondition,
            Code::ResourceExhausted,
            Code::InvalidArgument,
        ] {
            assert!(!retryable(c), "{c:?}");
        }
    }
}
