//! In-process RPC tests of `keel_master::run` on port 0: health reports
//! SERVING for `keel.v1.Master`, heartbeats register servers, `ListServers`
//! and `RebalanceCheck` answer from them, the balancer's status, dry-run
//! plan and pause answer, and cancelling the token stops the master promptly.

use std::time::{Duration, Instant};

use keel_master::Config;
use keel_proto::v1::master_client::MasterClient;
use keel_proto::v1::{
    ChunkReplica, HeartbeatRequest, ListServersRequest, RebalanceCheckRequest,
    RebalancePauseRequest, RebalancePlanRequest, RebalanceStatusRequest,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

fn heartbeat(id: &str, used: u64) -> HeartbeatRequest {
    HeartbeatRequest {
        id: id.into(),
        address: format!("127.0.0.1:{}", 7000 + used),
        capacity_bytes: 100,
        full_report: true,
        chunks: vec![ChunkReplica {
            chunk: format!("{id}-data"),
            size: used,
            crc32c: 1,
            replication: 1,
            reads: 0,
            ..Default::default()
        }],
        chunk_count: 1,
        ..Default::default()
    }
}

#[tokio::test]
async fn serves_and_stops() -> Result<(), Box<dyn std::error::Error>> {
    let grpc = TcpListener::bind("127.0.0.1:0").await?;
    let http = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", grpc.local_addr()?);
    let shutdown = CancellationToken::new();
    let master = tokio::spawn(keel_master::run(
        Config::for_tests(),
        grpc,
        http,
        shutdown.clone(),
    ));

    let channel = tonic::transport::Channel::from_shared(url)?
        .connect()
        .await?;
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "keel.v1.Master".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let mut m = MasterClient::new(channel);
    for (id, used) in [("cs1", 78), ("cs2", 50), ("cs3", 57), ("cs4", 15)] {
        let r = m.heartbeat(heartbeat(id, used)).await?.into_inner();
        assert!(!r.send_full_report);
    }
    let servers = m.list_servers(ListServersRequest {}).await?.into_inner();
    assert_eq!(servers.servers.len(), 4);
    assert_eq!(servers.average_utilization_pct, 50.0);
    assert_eq!(servers.servers[0].address, "http://127.0.0.1:7078");
    let check = m
        .rebalance_check(RebalanceCheckRequest {})
        .await?
        .into_inner();
    let over: Vec<&str> = check.overloaded.iter().map(|s| s.server.as_str()).collect();
    let under: Vec<&str> = check
        .underloaded
        .iter()
        .map(|s| s.server.as_str())
        .collect();
    assert_eq!((over, under), (vec!["cs1"], vec!["cs4"]));
    let status = m
        .rebalance_status(RebalanceStatusRequest {})
        .await?
        .into_inner();
    assert_eq!((status.pending, status.running, status.done), (0, 0, 0));
    assert!(!status.balanced && !status.paused);
    assert_eq!(status.average_utilization_pct, 50.0);
    let plan = m
        .rebalance_plan(RebalancePlanRequest {})
        .await?
        .into_inner();
    assert_eq!(plan.average_utilization_pct, 50.0, "{plan:?}");
    let paused = m
        .rebalance_pause(RebalancePauseRequest {})
        .await?
        .into_inner();
    assert!(paused.paused);

    let started = Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), master).await???;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stopping took {:?}",
        started.elapsed()
    );
    Ok(())
}
