//! `keel-repair-bench`: time to full redundancy after a chunk server is lost
//! for good, and time to drain one, on real processes at the default
//! migration bandwidth (64 MiB/s per server, in and out together).
//!
//! A master and `--servers` chunk servers start in a temp dir. `--data`
//! bytes of chunks (factor 2) are written straight to disk, every chunk with
//! one replica on cs1 and the other spread round-robin over the rest. Then
//! cs1 is SIGKILLed; the master (`--heartbeat-timeout 2s`,
//! `--re-replicate-after 1s`) declares it dead and re-creates every replica
//! it held. Measured: from the first repair copy to no chunk below its
//! factor, against the ideal `bytes ÷ (Σ bandwidth of the survivors ÷ 2)` —
//! each copied byte is counted once by its source's bucket and once by its
//! target's. Then cs2 is drained the same way, to `drained`: against the
//! same ideal over the servers that receive, and against the bound that
//! also counts the draining server's bucket (it may be a drain copy's source).
//!
//! Prints Markdown on stdout, progress on stderr. Run it through
//! `scripts/bench-repair.sh`, which builds the release binaries first.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keel_proto::units::parse_size;
use keel_proto::v1::{
    DrainServerRequest, ListServersRequest, RebalancePauseRequest, RebalanceStatusRequest,
    RebalanceStatusResponse, ServerState,
};
use keel_tests::bench::{Fresh, strings};
use keel_tests::chunks::{pattern, write};
use keel_tests::{Cluster, Daemon, master_client};

const USAGE: &str = "\
usage: keel-repair-bench [options]

  --servers N       chunk servers, at least 4 (default 6)
  --data SIZE       bytes held by the server that is lost (default 1GiB)
  --chunk SIZE      chunk size (default 16MiB)
  --bandwidth SIZE  each server's --migrate-bandwidth (default 64MiB, the chunk server's default)
  --moves N|auto    the master's --max-concurrent-moves (default auto, its default)
  --per-server N    the master's --max-moves-per-server (default 4, its default)
  --dir DIR         where the temp dir goes (default: $TMPDIR or /tmp); needs about 3 x --data
";

/// What to run.
#[derive(Debug, Clone)]
struct Opts {
    servers: usize,
    data: u64,
    chunk: u64,
    bandwidth: u64,
    moves: String,
    per_server: u32,
    dir: std::path::PathBuf,
}

impl Opts {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Opts>> {
        let mut o = Opts {
            servers: 6,
            data: 1 << 30,
            chunk: 16 << 20,
            bandwidth: 64 << 20,
            moves: "auto".into(),
            per_server: 4,
            dir: std::env::temp_dir(),
        };
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--servers" => o.servers = value()?.parse().context("--servers")?,
                "--data" => o.data = parse_size(&value()?).context("--data")?,
                "--chunk" => o.chunk = parse_size(&value()?).context("--chunk")?,
                "--bandwidth" => o.bandwidth = parse_size(&value()?).context("--bandwidth")?,
                "--moves" => o.moves = value()?,
                "--per-server" => o.per_server = value()?.parse().context("--per-server")?,
                "--dir" => o.dir = value()?.into(),
                "-h" | "--help" => return Ok(None),
                _ => bail!("unknown argument {arg:?}\n{USAGE}"),
            }
        }
        let moves_ok = o.moves == "auto" || o.moves.parse::<u32>().is_ok_and(|n| n > 0);
        let sizes_ok = o.chunk > 0 && o.data >= o.chunk && o.bandwidth > 0;
        if o.servers < 4 || !sizes_ok || !moves_ok || o.per_server == 0 {
            bail!(
                "--servers must be 4 or more, --data at least one --chunk, --bandwidth and --per-server above 0, --moves `auto` or above 0"
            );
        }
        Ok(Some(o))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let parsed = Opts::parse(std::env::args().skip(1));
    keel_tests::bench::main("keel-repair-bench", USAGE, parsed, |o| async move {
        run(&o).await
    })
    .await
}

