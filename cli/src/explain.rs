//! `keelctl explain <chunk>`: one chunk's replicas, their health, the jobs
//! on it, and why it is or is not being repaired or moved.

use clap::Args;
use keel_proto::v1::{ExplainChunkRequest, ExplainChunkResponse};
use serde::Serialize;

use crate::client::Clients;
use crate::error::Error;
use crate::output::{self, Align, Table};

/// `keelctl explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Chunk id.
    pub chunk: String,
}

/// `--json` output: the response's fields in snake_case.
#[derive(Debug, Serialize, PartialEq)]
pub struct ExplainJson {
    /// Chunk id.
    pub chunk: String,
    /// `healthy`, `under-replicated`, `unavailable`, `lost` or `unknown`.
    pub status: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC32C.
    pub crc32c: u32,
    /// The factor.
    pub replication: u32,
    /// Whole replicas on live servers.
    pub whole_live: u32,
    /// Every replica or copy the master knows of.
    pub replicas: Vec<ReplicaJson>,
    /// Jobs on the chunk.
    pub jobs: Vec<JobJson>,
    /// Why, in sentences.
    pub reasons: Vec<String>,
}

/// One replica in `--json` output.
#[derive(Debug, Serialize, PartialEq)]
pub struct ReplicaJson {
    /// Server id.
    pub server: String,
    /// Rack label.
    pub rack: String,
    /// The server's state.
    pub server_state: String,
    /// `whole`, `verifying`, `corrupt`, `mismatch`, `missing` or `unreachable`.
    pub health: String,
    /// Whether it counts towards the factor.
    pub counted: bool,
}

/// One job in `--json` output.
#[derive(Debug, Serialize, PartialEq)]
pub struct JobJson {
    /// `repair`, `drain`, `balance`, `operator`, `trim` or `verify`.
    pub kind: String,
    /// Source server.
    pub from: String,
    /// Target server.
    pub to: String,
    /// `running` or `pending`.
    pub state: String,
    /// Why it waits, or what it does.
    pub detail: String,
}

impl From<ExplainChunkResponse> for ExplainJson {
    fn from(r: ExplainChunkResponse) -> Self {
        ExplainJson {
            chunk: r.chunk,
            status: r.status,
            size: r.size,
            crc32c: r.crc32c,
            replication: r.replication,
            whole_live: r.whole_live,
            replicas: r
                .replicas
                .into_iter()
                .map(|x| ReplicaJson {
                    server: x.server,
                    rack: x.rack,
                    server_state: x.server_state,
                    health: x.health,
                    counted: x.counted,
                })
                .collect(),
            jobs: r
                .jobs
                .into_iter()
                .map(|j| JobJson {
                    kind: j.kind,
                    from: j.from,
                    to: j.to,
                    state: j.state,
                    detail: j.detail,
                })
                .collect(),
            reasons: r.reasons,
        }
    }
}

/// Runs `keelctl explain`.
pub async fn run(clients: &Clients, chunk: &str, json: bool) -> Result<(), Error> {
    keel_proto::chunk_id::validate(chunk)?;
    let master = clients.master().await?;
    let resp = master
        .call(
            "explain chunk",
            master.client.clone().explain_chunk(ExplainChunkRequest {
                chunk: chunk.to_owned(),
            }),
        )
        .await?;
    let e = ExplainJson::from(resp);
    if json {
        output::print_json(&e)
    } else {
        output::print_stdout(&render(&e))
    }
}

/// The human view.
pub fn render(e: &ExplainJson) -> String {
    let mut out = format!(
        "chunk {}: {} ({} of {} whole replicas on live servers, {}, crc32c {:#010x})\n",
        e.chunk,
        e.status,
        e.whole_live,
        e.replication,
        output::size(e.size),
        e.crc32c
    );
    if !e.replicas.is_empty() {
        let mut t = Table::new(&[
            ("SERVER", Align::Left),
            ("RACK", Align::Left),
            ("SERVER STATE", Align::Left),
            ("REPLICA", Align::Left),
            ("COUNTED", Align::Left),
        ]);
        for r in &e.replicas {
            let rack = if r.rack.is_empty() { "-" } else { &r.rack };
            t.row(vec![
                r.server.clone(),
                rack.to_owned(),
                r.server_state.clone(),
                r.health.clone(),
                output::yes_no(r.counted).to_owned(),
            ]);
        }
        out.push('\n');
        out.push_str(&t.render());
    }
    if !e.jobs.is_empty() {
        out.push_str("\njobs:\n");
        for j in &e.jobs {
            let route = match (j.from.is_empty(), j.to.is_empty()) {
                (false, false) => format!(" {} -> {}", j.from, j.to),
                (false, true) => format!(" on {}", j.from),
                _ => String::new(),
            };
            let detail = if j.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", j.detail)
            };
            out.push_str(&format!("  {} {}{route}{detail}\n", j.state, j.kind));
        }
    }
    out.push_str("\nwhy:\n");
    for r in &e.reasons {
        out.push_str(&format!("  - {r}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_replicas_jobs_and_reasons() {
        let e = ExplainJson {
            chunk: "c1".into(),
            status: "under-replicated".into(),
            size: 1 << 20,
            crc32c: 7,
            replication: 2,
            whole_live: 1,
            replicas: vec![ReplicaJson {
                server: "cs1".into(),
                rack: String::new(),
                server_state: "alive".into(),
                health: "whole".into(),
                counted: true,
            }],
            jobs: vec![JobJson {
                kind: "repair".into(),
                from: "cs1".into(),
                to: "cs2".into(),
                state: "running".into(),
                detail: String::new(),
            }],
            reasons: vec!["1 of 2 whole replicas are on live servers".into()],
        };
        let text = render(&e);
        assert!(
            text.starts_with("chunk c1: under-replicated (1 of 2"),
            "{text}"
        );
        assert!(text.contains("running repair cs1 -> cs2"), "{text}");
        assert!(text.contains("  - 1 of 2 whole replicas"), "{text}");
    }
}
