//! What a chunk server tells its master, checked message by message against a
//! recording `keel.v1.Master` in the same process: a full report first, a
//! delta soon after each commit or delete, deltas kept across failed
//! heartbeats, a full report again when the master asks, read counts, and
//! corruption reports. The real master is exercised by the workspace's
//! integration tests; this one pins the exact protocol.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_chunkserver::{Config, run};
use keel_proto::v1::chunk_server_client::ChunkServerClient;
use keel_proto::v1::master_server::{Master, MasterServer};
use keel_proto::v1::*;
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

/// What the recording master saw and how it answers.
#[derive(Default)]
struct Seen {
    beats: Vec<HeartbeatRequest>,
    corruption: Vec<ReportCorruptionRequest>,
    /// Answer heartbeats with UNAVAILABLE.
    failing: bool,
    /// Ask for a full report in the next answer.
    want_full: bool,
}

#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Seen>>);

impl Recorder {
    fn with<T>(&self, f: impl FnOnce(&mut Seen) -> T) -> T {
        f(&mut self.0.lock().expect("recorder lock"))
    }
}

type R<T> = Result<Response<T>, Status>;

fn unimplemented<T>() -> R<T> {
    Err(Status::unimplemented("not part of this test"))
}

#[tonic::async_trait]
impl Master for Recorder {
    async fn heartbeat(&self, req: Request<HeartbeatRequest>) -> R<HeartbeatResponse> {
        self.with(|s| {
            if s.failing {
                return Err(Status::unavailable("master is failing on purpose"));
            }
            s.beats.push(req.into_inner());
            let send_full_report = std::mem::take(&mut s.want_full);
            Ok(Response::new(HeartbeatResponse {
                send_full_report,
                ..Default::default()
            }))
        })
    }
    async fn report_corruption(
        &self,
        req: Request<ReportCorruptionRequest>,
    ) -> R<ReportCorruptionResponse> {
        self.with(|s| s.corruption.push(req.into_inner()));
        Ok(Response::new(ReportCorruptionResponse {}))
    }
    async fn list_servers(&self, _: Request<ListServersRequest>) -> R<ListServersResponse> {
        unimplemented()
    }
    async fn drain_server(
        &self,
        _: Request<keel_proto::v1::DrainServerRequest>,
    ) -> R<keel_proto::v1::DrainServerResponse> {
        unimplemented()
    }
    async fn undrain_server(
        &self,
        _: Request<keel_proto::v1::UndrainServerRequest>,
    ) -> R<keel_proto::v1::DrainServerResponse> {
        unimplemented()
    }
    async fn explain_chunk(
        &self,
        _: Request<keel_proto::v1::ExplainChunkRequest>,
    ) -> R<keel_proto::v1::ExplainChunkResponse> {
        unimplemented()
    }
    async fn locate_chunk(&self, _: Request<LocateChunkRequest>) -> R<LocateChunkResponse> {
        unimplemented()
    }
    async fn allocate_chunk(&self, _: Request<AllocateChunkRequest>) -> R<AllocateChunkResponse> {
        unimplemented()
    }
    async fn rebalance_check(
        &self,
        _: Request<RebalanceCheckRequest>,
    ) -> R<RebalanceCheckResponse> {
        unimplemented()
    }
    async fn rebalance_execute(
        &self,
        _: Request<RebalanceExecuteRequest>,
    ) -> R<RebalanceExecuteResponse> {
        unimplemented()
    }
    async fn rebalance_plan(&self, _: Request<RebalancePlanRequest>) -> R<RebalancePlanResponse> {
        unimplemented()
    }
    async fn rebalance_run(&self, _: Request<RebalanceRunRequest>) -> R<RebalanceRunResponse> {
        unimplemented()
    }
    async fn rebalance_status(
        &self,
        _: Request<RebalanceStatusRequest>,
    ) -> R<RebalanceStatusResponse> {
        unimplemented()
    }
    async fn rebalance_pause(
        &self,
        _: Request<RebalancePauseRequest>,
    ) -> R<RebalanceStatusResponse> {
        unimplemented()
    }
    async fn rebalance_resume(
        &self,
        _: Request<RebalanceResumeRequest>,
    ) -> R<RebalanceStatusResponse> {
        unimplemented()
    }
}

