//! What this server's clients feel, and (with `--migrate-bandwidth auto`)
//! the loop that turns it into a migration rate.
//!
//! One sample per client request, the part of its latency this server is
//! responsible for, whatever the chunk's size:
//! - `ReadChunk` (not a peer's migration read): from the request's arrival
//!   until its first data frame is handed to the connection — opening the
//!   file, waiting for a blocking thread, reading from disk, the CRC32C. For
//!   chunks up to a frame or two that is nearly the whole read as a client
//!   times it; for larger ones the rest is paced by the network and the
//!   client itself.
//! - `WriteChunk`: from the last data frame's arrival until the answer — the
//!   disk writes still queued, the fsync, the rename and the directory
//!   fsync. Everything before depends on the client's own pace.
//!
//! Migration competes with clients for exactly these: the disk, the
//! blocking threads and the CPU.
//!
//! Read samples also go, whatever `--migrate-bandwidth`, to a
//! [`RecentP99`] window: the `read_p99_ms` heartbeats carry and `/metrics`
//! shows.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::p99::RecentP99;
use crate::throttle::Throttle;
use crate::throttle::auto::{Controller, Decision, PERIOD, Settings};

/// Where client service times go: the controller (auto only) and the read
/// p99 window (always).
#[derive(Debug, Default)]
pub struct ClientLatency {
    /// `None` unless `--migrate-bandwidth auto`.
    controller: Option<Mutex<Controller>>,
    /// Client read service times of the last 30 s or so.
    reads: Mutex<RecentP99>,
}

impl ClientLatency {
    /// Records nothing (a fixed `--migrate-bandwidth`).
    pub fn off() -> Self {
        ClientLatency::default()
    }

    /// Feeds a controller with `settings`.
    pub fn auto(settings: Settings) -> Self {
        ClientLatency {
            controller: Some(Mutex::new(Controller::new(settings))),
            reads: Mutex::default(),
        }
    }

    /// Whether a controller is fed.
    pub fn is_auto(&self) -> bool {
        self.controller.is_some()
    }

    /// Records one write's service time (auto only).
    pub fn record(&self, service: Duration) {
        if let Some(c) = &self.controller {
            lock(c).record(Instant::now(), service);
        }
    }

    /// Records one client read's service time: into the read p99 window,
    /// and for the controller as [`ClientLatency::record`] does.
    pub fn record_read(&self, service: Duration) {
        let now = Instant::now();
        lock(&self.reads).record(now, service);
        if let Some(c) = &self.controller {
            lock(c).record(now, service);
        }
    }

    /// The p99 of client read service times over the recent window, at
    /// `now`; `None` without reads in it.
    pub fn read_p99(&self, now: Instant) -> Option<Duration> {
        lock(&self.reads).p99(now)
    }

    /// The controller's last decision (auto only).
    pub fn last(&self) -> Option<Decision> {
        self.controller.as_ref().and_then(|c| lock(c).last())
    }

    /// The controller's current rate (auto only).
    fn rate(&self) -> Option<u64> {
        self.controller.as_ref().map(|c| lock(c).rate())
    }

    fn decide(&self, now: Instant) -> Option<Decision> {
        self.controller.as_ref().map(|c| lock(c).decide(now))
    }
}

fn lock<T>(c: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    c.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every control period, sets `throttle` to the controller's rate, until
/// `stop`. Returns at once with a fixed bandwidth.
pub async fn control(
    latency: Arc<ClientLatency>,
    throttle: Arc<Throttle>,
    stop: CancellationToken,
) {
    let Some(rate) = latency.rate() else {
        return;
    };
    throttle.set_rate(rate);
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Some(d) = latency.decide(Instant::now()) {
            if d.rate != throttle.bytes_per_sec() {
                debug!(rate = d.rate, p99 = ?d.p99, samples = d.samples, action = ?d.action, "migration rate changed");
            }
            throttle.set_rate(d.rate);
        }
    }
}
