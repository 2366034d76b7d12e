//! Traffic evens out too (issue 23), on real processes: a master and four
//! chunk servers, every chunk at factor 1. `cs1` holds ten hot chunks and
//! cold data; eight paced readers read the ten hot chunks and a dozen warm
//! ones on the other servers with a Zipf-like skew, so `cs1` serves about
//! two thirds of the reads. Once the master sees `cs1` hot (its
//! `ListServers` reads/s), one pass runs as `keelctl rebalance run --wait`
//! makes it, the readers keep reading, and then:
//!
//! - bytes already even (every server at 25 %), default
//!   `--load-threshold-pct` (25): the plan moves for load only, and `cs1`'s
//!   reads/s end inside the load band;
//! - seed 004's shape (`cs1` at 75 %, over its capacity band; the others at
//!   25 %), default threshold: the plan carries `load` moves, `cs1` is no
//!   longer hot, and capacity is inside its band;
//! - the same shape with `--load-threshold-pct 0` (bytes only, the old
//!   behaviour): the plan moves only for capacity, cold chunks first, and
//!   `cs1` stays hot although its bytes are balanced. This one shows the
//!   test can fail.
//!
//! Reads per server are the readers' own counts of the reads each server
//! served after the pass (every chunk has one size, so they are the bytes
//! each server sent, as the kernel would count them): the master's rates
//! are decayed averages that take a minute to forget the hot past.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use keel_balancer::traffic::{DEFAULT_LOAD_THRESHOLD_PCT, LoadPosition};
use keel_tests::faults::Rng;
use keel_tests::load::{self, Chunk};
use keel_tests::readers::{Phase, ReaderOpts, Readers};
use keel_tests::traffic::{self, Pass};
use keel_tests::{Cluster, CsOpts, master_client};

