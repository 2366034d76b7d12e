//! Operator state that heartbeats do not carry, kept in etcd under
//! `<prefix>/operator/` so a new leader continues where the old one
//! stopped. Today that is the balancer's pause; drain marks live on the
//! chunk servers themselves, and thresholds and limits are flags.

use super::etcd::{Etcd, EtcdError};

/// What the leader loads from etcd when it takes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OperatorState {
    /// `keelctl rebalance pause` is in force.
    pub paused: bool,
}

/// The key of the pause flag.
fn paused_key(prefix: &str) -> String {
    format!("{prefix}/operator/paused")
}

impl OperatorState {
    /// Reads the state; a missing key is the default.
    pub async fn load(etcd: &Etcd, prefix: &str) -> Result<Self, EtcdError> {
        let paused = etcd
            .get(&paused_key(prefix))
            .await?
            .is_some_and(|v| v == b"true");
        Ok(OperatorState { paused })
    }

    /// Records the pause flag, only while `<prefix>/leader` is still the
    /// key this master created at `term`: false (nothing written) once it
    /// has lost the leadership, so a write delayed past a step-down cannot
    /// overrule the next leader.
    pub async fn save_paused(
        etcd: &Etcd,
        prefix: &str,
        term: u64,
        paused: bool,
    ) -> Result<bool, EtcdError> {
        let value: &[u8] = if paused { b"true" } else { b"false" };
        etcd.put_if_created(&super::leader_key(prefix), term, &paused_key(prefix), value)
            .await
    }
}
