//! What `keelctl sim` prints: a summary, a table per server (bytes in and
//! out, utilization and reads/s before and after), the load band's verdict,
//! and a text timeline; or all of it as JSON.

use std::time::Duration;

use keel_balancer::predict::{Execution, LoadEffect, Prediction, TimelinePoint, nice_step};
use keel_balancer::{ClusterView, LoadPosition};
use serde::Serialize;

use crate::output::{self, Align, Table};

/// Rows of the text timeline, about.
const TIMELINE_ROWS: u32 = 20;
/// Width of the timeline's progress bar.
const TIMELINE_BAR: usize = 30;

/// `keelctl sim --json`.
#[derive(Debug, Serialize)]
pub struct SimJson {
    /// `master` or the file's path.
    pub source: String,
    /// Moves that would run.
    pub move_count: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Bytes of the whole plan, including moves that would not start.
    pub planned_bytes: u64,
    /// No plan can move less.
    pub lower_bound_bytes: u64,
    /// Whether every server ends inside the band.
    pub reaches_band: bool,
    /// The average the band is centred on.
    pub average_utilization_pct: f64,
    /// When the last move would end.
    pub eta_seconds: f64,
    /// Time the planner took here (0 for `--from-master`: the master planned).
    pub plan_seconds: f64,
    /// Largest minus smallest utilization of live servers, before and after.
    pub spread_pct_before: f64,
    /// The same once every move has run.
    pub spread_pct_after: f64,
    /// The queue's limits and the per-move overhead used.
    pub limits: LimitsJson,
    /// Read load before and after, and the moves by reason.
    pub load: LoadJson,
    /// Every server.
    pub servers: Vec<ServerJson>,
    /// The state at even steps from 0 to the ETA.
    pub timeline: Vec<StepJson>,
    /// Every move, in start order.
    pub moves: Vec<MoveJson>,
    /// Planned moves that would not start, with the queue's reason.
    pub not_started: Vec<NotStartedJson>,
    /// The planner's and the model's notes.
    pub notes: Vec<String>,
}

/// The load side in `--json`.
#[derive(Debug, Serialize)]
pub struct LoadJson {
    /// Load band half-width, percent of the mean reads/s; 0: off.
    pub load_threshold_pct: f64,
    /// Mean reads/s of the live servers.
    pub average_reads_per_sec: f64,
    /// Whether every live server ends inside the load band.
    pub reaches_load_band: bool,
    /// Whether reads/s after the moves are modelled: false when only
    /// per-server rates are known (`--from-master`), so a move's share of
    /// the load is not.
    pub per_chunk_heat: bool,
    /// Moves planned for capacity.
    pub moves_for_capacity: usize,
    /// Moves planned for load.
    pub moves_for_load: usize,
    /// Bytes of the moves planned for load.
    pub bytes_for_load: u64,
    /// Live servers above the load band now.
    pub hot_before: Vec<String>,
    /// Live servers below it now.
    pub cold_before: Vec<String>,
    /// Live servers above it after the moves.
    pub hot_after: Vec<String>,
    /// Live servers below it after the moves.
    pub cold_after: Vec<String>,
}

/// Limits in `--json`.
#[derive(Debug, Serialize)]
pub struct LimitsJson {
    /// Moves at once, cluster-wide (with `auto`, what the live servers'
    /// per-server slots allow).
    pub max_concurrent_moves: usize,
    /// Whether that cap is `auto`.
    pub max_concurrent_moves_auto: bool,
    /// Moves at once per server.
    pub max_moves_per_server: usize,
    /// The target's free-space floor.
    pub min_free_pct: f64,
    /// Time a move holds its slot beyond its transfer.
    pub move_overhead_seconds: f64,
}

