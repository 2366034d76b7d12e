//! `keelctl sim FILE`: a cluster described in JSON (see docs/sim.md),
//! checked field by field and turned into a view, a policy and the
//! execution parameters. Chunks are generated from a size distribution with
//! a seed, so the same file always gives the same cluster; so are the hot
//! sets that model read load.

use std::collections::{BTreeSet, BinaryHeap, HashSet};
use std::time::Duration;

use keel_balancer::predict::{DEFAULT_MOVE_OVERHEAD, Execution};
use keel_balancer::queue::QueueConfig;
use keel_balancer::sim::{Rng, hot_set, refresh_reads};
use keel_balancer::{ClusterView, Policy, ServerIdx};
use keel_proto::units::{parse_duration, parse_size};
use serde::Deserialize;

/// Most replicas a file may describe: the view and the simulation stay
/// within a few GiB of memory and seconds of time.
pub const MAX_REPLICAS: u64 = 5_000_000;

/// Most hot chunks one hot set may name: chunk servers report a bounded
/// top list, and the view's heat stays small.
const MAX_HOT_CHUNKS: usize = 1_000_000;

/// Largest Zipf exponent a hot set may give (beyond, one chunk takes all).
const MAX_ZIPF: f64 = 10.0;

/// Largest chunk size a file may give.
const MAX_CHUNK_SIZE: u64 = 1 << 40;

/// The chunk server's default `--migrate-bandwidth`.
const DEFAULT_BANDWIDTH: &str = "64MiB";

/// A byte count as a number or a string such as `"64MiB"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

