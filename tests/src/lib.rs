//! Harness for Keel's integration tests: starts the real `keel-master` and
//! `keel-chunkserver` binaries as separate processes on loopback port 0, each
//! test in its own temp dir, and always cleans its children up.
//!
//! Daemons are started through [`keel_launch`], the launcher `keelctl demo`
//! and the benchmarks use too: each gets `--ready-file` and the harness
//! reads the addresses it bound from there. Logs are kept per daemon and
//! their tails are printed when a test panics.
//!
//! Binaries of other packages are not in `CARGO_BIN_EXE_*`: the launcher's
//! finder looks for them in `target/<profile>/` (or `KEEL_BIN_DIR`). The
//! test command builds them first (`cargo build --bins`).
//!
//! # Layout
//! - [`daemon`]: one daemon process; [`cluster`]: a master and chunk servers.
//! - [`keelctl`]: running the command line against a cluster.
//! - [`master`], [`cs`], [`chunks`]: looking at and talking to the daemons.
//! - [`faults`], [`ha`], [`certs`], [`load`]: harsher set-ups.
//! - [`readers`], [`zipf`], [`traffic`]: readers with a Zipf-like skew and
//!   the load band, for the traffic test and benchmark.
//! - [`bench`]: what the benchmark binaries share.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use keel_proto::v1::chunk_server_client::ChunkServerClient;
use keel_proto::v1::master_client::MasterClient;
use tonic::transport::Channel;

pub mod bench;
pub mod certs;
pub mod chunks;
pub mod cluster;
pub mod cs;
pub mod daemon;
pub mod faults;
pub mod ha;
pub mod keelctl;
pub mod load;
pub mod master;
pub mod readers;
pub mod traffic;
pub mod zipf;

pub use cluster::{Cluster, CsOpts};
pub use daemon::Daemon;
pub use keel_launch::tail;

/// Path of the binary `name`, with a clear panic when it was not built.
pub fn bin(name: &str) -> PathBuf {
    keel_launch::find(name).unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `cond` every 50 ms until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut cond: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connects to a master with Keel's message limits.
pub async fn master_client(url: &str) -> Result<MasterClient<Channel>> {
    let ch = Channel::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    Ok(MasterClient::new(ch)
        .max_decoding_message_size(keel_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(keel_proto::MAX_MESSAGE_BYTES))
}

/// Connects to a chunk server with Keel's message limits.
pub async fn chunkserver_client(url: &str) -> Result<ChunkServerClient<Channel>> {
    let ch = Channel::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await?;
    Ok(ChunkServerClient::new(ch)
        .max_decoding_message_size(keel_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(keel_proto::MAX_MESSAGE_BYTES))
}