/// One server in `--json`.
#[derive(Debug, Serialize)]
pub struct ServerJson {
    /// Server id.
    pub id: String,
    /// Migration bandwidth, bytes per second (0 = unlimited).
    pub bandwidth_bytes_per_second: u64,
    /// Bytes copied onto it.
    pub bytes_in: u64,
    /// Bytes copied off it.
    pub bytes_out: u64,
    /// Moves onto it.
    pub moves_in: u64,
    /// Moves off it.
    pub moves_out: u64,
    /// Capacity.
    pub capacity_bytes: u64,
    /// Used now.
    pub used_bytes_before: u64,
    /// Used once every move has run.
    pub used_bytes_after: u64,
    /// Utilization now.
    pub utilization_pct_before: f64,
    /// Utilization after.
    pub utilization_pct_after: f64,
    /// Client reads/s now.
    pub reads_per_sec_before: f64,
    /// Client reads/s once every move has run (as before when per-chunk
    /// heat is unknown).
    pub reads_per_sec_after: f64,
    /// `hot`, `cold` or `inside` the load band now (`dead` for a dead server).
    pub load_before: &'static str,
    /// The same after.
    pub load_after: &'static str,
}

/// One timeline step in `--json`.
#[derive(Debug, Serialize)]
pub struct StepJson {
    /// Seconds since the start.
    pub seconds: f64,
    /// Bytes transferred by then.
    pub bytes_done: u64,
    /// Moves holding a slot then.
    pub running: usize,
}

/// One move in `--json`.
#[derive(Debug, Serialize)]
pub struct MoveJson {
    /// Chunk id.
    pub chunk: String,
    /// Source.
    pub from: String,
    /// Target.
    pub to: String,
    /// Size.
    pub bytes: u64,
    /// Start, seconds since the start of the rebalance.
    pub start_seconds: f64,
    /// End.
    pub end_seconds: f64,
    /// Why it is planned: `capacity` or `load`.
    pub reason: &'static str,
}

/// A move that would not start, in `--json`.
#[derive(Debug, Serialize)]
pub struct NotStartedJson {
    /// Chunk id.
    pub chunk: String,
    /// Source.
    pub from: String,
    /// Target.
    pub to: String,
    /// Size.
    pub bytes: u64,
    /// Why.
    pub reason: String,
}

/// Everything `render` needs.
pub struct Input<'a> {
    /// `master` or the file's path.
    pub source: String,
    /// The cluster before the moves.
    pub view: &'a ClusterView,
    /// The execution parameters used.
    pub exec: &'a Execution,
    /// The prediction.
    pub p: &'a Prediction,
    /// Time the planner took here.
    pub plan_time: Duration,
    /// Notes of the model (e.g. bytes a file could not place).
    pub notes: Vec<String>,
    /// What the plan does to read load.
    pub load: &'a LoadEffect,
    /// Whether `load` knows each replica's rate (see [`LoadJson`]).
    pub per_chunk_heat: bool,
}

/// The JSON answer.
pub fn json(i: &Input<'_>) -> SimJson {
    let p = i.p;
    let servers = servers(i);
    let spread = |after: bool| {
        let alive = i.view.servers.iter().zip(&servers).filter(|(v, _)| v.alive);
        let pcts: Vec<f64> = alive
            .map(|(_, s)| {
                if after {
                    s.utilization_pct_after
                } else {
                    s.utilization_pct_before
                }
            })
            .collect();
        let max = pcts.iter().copied().fold(f64::MIN, f64::max);
        let min = pcts.iter().copied().fold(f64::MAX, f64::min);
        if pcts.is_empty() { 0.0 } else { max - min }
    };
    let step = nice_step(p.eta, TIMELINE_ROWS);
    SimJson {
        source: i.source.clone(),
        move_count: p.moves.len(),
        bytes: p.bytes,
        planned_bytes: p.planned_bytes,
        lower_bound_bytes: p.lower_bound_bytes,
        reaches_band: p.reaches_band,
        average_utilization_pct: p.average_utilization_pct,
        eta_seconds: p.eta.as_secs_f64(),
        plan_seconds: i.plan_time.as_secs_f64(),
        spread_pct_before: spread(false),
        spread_pct_after: spread(true),
        load: load_json(i),
        limits: LimitsJson {
            max_concurrent_moves: i
                .exec
                .queue
                .effective_max_concurrent(i.view.servers.iter().filter(|s| s.alive).count()),
            max_concurrent_moves_auto: i.exec.queue.is_auto(),
            max_moves_per_server: i.exec.queue.max_moves_per_server,
            min_free_pct: i.exec.queue.min_free_pct,
            move_overhead_seconds: i.exec.move_overhead.as_secs_f64(),
        },
        timeline: p.timeline(step).iter().map(step_json).collect(),
        moves: p
            .moves
            .iter()
            .map(|m| MoveJson {
                chunk: m.chunk.clone(),
                from: m.from.clone(),
                to: m.to.clone(),
                bytes: m.bytes,
                start_seconds: m.start.as_secs_f64(),
                end_seconds: m.end.as_secs_f64(),
                reason: i
                    .load
                    .reasons
                    .get(&m.chunk)
                    .copied()
                    .unwrap_or_default()
                    .as_str(),
            })
            .collect(),
        not_started: p
            .not_started
            .iter()
            .map(|m| NotStartedJson {
                chunk: m.chunk.clone(),
                from: m.from.clone(),
                to: m.to.clone(),
                bytes: m.bytes,
                reason: m.reason.clone(),
            })
            .collect(),
        notes: p.notes.iter().chain(&i.notes).cloned().collect(),
        servers,
    }
}

