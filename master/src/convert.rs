//! Protobuf ⇄ domain. Incoming messages are validated here, completely,
//! before anything reaches the metadata: a bad request changes nothing.

use std::collections::HashSet;

use keel_balancer::{LoadReport, MoveRef, ReadRate};
use keel_proto::chunk_id;
use keel_proto::v1 as pb;

use crate::error::Error;
use crate::meta::Explanation;
use crate::meta::{
    AllocRequest, Allocation, Heartbeat, Location, MAX_HOT_CHUNKS, ReadReport, ReplicaReport,
    ServerAddr, ServerReads, ServerState, ServerStatus, Stamp, clamp_rate,
};

/// Largest chunk the master accepts (1 TiB). Far above any sane chunk, and
/// low enough that no sum of sizes on one server can overflow.
pub const MAX_CHUNK_BYTES: u64 = 1 << 40;

/// Checks a chunk's size against [`MAX_CHUNK_BYTES`].
pub fn size(chunk: &str, size: u64) -> Result<(), Error> {
    if size > MAX_CHUNK_BYTES {
        return Err(Error::ChunkTooLarge {
            chunk: chunk.to_owned(),
            size,
            max: MAX_CHUNK_BYTES,
        });
    }
    Ok(())
}

/// Checks a server id: the chunk-id character rules (so ids are safe in
/// paths, metric labels and `CHUNK:FROM:TO` arguments).
pub fn server_id(id: &str) -> Result<(), Error> {
    chunk_id::validate(id).map_err(|e| Error::BadServerId {
        id: id.to_owned(),
        why: e.to_string().replacen("chunk id", "id", 1),
    })
}

/// Checks a chunk id.
pub fn chunk(id: &str) -> Result<(), Error> {
    Ok(chunk_id::validate(id)?)
}

/// Turns `host:port` into a URL by the rule of [`keel_proto::tls::url`]
/// (`https://` with `tls`, when `http://` is refused too: the master would
/// never dial it) and checks the result is a URL with a host.
pub fn address(server: &str, address: &str, tls: bool) -> Result<String, Error> {
    let bad = |why: &str| Error::BadAddress {
        server: server.to_owned(),
        address: address.to_owned(),
        why: why.to_owned(),
    };
    let url = keel_proto::tls::url(address, tls).map_err(|e| match e {
        keel_proto::tls::AddressError::Empty => bad("it is empty"),
        keel_proto::tls::AddressError::Scheme { .. } => bad("the scheme must be http or https"),
        keel_proto::tls::AddressError::Plaintext { .. } => bad(
            "this cluster uses TLS: plaintext http:// is refused (advertise https:// or a bare host:port)",
        ),
    })?;
    let uri: tonic::codegen::http::Uri =
        url.parse().map_err(|_| bad("it does not parse as a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(bad("the scheme must be http or https"));
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("it names no host"));
    }
    Ok(url)
}

/// Takes the entries of a heartbeat that are bad on their own (a chunk id
/// breaking the id rules, a size beyond [`MAX_CHUNK_BYTES`]) out of it, each
/// logged with the chunk, the server and why, and returns them so the reply
/// can name them. Each refused entry the server counts as held is taken off
/// `chunk_count` too, so the rest still adds up. A message that is wrong as
/// a whole (server id, address, a chunk listed twice) is left to
/// [`heartbeat`].
pub fn refuse_bad_entries(req: &mut pb::HeartbeatRequest) -> Vec<pb::RefusedReplica> {
    let server = req.id.escape_debug().to_string();
    let mut refused = Vec::new();
    req.chunks.retain(
        |c| match chunk(&c.chunk).and_then(|()| size(&c.chunk, c.size)) {
            Ok(()) => true,
            Err(e) => {
                refused.push(refusal(&server, &c.chunk, &e));
                false
            }
        },
    );
    req.chunk_count = req.chunk_count.saturating_sub(refused.len() as u64);
    req.removed.retain(|id| match chunk(id) {
        Ok(()) => true,
        Err(e) => {
            refused.push(refusal(&server, id, &e));
            false
        }
    });
    refused
}

