//! Write capabilities against real daemons.
//!
//! On a cluster with a cluster token and a client token (both from files), a
//! client-token `WriteChunk` straight to a chunk server is refused, with a
//! status and a sentence naming what is wrong, when it presents no
//! capability, an expired one, a forged one, one for another chunk, one for
//! another server, one whose factor was altered, or a header raising the
//! signed factor or size; a caller with no token at all is refused by the token check
//! even with a genuine capability. None of them leaves a file on any server
//! or a chunk in the master. The capability `AllocateChunk` returns works,
//! also through `keelctl put` with the client token.
//!
//! On both a secured and an open cluster (`--replication 2`, three servers),
//! a replica written straight to a server with factor 16 does not raise the
//! master's factor: the chunk is kept at 2 replicas and nothing stays
//! under-replicated. A factor the master allocated above `--replication` is
//! the one it keeps.

use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, ensure};
use keel_proto::capability::{Grant, WriteKey};
use keel_proto::v1::{
    AllocateChunkRequest, AllocateChunkResponse, ChunkHeader, ListServersRequest,
    LocateChunkRequest, LocateChunkResponse, ServerState, StatChunkRequest, WriteCapability,
    WriteChunkRequest, WriteChunkResponse,
};
use keel_tests::chunks::pattern;
use keel_tests::cs::{chunk_files, header, temp_files};
use keel_tests::master::metric_of;
use keel_tests::{Cluster, CsOpts, chunkserver_client, master_client, wait_until};
use tonic::{Code, Status};

const CLUSTER: &str = "capability-cluster-token";
const CLIENT: &str = "capability-client-token";
const SERVERS: [&str; 3] = ["cs1", "cs2", "cs3"];
const WAIT: Duration = Duration::from_secs(60);

/// `msg` carrying `authorization: Bearer <token>` when a token is given.
fn with_token<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(t) = token {
        let value = format!("Bearer {t}").parse().expect("a printable token");
        req.metadata_mut().insert("authorization", value);
    }
    req
}

/// A master with `--replication 2` and three chunk servers; with `secured`,
/// every daemon reads the cluster and client tokens from files.
async fn cluster(secured: bool) -> Result<Cluster> {
    let mut c = Cluster::new()?;
    let mut flags: Vec<String> = vec![];
    if secured {
        for (name, flag, secret) in [
            ("cluster.token", "--auth-token-file", CLUSTER),
            ("client.token", "--client-token-file", CLIENT),
        ] {
            let path = c.dir.path().join(name);
            std::fs::write(&path, format!("{secret}\n"))?;
            flags.extend([flag.to_owned(), path.display().to_string()]);
        }
    }
    let mut master: Vec<&str> = vec!["--replication", "2"];
    master.extend(flags.iter().map(String::as_str));
    c.start_master(&master)?;
    for id in SERVERS {
        let opts = CsOpts {
            extra: flags.clone(),
            ..CsOpts::default()
        };
        c.add_chunkserver(id, opts)?;
    }
    let token = secured.then_some(CLUSTER);
    let url = c.master_url();
    wait_until("three alive servers", WAIT, || async {
        let Ok(mut m) = master_client(&url).await else {
            return false;
        };
        let Ok(r) = m
            .list_servers(with_token(ListServersRequest {}, token))
            .await
        else {
            return false;
        };
        let alive = ServerState::Alive as i32;
        r.into_inner()
            .servers
            .iter()
            .filter(|s| s.state == alive)
            .count()
            == 3
    })
    .await?;
    Ok(c)
}

/// `AllocateChunk` of `data` as `chunk`, asked with `token`.
async fn allocate(
    c: &Cluster,
    chunk: &str,
    data: &[u8],
    (replication, on): (u32, &[&str]),
    token: Option<&str>,
) -> Result<AllocateChunkResponse> {
    let mut m = master_client(&c.master_url()).await?;
    let req = AllocateChunkRequest {
        chunk: chunk.into(),
        size: data.len() as u64,
        replication,
        on: on.iter().map(|s| s.to_string()).collect(),
    };
    Ok(m.allocate_chunk(with_token(req, token)).await?.into_inner())
}

/// One `WriteChunk` of `data` under `header`, presenting `cap`, as `token`.
async fn write(
    url: &str,
    token: Option<&str>,
    header: ChunkHeader,
    cap: Option<WriteCapability>,
    data: &[u8],
) -> Result<WriteChunkResponse, Status> {
    let mut cs = chunkserver_client(url)
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let first = WriteChunkRequest {
        header: Some(header),
        data: Default::default(),
        capability: cap,
    };
    let frames = data
        .chunks(keel_proto::FRAME_BYTES)
        .map(|d| WriteChunkRequest {
            data: d.to_vec().into(),
            ..Default::default()
        });
    let msgs: Vec<WriteChunkRequest> = std::iter::once(first).chain(frames).collect();
    let req = with_token(tokio_stream::iter(msgs), token);
    cs.write_chunk(req).await.map(tonic::Response::into_inner)
}

