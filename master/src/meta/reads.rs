//! Read load as each chunk server reports it: its client read rate and
//! p99, and its hottest replicas (at most [`MAX_HOT_CHUNKS`]). Kept per
//! server and replaced by every heartbeat; a dead server reads as idle.
//!
//! From it come the load figures of the balancer's views
//! ([`keel_balancer::Server::reads`], [`keel_balancer::Heat`]) and the order
//! in which `LocateChunk` lists a chunk's holders ([`order_replicas`]).

use keel_balancer::traffic::{DEFAULT_LOAD_THRESHOLD_PCT, LOAD_NOISE_FLOOR_READS_PER_SEC};
use keel_balancer::traffic::{LoadPosition, load_position};
use keel_balancer::{ChunkIdx, Heat, ReadRate, ServerIdx};

use super::view::ReplicaLocation;
use super::{Meta, ServerNo};

/// Hot replicas kept per server. The chunk servers send at most this many
/// (a bounded top-K); the master cuts a longer list rather than trust it.
pub const MAX_HOT_CHUNKS: usize = 64;

/// A server's client reads as its last heartbeat reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerReads {
    /// Reads/s and bytes/s (decayed averages on the chunk server).
    pub rate: ReadRate,
    /// p99 of client read service time, milliseconds; 0 without samples.
    pub p99_ms: f64,
}

/// The read figures of one heartbeat, already validated (see
/// `convert::read_report`): finite, non-negative, at most
/// [`MAX_HOT_CHUNKS`] hot replicas, each chunk once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReadReport {
    /// The server's figures; zero from a server that sends none.
    pub load: ServerReads,
    /// Its hottest replicas, hottest first.
    pub hot: Vec<(String, ReadRate)>,
}

/// A rate as a reader of the wire would want it: non-finite or negative
/// figures (a buggy or hostile server) read as 0 rather than poison sums.
pub fn clamp_rate(v: f64) -> f64 {
    if v.is_finite() && v > 0.0 { v } else { 0.0 }
}

/// The step in which `LocateChunk` compares holders' reads/s: the load
/// band's slack around `mean` (never below the noise floor), so holders
/// closer than the band would ever act on count as equally loaded. With
/// load balancing off (`threshold_pct` ≤ 0) the default band still spreads
/// reads.
pub fn load_step(mean: f64, threshold_pct: f64) -> f64 {
    let pct = if threshold_pct > 0.0 {
        threshold_pct
    } else {
        DEFAULT_LOAD_THRESHOLD_PCT
    };
    (mean * pct / 100.0).max(LOAD_NOISE_FLOOR_READS_PER_SEC)
}

/// One holder as [`order_replicas`] weighs it.
#[derive(Debug, Clone)]
pub struct Holder {
    /// Where the replica is.
    pub replica: ReplicaLocation,
    /// The holder's client reads/s.
    pub reads_per_sec: f64,
    /// The holder's rack, empty when unset.
    pub rack: String,
}

/// Orders a chunk's holders for a reader in `rack` (may be empty): live
/// first; then least loaded, in steps of `step` reads/s so that noise does
/// not flap the order; then holders in the reader's rack; then by id.
pub fn order_replicas(mut holders: Vec<Holder>, rack: &str, step: f64) -> Vec<ReplicaLocation> {
    let step = if step.is_finite() && step > 0.0 {
        step
    } else {
        LOAD_NOISE_FLOOR_READS_PER_SEC
    };
    // Floor of a finite, non-negative ratio: fits u64 for any sane rate
    // and saturates otherwise.
    let bucket = |h: &Holder| (clamp_rate(h.reads_per_sec) / step).floor() as u64;
    let far = |h: &Holder| rack.is_empty() || h.rack != rack;
    holders.sort_by(|a, b| {
        b.replica
            .alive
            .cmp(&a.replica.alive)
            .then_with(|| bucket(a).cmp(&bucket(b)))
            .then_with(|| far(a).cmp(&far(b)))
            .then_with(|| a.replica.id.cmp(&b.replica.id))
    });
    holders.into_iter().map(|h| h.replica).collect()
}

impl Meta {
    /// Records what a heartbeat said of `no`'s reads (replacing the last).
    pub(super) fn record_reads(&mut self, no: ServerNo, report: &ReadReport) {
        let s = &mut self.servers[no as usize];
        s.reads = report.load;
        s.hot.clear();
        s.hot.extend(
            report
                .hot
                .iter()
                .take(MAX_HOT_CHUNKS)
                .map(|(c, r)| (c.as_str().into(), *r)),
        );
    }

    /// Forgets `no`'s reads: it died, so it serves none.
    pub(super) fn forget_reads(&mut self, no: ServerNo) {
        let s = &mut self.servers[no as usize];
        s.reads = ServerReads::default();
        s.hot.clear();
    }

    /// `no`'s client reads: zero while it is dead.
    pub fn reads_of(&self, no: ServerNo) -> ServerReads {
        let s = &self.servers[no as usize];
        if s.alive {
            s.reads
        } else {
            ServerReads::default()
        }
    }

