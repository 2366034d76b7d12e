//! The end of a load run: every acknowledged chunk read back from every
//! live replica the master lists.

use std::time::{Duration, Instant};

use keel_proto::v1::master_client::MasterClient;
use tonic::transport::Channel;

use super::{Chunk, locate};

/// The end state of every chunk, from [`super::Load::verify_all`].
#[derive(Debug, Clone, Default)]
pub struct Verified {
    /// Chunks checked.
    pub chunks: usize,
    /// Replicas read back whole and right.
    pub good_replicas: usize,
    /// Chunks with no replica holding the right bytes: lost writes.
    pub lost: Vec<String>,
    /// Replicas the master lists that could not be read or held wrong bytes.
    pub bad: Vec<String>,
    /// Chunks with fewer live replicas than their factor.
    pub short: Vec<String>,
}

impl Verified {
    /// Nothing lost, bad or short.
    pub fn is_clean(&self) -> bool {
        self.lost.is_empty() && self.bad.is_empty() && self.short.is_empty()
    }

    pub(super) fn add(&mut self, chunk: &Chunk, found: &Found) {
        let good = found.replicas.iter().filter(|r| r.1.is_ok()).count();
        self.good_replicas += good;
        if good == 0 && found.replicas.is_empty() {
            self.lost.push(format!("{}: {}", chunk.id, found.why));
        } else if good == 0 {
            self.lost
                .push(format!("{}: no replica read back right", chunk.id));
        }
        for (addr, r) in &found.replicas {
            if let Err(e) = r {
                self.bad.push(format!("{addr}: {e}"));
            }
        }
        if found.replicas.len() < chunk.replication as usize {
            let on: Vec<&str> = found.replicas.iter().map(|r| r.0.as_str()).collect();
            self.short.push(format!(
                "{}: {} of {} replicas ({})",
                chunk.id,
                on.len(),
                chunk.replication,
                on.join(", ")
            ));
        }
    }
}

/// What [`one`] found for one chunk.
pub(super) struct Found {
    /// Each live replica the master listed, and whether it read back right.
    replicas: Vec<(String, Result<(), String>)>,
    /// Why no replica was listed, if none was.
    why: String,
}

/// Waits until the master lists `chunk` at its factor (or `deadline`
/// passes), then reads it back from every live replica it lists.
pub(super) async fn one(mut m: MasterClient<Channel>, chunk: &Chunk, deadline: Instant) -> Found {
    let mut why = String::from("never located");
    let live = loop {
        match locate(&mut m, &chunk.id).await {
            Ok(live) if live.len() >= chunk.replication as usize => break live,
            Ok(live) if Instant::now() >= deadline => break live,
            Ok(live) => why = format!("{} live replicas listed", live.len()),
            Err(e) if Instant::now() >= deadline => {
                why = e;
                break vec![];
            }
            Err(e) => why = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut replicas = vec![];
    for addr in live {
        let got = crate::chunks::read(&addr, &chunk.id).await;
        let got = got.map_err(|e| format!("{}: {e:#}", chunk.id));
        replicas.push((addr, got.and_then(|d| chunk.check(&d))));
    }
    Found { replicas, why }
}
