//! Move slots: at most `max_total` copies cluster-wide and `max_per_server`
//! with any one server as their source or target (`--max-concurrent-moves`,
//! `--max-moves-per-server`). Repair and drain copies wait as *urgent*:
//! while one waits, no ordinary move takes a slot, so restoring redundancy
//! is never starved by balancing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::meta::ServerNo;

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_server: HashMap<ServerNo, usize>,
    /// Urgent acquirers waiting now.
    urgent_waiting: usize,
}

/// The slot table, shared by everyone who starts copies.
#[derive(Debug)]
pub struct Slots {
    max_total: usize,
    max_per_server: usize,
    counts: Mutex<Counts>,
    /// Woken whenever a slot frees up.
    freed: Notify,
}

/// A held slot; dropping it frees the slot.
#[derive(Debug)]
pub struct SlotGuard {
    slots: Arc<Slots>,
    servers: [ServerNo; 2],
}

impl Slots {
    /// A slot table with the given limits (each at least 1).
    pub fn new(max_total: usize, max_per_server: usize) -> Arc<Self> {
        Arc::new(Slots {
            max_total: max_total.max(1),
            max_per_server: max_per_server.max(1),
            counts: Mutex::new(Counts::default()),
            freed: Notify::new(),
        })
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn fits(&self, c: &Counts, servers: [ServerNo; 2]) -> bool {
        let busy = |s: ServerNo| c.per_server.get(&s).copied().unwrap_or(0);
        c.total < self.max_total && servers.iter().all(|&s| busy(s) < self.max_per_server)
    }

    /// Whether a copy between `from` and `to` could start now.
    pub fn is_free(&self, from: ServerNo, to: ServerNo) -> bool {
        self.fits(&self.counts(), [from, to])
    }

    /// Copies running now.
    pub fn running(&self) -> usize {
        self.counts().total
    }

    /// Takes a slot for a copy between `from` and `to` if one is free and
    /// no urgent copy waits.
    pub fn try_acquire(self: &Arc<Self>, from: ServerNo, to: ServerNo) -> Option<SlotGuard> {
        self.take(from, to, false)
    }

    fn take(self: &Arc<Self>, from: ServerNo, to: ServerNo, urgent: bool) -> Option<SlotGuard> {
        let servers = [from, to];
        let mut c = self.counts();
        if !self.fits(&c, servers) || (!urgent && c.urgent_waiting > 0) {
            return None;
        }
        c.total += 1;
        for s in servers {
            *c.per_server.entry(s).or_default() += 1;
        }
        Some(SlotGuard {
            slots: Arc::clone(self),
            servers,
        })
    }

    /// Waits for a slot for a copy between `from` and `to`.
    pub async fn acquire(self: &Arc<Self>, from: ServerNo, to: ServerNo) -> SlotGuard {
        self.wait_for(from, to, false).await
    }

    /// Waits for a slot ahead of every ordinary move (repairs and drains).
    pub async fn acquire_urgent(self: &Arc<Self>, from: ServerNo, to: ServerNo) -> SlotGuard {
        self.counts().urgent_waiting += 1;
        let waiting = UrgentWaiting(Arc::clone(self));
        let g = self.wait_for(from, to, true).await;
        drop(waiting);
        g
    }

    async fn wait_for(self: &Arc<Self>, from: ServerNo, to: ServerNo, urgent: bool) -> SlotGuard {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(g) = self.take(from, to, urgent) {
                return g;
            }
            freed.await;
        }
    }

    /// Urgent copies waiting for a slot now.
    pub fn urgent_waiting(&self) -> usize {
        self.counts().urgent_waiting
    }
}

/// Counts one urgent waiter until dropped (also when its task is cancelled).
struct UrgentWaiting(Arc<Slots>);

impl Drop for UrgentWaiting {
    fn drop(&mut self) {
        self.0.counts().urgent_waiting -= 1;
        // Ordinary waiters may go now.
        self.0.freed.notify_waiters();
    }
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        {
            let mut c = self.slots.counts();
            c.total -= 1;
            for s in self.servers {
                if let Some(n) = c.per_server.get_mut(&s) {
                    *n -= 1;
                    if *n == 0 {
                        c.per_server.remove(&s);
                    }
                }
            }
        }
        self.slots.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn limits_hold() {
        let s = Slots::new(3, 2);
        let a = s.try_acquire(0, 1);
        let b = s.try_acquire(0, 2);
        assert!(a.is_some() && b.is_some());
        assert!(s.try_acquire(0, 3).is_none(), "server 0 is in two copies");
        let c = s.try_acquire(3, 4);
        assert!(c.is_some());
        assert!(s.try_acquire(5, 6).is_none(), "three copies cluster-wide");
        assert_eq!(s.running(), 3);
        drop(a);
        assert!(s.is_free(0, 5));
        drop((b, c));
        assert_eq!(s.running(), 0);
    }

    #[tokio::test]
    async fn urgent_waiters_go_first() {
        let s = Slots::new(1, 1);
        let held = s.try_acquire(0, 1);
        let s2 = Arc::clone(&s);
        let urgent = tokio::spawn(async move { s2.acquire_urgent(2, 3).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(s.urgent_waiting(), 1);
        drop(held);
        // The freed slot goes to the urgent waiter, not to a try_acquire.
        let got = tokio::time::timeout(Duration::from_secs(2), urgent).await;
        let urgent_slot = got.expect("in time").expect("joined");
        assert_eq!(s.urgent_waiting(), 0);
        assert!(s.try_acquire(4, 5).is_none(), "the one slot is held");
        drop(urgent_slot);
        assert!(s.try_acquire(4, 5).is_some());
    }

    #[tokio::test]
    async fn waiters_wake_when_a_slot_frees() {
        let s = Slots::new(1, 1);
        let held = s.try_acquire(0, 1);
        let s2 = Arc::clone(&s);
        let waiter = tokio::spawn(async move { s2.acquire(2, 3).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        drop(held);
        let got = tokio::time::timeout(Duration::from_secs(2), waiter).await;
        assert!(matches!(got, Ok(Ok(_))));
    }
}
