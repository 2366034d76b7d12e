//! `keelctl get`: locate a chunk, read it from the first replica that serves
//! good bytes into a temp file beside the destination, verify, rename.
//!
//! The master lists the replicas in the order to try them: live ones first,
//! the least loaded first among those, then those in the reader's rack
//! (`--rack`). That order is kept; this file only moves dead ones last.
//!
//! A replica that is unreachable, lost the chunk, or serves bytes that do not
//! match their checksum is skipped for the next one; bad bytes are reported to
//! the master. If every replica fails, the master is asked once more (the
//! chunk may have just moved) and new locations are tried.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::Args;
use keel_proto::v1::{LocateChunkRequest, LocateChunkResponse, ReportCorruptionRequest, ServerRef};
use serde::Serialize;
use tonic::Code;
use tracing::debug;

use crate::client::{Clients, Master};
use crate::error::Error;
use crate::fetch::{Attempt, Failure, fetch};
use crate::output;

/// `keelctl get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Chunk id to fetch.
    pub chunk: String,
    /// Destination file (replaced atomically once the bytes are verified).
    pub file: PathBuf,
    /// The reader's rack, as the chunk servers' `--rack`: among replicas on
    /// equally loaded servers, the master lists those in this rack first.
    #[arg(long, env = "KEEL_RACK")]
    pub rack: Option<String>,
}

/// How many times the master is asked where the chunk is.
const LOCATE_ROUNDS: usize = 2;

/// `--json` output of a successful get.
#[derive(Debug, Serialize, PartialEq)]
pub struct GetJson {
    /// Chunk id.
    pub chunk: String,
    /// Bytes written.
    pub size: u64,
    /// CRC32C of the bytes (verified).
    pub crc32c: u32,
    /// Id of the server the bytes came from.
    pub server: String,
}

/// Runs `keelctl get`.
pub async fn run(clients: &Clients, args: GetArgs, json: bool) -> Result<(), Error> {
    keel_proto::chunk_id::validate(&args.chunk)?;
    check_destination(&args.file).await?;
    let master = clients.master().await?;
    let mut tried = BTreeSet::new();
    let mut failures: Vec<Error> = Vec::new();
    let mut warned = 0;
    for round in 0..LOCATE_ROUNDS {
        let loc = match locate(&master, &args.chunk, args.rack.as_deref()).await {
            Ok(loc) => loc,
            // Asking again after failures: what failed is the better story.
            Err(_) if round > 0 => break,
            Err(e) => return Err(e),
        };
        let fresh: Vec<ServerRef> = ordered(&loc.replicas)
            .into_iter()
            .filter(|r| !tried.contains(&r.id))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for replica in fresh {
            if let Some(last) = failures.get(warned) {
                output::warn(&format!("{last}; trying {}", replica.id));
                warned = failures.len();
            }
            tried.insert(replica.id.clone());
            let attempt = Attempt {
                chunk: &args.chunk,
                size: loc.size,
                crc32c: loc.crc32c,
                dest: &args.file,
            };
            match fetch(clients, &replica, &attempt).await {
                Ok(()) => return print(&args.chunk, &loc, replica.id, json),
                Err(Failure::Local(e)) => return Err(e),
                Err(Failure::Replica { error, corrupt }) => {
                    if corrupt {
                        report(&master, &args.chunk, &replica.id, &error).await;
                    }
                    failures.push(error);
                }
            }
        }
    }
    if failures.is_empty() {
        return Err(Error::NoReplicas { chunk: args.chunk });
    }
    Err(Error::NoReplicaReadable {
        chunk: args.chunk,
        failures,
    })
}

/// The question for the master: where `chunk` is, for a reader in `rack`.
fn locate_request(chunk: &str, rack: Option<&str>) -> LocateChunkRequest {
    LocateChunkRequest {
        chunk: chunk.to_owned(),
        // Blank is no rack, as on the chunk servers.
        rack: rack.map(str::trim).unwrap_or_default().to_owned(),
    }
}

/// `LocateChunk`, with NOT_FOUND said plainly.
async fn locate(
    master: &Master,
    chunk: &str,
    rack: Option<&str>,
) -> Result<LocateChunkResponse, Error> {
    let req = locate_request(chunk, rack);
    match master
        .call("locate chunk", master.client.clone().locate_chunk(req))
        .await
    {
        Err(e) if e.code() == Some(Code::NotFound) => Err(Error::ChunkNotFound {
            chunk: chunk.to_owned(),
        }),
        other => other,
    }
}