/// Logs one refused heartbeat entry and describes it for the reply.
fn refusal(server: &str, chunk: &str, e: &Error) -> pb::RefusedReplica {
    tracing::warn!(server, chunk = %chunk.escape_debug(), reason = %e, "heartbeat entry refused; the rest of the heartbeat is applied");
    pb::RefusedReplica {
        chunk: chunk.to_owned(),
        reason: e.to_string(),
    }
}

/// Validates a heartbeat: ids, address (by the TLS rule when `tls`), and
/// no chunk listed twice.
pub fn heartbeat(req: pb::HeartbeatRequest, tls: bool) -> Result<Heartbeat, Error> {
    server_id(&req.id)?;
    let address = address(&req.id, &req.address, tls)?;
    let mut seen: HashSet<&str> = HashSet::with_capacity(req.chunks.len() + req.removed.len());
    for id in req
        .chunks
        .iter()
        .map(|c| c.chunk.as_str())
        .chain(req.removed.iter().map(String::as_str))
    {
        chunk(id)?;
        if !seen.insert(id) {
            return Err(Error::DuplicateInHeartbeat {
                server: req.id.clone(),
                chunk: id.to_owned(),
            });
        }
    }
    drop(seen);
    for id in &req.deleting {
        chunk(id)?;
    }
    for c in &req.chunks {
        size(&c.chunk, c.size)?;
        // 0 is a server that stores no factor: the master's default applies.
        if c.replication != 0 {
            keel_proto::check_replication(c.replication).map_err(|why| Error::BadReplication {
                context: format!("heartbeat from {}: chunk {}", req.id, c.chunk),
                why,
            })?;
        }
    }
    let chunks = req
        .chunks
        .into_iter()
        .map(|c| ReplicaReport {
            chunk: c.chunk,
            size: c.size,
            crc32c: c.crc32c,
            replication: c.replication,
            reads: c.reads,
            replica_id: c.replica_id,
            suspect: c.suspect,
        })
        .collect();
    let reads = read_report(&req.id, req.load, req.hot_chunks);
    Ok(Heartbeat {
        id: req.id,
        address,
        rack: req.rack.trim().to_owned(),
        capacity: req.capacity_bytes,
        used: req.used_bytes,
        full_report: req.full_report,
        chunks,
        removed: req.removed,
        chunk_count: req.chunk_count,
        stamp: stamp(req.stamp),
        draining: req.draining,
        migrate_rate: req.migrate_bandwidth_bytes_per_second,
        deleting: req.deleting,
        reads,
    })
}

/// A heartbeat's read figures, made safe to sum: non-finite or negative
/// server figures read as 0; a hot entry with a bad chunk id, a non-finite
/// or negative rate, or a chunk listed before is dropped (logged); only the
/// first [`MAX_HOT_CHUNKS`] are kept. The rest of the heartbeat stands.
pub fn read_report(server: &str, load: Option<pb::ReadLoad>, hot: Vec<pb::HotChunk>) -> ReadReport {
    let load = load.unwrap_or_default();
    let load = ServerReads {
        rate: ReadRate::new(
            clamp_rate(load.reads_per_sec),
            clamp_rate(load.read_bytes_per_sec),
        ),
        p99_ms: clamp_rate(load.read_p99_ms),
    };
    let sane = |v: f64| v.is_finite() && v >= 0.0;
    let mut seen = HashSet::new();
    let mut kept = Vec::with_capacity(hot.len().min(MAX_HOT_CHUNKS));
    for h in hot {
        if kept.len() == MAX_HOT_CHUNKS {
            tracing::debug!(server = %server.escape_debug(), max = MAX_HOT_CHUNKS, "hot chunk list cut");
            break;
        }
        let ok = chunk(&h.chunk).is_ok() && sane(h.reads_per_sec) && sane(h.read_bytes_per_sec);
        if !ok || !seen.insert(h.chunk.clone()) {
            tracing::debug!(server = %server.escape_debug(), chunk = %h.chunk.escape_debug(), "hot chunk entry ignored");
            continue;
        }
        kept.push((
            h.chunk,
            ReadRate::new(h.reads_per_sec, h.read_bytes_per_sec),
        ));
    }
    ReadReport { load, hot: kept }
}