async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn write(c: &mut ChunkServerClient<Channel>, id: &str, data: &[u8]) {
    let msgs = vec![
        WriteChunkRequest {
            header: Some(ChunkHeader {
                chunk: id.into(),
                size: data.len() as u64,
                crc32c: crc32c::crc32c(data),
                replication: 2,
            }),
            data: Default::default(),
            capability: None,
        },
        WriteChunkRequest {
            header: None,
            data: data.to_vec().into(),
            capability: None,
        },
    ];
    c.write_chunk(tokio_stream::iter(msgs))
        .await
        .expect("write");
}

async fn read(c: &mut ChunkServerClient<Channel>, id: &str) -> Result<Vec<u8>, Status> {
    let req = ReadChunkRequest {
        chunk: id.into(),
        migration: false,
    };
    let mut s = c.read_chunk(req).await?.into_inner();
    let mut out = vec![];
    while let Some(m) = s.next().await {
        out.extend(m?.data);
    }
    Ok(out)
}

fn ids(chunks: &[ChunkReplica]) -> Vec<(&str, u64)> {
    let mut v: Vec<_> = chunks.iter().map(|c| (c.chunk.as_str(), c.reads)).collect();
    v.sort_unstable();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_carry_full_reports_then_acknowledged_deltas() {
    let rec = Recorder::default();
    let master = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let master_addr = master.local_addr().expect("addr");
    let stop = CancellationToken::new();
    tokio::spawn(
        Server::builder()
            .add_service(MasterServer::new(rec.clone()))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(master),
                stop.clone().cancelled_owned(),
            ),
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new("cs7", dir.path());
    config.master = master_addr.to_string(); // a bare host:port
    config.capacity = Some(1 << 20);
    config.rack = Some("r1".into());
    // Long enough that a quick delta can only come from the commit nudge.
    config.heartbeat_interval = Duration::from_secs(2);
    let cs = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let cs_addr = cs.local_addr().expect("addr");
    let server = tokio::spawn(run(config, cs, stop.clone()));
    let mut c = ChunkServerClient::new(
        Channel::from_shared(format!("http://{cs_addr}"))
            .expect("url")
            .connect_lazy(),
    );

    wait_for("the first heartbeat", Duration::from_secs(5), || {
        rec.with(|s| !s.beats.is_empty())
    })
    .await;
    let first = rec.with(|s| s.beats[0].clone());
    assert!(first.full_report);
    assert_eq!((first.id.as_str(), first.rack.as_str()), ("cs7", "r1"));
    assert_eq!(first.address, format!("http://{cs_addr}"));
    assert_eq!(
        (first.capacity_bytes, first.used_bytes, first.chunk_count),
        (1 << 20, 0, 0)
    );

    // A commit is reported well before the next 2 s tick.
    let t = Instant::now();
    write(&mut c, "a", b"alpha").await;
    wait_for("a delta with chunk a", Duration::from_secs(1), || {
        rec.with(|s| {
            s.beats
                .iter()
                .any(|b| !b.full_report && ids(&b.chunks) == [("a", 0)])
        })
    })
    .await;
    eprintln!("commit reached the master after {:?}", t.elapsed());

    // The master goes away: changes wait for it and arrive in one delta.
    rec.with(|s| s.failing = true);
    write(&mut c, "b", b"bravo").await;
    c.delete_chunk(DeleteChunkRequest {
        chunk: "a".into(),
        term: 0,
        ..Default::default()
    })
    .await
    .expect("delete");
    assert_eq!(read(&mut c, "b").await.expect("read"), b"bravo");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rec.with(|s| {
        s.failing = false;
        s.beats.len()
    });
    wait_for("the retained delta", Duration::from_secs(5), || {
        rec.with(|s| s.beats.len() > before)
    })
    .await;
    let delta = rec.with(|s| s.beats[before].clone());
    assert!(!delta.full_report);
    assert_eq!(ids(&delta.chunks), [("b", 1)]);
    assert_eq!(delta.removed, ["a"]);
    assert_eq!((delta.used_bytes, delta.chunk_count), (5, 1));

    // Acknowledged: the next delta is empty. Then the master asks for a full report.
    rec.with(|s| s.want_full = true);
    let n = rec.with(|s| s.beats.len());
    wait_for("two more heartbeats", Duration::from_secs(6), || {
        rec.with(|s| s.beats.len() >= n + 2)
    })
    .await;
    let (quiet, full) = rec.with(|s| (s.beats[n].clone(), s.beats[n + 1].clone()));
    assert!(!quiet.full_report && quiet.chunks.is_empty() && quiet.removed.is_empty());
    assert!(full.full_report);
    assert_eq!(ids(&full.chunks), [("b", 1)]);
    assert_eq!(full.chunks[0].crc32c, crc32c::crc32c(b"bravo"));

    // Corruption is refused to the reader and reported to the master.
    let path = dir.path().join("chunks").join("b");
    let mut bytes = std::fs::read(&path).expect("read file");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&path, bytes).expect("write file");
    let err = read(&mut c, "b").await.expect_err("corrupt");
    assert_eq!(err.code(), tonic::Code::DataLoss);
    wait_for("the corruption report", Duration::from_secs(5), || {
        rec.with(|s| {
            s.corruption
                .iter()
                .any(|r| r.chunk == "b" && r.server == "cs7")
        })
    })
    .await;

    stop.cancel();
    server.await.expect("join").expect("clean shutdown");
}