/// Live replicas first, otherwise in the master's order (a stable sort:
/// the master's load and rack order among the live ones stands).
fn ordered(replicas: &[ServerRef]) -> Vec<ServerRef> {
    let mut out = replicas.to_vec();
    out.sort_by_key(|r| !r.alive);
    out
}

/// Tells the master a replica's bytes are bad; a failure here only warns.
async fn report(master: &Master, chunk: &str, server: &str, error: &Error) {
    let req = ReportCorruptionRequest {
        chunk: chunk.to_owned(),
        server: server.to_owned(),
        detail: error.to_string(),
    };
    let sent = master
        .call(
            "report corruption",
            master.client.clone().report_corruption(req),
        )
        .await;
    match sent {
        Ok(_) => debug!(chunk, server, "bad replica reported"),
        // The master already dropped the replica (its server reported it first).
        Err(e) if e.code() == Some(Code::NotFound) => {
            debug!(chunk, server, error = %e, "already known")
        }
        Err(e) => output::warn(&format!(
            "could not report the bad replica on {server}: {e}"
        )),
    }
}

/// Refuses a destination that is a directory or whose folder is missing,
/// before anything is fetched.
async fn check_destination(dest: &Path) -> Result<(), Error> {
    if let Ok(meta) = tokio::fs::metadata(dest).await
        && meta.is_dir()
    {
        return Err(Error::file(
            "cannot write",
            dest,
            std::io::Error::other("it is a directory"),
        ));
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match tokio::fs::metadata(parent).await {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::file(
            "cannot write",
            dest,
            std::io::Error::other("its parent is not a directory"),
        )),
        Err(e) => Err(Error::file("cannot write", dest, e)),
    }
}

fn print(chunk: &str, loc: &LocateChunkResponse, server: String, json: bool) -> Result<(), Error> {
    let out = GetJson {
        chunk: chunk.to_owned(),
        size: loc.size,
        crc32c: loc.crc32c,
        server,
    };
    if json {
        output::print_json(&out)
    } else {
        output::print_prose(&format!(
            "fetched chunk {:?} ({}, crc32c {:#010x}) from {}\n",
            out.chunk,
            output::size(out.size),
            out.crc32c,
            out.server
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: &str, alive: bool) -> ServerRef {
        ServerRef {
            id: id.into(),
            address: String::new(),
            alive,
        }
    }

    #[test]
    fn live_replicas_come_first_in_order() {
        let ids: Vec<String> = ordered(&[r("a", false), r("b", true), r("c", true)])
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["b", "c", "a"]);
    }

    #[test]
    fn the_masters_order_stands_among_live_replicas() {
        // As a master ordering by load lists them: cool c, then b, then a.
        let ids: Vec<String> = ordered(&[r("c", true), r("x", false), r("b", true), r("a", true)])
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(ids, ["c", "b", "a", "x"]);
    }

    #[test]
    fn the_rack_goes_to_the_master() {
        assert_eq!(locate_request("c1", Some("rack-a")).rack, "rack-a");
        assert_eq!(locate_request("c1", Some("  ")).rack, "");
        assert_eq!(locate_request("c1", None).rack, "");
        assert_eq!(locate_request("c1", None).chunk, "c1");
    }

    #[test]
    fn json_shape() {
        let v = serde_json::to_value(GetJson {
            chunk: "c".into(),
            size: 1,
            crc32c: 2,
            server: "cs1".into(),
        })
        .expect("encodes");
        assert_eq!(
            v,
            serde_json::json!({"chunk": "c", "size": 1, "crc32c": 2, "server": "cs1"})
        );
    }

    #[tokio::test]
    async fn destination_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(check_destination(&dir.path().join("f")).await.is_ok());
        let err = check_destination(dir.path()).await.expect_err("must fail");
        assert!(err.to_string().ends_with("it is a directory"), "{err}");
        let err = check_destination(&dir.path().join("no/f"))
            .await
            .expect_err("must fail");
        assert!(
            err.to_string().ends_with("no such file or directory"),
            "{err}"
        );
    }
}
