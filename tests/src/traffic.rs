//! What the traffic test and benchmark share: waiting until the master sees
//! a server hot, one balancer pass run to its end, and the load band applied
//! to the reads the readers counted per serving server.
//!
//! The band is the balancer's own comparison
//! ([`keel_balancer::traffic::load_position`]): a server is hot above
//! `mean × (1 + pct/100)` and more than the noise floor above the mean.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use keel_balancer::traffic::{LOAD_NOISE_FLOOR_READS_PER_SEC, LoadPosition, load_position};
use keel_proto::v1::master_client::MasterClient;
use keel_proto::v1::{
    ListServersRequest, RebalanceCheckRequest, RebalanceCheckResponse, RebalancePlanRequest,
    RebalancePlanResponse, RebalanceRunRequest, RebalanceStatusRequest, RebalanceStatusResponse,
    ServerInfo,
};
use tonic::transport::Channel;

use crate::readers::Read;

/// `ListServers`, by id.
pub async fn servers(m: &mut MasterClient<Channel>) -> Result<BTreeMap<String, ServerInfo>> {
    let r = m.list_servers(ListServersRequest {}).await?.into_inner();
    Ok(r.servers.into_iter().map(|s| (s.id.clone(), s)).collect())
}

/// Mean of the values, 0 for none.
pub fn mean<'a>(values: impl IntoIterator<Item = &'a f64>) -> f64 {
    let (sum, n) = values
        .into_iter()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// Where each server's rate lies against the band of `pct` around the mean
/// of all of them.
pub fn positions(rates: &BTreeMap<String, f64>, pct: f64) -> BTreeMap<String, LoadPosition> {
    let m = mean(rates.values());
    rates
        .iter()
        .map(|(s, r)| (s.clone(), load_position(*r, m, pct)))
        .collect()
}

/// Waits until the master's `ListServers` shows `server` hot against the
/// band of `pct` (computed here, so it works whatever the master's own
/// `--load-threshold-pct`), with a mean high enough that the band is `pct`
/// wide and not the noise floor: the chunk servers' rates are decayed
/// averages that start from nothing and climb for a minute, and a plan made
/// while the floor rules the band stops cooling too early. Returns every
/// server's reads/s as the master saw them.
pub async fn wait_hot(
    m: &mut MasterClient<Channel>,
    server: &str,
    pct: f64,
    timeout: Duration,
) -> Result<BTreeMap<String, f64>> {
    let deadline = Instant::now() + timeout;
    loop {
        let rates: BTreeMap<String, f64> = servers(m)
            .await?
            .into_iter()
            .map(|(id, s)| (id, s.reads_per_sec))
            .collect();
        let wide = mean(rates.values()) * pct / 100.0 >= LOAD_NOISE_FLOOR_READS_PER_SEC;
        if wide && positions(&rates, pct).get(server) == Some(&LoadPosition::Hot) {
            return Ok(rates);
        }
        if Instant::now() >= deadline {
            bail!("the master never saw {server} hot within {timeout:?}; reads/s: {rates:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One pass as `keelctl rebalance run --wait` makes it: the plan it is
/// about to run (for its reasons), the run, then the queue polled until no
/// move is pending or running. Fails when a move failed.
pub struct Pass {
    /// `RebalancePlan` just before the run.
    pub plan: RebalancePlanResponse,
    /// Bytes the run queued.
    pub queued_bytes: u64,
    /// The queue once idle.
    pub status: RebalanceStatusResponse,
    /// From the run to the idle queue.
    pub took: Duration,
}

impl Pass {
    /// Planned moves with reason `reason`.
    pub fn moves_for(&self, reason: &str) -> usize {
        self.plan
            .moves
            .iter()
            .filter(|m| m.reason == reason)
            .count()
    }
}

/// Runs one pass and waits up to `timeout` for its queue to drain.
pub async fn run_pass(m: &mut MasterClient<Channel>, timeout: Duration) -> Result<Pass> {
    let plan = m
        .rebalance_plan(RebalancePlanRequest {})
        .await?
        .into_inner();
    let started = Instant::now();
    let run = m.rebalance_run(RebalanceRunRequest {}).await?.into_inner();
    loop {
        let status = m
            .rebalance_status(RebalanceStatusRequest {})
            .await?
            .into_inner();
        if status.pending == 0 && status.running == 0 {
            if status.failed > 0 {
                bail!("{} moves failed: {:?}", status.failed, status.moves);
            }
            return Ok(Pass {
                plan,
                queued_bytes: run.bytes,
                status,
                took: started.elapsed(),
            });
        }
        if started.elapsed() > timeout {
            bail!("the pass did not drain within {timeout:?}: {status:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `RebalanceCheck`.
pub async fn check(m: &mut MasterClient<Channel>) -> Result<RebalanceCheckResponse> {
    Ok(m.rebalance_check(RebalanceCheckRequest {})
        .await?
        .into_inner())
}

/// Reads per second each of `servers` served among `reads` that started in
/// `from..to`, zero for a server that served none.
pub fn read_rates<'a>(
    reads: impl IntoIterator<Item = &'a Read>,
    servers: &[String],
    from: Instant,
    to: Instant,
) -> BTreeMap<String, f64> {
    let secs = (to - from).as_secs_f64().max(1e-3);
    let mut out: BTreeMap<String, f64> = servers.iter().map(|s| (s.clone(), 0.0)).collect();
    for r in reads.into_iter().filter(|r| r.at >= from && r.at < to) {
        *out.entry(r.server.clone()).or_default() += 1.0 / secs;
    }
    out
}

/// `server`'s share of all the rates, in percent.
pub fn share_pct(rates: &BTreeMap<String, f64>, server: &str) -> f64 {
    let total: f64 = rates.values().sum();
    if total <= 0.0 {
        return 0.0;
    }
    100.0 * rates.get(server).copied().unwrap_or(0.0) / total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_use_the_mean_of_every_server() {
        let rates: BTreeMap<String, f64> = [("a", 60.0), ("b", 10.0), ("c", 10.0), ("d", 0.0)]
            .into_iter()
            .map(|(s, r)| (s.to_owned(), r))
            .collect();
        let p = positions(&rates, 25.0);
        assert_eq!(p["a"], LoadPosition::Hot);
        assert_eq!(p["b"], LoadPosition::Cold);
        assert_eq!(p["d"], LoadPosition::Cold);
        assert!((share_pct(&rates, "a") - 75.0).abs() < 1e-9);
        assert_eq!(mean([].iter()), 0.0);
    }
}
