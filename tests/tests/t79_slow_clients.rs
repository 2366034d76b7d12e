//! Slow and hostile clients cost nothing lasting on a chunk server (real
//! processes): 600 write streams that send a header and then nothing leave
//! reads of an existing chunk prompt (p99 under 100 ms); after
//! `--stream-idle-timeout` every stream ends with DEADLINE_EXCEEDED and every
//! reservation, temp file and chunk id comes back, so a retry of the same id
//! works; `--max-transfers` refuses writes and copies beyond the limit with
//! RESOURCE_EXHAUSTED; and a copy source that sends its header and then
//! stalls (a fake peer) ends the copy after the idle timeout, releasing all.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use futures::{Stream, StreamExt};
use keel_proto::v1::{ChunkHeader, ReadChunkRequest, ReadChunkResponse, WriteChunkRequest};
use keel_tests::chunks::{pattern, read, write};
use keel_tests::cs::{self, no_master};
use keel_tests::{Cluster, CsOpts, chunkserver_client, wait_until};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::{Code, Status};

/// Header-only writes held open at once.
const STALLED: usize = 600;
/// Streams per client connection (below the servers' per-connection limit).
const PER_CONNECTION: usize = 50;
/// Declared size of every stalled write.
const STALLED_SIZE: u64 = 1 << 20;

fn opts(extra: &[&str]) -> CsOpts {
    let mut o = no_master(None, "2GiB");
    o.extra.extend(extra.iter().map(|s| s.to_string()));
    o
}

/// A write stream that sends `header` (and `data`, if any) and then nothing;
/// the sender keeps it open until the server gives up. Returns the server's
/// answer.
fn stall_write(
    mut client: keel_proto::v1::chunk_server_client::ChunkServerClient<tonic::transport::Channel>,
    header: ChunkHeader,
    data: Vec<u8>,
) -> JoinHandle<Status> {
    tokio::spawn(async move {
        let (tx, rx) = mpsc::channel(2);
        let _ = tx
            .send(WriteChunkRequest {
                header: Some(header),
                data: data.into(),
                capability: None,
            })
            .await;
        let r = client.write_chunk(ReceiverStream::new(rx)).await;
        drop(tx);
        match r {
            Ok(_) => Status::ok("written"),
            Err(s) => s,
        }
    })
}

fn stalled_header(id: &str) -> ChunkHeader {
    ChunkHeader {
        chunk: id.to_owned(),
        size: STALLED_SIZE,
        crc32c: 0,
        replication: 1,
    }
}

/// Reads `id` `n` times over one connection (or until `budget` passes) and
/// returns the latencies, sorted.
async fn read_latencies(url: &str, id: &str, n: usize, budget: Duration) -> Result<Vec<Duration>> {
    let mut c = chunkserver_client(url).await?;
    let started = Instant::now();
    let mut out = Vec::with_capacity(n);
    while out.len() < n && started.elapsed() < budget {
        let t = Instant::now();
        let mut s = c
            .read_chunk(ReadChunkRequest {
                chunk: id.to_owned(),
                migration: false,
            })
            .await?
            .into_inner();
        let mut bytes = 0;
        while let Some(m) = s.next().await {
            bytes += m?.data.len();
        }
        ensure!(bytes == 1024, "read {bytes} bytes");
        out.push(t.elapsed());
    }
    out.sort();
    Ok(out)
}

fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99 / 100).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_writes_leave_reads_prompt_and_give_everything_back() -> Result<()> {
    let mut cluster = Cluster::new()?;
    cluster.add_chunkserver(
        "cs1",
        opts(&["--stream-idle-timeout", "4s", "--max-transfers", "1000"]),
    )?;
    let url = cluster.cs("cs1").url();
    let dir = cluster.data_dir("cs1");
    let small = pattern(1, 1024);
    write(&url, "existing", &small, 1).await?;
    let baseline = read_latencies(&url, "existing", 50, Duration::from_secs(5)).await?;

    let mut clients = Vec::new();
    for _ in 0..STALLED.div_ceil(PER_CONNECTION) {
        clients.push(chunkserver_client(&url).await?);
    }
    let opened = Instant::now();
    let stalled: Vec<JoinHandle<Status>> = (0..STALLED)
        .map(|i| {
            // One of them stalls after some data rather than right after its header.
            let data = if i == 0 { pattern(2, 1000) } else { vec![] };
            let client = clients[i / PER_CONNECTION].clone();
            stall_write(client, stalled_header(&format!("s{i}")), data)
        })
        .collect();
    wait_until(
        "every stalled write admitted",
        Duration::from_secs(10),
        || {
            let url = url.clone();
            async move {
                cs::status(&url)
                    .await
                    .is_ok_and(|s| s.in_flight as usize == STALLED)
            }
        },
    )
    .await?;
    let held = cs::status(&url).await?;
    assert_eq!(held.reserved_bytes, STALLED as u64 * STALLED_SIZE);

    let during = read_latencies(&url, "existing", 200, Duration::from_millis(1500)).await?;
    let still = cs::status(&url).await?;
    eprintln!(
        "reads: baseline p99 {:?}; with {STALLED} stalled writes: {} reads, p50 {:?}, p99 {:?}, max {:?}; admitted in {:?}",
        p99(&baseline),
        during.len(),
        during[during.len() / 2],
        p99(&during),
        during[during.len() - 1],
        opened.elapsed(),
    );
    assert_eq!(
        still.in_flight as usize, STALLED,
        "the stalled writes were still open while reads were measured"
    );
    assert!(during.len() >= 50, "only {} reads in 1.5 s", during.len());
    assert!(
        p99(&during) < Duration::from_millis(100),
        "p99 {:?}",
        p99(&during)
    );

    for h in stalled {
        let s = h.await?;
        assert_eq!(s.code(), Code::DeadlineExceeded, "{}", s.message());
        assert!(
            s.message().contains("--stream-idle-timeout"),
            "{}",
            s.message()
        );
    }
    let idle_for = opened.elapsed();
    assert!(
        idle_for >= Duration::from_secs(4),
        "ended after {idle_for:?}"
    );
    cs::wait_cleaned_up(&url, &dir, "every reservation back").await?;
    eprintln!(
        "all {STALLED} released {:?} after the first header",
        opened.elapsed()
    );

    // The ids are free again.
    let data = pattern(3, 300_000);
    write(&url, "s0", &data, 1).await?;
    assert_eq!(read(&url, "s0").await?, data);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_beyond_the_limit_are_refused() -> Result<()> {
    let mut cluster = Cluster::new()?;
    cluster.add_chunkserver(
        "cs1",
        opts(&["--stream-idle-timeout", "2s", "--max-transfers", "2"]),
    )?;
    let url = cluster.cs("cs1").url();
    let dir = cluster.data_dir("cs1");
    let small = pattern(4, 1024);
    write(&url, "existing", &small, 1).await?;

    let client = chunkserver_client(&url).await?;
    let stalled = [
        stall_write(client.clone(), stalled_header("a"), vec![]),
        stall_write(client.clone(), stalled_header("b"), vec![]),
    ];
    wait_until("both writes admitted", Duration::from_secs(10), || {
        let url = url.clone();
        async move { cs::status(&url).await.is_ok_and(|s| s.in_flight == 2) }
    })
    .await?;
    let s = write(&url, "c", &small, 1)
        .await
        .expect_err("a third write");
    assert_eq!(s.code(), Code::ResourceExhausted, "{}", s.message());
    assert!(s.message().contains("--max-transfers"), "{}", s.message());
    assert!(s.message().contains("limit of 2"), "{}", s.message());
    let s = cs::copy(&url, "d", "cs9", "http://127.0.0.1:1", None)
        .await
        .expect_err("a copy");
    assert_eq!(s.code(), Code::ResourceExhausted, "{}", s.message());
    // Refusals hold nothing; reads and status go on.
    assert_eq!(cs::status(&url).await?.in_flight, 2);
    assert_eq!(read(&url, "existing").await?, small);

    for h in stalled {
        assert_eq!(h.await?.code(), Code::DeadlineExceeded);
    }
    cs::wait_cleaned_up(&url, &dir, "both slots back").await?;
    write(&url, "c", &small, 1).await?;
    write(&url, "a", &small, 1).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalling_copy_source_costs_nothing_lasting() -> Result<()> {
    let mut cluster = Cluster::new()?;
    cluster.add_chunkserver("cs1", opts(&["--stream-idle-timeout", "2s"]))?;
    let url = cluster.cs("cs1").url();
    let dir = cluster.data_dir("cs1");
    let source = StallingSource::serve().await?;

    let started = Instant::now();
    let copy = tokio::spawn({
        let (url, source) = (url.clone(), source.clone());
        async move { cs::copy(&url, "slow", "fake", &source, Some((STALLED_SIZE, 0))).await }
    });
    wait_until("the copy admitted", Duration::from_secs(10), || {
        let url = url.clone();
        async move { cs::status(&url).await.is_ok_and(|s| s.in_flight == 1) }
    })
    .await?;
    assert_eq!(cs::status(&url).await?.reserved_bytes, STALLED_SIZE);
    let s = copy.await?.expect_err("the copy cannot finish");
    let took = started.elapsed();
    eprintln!(
        "copy from a stalling source ended after {took:?}: {}",
        s.message()
    );
    assert_eq!(s.code(), Code::DeadlineExceeded, "{}", s.message());
    assert!(
        s.message().contains("sent nothing for 2 s"),
        "{}",
        s.message()
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    cs::wait_cleaned_up(&url, &dir, "the copy's reservation back").await?;
    let data = pattern(5, 4096);
    write(&url, "slow", &data, 1).await?;
    assert_eq!(read(&url, "slow").await?, data);
    Ok(())
}

/// A peer that answers every `ReadChunk` with a header and then nothing, on
/// its own port, for as long as the test runs.
#[derive(Clone)]
struct StallingSource;

impl StallingSource {
    /// Serves on 127.0.0.1:0 and returns its URL.
    async fn serve() -> Result<String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(StallingSource)
                .serve_with_incoming(incoming),
        );
        Ok(url)
    }
}

impl tonic::server::NamedService for StallingSource {
    const NAME: &'static str = "keel.v1.ChunkServer";
}

impl Service<http::Request<tonic::body::Body>> for StallingSource {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async move {
            let codec = tonic_prost::ProstCodec::<ReadChunkResponse, ReadChunkRequest>::default();
            Ok(tonic::server::Grpc::new(codec)
                .server_streaming(HeaderThenNothing, req)
                .await)
        })
    }
}

/// The stalling `ReadChunk` itself.
struct HeaderThenNothing;

type Frames = Pin<Box<dyn Stream<Item = Result<ReadChunkResponse, Status>> + Send>>;

impl tonic::server::ServerStreamingService<ReadChunkRequest> for HeaderThenNothing {
    type Response = ReadChunkResponse;
    type ResponseStream = Frames;
    type Future = BoxFuture<tonic::Response<Frames>, Status>;

    fn call(&mut self, req: tonic::Request<ReadChunkRequest>) -> Self::Future {
        let header = ReadChunkResponse {
            header: Some(ChunkHeader {
                chunk: req.into_inner().chunk,
                size: STALLED_SIZE,
                crc32c: 0,
                replication: 1,
            }),
            data: Default::default(),
        };
        let frames =
            futures::stream::once(async move { Ok(header) }).chain(futures::stream::pending());
        Box::pin(async move { Ok(tonic::Response::new(Box::pin(frames) as Frames)) })
    }
}
