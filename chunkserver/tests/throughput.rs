//! Rough throughput of the data paths, two servers in this process on
//! loopback: a client write, a client read and a peer copy of one large chunk.
//! Not a benchmark (that lives with the benchmark suite); a quick way to see
//! whether a change to the I/O path made things faster or slower:
//!
//! `cargo test --release -p keel-chunkserver --test throughput -- --ignored --nocapture`
//!
//! `KEEL_THROUGHPUT_MIB` sets the chunk size (default 256) and
//! `KEEL_THROUGHPUT_BANDWIDTH` the servers' `--migrate-bandwidth` (default
//! unlimited), e.g. `768` and `64MiB` to check the throttle over a 12 s copy.

use std::time::{Duration, Instant};

use keel_chunkserver::{Config, run};
use keel_proto::v1::chunk_server_client::ChunkServerClient;
use keel_proto::v1::{ChunkHeader, CopyChunkRequest, ReadChunkRequest, WriteChunkRequest};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

async fn server(dir: &std::path::Path, id: &str, stop: &CancellationToken) -> String {
    let mut config = Config::new(id, dir.join(id));
    config.master = "http://127.0.0.1:1".into();
    config.migrate_bandwidth = std::env::var("KEEL_THROUGHPUT_BANDWIDTH")
        .ok()
        .and_then(|v| keel_chunkserver::config::parse_bandwidth(&v).ok())
        .unwrap_or(keel_chunkserver::config::Bandwidth::Fixed(0));
    config.heartbeat_interval = Duration::from_secs(3600);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(run(config, listener, stop.clone()));
    url
}

async fn client(url: &str) -> ChunkServerClient<Channel> {
    for _ in 0..100 {
        if let Ok(c) = ChunkServerClient::connect(url.to_owned()).await {
            return c
                .max_decoding_message_size(keel_proto::MAX_MESSAGE_BYTES)
                .max_encoding_message_size(keel_proto::MAX_MESSAGE_BYTES);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{url} never accepted a connection");
}

fn report(what: &str, bytes: usize, t: Instant) {
    let secs = t.elapsed().as_secs_f64();
    let mib = bytes as f64 / (1 << 20) as f64;
    eprintln!(
        "{what:>6}: {mib:.0} MiB in {secs:.2} s = {:.0} MiB/s",
        mib / secs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --release --ignored --nocapture"]
async fn write_read_copy_throughput() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "keel_chunkserver::transfer=info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let mib: usize = std::env::var("KEEL_THROUGHPUT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let data: Vec<u8> = (0..mib << 20).map(|i| (i * 31 % 251) as u8).collect();
    let crc = crc32c::crc32c(&data);
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let (a, b) = (
        server(dir.path(), "a", &stop).await,
        server(dir.path(), "b", &stop).await,
    );
    let mut ca = client(&a).await;
    let mut cb = client(&b).await;

    let header = WriteChunkRequest {
        header: Some(ChunkHeader {
            chunk: "big".into(),
            size: data.len() as u64,
            crc32c: crc,
            replication: 1,
        }),
        data: Default::default(),
        capability: None,
    };
    let mut msgs = vec![header];
    msgs.extend(
        data.chunks(keel_proto::FRAME_BYTES)
            .map(|d| WriteChunkRequest {
                header: None,
                data: d.to_vec().into(),
                capability: None,
            }),
    );
    let t = Instant::now();
    ca.write_chunk(tokio_stream::iter(msgs))
        .await
        .expect("write");
    report("write", data.len(), t);

    let t = Instant::now();
    let req = ReadChunkRequest {
        chunk: "big".into(),
        migration: false,
    };
    let mut s = ca.read_chunk(req).await.expect("read").into_inner();
    let mut n = 0;
    while let Some(m) = s.next().await {
        n += m.expect("frame").data.len();
    }
    assert_eq!(n, data.len());
    report("read", n, t);

    // A migration read draws from the source's bucket only, with no fsync at
    // the end: the cleanest view of the throttle.
    let t = Instant::now();
    let req = ReadChunkRequest {
        chunk: "big".into(),
        migration: true,
    };
    let mut s = ca.read_chunk(req).await.expect("read").into_inner();
    let mut n = 0;
    while let Some(m) = s.next().await {
        n += m.expect("frame").data.len();
    }
    report("mread", n, t);

    let t = Instant::now();
    let req = CopyChunkRequest {
        chunk: "big".into(),
        source_id: "a".into(),
        source_address: a.clone(),
        expected_size: data.len() as u64,
        expected_crc32c: crc,
        term: 0,
    };
    cb.copy_chunk(req).await.expect("copy");
    report("copy", data.len(), t);
    stop.cancel();
}