/// Every chunk's size: small, so the readers reach a rate well above the
/// load band's noise floor for little CPU.
const CHUNK: usize = 64 << 10;
/// Capacity of every chunk server: 256 chunks.
const CAPACITY: &str = "16MiB";
/// Chunks on each server: seed 004's shape, cs1 at 75 %, the others at
/// 25 % (average 37.5 %, so cs1 is over the default ±20 point band).
const SEED_004: Layout = [("cs1", 192), ("cs2", 64), ("cs3", 64), ("cs4", 64)];
/// Every server at 25 %: capacity is balanced, only load is not.
const EVEN_BYTES: Layout = [("cs1", 64), ("cs2", 64), ("cs3", 64), ("cs4", 64)];
/// Chunks held by each server.
type Layout = [(&'static str, usize); 4];
/// The hot chunks, all on cs1, read most.
const HOT: usize = 10;
/// Warm chunks read on each other server, after the hot ones in rank.
const WARM_PER_SERVER: usize = 4;
/// Reads after the pass that are not counted: readers still holding an old
/// location learn the new one within their cache's lifetime.
const SETTLE: Duration = Duration::from_secs(3);
/// The stretch whose reads are counted after the pass.
const WINDOW: Duration = Duration::from_secs(8);

/// A cluster laid out as `layout`, with the readers' ranked chunks.
async fn start(layout_of: Layout, master_flags: &[&str]) -> Result<(Cluster, Vec<Chunk>)> {
    let mut c = Cluster::new()?;
    c.start_master(master_flags)?;
    let opts = CsOpts {
        capacity: CAPACITY.into(),
        ..CsOpts::default()
    };
    for (id, _) in layout_of {
        c.add_chunkserver(id, opts.clone())?;
    }
    c.wait_alive(layout_of.len()).await?;
    let mut rng = Rng::new(98);
    let (mut layout, mut hot, mut warm) = (vec![], vec![], vec![]);
    for (server, n) in layout_of {
        for i in 0..n {
            let chunk = Chunk::new(&format!("{server}-{i:03}"), rng.next_u64(), CHUNK, 1);
            if server == "cs1" && i < HOT {
                hot.push(chunk.clone());
            } else if server != "cs1" && i < WARM_PER_SERVER {
                warm.push(chunk.clone());
            }
            layout.push((chunk, vec![c.chunkservers[server].url()]));
        }
    }
    let total = (layout.len() * CHUNK) as u64;
    load::preload(layout).await?;
    keel_tests::master::wait_used(&c.master_url(), total, Duration::from_secs(30)).await?;
    hot.extend(warm);
    Ok((c, hot))
}

/// What one scenario saw.
struct Outcome {
    pass: Pass,
    /// Readers' reads/s per server before the pass and after it.
    before: BTreeMap<String, f64>,
    after: BTreeMap<String, f64>,
    /// Whether capacity was inside its band after the pass.
    capacity_balanced: bool,
}

/// Reads, waits for the master to see cs1 hot, runs one pass, reads on.
async fn scenario(layout: Layout, master_flags: &[&str]) -> Result<Outcome> {
    let (c, ranked) = start(layout, master_flags).await?;
    let url = c.master_url();
    let opts = ReaderOpts {
        readers: 8,
        ops_per_sec: 25.0,
        exponent: 1.0,
        offset: 4.0,
        seed: 98,
        ..ReaderOpts::default()
    };
    let mut readers = Readers::start(&url, opts, ranked, Phase::Before)?;
    let mut m = master_client(&url).await?;
    let since = Instant::now();
    let seen = traffic::wait_hot(
        &mut m,
        "cs1",
        DEFAULT_LOAD_THRESHOLD_PCT,
        Duration::from_secs(40),
    )
    .await?;
    eprintln!(
        "the master saw cs1 hot after {:?}: {seen:?}",
        since.elapsed()
    );
    let servers: Vec<String> = layout.iter().map(|(s, _)| s.to_string()).collect();
    let before = traffic::read_rates(&readers.reads(), &servers, since, Instant::now());

    readers.set_phase(Phase::During);
    let pass = traffic::run_pass(&mut m, Duration::from_secs(60)).await?;
    readers.set_phase(Phase::After);
    tokio::time::sleep(SETTLE).await;
    let from = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let after = traffic::read_rates(&readers.reads(), &servers, from, Instant::now());
    readers.stop().await;
    let capacity_balanced = traffic::check(&mut m).await?.balanced;

    let failures = readers.failures();
    assert!(failures.is_empty(), "failed reads: {failures:?}");
    eprintln!(
        "plan: {} moves ({} load, {} capacity), {} bytes, took {:?}\nreads/s before: {before:?}\nreads/s after: {after:?}",
        pass.plan.moves.len(),
        pass.moves_for("load"),
        pass.moves_for("capacity"),
        pass.plan.bytes,
        pass.took
    );
    Ok(Outcome {
        pass,
        before,
        after,
        capacity_balanced,
    })
}

/// Where each server's reads/s lay against the default band, before and
/// after the pass.
fn positions(o: &Outcome) -> (Positions, Positions) {
    let pct = DEFAULT_LOAD_THRESHOLD_PCT;
    (
        traffic::positions(&o.before, pct),
        traffic::positions(&o.after, pct),
    )
}

type Positions = BTreeMap<String, LoadPosition>;

/// Asserts what every shape starts from: cs1 hot before the pass, and the
/// pass moving for load. Returns the positions after it.
fn hot_before_and_moved_for_load(o: &Outcome) -> Positions {
    let (before, after) = positions(o);
    assert_eq!(
        before["cs1"],
        LoadPosition::Hot,
        "readers' counts: {:?}",
        o.before
    );
    assert!(
        o.pass.moves_for("load") > 0,
        "no load move: {:?}",
        o.pass.plan
    );
    after
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn even_bytes_hot_server_moves_for_load_only() -> Result<()> {
    let o = scenario(EVEN_BYTES, &[]).await?;
    let after = hot_before_and_moved_for_load(&o);
    assert_eq!(o.pass.moves_for("capacity"), 0, "{:?}", o.pass.plan.moves);
    assert_eq!(
        after["cs1"],
        LoadPosition::Inside,
        "cs1 not inside the load band after the pass: {:?} ({:.0} % of reads, was {:.0} %)",
        o.after,
        traffic::share_pct(&o.after, "cs1"),
        traffic::share_pct(&o.before, "cs1")
    );
    assert!(o.capacity_balanced, "capacity left its band");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_004_shape_cools_the_hot_server() -> Result<()> {
    let o = scenario(SEED_004, &[]).await?;
    let after = hot_before_and_moved_for_load(&o);
    let reasons_ok = o
        .pass
        .plan
        .moves
        .iter()
        .all(|m| m.reason == "load" || m.reason == "capacity");
    assert!(
        reasons_ok,
        "a move without a reason: {:?}",
        o.pass.plan.moves
    );
    assert_ne!(
        after["cs1"],
        LoadPosition::Hot,
        "cs1 still hot after the pass: {:?} ({:.0} % of reads, was {:.0} %)",
        o.after,
        traffic::share_pct(&o.after, "cs1"),
        traffic::share_pct(&o.before, "cs1")
    );
    assert!(o.capacity_balanced, "capacity left its band");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_only_leaves_the_hot_server_hot() -> Result<()> {
    let o = scenario(SEED_004, &["--load-threshold-pct", "0"]).await?;
    let (_, after) = positions(&o);
    assert_eq!(o.pass.moves_for("load"), 0, "{:?}", o.pass.plan.moves);
    assert!(o.pass.moves_for("capacity") > 0, "{:?}", o.pass.plan);
    assert!(o.capacity_balanced, "capacity left its band");
    assert_eq!(
        after["cs1"],
        LoadPosition::Hot,
        "cs1 cooled without load balancing: {:?}",
        o.after
    );
    Ok(())
}