    /// The hot replicas `no` reported that it holds as whole replicas
    /// (others are ignored); none while it is dead.
    pub fn hot_on(&self, no: ServerNo) -> impl Iterator<Item = (&str, ReadRate)> + '_ {
        let s = &self.servers[no as usize];
        let list = if s.alive { &s.hot[..] } else { &[] };
        list.iter()
            .filter(move |(c, _)| self.chunks.get(c).is_some_and(|r| r.holds(no)))
            .map(|(c, r)| (&**c, *r))
    }

    /// Says how hot `chunk` reads on each live holder that lists it among
    /// its hottest, and where that holder stands against the load band.
    pub(super) fn explain_reads(&self, chunk: &str, e: &mut super::Explanation) {
        let Some(c) = self.chunks.get(chunk) else {
            return;
        };
        let mean = self.mean_reads_per_sec();
        let pct = self.settings.load_threshold_pct;
        let mut lines = Vec::new();
        for no in c.servers() {
            let Some((_, rate)) = self.hot_on(no).find(|(id, _)| *id == chunk) else {
                continue;
            };
            let s = self.server(no);
            let total = self.reads_of(no).rate.reads_per_sec;
            let place = match s.takes_data() {
                true => load_position(total, mean, pct),
                false => LoadPosition::Inside,
            };
            lines.push((s.id.clone(), format!(
                "read at {:.1} reads/s on {} (one of its hottest chunks; {} serves {:.1} reads/s in all, {})",
                rate.reads_per_sec,
                s.id,
                s.id,
                total,
                match place {
                    LoadPosition::Hot => "hot",
                    LoadPosition::Cold => "cold",
                    LoadPosition::Inside => "inside the load band",
                }
            )));
        }
        lines.sort();
        e.reasons.extend(lines.into_iter().map(|(_, l)| l));
    }

    /// Mean reads/s of the live servers that take data (the load band's
    /// mean, as `load::check` counts it); 0 without any.
    pub fn mean_reads_per_sec(&self) -> f64 {
        let live = self.servers.iter().filter(|s| s.takes_data());
        let (sum, n) = live.fold((0.0, 0usize), |(sum, n), s| {
            (sum + s.reads.rate.reads_per_sec, n + 1)
        });
        if n == 0 { 0.0 } else { sum / n as f64 }
    }

    /// The heat of every live server, with chunks indexed by `idx`
    /// (chunks it cannot place are left out).
    pub(super) fn heat(&self, idx: impl Fn(&str) -> Option<ChunkIdx>) -> Heat {
        let mut heat = Heat::new();
        for no in 0..self.servers.len() as ServerNo {
            for (chunk, rate) in self.hot_on(no) {
                if let Some(c) = idx(chunk) {
                    heat.set(ServerIdx(no), c, rate);
                }
            }
        }
        heat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(id: &str, alive: bool, reads: f64, rack: &str) -> Holder {
        Holder {
            replica: ReplicaLocation {
                id: id.into(),
                address: format!("http://{id}:1"),
                alive,
            },
            reads_per_sec: reads,
            rack: rack.into(),
        }
    }

    fn ids(v: Vec<ReplicaLocation>) -> Vec<String> {
        v.into_iter().map(|r| r.id).collect()
    }

    #[test]
    fn live_first_then_least_loaded_in_steps_then_rack_then_id() {
        let hs = vec![
            holder("a", true, 120.0, "r1"),
            holder("b", true, 10.0, "r1"),
            holder("c", false, 0.0, "r2"),
            holder("d", true, 14.0, "r2"),
        ];
        // Step 25: b (10) and d (14) are equals; d is in the reader's rack.
        assert_eq!(
            ids(order_replicas(hs.clone(), "r2", 25.0)),
            ["d", "b", "a", "c"]
        );
        // No rack: the id breaks the tie.
        assert_eq!(
            ids(order_replicas(hs.clone(), "", 25.0)),
            ["b", "d", "a", "c"]
        );
        // A fine step tells 10 from 14.
        assert_eq!(ids(order_replicas(hs, "r2", 2.0)), ["b", "d", "a", "c"]);
    }

    #[test]
    fn noise_inside_a_step_does_not_flap_the_order() {
        for (a, b) in [(40.0, 41.0), (41.0, 40.0), (44.9, 40.1)] {
            let hs = vec![holder("x", true, a, ""), holder("y", true, b, "")];
            assert_eq!(ids(order_replicas(hs, "", 25.0)), ["x", "y"]);
        }
    }

    #[test]
    fn nonsense_rates_and_steps_do_not_panic() {
        let hs = vec![
            holder("a", true, f64::NAN, ""),
            holder("b", true, f64::INFINITY, ""),
            holder("c", true, -5.0, ""),
        ];
        for step in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-300] {
            assert_eq!(order_replicas(hs.clone(), "", step).len(), 3);
        }
    }

    #[test]
    fn the_step_is_the_bands_slack_with_a_floor() {
        assert_eq!(load_step(100.0, 25.0), 25.0);
        assert_eq!(load_step(100.0, 0.0), 25.0);
        assert_eq!(load_step(1.0, 25.0), LOAD_NOISE_FLOOR_READS_PER_SEC);
        assert_eq!(clamp_rate(f64::NAN), 0.0);
        assert_eq!(clamp_rate(-3.0), 0.0);
        assert_eq!(clamp_rate(3.0), 3.0);
    }
}