async fn start(o: &Opts) -> Result<Fresh> {
    let mut f = Fresh::new("keel-repair-bench-", &o.dir)?;
    let c = &mut f.0;
    let mut args = strings(&[
        "--listen",
        "127.0.0.1:0",
        "--http-listen",
        "127.0.0.1:0",
        "--safe-mode",
        "0s",
        "--heartbeat-timeout",
        "2s",
        "--re-replicate-after",
        "1s",
        "--balance-interval",
        "0",
    ]);
    args.extend(["--max-concurrent-moves".into(), o.moves.clone()]);
    args.extend(["--max-moves-per-server".into(), o.per_server.to_string()]);
    let log = c.dir.path().join("master.log");
    let bin = keel_tests::bench::sibling_bin("keel-master")?;
    c.master = Some(Daemon::start("master", bin, args, vec![], log)?);
    let url = c.master_url();
    master_client(&url)
        .await?
        .rebalance_pause(RebalancePauseRequest {})
        .await?;
    let capacity = (o.data * 4).to_string();
    for i in 1..=o.servers {
        let id = format!("cs{i}");
        let data = c.dir.path().join(format!("data-{id}"));
        let mut a = strings(&["--id", &id, "--listen", "127.0.0.1:0", "--master", &url]);
        a.extend([
            "--data-dir".into(),
            data.display().to_string(),
            "--capacity".into(),
            capacity.clone(),
        ]);
        a.extend(["--migrate-bandwidth".into(), o.bandwidth.to_string()]);
        a.extend(strings(&["--heartbeat-interval", "500ms"]));
        let log = c.dir.path().join(format!("{id}.log"));
        let bin = keel_tests::bench::sibling_bin("keel-chunkserver")?;
        c.chunkservers
            .insert(id.clone(), Daemon::start(&id, bin, a, vec![], log)?);
    }
    c.wait_alive(o.servers).await?;
    Ok(f)
}

/// Every chunk on cs1 and one other server; returns the chunk count.
async fn load(c: &Cluster, o: &Opts) -> Result<usize> {
    let n = o.data.div_ceil(o.chunk) as usize;
    let started = Instant::now();
    for i in 0..n {
        let data = pattern(i as u64, o.chunk as usize);
        let other = format!("cs{}", 2 + i % (o.servers - 1));
        for s in ["cs1", other.as_str()] {
            write(&c.chunkservers[s].url(), &format!("b{i:05}"), &data, 2).await?;
        }
    }
    eprintln!(
        "wrote {n} chunks of {} MiB twice in {:.1}s",
        o.chunk >> 20,
        started.elapsed().as_secs_f64()
    );
    Ok(n)
}