impl Size {
    fn bytes(&self, what: &str) -> Result<u64, String> {
        match self {
            Size::Bytes(b) => Ok(*b),
            Size::Text(t) => parse_size(t).map_err(|e| format!("{what}: {e}")),
        }
    }
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimFile {
    servers: Vec<ServerSpec>,
    chunks: ChunkSpec,
    #[serde(default)]
    policy: PolicySpec,
    #[serde(default)]
    limits: LimitSpec,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSpec {
    id: String,
    capacity: Size,
    used: Size,
    #[serde(default)]
    rack: Option<String>,
    #[serde(default = "yes")]
    alive: bool,
    #[serde(default)]
    migrate_bandwidth: Option<Size>,
    /// Client reads/s on its cold chunks (those in no hot set).
    #[serde(default)]
    reads_per_sec: Option<f64>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChunkSpec {
    #[serde(default = "one")]
    replication: u32,
    sizes: Vec<SizeShare>,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    hot: Vec<HotSpec>,
}

/// A hot set: `chunks` chunks whose reads follow a Zipf-like law.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HotSpec {
    /// Chunks drawn among those with a replica on this server, their reads
    /// on that replica; absent: any chunk, reads split over its replicas.
    #[serde(default)]
    on: Option<String>,
    chunks: usize,
    reads_per_sec: f64,
    #[serde(default = "unit")]
    zipf: f64,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SizeShare {
    size: Size,
    #[serde(default = "unit")]
    weight: f64,
}

fn unit() -> f64 {
    1.0
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicySpec {
    #[serde(default = "default_threshold")]
    threshold_pct: f64,
    #[serde(default = "default_floor")]
    min_free_pct: f64,
    #[serde(default = "default_load_threshold")]
    load_threshold_pct: f64,
}

fn default_load_threshold() -> f64 {
    Policy::default().load_threshold_pct
}

fn default_threshold() -> f64 {
    Policy::default().threshold_pct
}

fn default_floor() -> f64 {
    Policy::default().min_free_pct
}

impl Default for PolicySpec {
    fn default() -> Self {
        PolicySpec {
            threshold_pct: default_threshold(),
            min_free_pct: default_floor(),
            load_threshold_pct: default_load_threshold(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitSpec {
    max_concurrent_moves: Option<CapSpec>,
    max_moves_per_server: Option<usize>,
    migrate_bandwidth: Option<Size>,
    move_overhead: Option<String>,
}

/// `max_concurrent_moves`: a number or `"auto"`, as the master's flag.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum CapSpec {
    Number(usize),
    Word(String),
}

impl CapSpec {
    fn slots(&self) -> Result<usize, String> {
        match self {
            CapSpec::Number(n) => Ok(*n),
            CapSpec::Word(w) if w.eq_ignore_ascii_case("auto") => Ok(keel_balancer::slots::AUTO),
            CapSpec::Word(w) => Err(format!(
                "limits: max_concurrent_moves must be \"auto\" or a number, got {w:?}"
            )),
        }
    }
}

/// What a file describes, ready to simulate.
#[derive(Debug)]
pub struct Model {
    /// The cluster.
    pub view: ClusterView,
    /// The planner's policy.
    pub policy: Policy,
    /// Queue limits, bandwidths, overhead.
    pub exec: Execution,
    /// What could not be generated as asked.
    pub notes: Vec<String>,
}

/// Parses and checks `text`; every error is one sentence naming the field.
pub fn parse(text: &str) -> Result<Model, String> {
    let f: SimFile = serde_json::from_str(text).map_err(|e| format!("not a sim file: {e}"))?;
    let policy = policy(&f.policy)?;
    let exec = execution(&f, policy.min_free_pct)?;
    let sizes = sizes(&f.chunks)?;
    let mut view = ClusterView::new();
    let mut goals = Vec::new();
    for (i, s) in f.servers.iter().enumerate() {
        goals.push(server(&mut view, i, s)?);
    }
    if view.servers.is_empty() {
        return Err("servers: the file lists no server".into());
    }
    let r = f.chunks.replication;
    let alive = view.servers.iter().filter(|s| s.alive).count();
    if r == 0 || r > keel_proto::MAX_REPLICATION || r as usize > view.servers.len() {
        return Err(format!(
            "chunks.replication: {r} is not between 1 and the number of servers ({})",
            view.servers.len()
        ));
    }
    if alive == 0 {
        return Err("servers: no server is alive".into());
    }
    let mut notes = fill(&mut view, &goals, &sizes, r, f.chunks.seed)?;
    notes.extend(heat(&mut view, &f)?);
    Ok(Model {
        view,
        policy,
        exec,
        notes,
    })
}

fn policy(p: &PolicySpec) -> Result<Policy, String> {
    if !(p.threshold_pct > 0.0 && p.threshold_pct <= 100.0) {
        return Err(format!(
            "policy.threshold_pct: {} is not in (0, 100]",
            p.threshold_pct
        ));
    }
    if !(0.0..100.0).contains(&p.min_free_pct) {
        return Err(format!(
            "policy.min_free_pct: {} is not in [0, 100)",
            p.min_free_pct
        ));
    }
    if !(p.load_threshold_pct.is_finite() && (0.0..=1000.0).contains(&p.load_threshold_pct)) {
        return Err(format!(
            "policy.load_threshold_pct: {} is not in [0, 1000] (0 balances bytes only)",
            p.load_threshold_pct
        ));
    }
    Ok(Policy {
        load_threshold_pct: p.load_threshold_pct,
        ..Policy::new(p.threshold_pct, p.min_free_pct)
    })
}

/// A rate a file gives: finite and not negative.
fn rate(value: f64, at: &str) -> Result<f64, String> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(format!("{at}: {value} is not a rate (reads/s, 0 or more)"))
    }
}

/// Draws the file's hot sets (after the chunks, from the same seed) and
/// sets each server's reads/s: its cold reads plus its hot replicas'.
fn heat(view: &mut ClusterView, f: &SimFile) -> Result<Vec<String>, String> {
    let mut cold = Vec::with_capacity(f.servers.len());
    for (i, s) in f.servers.iter().enumerate() {
        let r = rate(
            s.reads_per_sec.unwrap_or(0.0),
            &format!("servers[{i}].reads_per_sec"),
        )?;
        cold.push(r);
    }
    let mut rng = Rng::new(f.chunks.seed ^ 0x4845_4154); // "HEAT": apart from the sizes' draws
    let mut notes = Vec::new();
    for (i, h) in f.chunks.hot.iter().enumerate() {
        let at = format!("chunks.hot[{i}]");
        let on = match &h.on {
            Some(id) => Some(
                view.server_by_id(id)
                    .ok_or_else(|| format!("{at}.on: no server {id:?} in the file"))?,
            ),
            None => None,
        };
        if h.chunks == 0 || h.chunks > MAX_HOT_CHUNKS {
            return Err(format!(
                "{at}.chunks: {} is not between 1 and {MAX_HOT_CHUNKS}",
                h.chunks
            ));
        }
        let reads = rate(h.reads_per_sec, &format!("{at}.reads_per_sec"))?;
        if !(h.zipf.is_finite() && (0.0..=MAX_ZIPF).contains(&h.zipf)) {
            return Err(format!(
                "{at}.zipf: {} is not between 0 and {MAX_ZIPF}",
                h.zipf
            ));
        }
        let got = hot_set(&mut rng, view, on, h.chunks, reads, h.zipf);
        if got < h.chunks {
            notes.push(format!("{at}: only {got} chunks qualify, not {}", h.chunks));
        }
    }
    refresh_reads(view, &cold);
    Ok(notes)
}

fn execution(f: &SimFile, min_free_pct: f64) -> Result<Execution, String> {
    let l = &f.limits;
    let defaults = QueueConfig::default();
    let queue = QueueConfig {
        max_concurrent_moves: match &l.max_concurrent_moves {
            Some(cap) => cap.slots()?,
            None => defaults.max_concurrent_moves,
        },
        max_moves_per_server: l
            .max_moves_per_server
            .unwrap_or(defaults.max_moves_per_server),
        min_free_pct,
        ..defaults
    };
    if queue.max_concurrent_moves == 0 || queue.max_moves_per_server == 0 {
        return Err(
            "limits: max_concurrent_moves and max_moves_per_server must be at least 1".into(),
        );
    }
    let default_bandwidth = match &l.migrate_bandwidth {
        Some(b) => b.bytes("limits.migrate_bandwidth")?,
        None => Size::Text(DEFAULT_BANDWIDTH.into()).bytes("default")?,
    };
    let move_overhead = match &l.move_overhead {
        Some(d) => parse_duration(d).map_err(|e| format!("limits.move_overhead: {e}"))?,
        None => DEFAULT_MOVE_OVERHEAD,
    };
    if move_overhead > Duration::from_secs(3600) {
        return Err("limits.move_overhead: more than an hour per move".into());
    }
    let bandwidth = f
        .servers
        .iter()
        .enumerate()
        .map(|(i, s)| match &s.migrate_bandwidth {
            Some(b) => b.bytes(&format!("servers[{i}].migrate_bandwidth")),
            None => Ok(default_bandwidth),
        })
        .collect::<Result<_, _>>()?;
    Ok(Execution {
        queue,
        bandwidth,
        default_bandwidth,
        move_overhead,
        ..Execution::default()
    })
}

/// Sizes and cumulative weights.
fn sizes(c: &ChunkSpec) -> Result<Vec<(u64, f64)>, String> {
    if c.sizes.is_empty() {
        return Err("chunks.sizes: give at least one size".into());
    }
    let mut total = 0.0;
    let mut out = Vec::new();
    for (i, s) in c.sizes.iter().enumerate() {
        let size = s.size.bytes(&format!("chunks.sizes[{i}].size"))?;
        if size == 0 || size > MAX_CHUNK_SIZE {
            return Err(format!(
                "chunks.sizes[{i}].size: {size} bytes is not between 1 byte and 1 TiB"
            ));
        }
        if !(s.weight.is_finite() && s.weight > 0.0) {
            return Err(format!(
                "chunks.sizes[{i}].weight: must be a positive number"
            ));
        }
        total += s.weight;
        out.push((size, total));
    }
    Ok(out.into_iter().map(|(s, w)| (s, w / total)).collect())
}

/// Adds server `i` to the view; returns the bytes it should hold.
fn server(view: &mut ClusterView, i: usize, s: &ServerSpec) -> Result<u64, String> {
    let at = format!("servers[{i}]");
    if s.id.is_empty()
        || s.id.len() > 128
        || s.id.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!(
            "{at}.id: {:?} is not a server id (1–128 characters, no spaces)",
            s.id
        ));
    }
    if view.server_by_id(&s.id).is_some() {
        return Err(format!("{at}.id: {:?} is listed twice", s.id));
    }
    let capacity = s.capacity.bytes(&format!("{at}.capacity"))?;
    let used = s.used.bytes(&format!("{at}.used"))?;
    if capacity == 0 {
        return Err(format!("{at}.capacity: must be more than 0"));
    }
    if used > capacity {
        return Err(format!(
            "{at}.used: {} is more than its capacity {}",
            keel_proto::units::format_size(used),
            keel_proto::units::format_size(capacity)
        ));
    }
    let rack = s.rack.clone().filter(|r| !r.is_empty());
    view.add_server(s.id.clone(), rack, capacity, s.alive);
    Ok(used)
}

/// Places chunks drawn from `sizes` until every server holds about its goal:
/// each chunk goes to the `r` servers furthest from theirs, on distinct
/// racks where racks allow, and is cut to fit the smallest gap.
fn fill(
    view: &mut ClusterView,
    goals: &[u64],
    sizes: &[(u64, f64)],
    r: u32,
    seed: u64,
) -> Result<Vec<String>, String> {
    let mean: f64 = {
        let mut prev = 0.0;
        sizes
            .iter()
            .map(|&(s, cum)| {
                let w = cum - prev;
                prev = cum;
                s as f64 * w
            })
            .sum()
    };
    let replicas = goals.iter().sum::<u64>() as f64 / mean.max(1.0);
    if replicas > MAX_REPLICAS as f64 {
        return Err(format!(
            "chunks.sizes: the servers' used bytes make about {replicas:.0} replicas, more than {MAX_REPLICAS}; give larger sizes"
        ));
    }
    let mut rng = Rng::new(seed);
    let mut left: Vec<u64> = goals.to_vec();
    let mut heap: BinaryHeap<(u64, std::cmp::Reverse<usize>)> = left
        .iter()
        .enumerate()
        .filter(|&(_, &g)| g > 0)
        .map(|(i, &g)| (g, std::cmp::Reverse(i)))
        .collect();
    let mut n = 0u64;
    while let Some(chosen) = pick(view, &mut heap, &left, r as usize) {
        let u = rng.unit();
        let drawn = sizes
            .iter()
            .find(|s| u < s.1)
            .map_or(sizes[sizes.len() - 1].0, |s| s.0);
        let size = chosen
            .iter()
            .map(|&s| left[s])
            .min()
            .unwrap_or(0)
            .min(drawn);
        let on: Vec<ServerIdx> = chosen.iter().map(|&s| ServerIdx(s as u32)).collect();
        view.add_chunk(format!("c{n:07}"), size, 0, r, &on);
        n += 1;
        for s in chosen {
            left[s] -= size;
            if left[s] > 0 {
                heap.push((left[s], std::cmp::Reverse(s)));
            }
        }
    }
    Ok(left
        .iter()
        .enumerate()
        .filter(|&(_, &l)| l > 0)
        .map(|(i, &l)| {
            format!(
                "{}: {} of its used bytes could not be placed with replication {r} (too few other servers with room)",
                view.servers[i].id,
                keel_proto::units::format_size(l)
            )
        })
        .collect())
}

/// The `r` servers with the most bytes left to fill, on distinct racks when
/// enough racks have room; `None` when fewer than `r` servers have room.
fn pick(
    view: &ClusterView,
    heap: &mut BinaryHeap<(u64, std::cmp::Reverse<usize>)>,
    left: &[u64],
    r: usize,
) -> Option<Vec<usize>> {
    let mut chosen = Vec::with_capacity(r);
    let mut skipped = Vec::new();
    let mut racks: BTreeSet<&str> = BTreeSet::new();
    let mut seen = HashSet::new();
    while chosen.len() < r {
        let Some((l, std::cmp::Reverse(s))) = heap.pop() else {
            break;
        };
        if l != left[s] || !seen.insert(s) {
            continue; // a stale entry
        }
        match view.servers[s].rack.as_deref() {
            Some(rack) if racks.contains(rack) => skipped.push(s),
            rack => {
                racks.extend(rack);
                chosen.push(s);
            }
        }
    }
    // Not enough racks: fill up from the same racks rather than not at all.
    while chosen.len() < r && !skipped.is_empty() {
        chosen.push(skipped.remove(0));
    }
    for &s in &skipped {
        heap.push((left[s], std::cmp::Reverse(s)));
    }
    if chosen.len() < r {
        for &s in &chosen {
            heap.push((left[s], std::cmp::Reverse(s)));
        }
        return None;
    }
    Some(chosen)
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
