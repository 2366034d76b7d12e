//! Dashboard logins limited per source address, so the login form cannot
//! be used to guess a token: [`LOGIN_BURST`] attempts at once, then one more
//! every [`LOGIN_EVERY`] (a GCRA keyed limiter from governor). Right or
//! wrong, every attempt counts: the limiter runs before the token is
//! compared. Over the limit the form answers `429 Too Many Requests` with a
//! sentence saying when to try again.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Attempts one address may make back to back: enough for typing mistakes.
pub const LOGIN_BURST: u32 = 5;

/// After the burst, one attempt per this long (5 a minute): a guesser gets
/// nowhere, a person who mistyped waits seconds.
pub const LOGIN_EVERY: Duration = Duration::from_secs(12);

/// Addresses tracked before idle ones are forgotten (memory stays bounded
/// however many addresses try).
const MAX_TRACKED: usize = 10_000;

/// The keyed limiter.
#[derive(Debug)]
pub struct LoginLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl Default for LoginLimiter {
    fn default() -> Self {
        let burst = NonZeroU32::new(LOGIN_BURST).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(LOGIN_EVERY)
            .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
            .allow_burst(burst);
        LoginLimiter {
            limiter: RateLimiter::keyed(quota),
        }
    }
}

impl LoginLimiter {
    /// Counts an attempt from `ip`: `Err(wait)` when it is over the limit.
    pub fn attempt(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.limiter.len() >= MAX_TRACKED {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_passes_then_the_address_waits() {
        let l = LoginLimiter::default();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..LOGIN_BURST {
            assert!(l.attempt(a).is_ok());
        }
        let wait = l.attempt(a).expect_err("over the burst");
        assert!(wait > Duration::ZERO && wait <= LOGIN_EVERY, "{wait:?}");
        assert!(l.attempt(b).is_ok(), "another address is not held back");
    }
}