/// `LocateChunk` with `token`; `None` when the master does not know it.
async fn locate(
    url: &str,
    chunk: &str,
    token: Option<&str>,
) -> Result<Option<LocateChunkResponse>> {
    let mut m = master_client(url).await?;
    let req = LocateChunkRequest {
        chunk: chunk.into(),
        rack: Default::default(),
    };
    match m.locate_chunk(with_token(req, token)).await {
        Ok(r) => Ok(Some(r.into_inner())),
        Err(s) if s.code() == Code::NotFound => Ok(None),
        Err(s) => Err(s.into()),
    }
}

/// Whether the chunk server at `url` has `chunk`, asked with the cluster token.
async fn stored(url: &str, chunk: &str) -> Result<bool> {
    let mut cs = chunkserver_client(url).await?;
    let req = StatChunkRequest {
        chunk: chunk.into(),
    };
    match cs.stat_chunk(with_token(req, Some(CLUSTER))).await {
        Ok(_) => Ok(true),
        Err(s) if s.code() == Code::NotFound => Ok(false),
        Err(s) => Err(s.into()),
    }
}

/// A write expected to be refused, all to cs1: what it shows, its token,
/// header and capability, and the status code and text expected.
type Case<'a> = (
    &'a str,
    Option<&'a str>,
    ChunkHeader,
    Option<WriteCapability>,
    Code,
    &'a str,
);

/// A write refused with `code` and a message containing `text`.
fn refused(case: &str, r: Result<WriteChunkResponse, Status>, code: Code, text: &str) {
    match r {
        Ok(w) => panic!("{case}: accepted ({w:?}), expected {code:?} with {text:?}"),
        Err(s) => {
            assert_eq!(s.code(), code, "{case}: {}", s.message());
            assert!(
                s.message().contains(text),
                "{case}: {:?} lacks {text:?}",
                s.message()
            );
        }
    }
}

