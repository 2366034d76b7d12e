//! The zoo's cases. Each states its bounds as what it may add to the
//! attacked daemon's usage before it started.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use futures::StreamExt;
use futures::future::join_all;
use keel_proto::v1::{
    ChunkHeader, ReadChunkRequest, ReportCorruptionRequest, VerifyChunkRequest, WriteChunkRequest,
};
use keel_tests::chunks::{pattern, rot};
use keel_tests::master::metric_of;
use keel_tests::wait_until;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::attack::{self, refused, withheld};
use crate::probe::{Bounds, Good, Sampler, Usage, check_p99, figures, usage};
use crate::{CLIENT, CLUSTER, GOOD_CHUNK, GOOD_SIZE, IDLE, MAX_READS, cluster};

/// Idle samples of the well-behaved client.
const IDLE_SAMPLES: usize = 100;

/// The shortest time a well-behaved client runs during a case: a few
/// hundred calls, so one slow call is not its p99.
const MIN_WINDOW: Duration = Duration::from_secs(3);

/// Stops `good` and returns its p99, refusing a window too short to have one.
async fn busy(good: &mut Good) -> Result<Duration> {
    let (p99, calls) = good.finish().await?;
    ensure!(
        calls >= 100,
        "the well-behaved client made only {calls} calls"
    );
    Ok(p99)
}

/// Waits until `pid`'s usage is back within `bounds` of `before`.
async fn settles(what: &str, pid: u32, before: Usage, bounds: Bounds) -> Result<Usage> {
    let r = wait_until(what, Duration::from_secs(20), || async {
        usage(pid).is_ok_and(|u| bounds.check(what, before, u).is_ok())
    })
    .await;
    let now = usage(pid)?;
    r.map_err(|e| anyhow::anyhow!("{e}: {now}"))?;
    Ok(now)
}

/// 300 reads of a 16 MiB chunk over 3 connections whose client never takes
/// a byte: a quarter of `--max-reads` per connection is admitted, the rest
/// refused at once; after `--stream-idle-timeout` the admitted ones are
/// reset and their files and buffers released while the client still holds
/// them, and a client that finally reads gets DEADLINE_EXCEEDED.
pub async fn stalled_reads() -> Result<()> {
    let mut c = cluster(true, &[]).await?;
    let url = c.cs("cs1").url();
    let pid = c.cs("cs1").pid().expect("running");
    attack::write(&url, Some(CLUSTER), "big", &pattern(3, 16 << 20)).await?;
    let mut good = attack::reader(&url, Some(CLIENT), GOOD_CHUNK, GOOD_SIZE)?;
    let idle = good.idle_p99(IDLE_SAMPLES)?;
    let before = usage(pid)?;
    let sampler = Sampler::start(pid);
    good.start()?;
    let (conns, per_conn) = (3, 100);
    let mut held = vec![];
    let mut refusals = 0;
    for _ in 0..conns {
        let client = attack::cs(&url, Some(CLIENT)).await?;
        let calls = (0..per_conn).map(|_| {
            let mut c = client.clone();
            async move {
                c.read_chunk(ReadChunkRequest {
                    chunk: "big".into(),
                    migration: false,
                })
                .await
            }
        });
        for r in join_all(calls).await {
            match r {
                Ok(s) => held.push(s.into_inner()),
                Err(s) => {
                    ensure!(
                        s.code() == Code::ResourceExhausted && s.message().contains("retry later"),
                        "a read beyond the budget got {s:?}"
                    );
                    refusals += 1;
                }
            }
        }
    }
    let share = (MAX_READS / 4).max(1);
    tokio::time::sleep(IDLE + Duration::from_millis(1500)).await;
    let during = sampler.peak().await?;
    let busy = busy(&mut good).await?;
    // Each running read holds its file twice (the handle it was opened
    // with and the one its batches read through).
    let live = Bounds {
        fds: 2 * conns * share + conns + 16,
        rss_mib: (conns * share * 5) as u64 + 32,
        threads: 48,
    };
    live.check("stalled reads, during", before, during)?;
    ensure!(
        held.len() <= conns * share && held.len() + refusals == conns * per_conn,
        "{} reads admitted, {refusals} refused; at most {} may run",
        held.len(),
        conns * share
    );

    // Reset: files closed while the client still holds every stream.
    // Freed memory is not always handed back to the OS at once, so the
    // reset is judged by its files; memory keeps the running bound.
    let reset = Bounds {
        fds: conns + 8,
        ..live
    };
    settles("stalled reads reset", pid, before, reset).await?;
    // The others go first: their unread data holds their connection's
    // flow-control window, which the resumed stream needs.
    let mut first = held.swap_remove(0);
    drop(held);
    let mut ended = None;
    while let Some(m) = first.next().await {
        if let Err(s) = m {
            ended = Some(s);
            break;
        }
    }
    ensure!(
        ended
            .as_ref()
            .is_some_and(|s| s.code() == Code::DeadlineExceeded
                && s.message().contains("--stream-idle-timeout")),
        "a stalled read that resumed ended with {ended:?}, not DEADLINE_EXCEEDED"
    );
    drop(first);
    let after = settles("stalled reads, after", pid, before, reset).await?;
    figures(
        "stalled reads (300 × 16 MiB)",
        before,
        during,
        after,
        idle,
        busy,
    );
    check_p99("stalled reads", idle, busy)
}

