//! Idle timeouts on data streams: a transfer may take as long as it needs
//! while it moves, and ends once nothing moved for `--stream-idle-timeout`.
//!
//! A [`Progress`] is touched each time a frame goes out or comes in;
//! [`guard`] runs a transfer until it finishes or its progress is older than
//! the idle limit, then drops it (temp files and connections with it). A
//! server that is stopped, partitioned or simply stuck then costs a client at
//! most the idle limit, and `get` moves on to another replica.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// keelctl's default `--stream-idle-timeout`.
pub const DEFAULT_STREAM_IDLE: Duration = Duration::from_secs(30);

/// When a transfer last moved; clones share the same clock.
#[derive(Clone, Debug)]
pub struct Progress(Arc<Mutex<Instant>>);

impl Progress {
    /// A transfer starting now.
    pub fn new() -> Self {
        Progress(Arc::new(Mutex::new(Instant::now())))
    }

    /// Something moved just now.
    pub fn touch(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    fn last(&self) -> Instant {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves once `idle` has passed since the last touch.
    async fn stalled(&self, idle: Duration) {
        loop {
            let deadline = self.last() + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// The transfer made no progress for the idle limit and was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalled;

/// Runs `transfer` until it ends, or until `progress` was last touched
/// `idle` ago (then the transfer is dropped).
pub async fn guard<T>(
    idle: Duration,
    progress: &Progress,
    transfer: impl Future<Output = T>,
) -> Result<T, Stalled> {
    tokio::select! {
        biased;
        out = transfer => Ok(out),
        () = progress.stalled(idle) => Err(Stalled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_millis(150);

    #[tokio::test]
    async fn a_moving_transfer_outlives_the_idle_limit() {
        let progress = Progress::new();
        let ticking = progress.clone();
        let transfer = async move {
            for _ in 0..8 {
                tokio::time::sleep(IDLE / 3).await;
                ticking.touch();
            }
            "done"
        };
        let started = std::time::Instant::now();
        assert_eq!(guard(IDLE, &progress, transfer).await, Ok("done"));
        assert!(started.elapsed() > IDLE * 2, "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_silent_transfer_ends_after_the_idle_limit() {
        let progress = Progress::new();
        let started = std::time::Instant::now();
        let out = guard(IDLE, &progress, std::future::pending::<()>()).await;
        assert_eq!(out, Err(Stalled));
        let took = started.elapsed();
        assert!(took >= IDLE && took < IDLE * 4, "{took:?}");
    }

    #[tokio::test]
    async fn a_transfer_that_stops_moving_ends_one_limit_after_its_last_touch() {
        let progress = Progress::new();
        let ticking = progress.clone();
        let transfer = async move {
            tokio::time::sleep(IDLE / 2).await;
            ticking.touch();
            std::future::pending::<()>().await
        };
        let started = std::time::Instant::now();
        assert_eq!(guard(IDLE, &progress, transfer).await, Err(Stalled));
        assert!(
            started.elapsed() >= IDLE + IDLE / 2,
            "{:?}",
            started.elapsed()
        );
    }
}
