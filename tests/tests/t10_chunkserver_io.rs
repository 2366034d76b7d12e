//! Chunk-server I/O against a real `keel-chunkserver` process (no master):
//! a multi-frame write/read round trip, delete, and every kind of bad input —
//! each refused with its precise gRPC code and message, leaving no partial
//! file under the data dir, no space held, and the server still serving.
//! Also the shared auth token, and a read that outlives a delete.

use std::time::Duration;

use anyhow::Result;
use keel_proto::v1::{DeleteChunkRequest, ReadChunkRequest, WriteChunkRequest};
use keel_tests::chunks::{pattern, read, write};
use keel_tests::cs::{self, header, no_master, refused, write_frames};
use keel_tests::{Cluster, chunkserver_client, wait_until};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_and_bad_input() -> Result<()> {
    let mut cluster = Cluster::new()?;
    cluster.add_chunkserver("cs1", no_master(None, "16MiB"))?;
    let url = cluster.cs("cs1").url();
    let dir = cluster.data_dir("cs1");

    // A 5 MiB chunk spans several frames.
    let big = pattern(1, 5 << 20);
    let w = write(&url, "big", &big, 3).await?;
    assert_eq!((w.size, w.crc32c), (big.len() as u64, crc32c::crc32c(&big)));
    assert_eq!(read(&url, "big").await?, big);
    let st = cs::stat(&url, "big").await?;
    let h = st.header.expect("header");
    assert_eq!((h.size, h.replication, st.reads), (5 << 20, 3, 1));
    write(&url, "empty", &[], 1).await?;
    assert!(read(&url, "empty").await?.is_empty());
    let used = (5 << 20) as u64;

    // Unknown chunk.
    let missing = cs::read_raw(&url, "nope", false).await?;
    refused::<()>(
        Err(missing.error.expect("error")),
        Code::NotFound,
        "chunk nope not found",
    );
    refused(
        cs::stat(&url, "nope").await,
        Code::NotFound,
        "chunk nope not found",
    );

    // Bad ids, on every RPC that takes one.
    let long = "x".repeat(200);
    for (bad, msg) in [
        ("../x", "starts with '.'"),
        ("", "chunk id is empty"),
        (long.as_str(), "200 characters long"),
        ("a/b", "contains '/'"),
    ] {
        refused(
            write(&url, bad, b"data", 1).await,
            Code::InvalidArgument,
            msg,
        );
        let r = cs::read_raw(&url, bad, false).await?;
        refused::<()>(Err(r.error.expect("error")), Code::InvalidArgument, msg);
        refused(cs::stat(&url, bad).await, Code::InvalidArgument, msg);
        refused(
            cs::copy(&url, bad, "cs9", &url, None).await,
            Code::InvalidArgument,
            msg,
        );
    }

    // Out of space: 16 MiB capacity, 5 MiB used.
    let huge = pattern(2, 12 << 20);
    refused(
        write(&url, "huge", &huge, 1).await,
        Code::ResourceExhausted,
        &format!(
            "needs {} bytes, {used} bytes are used and 0 reserved of a capacity of 16777216 bytes",
            12 << 20
        ),
    );

    // Wrong checksum.
    let data = pattern(3, 300_000);
    let mut h = header("crc", &data, 1);
    h.crc32c ^= 1;
    refused(
        write_frames(&url, Some(h), vec![data.clone()]).await,
        Code::DataLoss,
        "checksum mismatch",
    );

    // Size mismatch, both ways.
    let h = header("short", &data, 1);
    refused(
        write_frames(&url, Some(h), vec![data[..1000].to_vec()]).await,
        Code::InvalidArgument,
        "header declares 300000 bytes but 1000 were received",
    );
    let h = header("long", &data, 1);
    refused(
        write_frames(&url, Some(h), vec![data.clone(), vec![7]]).await,
        Code::InvalidArgument,
        "header declares 300000 bytes but 300001 or more were received",
    );

    // Header missing: data first, or an empty stream.
    refused(
        write_frames(&url, None, vec![data.clone()]).await,
        Code::InvalidArgument,
        "missing header",
    );
    refused(
        write_frames(&url, None, vec![]).await,
        Code::InvalidArgument,
        "missing header",
    );

    // A header in a later message, and replication 0.
    let h = header("twice", &data, 1);
    let mut c = chunkserver_client(&url).await?;
    let msgs = vec![
        WriteChunkRequest {
            header: Some(h.clone()),
            data: data[..10].to_vec().into(),
            capability: None,
        },
        WriteChunkRequest {
            header: Some(h),
            data: data[10..].to_vec().into(),
            capability: None,
        },
    ];
    refused(
        c.write_chunk(tokio_stream::iter(msgs)).await,
        Code::InvalidArgument,
        "a header may only come in the first message",
    );
    refused(
        write(&url, "norepl", &data, 0).await,
        Code::InvalidArgument,
        "replication must be at least 1",
    );

    // Duplicate id.
    refused(
        write(&url, "big", &big, 3).await,
        Code::AlreadyExists,
        "chunk big already exists",
    );

    // Nothing partial anywhere, no space held, and the server still serves.
    assert!(
        cs::temp_files(&dir).is_empty(),
        "{:?}",
        cs::temp_files(&dir)
    );
    assert_eq!(cs::chunk_files(&dir), ["big", "empty"]);
    let s = cs::status(&url).await?;
    assert_eq!(
        (s.used_bytes, s.reserved_bytes, s.chunk_count, s.in_flight),
        (used, 0, 2, 0)
    );
    assert_eq!(read(&url, "big").await?, big);

    // Delete frees the space; a second delete is NOT_FOUND.
    let freed = c
        .delete_chunk(DeleteChunkRequest {
            chunk: "big".into(),
            term: 0,
            ..Default::default()
        })
        .await?;
    assert_eq!(freed.into_inner().freed_bytes, used);
    refused(
        c.delete_chunk(DeleteChunkRequest {
            chunk: "big".into(),
            term: 0,
            ..Default::default()
        })
        .await,
        Code::NotFound,
        "chunk big not found",
    );
    assert_eq!(cs::status(&url).await?.used_bytes, 0);
    assert_eq!(cs::chunk_files(&dir), ["empty"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cut_by_the_client_leaves_nothing() -> Result<()> {
    let mut cluster = Cluster::new()?;
    cluster.add_chunkserver("cs1", no_master(None, "64MiB"))?;
    let url = cluster.cs("cs1").url();
    let dir = cluster.data_dir("cs1");
    let data = pattern(4, 4 << 20);

    // Header and one frame, then the stream stays open until the call is dropped.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(WriteChunkRequest {
        header: Some(header("cut", &data, 1)),
        data: Default::default(),
        capability: None,
    })
    .await?;
    tx.send(WriteChunkRequest {
        header: None,
        data: data[..1 << 20].to_vec().into(),
        capability: None,
    })
    .await?;
    let mut c = chunkserver_client(&url).await?;
    let call = tokio::spawn(async move {
        c.write_chunk(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    wait_until("the write to be in flight", Duration::from_secs(10), || {
        let url = url.clone();
        let dir = dir.clone();
        async move {
            cs::temp_files(&dir).len() == 1
                && cs::status(&url)
                    .await
                    .is_ok_and(|s| s.in_flight == 1 && s.reserved_bytes == 4 << 20)
        }
    })
    .await?;
    call.abort();
    drop(tx);
    cs::wait_cleaned_up(&url, &dir, "the cut write to be cleaned up").await?;
    refused(cs::stat(&url, "cut").await, Code::NotFound, "not found");
    // The id is free again.
    write(&url, "cut", &data, 1).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_token_guards_every_call() -> Result<()> {
    let mut cluster = Cluster::new()?;
    let mut opts = no_master(None, "64MiB");
    opts.extra.extend(["--auth-token".into(), "s3cret".into()]);
    cluster.add_chunkserver("cs1", opts)?;
    let url = cluster.cs("cs1").url();

    refused(
        write(&url, "c", b"abc", 1).await,
        Code::Unauthenticated,
        "authorization",
    );
    let mut c = chunkserver_client(&url).await?;
    let mut req = tonic::Request::new(ReadChunkRequest {
        chunk: "c".into(),
        migration: false,
    });
    req.metadata_mut()
        .insert("authorization", "Bearer wrong".parse()?);
    refused(
        c.read_chunk(req).await,
        Code::Unauthenticated,
        "wrong auth token",
    );

    let mut req = tonic::Request::new(keel_proto::v1::StatChunkRequest { chunk: "c".into() });
    req.metadata_mut()
        .insert("authorization", "Bearer s3cret".parse()?);
    // Authorised: the call goes through to the store.
    refused(c.stat_chunk(req).await, Code::NotFound, "chunk c not found");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_in_progress_survives_a_delete() -> Result<()> {
    let mut cluster = Cluster::new()?;
    cluster.add_chunkserver("cs1", no_master(None, "64MiB"))?;
    let url = cluster.cs("cs1").url();
    // Larger than everything the server can have read ahead (queue + HTTP/2 windows).
    let data = pattern(5, 24 << 20);
    write(&url, "doomed", &data, 1).await?;

    let mut c = chunkserver_client(&url).await?;
    let req = ReadChunkRequest {
        chunk: "doomed".into(),
        migration: false,
    };
    let mut stream = c.read_chunk(req).await?.into_inner();
    let mut got = Vec::new();
    // Header and the first frame, then delete while most bytes are still on disk.
    while got.is_empty() {
        let msg = stream.message().await?.expect("stream ended early");
        got.extend_from_slice(&msg.data);
    }
    let mut d = chunkserver_client(&url).await?;
    let freed = d
        .delete_chunk(DeleteChunkRequest {
            chunk: "doomed".into(),
            term: 0,
            ..Default::default()
        })
        .await?;
    assert_eq!(freed.into_inner().freed_bytes, data.len() as u64);
    refused(
        cs::stat(&url, "doomed").await,
        Code::NotFound,
        "chunk doomed not found",
    );
    while let Some(msg) = stream.message().await? {
        got.extend_from_slice(&msg.data);
    }
    assert!(
        got == data,
        "the read begun before the delete did not finish intact"
    );
    // A new read gets a clear not-found.
    let r = cs::read_raw(&url, "doomed", false).await?;
    refused::<()>(
        Err(r.error.expect("error")),
        Code::NotFound,
        "chunk doomed not found",
    );
    assert_eq!(cs::status(&url).await?.used_bytes, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_above_the_limit_is_refused_and_leaves_nothing() -> Result<()> {
    let mut cluster = Cluster::new()?;
    cluster.add_chunkserver("cs1", no_master(None, "1GiB"))?;
    let url = cluster.cs("cs1").url();
    let dir = cluster.data_dir("cs1");
    let data = vec![7u8; keel_proto::MAX_MESSAGE_BYTES + 1];
    // A client that sends more than the servers accept in one message.
    let mut c = chunkserver_client(&url)
        .await?
        .max_encoding_message_size(2 * keel_proto::MAX_MESSAGE_BYTES);
    let msgs = vec![
        WriteChunkRequest {
            header: Some(header("fat", &data, 1)),
            data: Default::default(),
            capability: None,
        },
        WriteChunkRequest {
            header: None,
            data: data.into(),
            capability: None,
        },
    ];
    let s = c
        .write_chunk(tokio_stream::iter(msgs))
        .await
        .expect_err("refused");
    assert!(
        matches!(s.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{:?}: {}",
        s.code(),
        s.message()
    );
    cs::wait_cleaned_up(&url, &dir, "the refused write to be cleaned up").await?;
    refused(cs::stat(&url, "fat").await, Code::NotFound, "not found");
    Ok(())
}