/// 200 writes over 4 connections that send a header and then nothing:
/// `--max-transfers` (64) hold a temp file each, the rest are refused at
/// once; after `--stream-idle-timeout` everything is released.
pub async fn stalled_writes() -> Result<()> {
    let mut c = cluster(true, &[]).await?;
    let url = c.cs("cs1").url();
    let pid = c.cs("cs1").pid().expect("running");
    let mut good = attack::reader(&url, Some(CLIENT), GOOD_CHUNK, GOOD_SIZE)?;
    let idle = good.idle_p99(IDLE_SAMPLES)?;
    let before = usage(pid)?;
    let sampler = Sampler::start(pid);
    good.start()?;
    let (conns, per_conn, max_transfers) = (4, 50, 64);
    let mut senders = vec![];
    let mut calls = vec![];
    for conn in 0..conns {
        // The cluster token: a client's write without a capability is
        // refused before it reserves anything, so only a writer allowed to
        // write can stall one, and it is held to the same transfer budget.
        let client = attack::cs(&url, Some(CLUSTER)).await?;
        for i in 0..per_conn {
            let (tx, rx) = mpsc::channel(1);
            tx.send(WriteChunkRequest {
                header: Some(ChunkHeader {
                    chunk: format!("stalled-{conn}-{i}"),
                    size: 1 << 20,
                    crc32c: 0,
                    replication: 1,
                }),
                data: Default::default(),
                capability: None,
            })
            .await?;
            senders.push(tx);
            let mut c = client.clone();
            calls.push(tokio::spawn(async move {
                c.write_chunk(ReceiverStream::new(rx)).await
            }));
        }
    }
    tokio::time::sleep(MIN_WINDOW).await;
    let during = sampler.peak().await?;
    let busy = busy(&mut good).await?;
    // Each admitted write may hold a blocking thread while it creates its
    // temp file.
    Bounds {
        fds: max_transfers + conns + 16,
        rss_mib: 64,
        threads: max_transfers as u64 + 16,
    }
    .check("stalled writes, during", before, during)?;
    let mut codes = vec![];
    for call in calls {
        let r = tokio::time::timeout(IDLE * 4, call).await??;
        codes.push(r.err().map(|s| s.code()));
    }
    let exhausted = codes
        .iter()
        .filter(|c| **c == Some(Code::ResourceExhausted))
        .count();
    let idled = codes
        .iter()
        .filter(|c| **c == Some(Code::DeadlineExceeded))
        .count();
    ensure!(
        idled <= max_transfers && exhausted + idled == codes.len(),
        "{idled} writes ran until idle, {exhausted} refused, of {}",
        codes.len()
    );
    drop(senders);
    let after = settles(
        "stalled writes, after",
        pid,
        before,
        Bounds {
            fds: conns + 8,
            rss_mib: 48,
            threads: max_transfers as u64 + 16,
        },
    )
    .await?;
    figures(
        "stalled writes (200 headers)",
        before,
        during,
        after,
        idle,
        busy,
    );
    check_p99("stalled writes", idle, busy)
}

