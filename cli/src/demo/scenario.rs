//! The demo's story, step by step: start, fill, show, add a server,
//! rebalance live, show again, then verify or keep running.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use keel_proto::v1::{
    ListServersRequest, RebalancePauseRequest, RebalanceResumeRequest, RebalanceStatusResponse,
    ServerState,
};

use super::DemoArgs;
use super::cluster::Cluster;
use super::data::{self, CAPACITY_UNITS, REPLICATION};
use super::error::DemoError;
use super::show::{self, DemoJson, Narrator, daemon_line};
use super::{Common, verify};
use crate::client::{Clients, Master};
use crate::error::Error;
use crate::output;
use crate::rebalance::{check, queue, run};
use crate::servers::ServerJson;

/// How long chunk servers may take to register with the master.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(20);
/// How often the balancer's progress is polled.
const POLL: Duration = Duration::from_millis(500);
/// The master's flags that make the demo lively.
const MASTER_FLAGS: [&str; 6] = [
    "--safe-mode",
    "1s",
    "--balance-interval",
    "2s",
    "--heartbeat-timeout",
    "5s",
];
/// Chunk servers report often, so new chunks and moves show at once.
const HEARTBEAT: &str = "500ms";

/// What the steps share.
struct Stage<'a> {
    cluster: &'a mut Cluster,
    args: &'a DemoArgs,
    say: Narrator,
    /// Bytes of one capacity unit.
    unit: u64,
    /// The master's gRPC URL.
    url: String,
    /// Daemons' process ids by name.
    pids: BTreeMap<String, u32>,
}

/// Plays the demo on `cluster`; sets `running` once the cluster is
/// balanced and left running for the operator, and then only returns if a
/// daemon dies.
pub async fn play(
    cluster: &mut Cluster,
    args: &DemoArgs,
    common: Common<'_>,
    say: Narrator,
    running: &Cell<bool>,
) -> Result<(), Error> {
    let specs = data::skewed(args.chunks, args.chunk_size);
    let unit = data::unit_bytes(&specs, args.chunk_size);
    let (mut stage, grpc, http) = start(cluster, args, say, unit).await?;
    let clients = Clients::new(&stage.url, common.token, common.timeout, None)?;
    let master = clients.master().await?;
    wait_alive(&master, 4).await?;
    let (stored, before) = fill(&stage, &clients, &master, &specs).await?;
    add_fifth(&mut stage, &master).await?;
    let (rebalance, after, threshold_pct) = rebalance_live(&stage, &master).await?;
    let mut summary = DemoJson {
        master: stage.url.clone(),
        http: http.map(|h| h.to_string()),
        pids: std::mem::take(&mut stage.pids),
        chunks: stored.len(),
        bytes: stored.iter().map(|c| c.size).sum(),
        before,
        after,
        threshold_pct,
        rebalance,
        verified_chunks: None,
    };
    if args.exit_when_balanced {
        let v = verify_all(&stage, &clients, &master, &stored).await?;
        summary.verified_chunks = Some(v);
        return print_json(common, &summary);
    }
    print_json(common, &summary)?;
    say.line(&show::poke_intro(stage.cluster.dir()))?;
    say.text(&show::poke(grpc, http, &show::keelctl_command()))?;
    running.set(true);
    stage.cluster.watch().await
}

/// Starts the master and the first four chunk servers.
async fn start<'a>(
    cluster: &'a mut Cluster,
    args: &'a DemoArgs,
    say: Narrator,
    unit: u64,
) -> Result<(Stage<'a>, SocketAddr, Option<SocketAddr>), Error> {
    say.line(&format!(
        "keel demo: a master and four chunk servers on this machine (data and logs in {})",
        cluster.dir().display()
    ))?;
    let mut flags: Vec<String> = MASTER_FLAGS.iter().map(|s| s.to_string()).collect();
    flags.extend(["--threshold-pct".into(), args.threshold_pct.to_string()]);
    let m = cluster
        .start_master(&args.master_listen, &args.http_listen, &flags)
        .await?;
    let (grpc, http, pid) = (m.addr, m.http, m.pid);
    let http_note = http.map(|h| format!("http {h}")).unwrap_or_default();
    say.text(&format!(
        "{}\n",
        daemon_line("master", pid, grpc, &http_note)
    ))?;
    let mut stage = Stage {
        cluster,
        args,
        say,
        unit,
        url: format!("http://{grpc}"),
        pids: BTreeMap::from([("master".to_owned(), pid)]),
    };
    for (id, units) in &CAPACITY_UNITS[..4] {
        start_server(&mut stage, id, units * unit).await?;
    }
    Ok((stage, grpc, http))
}

/// Pauses the balancer and writes the skewed set; shows the before table.
async fn fill(
    stage: &Stage<'_>,
    clients: &Clients,
    master: &Master,
    specs: &[data::Spec],
) -> Result<(Vec<data::Stored>, Vec<ServerJson>), Error> {
    let (say, args) = (stage.say, stage.args);
    // Hold moves back while the skewed set goes in.
    let mut client = master.client.clone();
    let pause = client.rebalance_pause(RebalancePauseRequest {});
    master.call("rebalance pause", pause).await?;
    let total: u64 = specs.iter().map(|s| s.size).sum();
    let light = specs.iter().filter(|s| s.on[0] == "cs3").count();
    say.line(&format!(
        "\nbalancer paused; writing {} chunks of {} to {} ({} with {REPLICATION} replicas each): {} pinned to cs1+cs2, {light} to cs3+cs4",
        specs.len(),
        output::size(args.chunk_size / 2),
        output::size(args.chunk_size),
        output::size(total * REPLICATION as u64),
        specs.len() - light,
    ))?;
    let (stored, took) = data::write_all(clients, stage.cluster.dir(), specs).await?;
    say.line(&format!(
        "wrote {} in {}",
        output::count(stored.len() as u64, "chunk"),
        output::age(took)
    ))?;
    let (table, before) = show::servers_table(master).await?;
    say.text(&format!("\nbefore:\n{table}"))?;
    say.line(&show::band_line(&show::check(master).await?))?;
    Ok((stored, before))
}