/// Client reads show in every heartbeat that follows: the server's load and
/// its hottest replicas, hottest first. A peer's migration read does not
/// count, and a deleted chunk leaves the list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_carry_the_read_load_and_the_hottest_chunks() {
    let rec = Recorder::default();
    let master = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let master_addr = master.local_addr().expect("addr");
    let stop = CancellationToken::new();
    tokio::spawn(
        Server::builder()
            .add_service(MasterServer::new(rec.clone()))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(master),
                stop.clone().cancelled_owned(),
            ),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new("cs8", dir.path());
    config.master = master_addr.to_string();
    config.capacity = Some(1 << 20);
    config.heartbeat_interval = Duration::from_millis(200);
    let cs = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let cs_addr = cs.local_addr().expect("addr");
    let server = tokio::spawn(run(config, cs, stop.clone()));
    let mut c = ChunkServerClient::new(
        Channel::from_shared(format!("http://{cs_addr}"))
            .expect("url")
            .connect_lazy(),
    );

    write(&mut c, "hot", &[7; 1000]).await;
    write(&mut c, "warm", &[8; 10]).await;
    write(&mut c, "moved", &[9; 10]).await;
    for _ in 0..30 {
        assert_eq!(read(&mut c, "hot").await.expect("read").len(), 1000);
    }
    read(&mut c, "warm").await.expect("read");
    // A migration read (cluster token: none set here) is not a client's.
    let req = ReadChunkRequest {
        chunk: "moved".into(),
        migration: true,
    };
    let mut s = c
        .read_chunk(req)
        .await
        .expect("migration read")
        .into_inner();
    let mut got = 0;
    while let Some(m) = s.next().await {
        got += m.expect("migration frame").data.len();
    }
    assert_eq!(got, 10, "the migration read went through");

    let start = rec.with(|s| s.beats.len());
    wait_for(
        "a heartbeat with hot chunks",
        Duration::from_secs(5),
        || rec.with(|s| s.beats[start..].iter().any(|b| b.hot_chunks.len() == 2)),
    )
    .await;
    let beat = rec.with(|s| {
        s.beats[start..]
            .iter()
            .find(|b| b.hot_chunks.len() == 2)
            .cloned()
            .expect("found")
    });
    let names: Vec<_> = beat.hot_chunks.iter().map(|h| h.chunk.as_str()).collect();
    assert_eq!(names, ["hot", "warm"]);
    let hot = &beat.hot_chunks[0];
    // 30 reads at a one-minute time constant: about half a read a second.
    assert!((0.45..=0.5).contains(&hot.reads_per_sec), "{hot:?}");
    assert!(
        (hot.read_bytes_per_sec / hot.reads_per_sec - 1000.0).abs() < 1.0,
        "{hot:?}"
    );
    let load = beat.load.expect("load in every heartbeat");
    assert!(
        (load.reads_per_sec - 31.0 / 60.0).abs() < 0.02,
        "the migration read is not counted: {load:?}"
    );
    assert!(load.read_p99_ms > 0.0, "{load:?}");

    c.delete_chunk(DeleteChunkRequest {
        chunk: "hot".into(),
        term: 0,
        ..Default::default()
    })
    .await
    .expect("delete");
    let n = rec.with(|s| s.beats.len());
    wait_for("a delta after the delete", Duration::from_secs(5), || {
        rec.with(|s| s.beats[n..].iter().any(|b| b.removed == ["hot"]))
    })
    .await;
    rec.with(|s| {
        let after = s.beats[n..]
            .iter()
            .find(|b| b.removed == ["hot"])
            .expect("found");
        let names: Vec<_> = after.hot_chunks.iter().map(|h| h.chunk.as_str()).collect();
        assert_eq!(names, ["warm"]);
        // Every heartbeat carries the load, full or delta.
        assert!(s.beats.iter().all(|b| b.load.is_some()));
    });

    stop.cancel();
    server.await.expect("join").expect("clean shutdown");
}
