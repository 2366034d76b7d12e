//! A cluster whose every daemon is reached through its own [`Relay`], so a
//! test can partition any two of them and leave the rest connected.
//!
//! Chunk servers know the master as `--master <master's relay>` and advertise
//! `--advertise <their relay>`; the master hands that address to the peers
//! that copy from them. A test's own clients connect straight to the
//! daemons' real addresses and are never cut.

use std::collections::BTreeMap;

use anyhow::{Context, Result};

use super::Relay;
use crate::{Cluster, CsOpts};

/// The relays of a [`Cluster`].
#[derive(Debug)]
pub struct Net {
    /// In front of the master.
    pub master: Relay,
    /// In front of each chunk server, by id.
    pub chunkservers: BTreeMap<String, Relay>,
}

impl Net {
    /// Starts the master of `cluster` with `extra` flags behind a relay.
    pub async fn start_master(cluster: &mut Cluster, extra: &[&str]) -> Result<Self> {
        let relay = Relay::start().await?;
        let addr = cluster.start_master(extra)?.addr;
        relay.forward_to(addr);
        Ok(Net {
            master: relay,
            chunkservers: BTreeMap::new(),
        })
    }

    /// Starts chunk server `id` behind a relay, talking to the master through
    /// the master's relay.
    pub async fn add_chunkserver(
        &mut self,
        cluster: &mut Cluster,
        id: &str,
        mut opts: CsOpts,
    ) -> Result<()> {
        let relay = Relay::start().await?;
        opts.with_master = false;
        opts.extra.extend([
            "--master".into(),
            self.master.url(),
            "--advertise".into(),
            relay.url(),
        ]);
        let addr = cluster.add_chunkserver(id, opts)?.addr;
        relay.forward_to(addr);
        self.chunkservers.insert(id.to_owned(), relay);
        Ok(())
    }

    /// Cuts chunk server `id` off from the master, both ways; its peers still
    /// reach it and it them.
    pub fn cut_from_master(&self, cluster: &Cluster, id: &str) -> Result<()> {
        let (master, server) = pids(cluster, id)?;
        self.master.cut_from(server);
        self.relay(id)?.cut_from(master);
        Ok(())
    }

    /// Cuts chunk server `id` off from every other chunk server, both ways;
    /// the master still reaches it and it the master.
    pub fn cut_from_peers(&self, cluster: &Cluster, id: &str) -> Result<()> {
        let (_, server) = pids(cluster, id)?;
        for (other, relay) in &self.chunkservers {
            if other == id {
                continue;
            }
            let (_, peer) = pids(cluster, other)?;
            relay.cut_from(server);
            self.relay(id)?.cut_from(peer);
        }
        Ok(())
    }

    /// Cuts the master off from every chunk server.
    pub fn isolate_master(&self, cluster: &Cluster) -> Result<()> {
        for id in self.chunkservers.keys() {
            self.cut_from_master(cluster, id)?;
        }
        Ok(())
    }

    /// Ends every partition.
    pub fn heal(&self) {
        self.master.heal_all();
        for r in self.chunkservers.values() {
            r.heal_all();
        }
    }

    fn relay(&self, id: &str) -> Result<&Relay> {
        self.chunkservers
            .get(id)
            .with_context(|| format!("no relay for {id}"))
    }
}

/// Process ids of the master and of chunk server `id`.
fn pids(cluster: &Cluster, id: &str) -> Result<(u32, u32)> {
    let master = cluster
        .master
        .as_ref()
        .and_then(|m| m.pid())
        .context("the master is not running")?;
    let server = cluster
        .chunkservers
        .get(id)
        .and_then(|d| d.pid())
        .with_context(|| format!("chunk server {id} is not running"))?;
    Ok((master, server))
}
