//! A fresh cluster for one design, laid out as seed 004's worked example:
//! node 1 (`cs1`) near 95 % and holding the hot set, the others near 40 %,
//! every chunk at factor 1, written straight to the chunk servers. Beside
//! it, an evenly spread copy of the hot set (`even-…`), which the baseline
//! phase reads instead of the hot set.

use std::time::Duration;

use anyhow::{Context, Result};
use keel_tests::bench::{Fresh, sibling_bin, strings};
use keel_tests::faults::Rng;
use keel_tests::load::{self, Chunk};
use keel_tests::{Cluster, Daemon};

use crate::Opts;

/// The hot node, seed 004's node 1.
pub const HOT_NODE: &str = "cs1";

/// What the readers read: ranked chunk sets of one popularity.
pub struct ReadSets {
    /// The hot set on node 1, then every other chunk, most popular first.
    pub skewed: Vec<Chunk>,
    /// The same ranks with the hot set replaced by its evenly spread copy.
    pub even: Vec<Chunk>,
}

/// Server ids `cs1..csN`.
pub fn ids(opts: &Opts) -> Vec<String> {
    (1..=opts.servers).map(|i| format!("cs{i}")).collect()
}

/// Starts the master with `master_flags` and the chunk servers, and
/// preloads the layout; returns the cluster and what to read.
pub async fn start(opts: &Opts, name: &str, master_flags: &[String]) -> Result<(Fresh, ReadSets)> {
    let mut fresh = Fresh::new("keel-traffic-bench-", &opts.dir)
        .with_context(|| format!("creating a temp dir in {}", opts.dir.display()))?;
    let c = &mut fresh.0;
    let mut args = strings(&["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"]);
    // No background pass: the bench runs the one pass it measures.
    args.extend(strings(&["--safe-mode", "0s", "--balance-interval", "0"]));
    args.extend_from_slice(master_flags);
    let log = c.dir.path().join("master.log");
    c.master = Some(Daemon::start(
        "master",
        sibling_bin("keel-master")?,
        args,
        vec![],
        log,
    )?);
    for id in ids(opts) {
        add_server(c, &id, opts)?;
    }
    c.wait_alive(opts.servers).await?;
    let (layout, sets) = layout(c, opts);
    let total: u64 = layout.iter().map(|(k, _)| k.len as u64).sum();
    eprintln!("{name}: preloading {} MiB", total >> 20);
    load::preload(layout).await?;
    keel_tests::master::wait_used(&c.master_url(), total, Duration::from_secs(120)).await?;
    Ok((fresh, sets))
}

/// Starts chunk server `id` with a small capacity, quick heartbeats and
/// `--cs-threads` runtime threads.
fn add_server(c: &mut Cluster, id: &str, opts: &Opts) -> Result<()> {
    let data = c.dir.path().join(format!("data-{id}"));
    let mut args = strings(&["--id", id, "--listen", "127.0.0.1:0", "--master"]);
    args.push(c.master_url());
    args.extend(["--data-dir".into(), data.display().to_string()]);
    args.extend(["--capacity".into(), opts.capacity.to_string()]);
    args.extend(strings(&["--heartbeat-interval", "500ms"]));
    // A node's CPU: one runtime thread each by default, so a node that
    // serves most reads queues them while the others idle, as a real
    // machine would; without it one process could take every core.
    let envs = match opts.cs_threads {
        0 => vec![],
        n => vec![("TOKIO_WORKER_THREADS".to_owned(), n.to_string())],
    };
    let log = c.dir.path().join(format!("{id}.log"));
    let d = Daemon::start(id, sibling_bin("keel-chunkserver")?, args, envs, log)?;
    c.chunkservers.insert(id.to_owned(), d);
    Ok(())
}

/// Chunks of `--chunk` bytes: the hot set and cold data to `--hot-fill` on
/// node 1, cold data to `--fill` on the others, and the even copy of the
/// hot set round-robin over every server (inside those fills). The ranks
/// put the hot set first and the cold chunks after it in a seeded order.
fn layout(c: &Cluster, opts: &Opts) -> (Vec<(Chunk, Vec<String>)>, ReadSets) {
    let mut rng = Rng::new(opts.seed);
    let per_server = (opts.capacity / opts.chunk) as usize;
    let url = |id: &str| c.chunkservers[id].url();
    let servers = ids(opts);
    let mut layout = vec![];
    let (mut hot, mut even, mut cold) = (vec![], vec![], vec![]);
    for i in 0..opts.hot {
        let hot_chunk = Chunk::new(
            &format!("hot-{i:04}"),
            rng.next_u64(),
            opts.chunk as usize,
            1,
        );
        let copy = Chunk::new(
            &format!("even-{i:04}"),
            rng.next_u64(),
            opts.chunk as usize,
            1,
        );
        layout.push((hot_chunk.clone(), vec![url(HOT_NODE)]));
        layout.push((copy.clone(), vec![url(&servers[i % servers.len()])]));
        hot.push(hot_chunk);
        even.push(copy);
    }
    for (no, id) in servers.iter().enumerate() {
        let fill = if id == HOT_NODE {
            opts.hot_fill
        } else {
            opts.fill
        };
        let want = (per_server as f64 * fill / 100.0).round() as usize;
        let held = layout.iter().filter(|(_, at)| at[0] == url(id)).count();
        for i in held..want {
            let k = Chunk::new(
                &format!("cold-{no}-{i:04}"),
                rng.next_u64(),
                opts.chunk as usize,
                1,
            );
            layout.push((k.clone(), vec![url(id)]));
            cold.push(k);
        }
    }
    // A seeded shuffle of the cold ranks, so no server's cold chunks are
    // all warmer than another's.
    for i in (1..cold.len()).rev() {
        cold.swap(i, rng.range(0, i as u64 + 1) as usize);
    }
    let skewed = hot.into_iter().chain(cold.iter().cloned()).collect();
    let even = even.into_iter().chain(cold).collect();
    (layout, ReadSets { skewed, even })
}
