//! `keelctl server drain|undrain <id>`.

use clap::{Args, Subcommand};
use keel_proto::v1::{DrainServerRequest, DrainServerResponse, UndrainServerRequest};
use serde::Serialize;

use crate::client::Clients;
use crate::error::Error;
use crate::output;

/// `keelctl server ...`.
#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Copy every chunk off a server (it takes no new data meanwhile); its
    /// state turns `drained` when it holds nothing the cluster still needs.
    /// The mark is kept by the chunk server across restarts.
    Drain(ServerArgs),
    /// Clear the drain mark: the server takes placements and moves again.
    Undrain(ServerArgs),
}

/// A chunk server named by id.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Chunk server id, e.g. `cs3`.
    pub server: String,
}

/// `--json` output.
#[derive(Debug, Serialize, PartialEq)]
pub struct DrainJson {
    /// Server id.
    pub server: String,
    /// `draining`, `drained` or `alive`.
    pub state: String,
    /// Chunks on it that still need a copy elsewhere.
    pub chunks_left: u64,
}

/// Runs `keelctl server ...`.
pub async fn run(clients: &Clients, cmd: ServerCommand, json: bool) -> Result<(), Error> {
    let master = clients.leader().await?;
    let resp: DrainServerResponse = match cmd {
        ServerCommand::Drain(a) => {
            let req = DrainServerRequest { server: a.server };
            master
                .call_changing("drain server", || {
                    let (mut c, req) = (master.client.clone(), req.clone());
                    async move { c.drain_server(req).await }
                })
                .await?
        }
        ServerCommand::Undrain(a) => {
            let req = UndrainServerRequest { server: a.server };
            master
                .call_changing("undrain server", || {
                    let (mut c, req) = (master.client.clone(), req.clone());
                    async move { c.undrain_server(req).await }
                })
                .await?
        }
    };
    if json {
        return output::print_json(&DrainJson {
            server: resp.server,
            state: resp.state,
            chunks_left: resp.chunks_left,
        });
    }
    output::print_prose(&sentence(&resp))
}

/// What the operator reads.
fn sentence(r: &DrainServerResponse) -> String {
    match r.state.as_str() {
        "drained" => format!(
            "{} is drained: it holds nothing the cluster still needs and can be stopped\n",
            r.server
        ),
        "draining" => format!(
            "{} is draining: {} to copy elsewhere; `keelctl servers` shows `drained` when done\n",
            r.server,
            output::count(r.chunks_left, "chunk")
        ),
        _ => format!(
            "{} is {}: it takes placements and moves again\n",
            r.server, r.state
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_say_what_happens_next() {
        let mut r = DrainServerResponse {
            server: "cs3".into(),
            state: "draining".into(),
            chunks_left: 12,
        };
        assert!(sentence(&r).contains("12 chunks to copy elsewhere"));
        r.state = "drained".into();
        assert!(sentence(&r).contains("can be stopped"));
        r.state = "alive".into();
        assert!(sentence(&r).contains("takes placements"));
    }
}