/// No file of `chunk` (committed or temp) under any server's data dir.
fn no_file_of(c: &Cluster, chunk: &str) -> Result<()> {
    for id in SERVERS {
        let dir = c.data_dir(id);
        let temps = temp_files(&dir);
        ensure!(temps.is_empty(), "{id} holds temp files {temps:?}");
        ensure!(
            !chunk_files(&dir).iter().any(|f| f.contains(chunk)),
            "{id} stored {chunk} on disk"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_without_a_valid_capability_are_refused_and_leave_nothing() -> Result<()> {
    let c = cluster(true).await?;
    let url = |id: &str| c.chunkservers[id].url();
    let data = pattern(1, 300_000);
    let key = WriteKey::from_cluster_token(CLUSTER);

    // The genuine capability works on each server it names.
    let ok = allocate(&c, "cap-ok", &data, (0, &[]), Some(CLIENT)).await?;
    let cap = ok.capability.clone().context("a secured master signs")?;
    ensure!(cap.servers.len() == 2 && cap.replication == 2, "{cap:?}");
    for s in &ok.servers {
        let h = header("cap-ok", &data, ok.replication);
        write(&s.address, Some(CLIENT), h, Some(cap.clone()), &data).await?;
    }

    // Each of these is refused.
    let all: Vec<String> = SERVERS.iter().map(|s| s.to_string()).collect();
    let grant = |chunk: &'static str| Grant {
        chunk,
        servers: &all,
        replication: 2,
        size: data.len() as u64,
    };
    let genuine = |chunk| key.grant(&grant(chunk));
    let cs1 = url("cs1");
    let h = |chunk: &str| header(chunk, &data, 2);
    let cases: Vec<Case<'_>> = vec![
        (
            "none",
            Some(CLIENT),
            h("cap-none"),
            None,
            Code::PermissionDenied,
            "WriteChunk needs the write capability AllocateChunk returned",
        ),
        (
            "expired",
            Some(CLIENT),
            h("cap-expired"),
            Some(key.sign(
                &grant("cap-expired"),
                SystemTime::now() - Duration::from_secs(3600),
            )),
            Code::PermissionDenied,
            "the write capability expired",
        ),
        (
            "forged",
            Some(CLIENT),
            h("cap-forged"),
            Some(WriteKey::from_cluster_token("a-guessed-token").grant(&grant("cap-forged"))),
            Code::Unauthenticated,
            "forged or altered",
        ),
        (
            "another chunk",
            Some(CLIENT),
            h("cap-other"),
            Some(cap.clone()),
            Code::PermissionDenied,
            "for another chunk (cap-ok)",
        ),
        (
            "altered factor",
            Some(CLIENT),
            header("cap-altered", &data, 16),
            Some(WriteCapability {
                replication: 16,
                ..genuine("cap-altered")
            }),
            Code::Unauthenticated,
            "forged or altered",
        ),
        (
            "raised factor",
            Some(CLIENT),
            header("cap-raised", &data, 16),
            Some(genuine("cap-raised")),
            Code::PermissionDenied,
            "the header's replication 16 is not the 2 the master allocated",
        ),
        (
            "no token",
            None,
            h("cap-notoken"),
            Some(genuine("cap-notoken")),
            Code::Unauthenticated,
            "authorization",
        ),
    ];
    let mut refused_ids = vec![];
    for (case, token, header, cap, code, text) in cases {
        refused_ids.push(header.chunk.clone());
        refused(
            case,
            write(&cs1, token, header, cap, &data).await,
            code,
            text,
        );
    }
    // Another server: placed on cs1 only, presented to cs2.
    let pinned = allocate(&c, "cap-pinned", &data, (1, &["cs1"]), Some(CLIENT)).await?;
    let r = write(
        &url("cs2"),
        Some(CLIENT),
        header("cap-pinned", &data, 1),
        pinned.capability,
        &data,
    )
    .await;
    refused(
        "another server",
        r,
        Code::PermissionDenied,
        "does not name this server (cs2); the master placed it on cs1",
    );
    refused_ids.push("cap-pinned".into());
    // More bytes than the master allocated room for.
    let bigger = pattern(3, data.len() + 4096);
    let h = header("cap-bigger", &bigger, 2);
    let r = write(&cs1, Some(CLIENT), h, Some(genuine("cap-bigger")), &bigger).await;
    let text = "the header's size 304096 is not the 300000 the master allocated";
    refused("more bytes", r, Code::PermissionDenied, text);
    refused_ids.push("cap-bigger".into());

    // keelctl presents the capability with a client token.
    let file = c.dir.path().join("cli.bin");
    std::fs::write(&file, &data)?;
    let token_file = c.dir.path().join("client.token");
    let (code, out, err) = c.keelctl(&[
        "--token-file",
        path(&token_file)?,
        "put",
        "cap-cli",
        path(&file)?,
    ])?;
    ensure!(code == 0, "keelctl put with the client token: {out} {err}");

    // Once the master knows the last write, every earlier heartbeat has
    // been applied: nothing refused is on a disk, a server or the master.
    let master = c.master_url();
    wait_until("the master to know cap-cli", WAIT, || async {
        locate(&master, "cap-cli", Some(CLIENT))
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await?;
    for id in &refused_ids {
        no_file_of(&c, id)?;
        for s in SERVERS {
            ensure!(!stored(&url(s), id).await?, "{s} stores {id}");
        }
        ensure!(
            locate(&master, id, Some(CLIENT)).await?.is_none(),
            "the master lists {id}"
        );
    }
    let ok = locate(&master, "cap-ok", Some(CLIENT))
        .await?
        .context("cap-ok located")?;
    ensure!(ok.replicas.len() == 2 && ok.replication == 2, "{ok:?}");
    Ok(())
}

fn path(p: &Path) -> Result<&str> {
    p.to_str().context("a UTF-8 path")
}

/// A replica written with factor 16 does not raise the master's factor, on
/// a secured cluster (written with the cluster token, which needs no
/// capability) and on an open one.
async fn factor_stays_the_masters(secured: bool) -> Result<()> {
    let c = cluster(secured).await?;
    let (token, client) = if secured {
        (Some(CLUSTER), Some(CLIENT))
    } else {
        (None, None)
    };
    let data = pattern(2, 200_000);
    let cs1 = c.chunkservers["cs1"].url();
    write(&cs1, token, header("f-16", &data, 16), None, &data).await?;

    // Allocated above `--replication`: the master keeps what it allocated.
    let three = allocate(&c, "f-3", &data, (3, &[]), client).await?;
    ensure!(three.capability.is_some() == secured, "{three:?}");
    for s in &three.servers {
        let h = header("f-3", &data, 3);
        write(&s.address, client, h, three.capability.clone(), &data).await?;
    }

    let master = c.master_url();
    let http = c
        .master
        .as_ref()
        .and_then(|m| m.http_addr)
        .context("master HTTP")?;
    let settled = |chunk: &'static str, n: usize| {
        let master = master.clone();
        async move {
            locate(&master, chunk, client)
                .await
                .ok()
                .flatten()
                .is_some_and(|l| l.replication as usize == n && l.replicas.len() == n)
        }
    };
    wait_until(
        "f-16 at the master's factor 2 and f-3 at 3",
        WAIT,
        || async {
            let under = metric_of(http, "keel_chunks_under_replicated")
                .await
                .ok()
                .flatten();
            settled("f-16", 2).await && settled("f-3", 3).await && under == Some(0.0)
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_cannot_raise_the_factor_on_a_secured_cluster() -> Result<()> {
    factor_stays_the_masters(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_cannot_raise_the_factor_on_an_open_cluster() -> Result<()> {
    factor_stays_the_masters(false).await
}