/// 2,000 `ReportCorruption` calls for one healthy 4 MiB chunk, from a
/// client token: the master takes a burst and refuses the rest with
/// RESOURCE_EXHAUSTED, the holder rereads the chunk at most a few times, and
/// direct verifications of a freshly verified replica read nothing.
pub async fn report_storm() -> Result<()> {
    let mut c = cluster(true, &[]).await?;
    let url = c.cs("cs1").url();
    let pid = c.cs("cs1").pid().expect("running");
    let http = c.cs("cs1").http_addr.expect("cs1 has --http-listen");
    attack::write(&url, Some(CLUSTER), "hot", &pattern(5, 4 << 20)).await?;
    let murl = c.master_url();
    let m = attack::master(&murl, Some(CLIENT)).await?;
    wait_until(
        "the master knows the chunk",
        Duration::from_secs(20),
        || {
            let mut m = m.clone();
            async move {
                m.locate_chunk(keel_proto::v1::LocateChunkRequest {
                    chunk: "hot".into(),
                    rack: Default::default(),
                })
                .await
                .is_ok_and(|r| !r.into_inner().replicas.is_empty())
            }
        },
    )
    .await?;
    let verify_reads = || async {
        metric_of(http, "keel_chunkserver_verify_reads_total")
            .await
            .ok()
            .flatten()
            .unwrap_or(f64::NAN)
    };
    let mut good = attack::reader(&url, Some(CLIENT), GOOD_CHUNK, GOOD_SIZE)?;
    let idle = good.idle_p99(IDLE_SAMPLES)?;
    let before = usage(pid)?;
    let sampler = Sampler::start(pid);
    good.start()?;
    let (tasks, each) = (16, 125);
    let storm = (0..tasks).map(|_| {
        let mut m = m.clone();
        async move {
            let mut codes = vec![];
            for _ in 0..each {
                let r = m
                    .report_corruption(ReportCorruptionRequest {
                        chunk: "hot".into(),
                        server: "cs1".into(),
                        detail: "zoo".into(),
                    })
                    .await;
                codes.push(r.err().map(|s| (s.code(), s.message().to_owned())));
            }
            codes
        }
    });
    let started = Instant::now();
    let codes: Vec<_> = join_all(storm).await.into_iter().flatten().collect();
    let took = started.elapsed();
    // Let any verification asked for finish.
    tokio::time::sleep(MIN_WINDOW).await;
    let during = sampler.peak().await?;
    let busy = busy(&mut good).await?;
    let accepted = codes.iter().filter(|c| c.is_none()).count();
    let limited = codes
        .iter()
        .flatten()
        .filter(|(code, msg)| *code == Code::ResourceExhausted && msg.contains("retry later"))
        .count();
    let reads = verify_reads().await;
    println!(
        "report storm: {} reports in {took:?}, {accepted} accepted, {limited} limited, {reads} verify reads",
        codes.len()
    );
    ensure!(
        accepted + limited == codes.len() && accepted <= 4,
        "{accepted} reports accepted, {limited} limited, of {}",
        codes.len()
    );
    ensure!(
        reads <= 3.0,
        "{reads} whole-chunk verify reads for one healthy chunk"
    );
    // A fresh verdict stands: direct verifications read nothing more.
    let mut cs = attack::cs(&url, Some(CLUSTER)).await?;
    for _ in 0..20 {
        cs.verify_chunk(VerifyChunkRequest {
            chunk: "hot".into(),
        })
        .await?;
    }
    let again = verify_reads().await;
    ensure!(
        again <= reads.max(1.0),
        "20 verifications of a fresh replica made {again} verify reads (was {reads})"
    );
    let bounds = Bounds {
        fds: 24,
        rss_mib: 48,
        threads: 24,
    };
    bounds.check("report storm, during", before, during)?;
    let after = settles("report storm, after", pid, before, bounds).await?;
    figures(
        "report storm (2,000 reports)",
        before,
        during,
        after,
        idle,
        busy,
    );
    check_p99("report storm", idle, busy)?;
    // A read that fails on the replica voids its fresh verdict: the holder
    // reports it and the next verification reads it again and finds it.
    rot(&c.data_dir("cs1").join("chunks").join("hot"))?;
    let mut reader = attack::cs(&url, Some(CLIENT)).await?;
    let failed = attack::read_whole(&mut reader, "hot", 4 << 20).await;
    ensure!(failed.is_err(), "a read of a rotten replica succeeded");
    wait_until(
        "the rotten replica reread",
        Duration::from_secs(30),
        || async { verify_reads().await > again },
    )
    .await?;
    Ok(())
}