/// Waits until `done` holds, polling the status; returns when `started`
/// first held (a copy of the phase seen running) and when `done` first held.
async fn time_copies(
    url: &str,
    limit: Duration,
    started: impl Fn(&RebalanceStatusResponse) -> bool,
    done: impl AsyncFn() -> bool,
) -> Result<(Instant, Instant)> {
    let mut m = master_client(url).await?;
    let deadline = Instant::now() + limit;
    let mut first = None;
    loop {
        let s = m
            .rebalance_status(RebalanceStatusRequest {})
            .await?
            .into_inner();
        if first.is_none() && started(&s) {
            first = Some(Instant::now());
        }
        if let Some(f) = first
            && done().await
        {
            return Ok((f, Instant::now()));
        }
        if Instant::now() > deadline {
            bail!("not done within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn run(o: &Opts) -> Result<()> {
    let mut f = start(o).await?;
    let url = f.0.master_url();
    let chunks = load(&f.0, o).await?;
    let lost = chunks as u64 * o.chunk;
    let survivors = (o.servers - 1) as f64;
    let ideal = lost as f64 / (survivors * o.bandwidth as f64 / 2.0);
    keel_tests::master::wait_used(&url, 2 * lost, Duration::from_secs(60)).await?;

    let killed = Instant::now();
    f.0.chunkservers.get_mut("cs1").context("cs1")?.kill9();
    let repairing = |s: &RebalanceStatusResponse| s.repairs_running > 0 || s.repairs_done > 0;
    let (first, end) = time_copies(&url, Duration::from_secs(3600), repairing, || async {
        let Ok(mut m) = master_client(&url).await else {
            return false;
        };
        let Ok(s) = m.rebalance_status(RebalanceStatusRequest {}).await else {
            return false;
        };
        let s = s.into_inner();
        s.under_replicated == 0 && s.repairs_running == 0 && s.repairs_done as usize >= chunks
    })
    .await?;
    let repair = end - first;

    // Drain cs2 (it holds its share plus what the repair put there).
    let held = {
        let mut m = master_client(&url).await?;
        let l = m.list_servers(ListServersRequest {}).await?.into_inner();
        l.servers
            .iter()
            .find(|s| s.id == "cs2")
            .map_or(0, |s| s.used_bytes)
    };
    let drain_ideal = held as f64 / ((survivors - 1.0) * o.bandwidth as f64 / 2.0);
    // A drain copy may read from the draining server too, whose bucket then
    // only sends: with every live bucket, the draining one's included, busy
    // all along, each carries 2 × held ÷ their number (the draining server
    // sending that much, the others the rest and everything received).
    let drain_bound = 2.0 * held as f64 / (survivors * o.bandwidth as f64);
    let mut m = master_client(&url).await?;
    let requested = Instant::now();
    m.drain_server(DrainServerRequest {
        server: "cs2".into(),
    })
    .await?;
    // Timed from the first drain copy seen running, as the repair is.
    let draining = |s: &RebalanceStatusResponse| s.drains_running > 0;
    let (dfirst, dend) = time_copies(&url, Duration::from_secs(3600), draining, || async {
        let Ok(mut m) = master_client(&url).await else {
            return false;
        };
        let Ok(l) = m.list_servers(ListServersRequest {}).await else {
            return false;
        };
        l.into_inner()
            .servers
            .iter()
            .any(|s| s.id == "cs2" && s.state == ServerState::Drained as i32)
    })
    .await?;
    let drain = dend - dfirst;

    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!("| what | bytes | servers copying | ideal | measured | measured ÷ ideal | rate |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| re-create a lost server's replicas | {:.0} MiB in {chunks} chunks | {} | {ideal:.1} s | {:.1} s | {:.2} | {:.0} MiB/s |",
        mib(lost),
        o.servers - 1,
        repair.as_secs_f64(),
        repair.as_secs_f64() / ideal,
        mib(lost) / repair.as_secs_f64(),
    );
    println!(
        "| drain a server | {:.0} MiB | {} | {drain_ideal:.1} s | {:.1} s | {:.2} | {:.0} MiB/s |",
        mib(held),
        o.servers - 2,
        drain.as_secs_f64(),
        drain.as_secs_f64() / drain_ideal,
        mib(held) / drain.as_secs_f64(),
    );
    println!();
    println!(
        "From the SIGKILL to full redundancy: {:.1} s (of which {:.1} s declaring the server dead and the grace period, `--heartbeat-timeout 2s`, `--re-replicate-after 1s`). \
         With HDFS's defaults a DataNode is declared dead only after 10.5 min (630 s) before re-replication starts; Keel's default `--re-replicate-after` is 5 min, and a wiped disk that comes back is repaired at once.",
        (end - killed).as_secs_f64(),
        (first - killed).as_secs_f64(),
    );
    println!();
    let to_drained = (dend - requested).as_secs_f64();
    println!(
        "From the drain request to `drained`: {to_drained:.1} s, **{:.2} ×** the ideal (the first drain copy ran {:.1} s after the request); \
         against the bound that counts the draining server's own bucket too ({drain_bound:.1} s, every one of the {} live buckets busy): **{:.2} ×**.",
        to_drained / drain_ideal,
        (dfirst - requested).as_secs_f64(),
        o.servers - 1,
        to_drained / drain_bound,
    );
    Ok(())
}
