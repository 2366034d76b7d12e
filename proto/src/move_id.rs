//! A move's id, carried from the master to both chunk servers in gRPC
//! metadata (`keel-move-id`) and logged in each process's span of the move,
//! so one grep for the id follows a move across the three processes.
//!
//! The id lives in a task-local while a move runs: requests built inside the
//! move's task pick it up by themselves ([`attach`]), with no id threaded
//! through every call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The metadata key.
pub const HEADER: &str = "keel-move-id";

/// Longest id accepted from the network; longer ones are ignored.
const MAX_LEN: usize = 64;

tokio::task_local! {
    static CURRENT: String;
}

/// A new id, unique within this process and unlikely to repeat across
/// restarts: `m` + the process's start time + a counter, in hex.
pub fn new_id() -> String {
    static STARTED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let started = *STARTED.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    format!("m{started:x}-{:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Runs `f` as part of the move `id`.
pub async fn scope<F: Future>(id: String, f: F) -> F::Output {
    CURRENT.scope(id, f).await
}

/// The id of the move the current task runs, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Adds the current move's id to `req`'s metadata (nothing outside a move).
pub fn attach<T>(req: &mut tonic::Request<T>) {
    if let Some(v) = current().and_then(|id| id.parse().ok()) {
        req.metadata_mut().insert(HEADER, v);
    }
}

/// The move id `req` carries, if it is a plausible one: 1–64 characters of
/// `[A-Za-z0-9._-]`, so a hostile value never reaches a log line.
pub fn of_request<T>(req: &tonic::Request<T>) -> Option<String> {
    let v = req.metadata().get(HEADER)?.to_str().ok()?;
    let plausible = !v.is_empty()
        && v.len() <= MAX_LEN
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    plausible.then(|| v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ids_travel_inside_a_move_only() {
        let mut outside = tonic::Request::new(());
        attach(&mut outside);
        assert_eq!(of_request(&outside), None);
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        let id = a.clone();
        let req = scope(a, async {
            let mut r = tonic::Request::new(());
            attach(&mut r);
            r
        })
        .await;
        assert_eq!(of_request(&req), Some(id));
        for bad in ["", "a b", "x\u{7f}", &"y".repeat(65)] {
            let mut r = tonic::Request::new(());
            if let Ok(v) = bad.parse() {
                r.metadata_mut().insert(HEADER, v);
            }
            assert_eq!(of_request(&r), None, "{bad:?}");
        }
    }
}