/// `migration: true` spends the bandwidth moves and repairs need: only the
/// cluster token may ask for it.
pub async fn migration_reads() -> Result<()> {
    let mut c = cluster(true, &[]).await?;
    let url = c.cs("cs1").url();
    let read = |token: &'static str| {
        let url = url.clone();
        async move {
            let mut cs = attack::cs(&url, Some(token)).await?;
            let r = cs
                .read_chunk(ReadChunkRequest {
                    chunk: GOOD_CHUNK.into(),
                    migration: true,
                })
                .await;
            anyhow::Ok(r.err())
        }
    };
    let refused = read(CLIENT).await?;
    ensure!(
        refused.as_ref().is_some_and(
            |s| s.code() == Code::PermissionDenied && s.message().contains("cluster token")
        ),
        "a client token's migration read got {refused:?}"
    );
    let peer = read(CLUSTER).await?;
    ensure!(
        peer.is_none(),
        "the cluster token's migration read got {peer:?}"
    );
    Ok(())
}

/// Doors of a chunk server: every service it serves.
const CS_DOORS: [&str; 6] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/keel.v1.ChunkServer/StatChunk",
    "/keel.v1.ChunkServer/ReadChunk",
    "/keel.v1.ChunkServer/WriteChunk",
];

/// Doors of a master; `Heartbeat` (which takes large pages) only with
/// tokens, where a client token may not call it.
const MASTER_DOORS: [&str; 7] = [
    "/grpc.health.v1.Health/Check",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    "/keel.v1.Master/LocateChunk",
    "/keel.v1.Master/AllocateChunk",
    "/keel.v1.Master/ReportCorruption",
    "/keel.v1.Master/Heartbeat",
];

/// Streams per door, each announcing [`ANNOUNCED`] bytes.
const PER_DOOR: usize = 8;
/// One byte short of tonic's default limit, as in the original report.
const ANNOUNCED: u32 = 4 * 1024 * 1024;

/// Eight streams on every door of both daemons, each announcing a 4 MiB
/// message and withholding its last byte: every one is refused at once
/// (RESOURCE_EXHAUSTED, or the token check first), and neither daemon grows.
pub async fn giant_messages(tokens: bool) -> Result<()> {
    let mut c = cluster(tokens, &[]).await?;
    let cs_url = c.cs("cs1").url();
    let murl = c.master_url();
    let pids = [
        (
            "master",
            c.master.as_ref().and_then(|m| m.pid()).expect("running"),
        ),
        ("cs1", c.cs("cs1").pid().expect("running")),
    ];
    let token = tokens.then_some(CLIENT);
    let mut good = [
        attack::locator(&murl, token, GOOD_CHUNK)?,
        attack::reader(&cs_url, token, GOOD_CHUNK, GOOD_SIZE)?,
    ];
    let idle = [
        good[0].idle_p99(IDLE_SAMPLES)?,
        good[1].idle_p99(IDLE_SAMPLES)?,
    ];
    let before = [usage(pids[0].1)?, usage(pids[1].1)?];
    let samplers = [Sampler::start(pids[0].1), Sampler::start(pids[1].1)];
    let started = Instant::now();
    for g in &mut good {
        g.start()?;
    }
    let doors: Vec<(&str, &str)> = MASTER_DOORS
        .iter()
        .filter(|d| tokens || !d.ends_with("/Heartbeat"))
        .map(|d| (murl.as_str(), *d))
        .chain(CS_DOORS.iter().map(|d| (cs_url.as_str(), *d)))
        .collect();
    let mut calls = vec![];
    for (url, door) in &doors {
        let ch = attack::channel(url).await?;
        for _ in 0..PER_DOOR {
            let (ch, door) = (ch.clone(), door.to_string());
            let token = token.map(str::to_owned);
            calls.push(tokio::spawn(async move {
                let r = withheld(
                    ch,
                    &door,
                    token.as_deref(),
                    ANNOUNCED,
                    Duration::from_secs(8),
                )
                .await;
                (door, r)
            }));
        }
    }
    let mut answers = vec![];
    for call in calls {
        answers.push(call.await?);
    }
    // Enough calls of the well-behaved clients for a p99.
    tokio::time::sleep(MIN_WINDOW.saturating_sub(started.elapsed())).await;
    let mut during = [Usage::default(); 2];
    for (i, s) in samplers.into_iter().enumerate() {
        during[i] = s.peak().await?;
    }
    let busy = [busy(&mut good[0]).await?, busy(&mut good[1]).await?];
    let bounds = Bounds {
        fds: 24,
        rss_mib: 48,
        threads: 16,
    };
    let label = if tokens { "with tokens" } else { "open" };
    for i in 0..2 {
        let what = format!("giant messages ({label}) on {}", pids[i].0);
        bounds.check(&what, before[i], during[i])?;
    }
    for (door, r) in &answers {
        match r {
            Ok(Some(s)) if refused(s) => {}
            // Reflection is a stream of requests: it ends its answer when
            // the request stream fails, without a status of its own.
            Ok(Some(s)) if door.contains("Reflection") && s.code() == Code::Ok => {}
            other => anyhow::bail!(
                "{door}: a withheld 4 MiB message got {other:?}, not a prompt refusal"
            ),
        }
    }
    for i in 0..2 {
        let what = format!("giant messages ({label}) on {}", pids[i].0);
        let after = settles(&what, pids[i].1, before[i], bounds).await?;
        figures(&what, before[i], during[i], after, idle[i], busy[i]);
        check_p99(&what, idle[i], busy[i])?;
    }
    Ok(())
}

