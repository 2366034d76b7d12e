//! A zoo of misbehaving clients against real daemons, each case on its own
//! cluster: stalled reads, stalled writes, a corruption-report storm, partial
//! giant messages on every door of both daemons (open and with tokens), and a
//! connection flood; and a client asking for a migration read. For each case the attacked daemon's file descriptors
//! (`/proc/PID/fd`), resident memory (`VmRSS`) and threads are sampled
//! before, during (the peak) and after, and must stay under the case's stated
//! bounds; a well-behaved client meanwhile keeps its p99 within twice its
//! idle p99 (with a floor, for a loaded 2-core machine). The figures are
//! printed (`--nocapture`) for `docs/security.md`.
//!
//! Cases run one at a time (a lock), so one case's load does not count
//! against another's client.

mod attack;
mod cases;
mod probe;

use std::time::Duration;

use anyhow::Result;
use keel_proto::v1::LocateChunkRequest;
use keel_tests::chunks::pattern;
use keel_tests::{Cluster, CsOpts, wait_until};

/// The cluster token of the clusters started with tokens.
pub const CLUSTER: &str = "zoo-cluster-secret";
/// Their client token: what an attacker with a client's credentials holds.
pub const CLIENT: &str = "zoo-client-secret";

/// `--stream-idle-timeout` of every chunk server here.
pub const IDLE: Duration = Duration::from_secs(3);
/// `--max-reads` of every chunk server here (a quarter per connection).
pub const MAX_READS: usize = 32;

/// The chunk the well-behaved client reads.
pub const GOOD_CHUNK: &str = "good";
/// Its size: small, so its latency is the server's, not the copy's.
pub const GOOD_SIZE: usize = 64 * 1024;

/// One case at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A master and one chunk server (`cs1`, with `/metrics`), with tokens when
/// `tokens`, holding [`GOOD_CHUNK`].
pub async fn cluster(tokens: bool, cs_extra: &[&str]) -> Result<Cluster> {
    let mut c = Cluster::new()?;
    if tokens {
        c.envs = vec![
            ("KEEL_AUTH_TOKEN".into(), CLUSTER.into()),
            ("KEEL_CLIENT_TOKEN".into(), CLIENT.into()),
        ];
    }
    c.start_master(&[])?;
    let mut extra: Vec<String> = [
        "--http-listen",
        "127.0.0.1:0",
        "--stream-idle-timeout",
        "3s",
        "--max-reads",
        "32",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    extra.extend(cs_extra.iter().map(|s| s.to_string()));
    c.add_chunkserver(
        "cs1",
        CsOpts {
            capacity: "4GiB".into(),
            extra,
            ..CsOpts::default()
        },
    )?;
    let token = tokens.then_some(CLUSTER);
    attack::write(
        &c.cs("cs1").url(),
        token,
        GOOD_CHUNK,
        &pattern(7, GOOD_SIZE),
    )
    .await?;
    let m = attack::master(&c.master_url(), token).await?;
    wait_until(
        "the master knows the chunk",
        Duration::from_secs(30),
        || {
            let mut m = m.clone();
            async move {
                m.locate_chunk(LocateChunkRequest {
                    chunk: GOOD_CHUNK.into(),
                    rack: Default::default(),
                })
                .await
                .is_ok_and(|r| !r.into_inner().replicas.is_empty())
            }
        },
    )
    .await?;
    Ok(c)
}

/// Runs `case` alone.
async fn serial<F, Fut>(case: F) -> Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let _one = SERIAL.lock().await;
    case().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reads_are_bounded_and_reset() -> Result<()> {
    serial(cases::stalled_reads).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_writes_are_bounded_and_released() -> Result<()> {
    serial(cases::stalled_writes).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headerless_writes_are_bounded() -> Result<()> {
    serial(cases::headerless_writes).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_storm_costs_one_verification() -> Result<()> {
    serial(cases::report_storm).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_cluster_token_may_read_for_a_migration() -> Result<()> {
    serial(cases::migration_reads).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_giant_messages_are_refused_at_every_door_of_an_open_cluster() -> Result<()> {
    serial(|| cases::giant_messages(false)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_giant_messages_are_refused_at_every_door_with_tokens() -> Result<()> {
    serial(|| cases::giant_messages(true)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_speak_are_closed() -> Result<()> {
    serial(cases::silent_connections).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_is_capped() -> Result<()> {
    serial(cases::connection_flood).await
}