/// A chunk server's stamp, when it sent one.
pub fn stamp(s: Option<pb::HeartbeatStamp>) -> Option<Stamp> {
    s.map(|s| Stamp {
        incarnation: s.incarnation,
        seq: s.seq,
    })
}

/// Validates an allocation request.
pub fn alloc_request(req: pb::AllocateChunkRequest) -> Result<AllocRequest, Error> {
    chunk(&req.chunk)?;
    size(&req.chunk, req.size)?;
    for s in &req.on {
        server_id(s)?;
    }
    if req.replication != 0 {
        keel_proto::check_replication(req.replication).map_err(|why| Error::BadReplication {
            context: format!("allocation of chunk {}", req.chunk),
            why,
        })?;
    }
    Ok(AllocRequest {
        chunk: req.chunk,
        size: req.size,
        replication: req.replication,
        on: req.on,
    })
}

fn server_ref(s: ServerAddr) -> pb::ServerRef {
    pb::ServerRef {
        id: s.id,
        address: s.address,
        alive: true,
    }
}

/// `AllocateChunkResponse` from an allocation.
pub fn allocation(a: Allocation) -> pb::AllocateChunkResponse {
    pb::AllocateChunkResponse {
        servers: a.servers.into_iter().map(server_ref).collect(),
        replication: a.replication,
        capability: None,
    }
}

/// `LocateChunkResponse` from a location.
pub fn location(l: Location) -> pb::LocateChunkResponse {
    pb::LocateChunkResponse {
        chunk: l.chunk,
        size: l.size,
        crc32c: l.crc32c,
        replication: l.replication,
        replicas: l
            .replicas
            .into_iter()
            .map(|r| pb::ServerRef {
                id: r.id,
                address: r.address,
                alive: r.alive,
            })
            .collect(),
    }
}

/// `ServerInfo` from a server's status and its reported migration rate.
pub fn server_info(s: ServerStatus, migrate_rate: u64) -> pb::ServerInfo {
    let state = match s.state {
        ServerState::Alive => pb::ServerState::Alive,
        ServerState::Dead => pb::ServerState::Dead,
        ServerState::Draining => pb::ServerState::Draining,
        ServerState::Drained => pb::ServerState::Drained,
    };
    pb::ServerInfo {
        id: s.id,
        address: s.address,
        rack: s.rack,
        capacity_bytes: s.capacity,
        used_bytes: s.used,
        utilization_pct: s.utilization_pct,
        chunks: s.chunks,
        state: state as i32,
        last_heartbeat_ms: s.last_heartbeat_ms,
        migrate_bandwidth_bytes_per_second: migrate_rate,
        load: s.load.to_owned(),
        read_bytes_per_sec: s.read_bytes_per_sec,
        read_p99_ms: s.read_p99_ms,
        reads_per_sec: s.reads_per_sec,
    }
}

fn server_load(s: keel_balancer::ServerLoad) -> pb::ServerLoad {
    pb::ServerLoad {
        server: s.server,
        utilization_pct: s.utilization_pct,
        used_bytes: s.used,
        capacity_bytes: s.capacity,
        read_bytes_per_sec: s.reads.bytes_per_sec,
        reads_per_sec: s.reads.reads_per_sec,
    }
}

/// An operator's moves from `RebalanceExecute` (a missing field reads as
/// empty: the checks that follow refuse it with its reason).
pub fn moves(requested: &[pb::Move]) -> Vec<MoveRef> {
    requested
        .iter()
        .map(|m| MoveRef::new(m.chunk.as_str(), m.from.as_str(), m.to.as_str()))
        .collect()
}

