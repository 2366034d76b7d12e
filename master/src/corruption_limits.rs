//! Rate limits of `ReportCorruption`, which the client token may call: each
//! report can make a chunk server re-read a whole replica, so a storm of
//! them must not turn into a storm of disk reads.
//!
//! Two keyed limiters (governor's GCRA), checked in this order after the
//! report is validated (so keys are real replicas and real callers):
//! 1. per replica (chunk, server): [`PER_REPLICA_BURST`] reports, then one
//!    every [`PER_REPLICA_PERIOD`];
//! 2. per caller (its IP address): [`PER_CALLER_PER_SEC`] a second, in bursts
//!    of [`PER_CALLER_BURST`]. Chunk servers reporting what their own reads
//!    found (the cluster token) are not limited per caller: a failing disk
//!    may have many damaged chunks, each its own replica key.
//!
//! A refused report changes nothing and gets RESOURCE_EXHAUSTED; a
//! verification asked for by an earlier report still runs. The chunk server
//! adds its own bounds (see `keel_chunkserver::verify`).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::Error;

/// Reports about one replica accepted at once.
pub const PER_REPLICA_BURST: u32 = 2;
/// After the burst, one report about a replica per this period.
pub const PER_REPLICA_PERIOD: Duration = Duration::from_secs(10);
/// Reports one caller may send per second, sustained.
pub const PER_CALLER_PER_SEC: u32 = 20;
/// Reports one caller may send at once.
pub const PER_CALLER_BURST: u32 = 40;
/// Keys kept before limiters drop those whose state has fully refilled.
const RETAIN_ABOVE: usize = 10_000;

/// The limiters of one master.
pub struct CorruptionLimits {
    /// By (chunk, server).
    per_replica: DefaultKeyedRateLimiter<(Box<str>, Box<str>)>,
    /// By caller address.
    per_caller: DefaultKeyedRateLimiter<IpAddr>,
}

impl std::fmt::Debug for CorruptionLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CorruptionLimits")
            .field("replicas", &self.per_replica.len())
            .field("callers", &self.per_caller.len())
            .finish()
    }
}

impl Default for CorruptionLimits {
    fn default() -> Self {
        let nz = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let replica = Quota::with_period(PER_REPLICA_PERIOD)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(nz(PER_REPLICA_BURST));
        let caller = Quota::per_second(nz(PER_CALLER_PER_SEC)).allow_burst(nz(PER_CALLER_BURST));
        CorruptionLimits {
            per_replica: RateLimiter::keyed(replica),
            per_caller: RateLimiter::keyed(caller),
        }
    }
}

impl CorruptionLimits {
    /// Admits one report of `chunk` on `server` from `caller` (`None` when
    /// the caller is a chunk server holding the cluster token, or unknown).
    pub fn admit(&self, chunk: &str, server: &str, caller: Option<IpAddr>) -> Result<(), Error> {
        let refused = |why: String| Error::ReportsLimited {
            chunk: chunk.to_owned(),
            server: server.to_owned(),
            why,
        };
        self.tidy();
        if self
            .per_replica
            .check_key(&(chunk.into(), server.into()))
            .is_err()
        {
            return Err(refused(format!(
                "this replica was reported {PER_REPLICA_BURST} times already; one report per {} s is taken",
                PER_REPLICA_PERIOD.as_secs()
            )));
        }
        if let Some(ip) = caller
            && self.per_caller.check_key(&ip).is_err()
        {
            return Err(refused(format!(
                "{ip} sends more than {PER_CALLER_PER_SEC} corruption reports a second"
            )));
        }
        Ok(())
    }

    /// Drops keys whose limits have refilled, once there are many.
    fn tidy(&self) {
        if self.per_replica.len() > RETAIN_ABOVE {
            self.per_replica.retain_recent();
        }
        if self.per_caller.len() > RETAIN_ABOVE {
            self.per_caller.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_takes_a_burst_then_waits() {
        let l = CorruptionLimits::default();
        let me = Some(IpAddr::from([127, 0, 0, 1]));
        for _ in 0..PER_REPLICA_BURST {
            l.admit("c", "s1", me).expect("burst");
        }
        let e = l.admit("c", "s1", me).expect_err("limited");
        assert!(e.to_string().contains("one report per 10 s"), "{e}");
        // Another replica has its own budget.
        l.admit("c", "s2", me).expect("other replica");
    }

    #[test]
    fn a_caller_is_limited_across_replicas() {
        let l = CorruptionLimits::default();
        let me = Some(IpAddr::from([10, 0, 0, 9]));
        let taken = (0..PER_CALLER_BURST + 10)
            .filter(|n| l.admit(&format!("c{n}"), "s1", me).is_ok())
            .count();
        assert!(
            taken >= PER_CALLER_BURST as usize && taken < PER_CALLER_BURST as usize + 10,
            "{taken}"
        );
        // A chunk server's own reports are not limited per caller.
        l.admit("c-own", "s1", None).expect("server report");
    }
}
