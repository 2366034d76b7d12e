//! `keelctl sim [--from-master | FILE] [--json]`: how a rebalance would go,
//! without touching data. The real planner and the real move queue run in
//! simulated time (`keel_balancer::predict`) against the chunk servers'
//! migration buckets; the answer is the moves, the bytes, the lower bound,
//! each server's bytes in and out, its reads/s before and after, the moves
//! by reason (capacity or load), the ETA and a timeline.
//!
//! # Layout
//! - `live.rs`: the master's plan and servers (also the ETA of `rebalance plan`).
//! - `file.rs`: a cluster described in JSON (docs/sim.md).
//! - `render.rs`: text and JSON.

pub mod file;
pub mod live;
pub mod render;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use keel_proto::units::parse_duration;

use crate::client::Clients;
use crate::error::Error;
use crate::output;

/// `keelctl sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// A cluster described in JSON (servers, chunk sizes, limits; see
    /// docs/sim.md); `-` reads standard input.
    #[arg(
        required_unless_present = "from_master",
        conflicts_with = "from_master"
    )]
    pub file: Option<PathBuf>,
    /// Predict the master's own plan for the live cluster, with the
    /// master's queue limits and each chunk server's migration bandwidth.
    #[arg(long)]
    pub from_master: bool,
    /// Time a move holds its slot beyond its transfer (RPCs, fsyncs,
    /// records); default 40ms.
    #[arg(long, value_parser = parse_duration)]
    pub move_overhead: Option<Duration>,
}

/// Runs `keelctl sim`; `clients` is only built for `--from-master`.
pub async fn run(
    args: SimArgs,
    json: bool,
    clients: impl FnOnce() -> Result<Clients, Error>,
) -> Result<(), Error> {
    let answer = if args.from_master {
        let master = clients()?.master().await?;
        let live = live::fetch(&master).await?;
        let got = live::predict(&live, args.move_overhead)?;
        render::json(&render::Input {
            source: "master".into(),
            view: &got.view,
            exec: &got.exec,
            p: &got.p,
            plan_time: Duration::ZERO,
            notes: vec![],
            load: &got.load,
            per_chunk_heat: false,
        })
    } else {
        let path = args
            .file
            .ok_or_else(|| Error::Usage("give a cluster file or --from-master".into()))?;
        from_file(&path, args.move_overhead)?
    };
    if json {
        output::print_json(&answer)
    } else {
        output::print_stdout(&render::text(&answer))
    }
}

/// Reads, checks and simulates a cluster file.
fn from_file(path: &std::path::Path, overhead: Option<Duration>) -> Result<render::SimJson, Error> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| Error::file("cannot read", "standard input", e))?
    } else {
        std::fs::read_to_string(path).map_err(|e| Error::file("cannot read", path, e))?
    };
    let mut model =
        file::parse(&text).map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
    if let Some(o) = overhead {
        model.exec.move_overhead = o;
    }
    let started = Instant::now();
    let plan = keel_balancer::plan(&model.view, &model.policy, &keel_balancer::InFlight::new());
    let plan_time = started.elapsed();
    let p = keel_balancer::predict::predict_plan(&model.view, &plan, &model.exec)
        .map_err(live::sim_error)?;
    let load =
        keel_balancer::predict::load_effect(&model.view, &plan, model.policy.load_threshold_pct);
    Ok(render::json(&render::Input {
        source: path.display().to_string(),
        view: &model.view,
        exec: &model.exec,
        p: &p,
        plan_time,
        notes: model.notes,
        load: &load,
        per_chunk_heat: true,
    }))
}
