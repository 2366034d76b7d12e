//! A chunk server knows its read load: a real master and chunk server, a
//! chunk written and read 50 times by a client, then as often by a peer's
//! migration reads. The chunk server's `/metrics` shows the client reads as
//! a decayed rate (about 50 reads over a one-minute time constant), the
//! bytes sent beside it and a read p99; the migration reads add nothing.
//! What the master makes of the heartbeats is tested on the master's side.

use anyhow::{Context, Result};
use keel_tests::chunks::{pattern, read, write};
use keel_tests::cs::read_raw;
use keel_tests::master::{http_get, metric};
use keel_tests::{Cluster, CsOpts};

const SIZE: usize = 100_000;
const READS: usize = 50;

/// The read-load gauges of the chunk server at `addr`: reads/s, bytes/s, p99 s.
async fn load(addr: std::net::SocketAddr) -> Result<(f64, f64, f64)> {
    let (code, body) = http_get(addr, "/metrics").await?;
    anyhow::ensure!(code == 200, "/metrics: HTTP {code}");
    let get = |name| metric(&body, name).with_context(|| format!("{name} missing:\n{body}"));
    Ok((
        get("keel_chunkserver_client_reads_per_second")?,
        get("keel_chunkserver_client_read_bytes_per_second")?,
        get("keel_chunkserver_client_read_p99_seconds")?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reads_show_as_a_decayed_rate_on_the_chunk_servers_metrics() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    let http = CsOpts {
        extra: vec!["--http-listen".into(), "127.0.0.1:0".into()],
        ..CsOpts::default()
    };
    c.add_chunkserver("cs1", http)?;
    c.wait_alive(1).await?;
    let url = c.cs("cs1").url();
    let addr = c.cs("cs1").http_addr.context("cs1's http address")?;
    let data = pattern(96, SIZE);
    write(&url, "hot", &data, 1).await?;

    let (reads, bytes, p99) = load(addr).await?;
    anyhow::ensure!((reads, bytes, p99) == (0.0, 0.0, 0.0), "before any read");

    for _ in 0..READS {
        anyhow::ensure!(read(&url, "hot").await? == data, "read back other bytes");
    }
    let (reads, bytes, p99) = load(addr).await?;
    // 50 reads / 60 s, less what decayed while they ran (seconds at most).
    let full = READS as f64 / 60.0;
    anyhow::ensure!(
        reads > 0.9 * full && reads <= full,
        "reads/s {reads}, want about {full}"
    );
    let per_read = bytes / reads;
    anyhow::ensure!(
        (per_read - SIZE as f64).abs() < 0.05 * SIZE as f64,
        "bytes/s {bytes} over reads/s {reads} is {per_read}, want about {SIZE}"
    );
    anyhow::ensure!(p99 > 0.0 && p99 < 10.0, "p99 {p99} s");

    for _ in 0..READS {
        let r = read_raw(&url, "hot", true).await?;
        anyhow::ensure!(r.error.is_none() && r.data == data, "migration read failed");
    }
    // Only decay since: the migration reads are not a client's.
    let (after, _, _) = load(addr).await?;
    anyhow::ensure!(
        after <= reads,
        "migration reads counted: {reads} -> {after}"
    );
    Ok(())
}