/// Starts the empty fifth server and shows the band it makes.
async fn add_fifth(stage: &mut Stage<'_>, master: &Master) -> Result<(), Error> {
    let (id, units) = CAPACITY_UNITS[4];
    let capacity = units * stage.unit;
    stage.say.line(&format!(
        "\nadding {id}, an empty chunk server of {}:",
        output::size(capacity)
    ))?;
    start_server(stage, id, capacity).await?;
    wait_alive(master, CAPACITY_UNITS.len()).await?;
    let check = show::check(master).await?;
    stage
        .say
        .text(&format!("\n{}", check::render_check(&check)))
}

/// Resumes the balancer, follows it to the end, shows the after table;
/// returns the summary, the servers and the threshold.
async fn rebalance_live(
    stage: &Stage<'_>,
    master: &Master,
) -> Result<(run::WaitJson, Vec<ServerJson>, f64), Error> {
    let say = stage.say;
    say.line(&format!(
        "\nresuming the balancer: it plans every 2s and each server moves chunks at up to {}/s",
        output::size(stage.args.migrate_bandwidth)
    ))?;
    let (end, elapsed, base) = rebalance(master, stage.args.balance_timeout).await?;
    let waited = run::summary(&base, &end, elapsed);
    say.text(&run::render_summary(&waited))?;
    let (table, after) = show::servers_table(master).await?;
    say.text(&format!("\nafter:\n{table}"))?;
    let last = show::check(master).await?;
    let balanced = show::balanced_line(&last).ok_or_else(|| DemoError::NotBalanced {
        after: elapsed,
        verdict: show::band_line(&last),
    })?;
    say.line(&balanced)?;
    Ok((waited, after, last.threshold_pct))
}

/// Reads every chunk back; returns how many.
async fn verify_all(
    stage: &Stage<'_>,
    clients: &Clients,
    master: &Master,
    stored: &[data::Stored],
) -> Result<usize, Error> {
    let started = Instant::now();
    let v = verify::chunks(clients, master, stage.cluster.dir(), stored).await?;
    stage.say.line(&format!(
        "verified {} ({}) in {}: each read back from a replica with the size and CRC32C it was written with, each on {REPLICATION} live servers",
        output::count(v.chunks as u64, "chunk"),
        output::size(v.bytes),
        output::age(started.elapsed()),
    ))?;
    Ok(v.chunks)
}

fn print_json(common: Common<'_>, summary: &DemoJson) -> Result<(), Error> {
    if common.json {
        output::print_json(summary)
    } else {
        Ok(())
    }
}

/// Starts one chunk server and says so.
async fn start_server(stage: &mut Stage<'_>, id: &str, capacity: u64) -> Result<(), Error> {
    let flags = [
        "--capacity".to_owned(),
        capacity.to_string(),
        "--heartbeat-interval".to_owned(),
        HEARTBEAT.to_owned(),
        "--migrate-bandwidth".to_owned(),
        stage.args.migrate_bandwidth.to_string(),
    ];
    let d = stage
        .cluster
        .start_chunkserver(id, &stage.url, &flags)
        .await?;
    let line = daemon_line(
        id,
        d.pid,
        d.addr,
        &format!("capacity {}", output::size(capacity)),
    );
    stage.pids.insert(id.to_owned(), d.pid);
    // Aligned with the master's line above: a table row, not a sentence.
    stage.say.text(&format!("{line}\n"))
}

/// Waits until the master lists `n` alive chunk servers.
async fn wait_alive(master: &Master, n: usize) -> Result<(), Error> {
    let started = Instant::now();
    loop {
        let resp = master
            .call(
                "list servers",
                master.client.clone().list_servers(ListServersRequest {}),
            )
            .await?;
        let alive = resp
            .servers
            .iter()
            .filter(|s| s.state == ServerState::Alive as i32)
            .count();
        if alive >= n {
            return Ok(());
        }
        if started.elapsed() >= REGISTER_TIMEOUT {
            return Err(DemoError::NotRegistered {
                alive,
                want: n,
                after: REGISTER_TIMEOUT,
            }
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resumes the balancer and follows its queue until the cluster is
/// balanced and no move is pending or running; returns the last status,
/// the time taken, and the status it started from.
async fn rebalance(
    master: &Master,
    limit: Duration,
) -> Result<(RebalanceStatusResponse, Duration, RebalanceStatusResponse), Error> {
    let base = queue::fetch(master).await?;
    master
        .call(
            "rebalance resume",
            master
                .client
                .clone()
                .rebalance_resume(RebalanceResumeRequest {}),
        )
        .await?;
    let done = |s: &RebalanceStatusResponse| s.balanced && s.pending == 0 && s.running == 0;
    match run::follow_until(master, &base, POLL, Some(limit), done).await {
        Ok((end, elapsed)) => Ok((end, elapsed, base)),
        Err(Error::WaitTimedOut { after }) => {
            let verdict = show::band_line(&show::check(master).await?);
            Err(DemoError::NotBalanced { after, verdict }.into())
        }
        Err(e) => Err(e),
    }
}