fn step_json(t: &TimelinePoint) -> StepJson {
    StepJson {
        seconds: t.at.as_secs_f64(),
        bytes_done: t.bytes_done,
        running: t.running,
    }
}

fn load_json(i: &Input<'_>) -> LoadJson {
    let e = i.load;
    let at = |after: bool, pos: LoadPosition| {
        let mut list: Vec<_> = e
            .servers
            .iter()
            .filter(|s| s.alive)
            .filter(|s| {
                pos == if after {
                    s.position_after
                } else {
                    s.position_before
                }
            })
            .map(|s| s.id.clone())
            .collect();
        list.sort();
        list
    };
    LoadJson {
        load_threshold_pct: e.load_threshold_pct,
        average_reads_per_sec: e.mean_reads_per_sec,
        reaches_load_band: e.reaches_load_band,
        per_chunk_heat: i.per_chunk_heat,
        moves_for_capacity: e.capacity_moves,
        moves_for_load: e.load_moves,
        bytes_for_load: e.load_bytes,
        hot_before: at(false, LoadPosition::Hot),
        cold_before: at(false, LoadPosition::Cold),
        hot_after: at(true, LoadPosition::Hot),
        cold_after: at(true, LoadPosition::Cold),
    }
}

/// `hot`, `cold`, `inside` or `dead`.
fn position_word(alive: bool, p: LoadPosition) -> &'static str {
    match (alive, p) {
        (false, _) => "dead",
        (true, LoadPosition::Hot) => "hot",
        (true, LoadPosition::Cold) => "cold",
        (true, LoadPosition::Inside) => "inside",
    }
}

fn servers(i: &Input<'_>) -> Vec<ServerJson> {
    i.p.servers
        .iter()
        .zip(&i.view.servers)
        .zip(&i.load.servers)
        .map(|((f, v), r)| {
            let after = (v.used + f.bytes_in).saturating_sub(f.bytes_out);
            ServerJson {
                id: f.id.clone(),
                bandwidth_bytes_per_second: f.bandwidth,
                bytes_in: f.bytes_in,
                bytes_out: f.bytes_out,
                moves_in: f.moves_in,
                moves_out: f.moves_out,
                capacity_bytes: v.capacity,
                used_bytes_before: v.used,
                used_bytes_after: after,
                utilization_pct_before: keel_balancer::space::utilization_pct(v.used, v.capacity),
                utilization_pct_after: keel_balancer::space::utilization_pct(after, v.capacity),
                reads_per_sec_before: r.before,
                reads_per_sec_after: r.after,
                load_before: position_word(v.alive, r.position_before),
                load_after: position_word(v.alive, r.position_after),
            }
        })
        .collect()
}

