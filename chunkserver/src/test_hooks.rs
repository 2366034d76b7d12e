//! Fault-injection hooks for Keel's own integration tests, read once from
//! environment variables. Never set them in production: they hold deletes
//! and verifications on purpose so a test can reproduce a slow disk.
//!
//! - `KEEL_TEST_HOLD_DELETE_MS`: every `DeleteChunk` waits this long after
//!   it is admitted and before it removes anything (a delete still running
//!   after the master's deadline).
//! - `KEEL_TEST_HOLD_VERIFY_MS`: every `VerifyChunk` waits this long after
//!   it has marked the replica suspect and before it rereads it.

use std::sync::OnceLock;
use std::time::Duration;

use tracing::warn;

/// Reads `name` as milliseconds; unset, empty or unparsable is no hold.
fn hold(name: &str) -> Option<Duration> {
    let ms = std::env::var(name).ok()?.trim().parse::<u64>().ok()?;
    warn!(
        variable = name,
        ms, "test hook set: operations are held on purpose (tests only)"
    );
    Some(Duration::from_millis(ms))
}

/// How long a delete is held (`KEEL_TEST_HOLD_DELETE_MS`).
pub fn delete_hold() -> Option<Duration> {
    static HOLD: OnceLock<Option<Duration>> = OnceLock::new();
    *HOLD.get_or_init(|| hold("KEEL_TEST_HOLD_DELETE_MS"))
}

/// How long a verification is held (`KEEL_TEST_HOLD_VERIFY_MS`).
pub fn verify_hold() -> Option<Duration> {
    static HOLD: OnceLock<Option<Duration>> = OnceLock::new();
    *HOLD.get_or_init(|| hold("KEEL_TEST_HOLD_VERIFY_MS"))
}