/// Connections opened beyond the cap.
const FLOOD: usize = keel_proto::serving::MAX_CONNECTIONS + 200;

/// 1,224 TCP connections that never speak, to a chunk server capped at
/// 1,024: those past the cap are closed at once with a GOAWAY, the server's
/// fds stay near the cap, and a client already connected is not slowed.
pub async fn connection_flood() -> Result<()> {
    let mut c = cluster(true, &[]).await?;
    let url = c.cs("cs1").url();
    let addr = c.cs("cs1").addr;
    let pid = c.cs("cs1").pid().expect("running");
    let mut good = attack::reader(&url, Some(CLIENT), GOOD_CHUNK, GOOD_SIZE)?;
    let idle = good.idle_p99(IDLE_SAMPLES)?;
    let before = usage(pid)?;
    let sampler = Sampler::start(pid);
    good.start()?;
    let mut socks = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        socks.push(tokio::net::TcpStream::connect(addr).await?);
    }
    // A refused connection is told why and closed: it reads to its end.
    let closed = join_all(socks.iter_mut().map(|s| async move {
        let mut buf = [0u8; 256];
        let mut got = vec![];
        let r = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        r.is_ok().then_some(got)
    }))
    .await;
    let during = sampler.peak().await?;
    let busy = busy(&mut good).await?;
    Bounds {
        fds: keel_proto::serving::MAX_CONNECTIONS + 48,
        rss_mib: 96,
        threads: 16,
    }
    .check("connection flood, during", before, during)?;
    let refused: Vec<_> = closed.into_iter().flatten().collect();
    ensure!(
        refused.len() >= FLOOD - keel_proto::serving::MAX_CONNECTIONS,
        "{} of {FLOOD} connections were closed; the cap is {}",
        refused.len(),
        keel_proto::serving::MAX_CONNECTIONS
    );
    ensure!(
        refused
            .iter()
            .any(|g| String::from_utf8_lossy(g).contains("connections open, its limit")),
        "no refused connection was told why"
    );
    drop(socks);
    let after = settles(
        "connection flood, after",
        pid,
        before,
        Bounds {
            fds: 8,
            rss_mib: 96,
            threads: 16,
        },
    )
    .await?;
    figures(
        "connection flood (1,224 idle)",
        before,
        during,
        after,
        idle,
        busy,
    );
    check_p99("connection flood", idle, busy)
}