/// The text answer.
pub fn text(j: &SimJson) -> String {
    let mut out = format!(
        "{}, {} (no plan can move less than {}); band reached: {}\n",
        output::count(j.move_count as u64, "move"),
        output::size(j.bytes),
        output::size(j.lower_bound_bytes),
        output::yes_no(j.reaches_band),
    );
    out.push_str(&format!(
        "ETA {} with {} slots, {} per server, {} overhead per move; spread {:.1} → {:.1} points\n\n",
        output::age(Duration::from_secs_f64(j.eta_seconds)),
        match j.limits.max_concurrent_moves_auto {
            true => format!("auto ({})", j.limits.max_concurrent_moves),
            false => j.limits.max_concurrent_moves.to_string(),
        },
        j.limits.max_moves_per_server,
        output::age(Duration::from_secs_f64(j.limits.move_overhead_seconds)),
        j.spread_pct_before,
        j.spread_pct_after,
    ));
    out.push_str(&load_line(&j.load));
    out.push_str(&server_table(
        &j.servers,
        j.load.average_reads_per_sec > 0.0,
    ));
    if j.move_count > 0 {
        out.push('\n');
        out.push_str(&timeline(j));
    }
    for m in &j.not_started {
        out.push_str(&format!(
            "not started: {} {} → {} ({}): {}\n",
            m.chunk,
            m.from,
            m.to,
            output::size(m.bytes),
            m.reason
        ));
    }
    for n in &j.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

/// One paragraph on read load: the band, who is hot or cold before and
/// after, and the moves by reason.
fn load_line(l: &LoadJson) -> String {
    // A cluster without reads (an old file) prints as it always did.
    if l.average_reads_per_sec <= 0.0 && l.moves_for_load == 0 {
        return String::new();
    }
    if l.load_threshold_pct <= 0.0 {
        return format!(
            "load: balancing by load is off; {} for capacity\n\n",
            output::count(l.moves_for_capacity as u64, "move")
        );
    }
    let names = |v: &[String]| {
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    let mut out = format!(
        "load: mean {:.1} reads/s, band ±{} %; hot {} → {}, cold {} → {}; load band reached: {}\n",
        l.average_reads_per_sec,
        l.load_threshold_pct,
        names(&l.hot_before),
        names(&l.hot_after),
        names(&l.cold_before),
        names(&l.cold_after),
        output::yes_no(l.reaches_load_band),
    );
    out.push_str(&format!(
        "moves: {} for capacity, {} for load ({})\n",
        l.moves_for_capacity,
        l.moves_for_load,
        output::size(l.bytes_for_load)
    ));
    if !l.per_chunk_heat {
        out.push_str(
            "(reads/s after the moves are not modelled: only per-server rates are known)\n",
        );
    }
    out.push('\n');
    out
}

fn server_table(servers: &[ServerJson], with_reads: bool) -> String {
    let mut cols = vec![
        ("SERVER", Align::Left),
        ("BANDWIDTH", Align::Right),
        ("IN", Align::Right),
        ("OUT", Align::Right),
        ("MOVES", Align::Right),
        ("BEFORE", Align::Right),
        ("AFTER", Align::Right),
    ];
    if with_reads {
        cols.extend([
            ("READS/S BEFORE", Align::Right),
            ("READS/S AFTER", Align::Right),
        ]);
    }
    let mut t = Table::new(&cols);
    for s in servers {
        let bw = if s.bandwidth_bytes_per_second == 0 {
            "unlimited".to_owned()
        } else {
            format!("{}/s", output::size(s.bandwidth_bytes_per_second))
        };
        let mut row = vec![
            s.id.clone(),
            bw,
            output::size(s.bytes_in),
            output::size(s.bytes_out),
            format!("+{} -{}", s.moves_in, s.moves_out),
            output::pct(s.utilization_pct_before),
            output::pct(s.utilization_pct_after),
        ];
        if with_reads {
            row.push(reads_cell(s.reads_per_sec_before, s.load_before));
            row.push(reads_cell(s.reads_per_sec_after, s.load_after));
        }
        t.row(row);
    }
    t.render()
}

/// Reads/s, marked when outside the load band.
fn reads_cell(reads: f64, position: &str) -> String {
    match position {
        "hot" | "cold" => format!("{reads:.1} ({position})"),
        _ => format!("{reads:.1}"),
    }
}

fn timeline(j: &SimJson) -> String {
    let mut t = Table::new(&[
        ("TIME", Align::Right),
        ("DONE", Align::Right),
        ("PROGRESS", Align::Left),
        ("RUNNING", Align::Right),
    ]);
    for s in &j.timeline {
        let pct = if j.bytes == 0 {
            100.0
        } else {
            100.0 * s.bytes_done as f64 / j.bytes as f64
        };
        t.row(vec![
            output::age(Duration::from_secs_f64(s.seconds)),
            output::size(s.bytes_done),
            format!("{} {}", output::bar(pct, TIMELINE_BAR), output::pct(pct)),
            s.running.to_string(),
        ]);
    }
    t.render()
}