/// `RebalanceCheckResponse` from the balancer's load report.
pub fn check_response(r: LoadReport) -> pb::RebalanceCheckResponse {
    let balanced = r.balanced();
    let load_balanced = r.load_balanced();
    pb::RebalanceCheckResponse {
        average_utilization_pct: r.average_utilization_pct,
        overloaded: r.overloaded.into_iter().map(server_load).collect(),
        underloaded: r.underloaded.into_iter().map(server_load).collect(),
        threshold_pct: r.threshold_pct,
        servers: r.servers.into_iter().map(server_load).collect(),
        balanced,
        average_reads_per_sec: r.average_reads_per_sec,
        cold: r.cold.into_iter().map(server_load).collect(),
        hot: r.hot.into_iter().map(server_load).collect(),
        load_balanced,
        load_threshold_pct: r.load_threshold_pct,
    }
}

/// `ExplainChunkResponse` from an explanation.
pub fn explanation(e: Explanation) -> pb::ExplainChunkResponse {
    pb::ExplainChunkResponse {
        chunk: e.chunk,
        known: e.known,
        size: e.size,
        crc32c: e.crc32c,
        replication: e.replication,
        whole_live: e.whole_live,
        replicas: e
            .replicas
            .into_iter()
            .map(|r| pb::ReplicaHealth {
                server: r.server,
                address: r.address,
                rack: r.rack,
                server_state: r.server_state.into(),
                health: r.health.into(),
                counted: r.counted,
            })
            .collect(),
        jobs: e
            .jobs
            .into_iter()
            .map(|j| pb::ChunkJob {
                kind: j.kind,
                from: j.from,
                to: j.to,
                state: j.state,
                detail: j.detail,
            })
            .collect(),
        reasons: e.reasons,
        status: e.status.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> pb::HeartbeatRequest {
        pb::HeartbeatRequest {
            id: "cs1".into(),
            address: "127.0.0.1:7001".into(),
            full_report: true,
            chunks: vec![pb::ChunkReplica {
                chunk: "a".into(),
                size: 1,
                ..Default::default()
            }],
            chunk_count: 1,
            ..Default::default()
        }
    }

    #[test]
    fn a_good_heartbeat_is_normalized() {
        let hb = heartbeat(req(), false).expect("valid");
        assert_eq!(hb.address, "http://127.0.0.1:7001");
        assert_eq!(hb.chunks.len(), 1);
    }

    #[test]
    fn with_tls_an_address_is_https_and_plaintext_is_refused() {
        let hb = heartbeat(req(), true).expect("bare is https");
        assert_eq!(hb.address, "https://127.0.0.1:7001");
        let mut r = req();
        r.address = "http://127.0.0.1:7001".into();
        let err = heartbeat(r, true).expect_err("http:// refused");
        assert!(
            err.to_string().contains("plaintext http:// is refused"),
            "{err}"
        );
    }

    #[test]
    fn every_bad_heartbeat_kind_is_refused() {
        let bad = |f: &dyn Fn(&mut pb::HeartbeatRequest)| {
            let mut r = req();
            f(&mut r);
            heartbeat(r, false).err().map(|e| e.to_string())
        };
        assert!(bad(&|r| r.id.clear()).is_some_and(|e| e.contains("server id")));
        assert!(bad(&|r| r.id = "a/b".into()).is_some());
        assert!(bad(&|r| r.address.clear()).is_some_and(|e| e.contains("empty")));
        assert!(bad(&|r| r.address = "ftp://x:1".into()).is_some_and(|e| e.contains("scheme")));
        assert!(bad(&|r| r.address = "http://".into()).is_some());
        assert!(
            bad(&|r| r.chunks[0].chunk = "../x".into())
                .is_some_and(|e| e.contains("starts with '.'"))
        );
        assert!(bad(&|r| r.removed.push("a".into())).is_some_and(|e| e.contains("more than once")));
        assert!(bad(&|r| r.removed.push(String::new())).is_some_and(|e| e.contains("empty")));
        let huge = MAX_CHUNK_BYTES + 1;
        assert!(bad(&|r| r.chunks[0].size = huge).is_some_and(|e| e.contains("largest supported")));
    }

    #[test]
    fn bad_entries_are_refused_alone() {
        let mut r = req();
        r.chunks.push(pb::ChunkReplica {
            chunk: "../x".into(),
            size: 1,
            ..Default::default()
        });
        r.chunks.push(pb::ChunkReplica {
            chunk: "huge".into(),
            size: MAX_CHUNK_BYTES + 1,
            ..Default::default()
        });
        r.chunk_count = 3;
        r.removed = vec!["b".into(), "bad\nid".into()];
        let refused = refuse_bad_entries(&mut r);
        let names: Vec<&str> = refused.iter().map(|x| x.chunk.as_str()).collect();
        assert_eq!(names, ["../x", "huge", "bad\nid"]);
        assert!(
            refused[1].reason.contains("largest supported"),
            "{refused:?}"
        );
        // What is left is a good heartbeat that still adds up.
        assert_eq!(r.chunk_count, 1);
        assert_eq!(r.removed, ["b"]);
        let hb = heartbeat(r, false).expect("the rest is valid");
        assert_eq!(hb.chunks.len(), 1);
        // Nothing to refuse: nothing changes.
        let mut good = req();
        assert!(refuse_bad_entries(&mut good).is_empty());
        assert_eq!(good, req());
    }

    #[test]
    fn allocation_requests_are_checked() {
        let r = pb::AllocateChunkRequest {
            chunk: "ok".into(),
            on: vec!["".into()],
            ..Default::default()
        };
        assert!(matches!(alloc_request(r), Err(Error::BadServerId { .. })));
        let r = pb::AllocateChunkRequest {
            chunk: ".x".into(),
            ..Default::default()
        };
        assert!(matches!(alloc_request(r), Err(Error::BadChunkId(_))));
    }

    #[test]
    fn read_figures_are_made_safe_entry_by_entry() {
        let load = pb::ReadLoad {
            reads_per_sec: f64::NAN,
            read_bytes_per_sec: -1.0,
            read_p99_ms: 7.5,
        };
        let hot = |chunk: &str, reads: f64| pb::HotChunk {
            chunk: chunk.into(),
            reads_per_sec: reads,
            read_bytes_per_sec: reads * 10.0,
        };
        let mut list = vec![
            hot("a", 5.0),
            hot("../x", 5.0),
            hot("b", f64::INFINITY),
            hot("c", -2.0),
            hot("a", 9.0),
        ];
        list.extend((0..100).map(|i| hot(&format!("z{i}"), 1.0)));
        let r = read_report("cs1", Some(load), list);
        assert_eq!(r.load.rate, ReadRate::default());
        assert_eq!(r.load.p99_ms, 7.5);
        assert_eq!(r.hot.len(), MAX_HOT_CHUNKS);
        assert_eq!(r.hot[0], ("a".to_owned(), ReadRate::new(5.0, 50.0)));
        assert_eq!(r.hot[1].0, "z0");
        // A server that predates load reports none.
        assert_eq!(read_report("cs1", None, Vec::new()), ReadReport::default());
    }

    #[test]
    fn check_answers_carry_the_load_band() {
        let mut v = keel_balancer::ClusterView::new();
        for (id, reads) in [("a", 300.0), ("b", 100.0), ("c", 20.0)] {
            let s = v.add_server(id, None, 100, true);
            v.servers[s.0 as usize].reads = ReadRate::new(reads, reads * 1000.0);
        }
        let r = check_response(keel_balancer::load::check(&v, 20.0, 25.0));
        assert_eq!(r.average_reads_per_sec, 140.0);
        assert_eq!(r.load_threshold_pct, 25.0);
        assert!(!r.load_balanced);
        assert_eq!(r.hot.len(), 1);
        assert_eq!(
            (r.hot[0].server.as_str(), r.hot[0].reads_per_sec),
            ("a", 300.0)
        );
        assert_eq!(r.hot[0].read_bytes_per_sec, 300_000.0);
        assert_eq!(
            r.cold.iter().map(|s| s.server.as_str()).collect::<Vec<_>>(),
            ["c", "b"]
        );
        assert_eq!(r.servers.len(), 3);
    }
}