/// Writes that send a nearly whole first message and withhold its last byte.
const HEADERLESS_CONNS: usize = 4;
/// Streams per connection (the daemons allow 256).
const HEADERLESS_PER_CONN: usize = 64;

/// 256 `WriteChunk` streams over 4 connections, each sending all but the last
/// byte of a first message just under the method's 2 MiB limit: until the
/// header is in, no transfer slot is taken, yet the decoder buffers the
/// message. At most `--max-transfers` (64) such writes may wait; the rest are
/// refused at once, and the chunk server's memory stays bounded.
pub async fn headerless_writes() -> Result<()> {
    let mut c = cluster(true, &[]).await?;
    let url = c.cs("cs1").url();
    let pid = c.cs("cs1").pid().expect("running");
    let mut good = attack::reader(&url, Some(CLIENT), GOOD_CHUNK, GOOD_SIZE)?;
    let idle = good.idle_p99(IDLE_SAMPLES)?;
    let before = usage(pid)?;
    let sampler = Sampler::start(pid);
    let started = Instant::now();
    good.start()?;
    let announced = 2 * 1024 * 1024 - 1024;
    let mut calls = vec![];
    for _ in 0..HEADERLESS_CONNS {
        let ch = attack::channel(&url).await?;
        for _ in 0..HEADERLESS_PER_CONN {
            let ch = ch.clone();
            calls.push(tokio::spawn(async move {
                withheld(
                    ch,
                    "/keel.v1.ChunkServer/WriteChunk",
                    Some(CLIENT),
                    announced,
                    IDLE * 4,
                )
                .await
            }));
        }
    }
    let answers = join_all(calls).await;
    tokio::time::sleep(MIN_WINDOW.saturating_sub(started.elapsed())).await;
    let during = sampler.peak().await?;
    let busy = busy(&mut good).await?;
    let mut exhausted = 0;
    for a in answers {
        if let Some(s) = a?? {
            exhausted += usize::from(s.code() == Code::ResourceExhausted && refused(&s));
        }
    }
    let total = HEADERLESS_CONNS * HEADERLESS_PER_CONN;
    // 64 may wait; the others are refused (more, should a waiting one end
    // early; fewer only if the limit is gone).
    ensure!(
        exhausted >= total / 2,
        "only {exhausted} of {total} headerless writes were refused"
    );
    Bounds {
        fds: HEADERLESS_CONNS + 16,
        rss_mib: 200,
        threads: 16,
    }
    .check("headerless writes, during", before, during)?;
    let after = settles(
        "headerless writes, after",
        pid,
        before,
        Bounds {
            fds: HEADERLESS_CONNS + 8,
            rss_mib: 200,
            threads: 16,
        },
    )
    .await?;
    figures(
        "headerless writes (256 × 2 MiB − 1 KiB, last byte withheld)",
        before,
        during,
        after,
        idle,
        busy,
    );
    check_p99("headerless writes", idle, busy)
}

/// Connections that never speak, under the connection cap.
const SILENT: usize = 64;

/// 64 TCP connections that never send a byte: each is closed once
/// `HANDSHAKE_TIMEOUT` passes, so a flood that fills the connection cap
/// and then waits cannot keep new clients out for good.
pub async fn silent_connections() -> Result<()> {
    let mut c = cluster(true, &[]).await?;
    let addr = c.cs("cs1").addr;
    let pid = c.cs("cs1").pid().expect("running");
    let before = usage(pid)?;
    let mut socks = Vec::with_capacity(SILENT);
    for _ in 0..SILENT {
        socks.push(tokio::net::TcpStream::connect(addr).await?);
    }
    let patience = keel_proto::tls::HANDSHAKE_TIMEOUT + Duration::from_secs(15);
    let closed = join_all(socks.iter_mut().map(|s| async move {
        let mut buf = [0u8; 64];
        tokio::time::timeout(patience, async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok()
    }))
    .await;
    let n = closed.iter().filter(|c| **c).count();
    ensure!(
        n == SILENT,
        "only {n} of {SILENT} silent connections were closed within {patience:?}"
    );
    drop(socks);
    settles(
        "silent connections, after",
        pid,
        before,
        Bounds {
            fds: 8,
            rss_mib: 32,
            threads: 16,
        },
    )
    .await?;
    Ok(())
}
