//! The master's front door: with `--auth-token` every `keel.v1` call without
//! the bearer token (or with a wrong one) is UNAUTHENTICATED, chunk servers
//! holding the token register, and a move works end to end because the
//! master attaches the token to its own calls to chunk servers. A malformed
//! heartbeat is INVALID_ARGUMENT and registers nothing; the balancer's calls
//! answer with the token, and its status counts the operator's move.

use std::time::Duration;

use anyhow::Result;
use keel_proto::v1::chunk_server_client::ChunkServerClient;
use keel_proto::v1::master_client::MasterClient;
use keel_proto::v1::{
    ChunkHeader, ChunkReplica, HeartbeatRequest, ListServersRequest, LocateChunkRequest, Move,
    MoveOutcome, RebalanceExecuteRequest, RebalancePlanRequest, RebalanceStatusRequest,
    WriteChunkRequest,
};
use keel_tests::chunks::pattern;
use keel_tests::{Cluster, CsOpts, wait_until};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

const TOKEN: &str = "front-door-token";

/// Adds `authorization: Bearer <token>` when it has one.
#[derive(Clone)]
struct Token(Option<AsciiMetadataValue>);

impl Interceptor for Token {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

fn token(t: Option<&str>) -> Token {
    Token(t.map(|t| format!("Bearer {t}").parse().expect("ascii token")))
}

async fn channel(url: &str) -> Result<Channel> {
    Ok(Channel::from_shared(url.to_owned())?.connect().await?)
}

async fn master(
    url: &str,
    t: Option<&str>,
) -> Result<MasterClient<InterceptedService<Channel, Token>>> {
    Ok(MasterClient::with_interceptor(
        channel(url).await?,
        token(t),
    ))
}

/// Writes `data` as `id` to the chunk server at `url`, with the token.
async fn write(url: &str, id: &str, data: &[u8]) -> Result<()> {
    let mut c = ChunkServerClient::with_interceptor(channel(url).await?, token(Some(TOKEN)));
    let header = ChunkHeader {
        chunk: id.into(),
        size: data.len() as u64,
        crc32c: crc32c::crc32c(data),
        replication: 1,
    };
    let mut msgs = vec![WriteChunkRequest {
        header: Some(header),
        data: Default::default(),
        capability: None,
    }];
    msgs.extend(
        data.chunks(keel_proto::FRAME_BYTES)
            .map(|d| WriteChunkRequest {
                header: None,
                data: d.to_vec().into(),
                capability: None,
            }),
    );
    c.write_chunk(tokio_stream::iter(msgs)).await?;
    Ok(())
}

async fn alive(url: &str, n: usize) -> bool {
    let Ok(mut m) = master(url, Some(TOKEN)).await else {
        return false;
    };
    let Ok(r) = m.list_servers(ListServersRequest {}).await else {
        return false;
    };
    r.into_inner()
        .servers
        .iter()
        .filter(|s| s.state == 1)
        .count()
        == n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guards_every_call_and_travels_with_moves() -> Result<()> {
    let mut c = Cluster::new()?;
    c.envs.push(("KEEL_AUTH_TOKEN".into(), TOKEN.into()));
    c.start_master(&[])?;
    c.add_chunkserver("cs1", CsOpts::default())?;
    c.add_chunkserver("cs2", CsOpts::default())?;
    let url = c.master_url();
    for t in [None, Some("wrong")] {
        let e = master(&url, t)
            .await?
            .list_servers(ListServersRequest {})
            .await;
        assert_eq!(
            e.err().map(|s| s.code()),
            Some(tonic::Code::Unauthenticated),
            "{t:?}"
        );
    }
    let u = url.clone();
    wait_until(
        "two servers heartbeating with the token",
        Duration::from_secs(20),
        || {
            let u = u.clone();
            async move { alive(&u, 2).await }
        },
    )
    .await?;

    let data = pattern(24, 700_000);
    write(&c.cs("cs1").url(), "t", &data).await?;
    let mut m = master(&url, Some(TOKEN)).await?;
    let mv = Move {
        chunk: "t".into(),
        from: "cs1".into(),
        to: "cs2".into(),
    };
    let u = url.clone();
    wait_until("the master to locate t", Duration::from_secs(15), || {
        let u = u.clone();
        async move {
            let Ok(mut m) = master(&u, Some(TOKEN)).await else {
                return false;
            };
            m.locate_chunk(LocateChunkRequest {
                chunk: "t".into(),
                rack: Default::default(),
            })
            .await
            .is_ok()
        }
    })
    .await?;
    let r = m
        .rebalance_execute(RebalanceExecuteRequest { moves: vec![mv] })
        .await?
        .into_inner();
    assert_eq!(
        (r.results[0].outcome, r.bytes_transferred),
        (MoveOutcome::Done as i32, 700_000)
    );

    // The balancer's calls answer with the token, and count the operator's move.
    m.rebalance_plan(RebalancePlanRequest {}).await?;
    let status = m
        .rebalance_status(RebalanceStatusRequest {})
        .await?
        .into_inner();
    assert_eq!((status.done, status.pending, status.running), (1, 0, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_heartbeat_changes_nothing() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    let url = c.master_url();
    let mut m = master(&url, None).await?;
    let good = HeartbeatRequest {
        id: "cs7".into(),
        address: "http://127.0.0.1:1".into(),
        capacity_bytes: 1000,
        full_report: true,
        chunks: vec![ChunkReplica {
            chunk: "x".into(),
            size: 10,
            ..Default::default()
        }],
        chunk_count: 1,
        ..Default::default()
    };
    let bad: Vec<(&str, HeartbeatRequest)> = vec![
        (
            "empty id",
            HeartbeatRequest {
                id: String::new(),
                ..good.clone()
            },
        ),
        (
            "empty address",
            HeartbeatRequest {
                address: String::new(),
                ..good.clone()
            },
        ),
        (
            "chunk listed twice",
            HeartbeatRequest {
                removed: vec!["x".into()],
                ..good.clone()
            },
        ),
    ];
    for (what, hb) in bad {
        let e = m.heartbeat(hb).await.expect_err(what);
        assert_eq!(
            e.code(),
            tonic::Code::InvalidArgument,
            "{what}: {}",
            e.message()
        );
    }
    let servers = m
        .list_servers(ListServersRequest {})
        .await?
        .into_inner()
        .servers;
    assert!(
        servers.is_empty(),
        "a refused heartbeat registered {servers:?}"
    );
    let r = m.heartbeat(good).await?.into_inner();
    assert!(!r.send_full_report);
    assert_eq!(
        m.list_servers(ListServersRequest {})
            .await?
            .into_inner()
            .servers
            .len(),
        1
    );
    Ok(())
}
