//! `CopyChunk` between real chunk-server processes: a byte-for-byte copy, a
//! source that is unreachable or lacks the chunk, a second copy of a chunk
//! already in flight, a copy cancelled mid-way, and corruption on the source
//! (reads end in DATA_LOSS before the last byte; copies fail and leave nothing).

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use keel_tests::chunks::{pattern, read, write};
use keel_tests::cs::{self, no_master, refused};
use keel_tests::{Cluster, wait_until};
use tonic::Code;

/// Asserts the target holds nothing of `id`: no chunk, no temp file, no space held.
async fn left_nothing(url: &str, dir: &Path, id: &str) -> Result<()> {
    refused(cs::stat(url, id).await, Code::NotFound, "not found");
    assert!(cs::temp_files(dir).is_empty(), "{:?}", cs::temp_files(dir));
    assert!(!cs::chunk_files(dir).iter().any(|c| c == id));
    let s = cs::status(url).await?;
    assert_eq!((s.reserved_bytes, s.in_flight), (0, 0));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_and_their_failures() -> Result<()> {
    let mut cluster = Cluster::new()?;
    cluster.add_chunkserver("cs1", no_master(None, "1GiB"))?;
    cluster.add_chunkserver("cs2", no_master(None, "1GiB"))?;
    let (src, dst) = (cluster.cs("cs1").url(), cluster.cs("cs2").url());
    let dst_dir = cluster.data_dir("cs2");

    let data = pattern(11, 3 << 20 | 12345);
    write(&src, "c1", &data, 2).await?;
    let crc = crc32c::crc32c(&data);
    let r = cs::copy(&dst, "c1", "cs1", &src, Some((data.len() as u64, crc))).await?;
    assert_eq!(
        (r.size, r.crc32c, r.replication),
        (data.len() as u64, crc, 2)
    );
    assert_eq!(read(&dst, "c1").await?, data);
    assert_eq!(cs::status(&dst).await?.used_bytes, data.len() as u64);
    // Migration reads are not client reads.
    assert_eq!(cs::stat(&src, "c1").await?.reads, 0);

    // Already there.
    refused(
        cs::copy(&dst, "c1", "cs1", &src, None).await,
        Code::AlreadyExists,
        "chunk c1 already exists",
    );

    // Unreachable source (a bare host:port is accepted too).
    write(&src, "c2", &data[..1000], 1).await?;
    refused(
        cs::copy(&dst, "c2", "ghost", "127.0.0.1:1", None).await,
        Code::Unavailable,
        "source ghost at http://127.0.0.1:1 is unreachable",
    );
    left_nothing(&dst, &dst_dir, "c2").await?;

    // The source lacks the chunk.
    refused(
        cs::copy(&dst, "nope", "cs1", &src, None).await,
        Code::NotFound,
        "source cs1 does not hold chunk nope",
    );
    left_nothing(&dst, &dst_dir, "nope").await?;

    // The source's copy is not what the master expected.
    refused(
        cs::copy(&dst, "c2", "cs1", &src, Some((999, 0))).await,
        Code::FailedPrecondition,
        "source cs1 holds chunk c2 as 1000 bytes",
    );
    left_nothing(&dst, &dst_dir, "c2").await?;

    // No room on the target.
    cluster.add_chunkserver("small", no_master(None, "1MiB"))?;
    let small = cluster.cs("small").url();
    refused(
        cs::copy(&small, "c1", "cs1", &src, None).await,
        Code::ResourceExhausted,
        "no space for chunk c1",
    );
    left_nothing(&small, &cluster.data_dir("small"), "c1").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_copy_in_flight_is_refused_and_a_cancelled_one_leaves_nothing() -> Result<()> {
    let mut cluster = Cluster::new()?;
    cluster.add_chunkserver("src", no_master(Some("1MiB"), "1GiB"))?;
    cluster.add_chunkserver("dst", no_master(Some("1MiB"), "1GiB"))?;
    let (src, dst) = (cluster.cs("src").url(), cluster.cs("dst").url());
    let dst_dir = cluster.data_dir("dst");
    let data = pattern(12, 2 << 20);
    write(&src, "slow", &data, 1).await?;

    // ~2 s at 1 MiB/s: still running when the second copy arrives.
    let first = tokio::spawn({
        let (src, dst) = (src.clone(), dst.clone());
        async move { cs::copy(&dst, "slow", "src", &src, None).await }
    });
    wait_until(
        "the first copy to be in flight",
        Duration::from_secs(10),
        || {
            let dst = dst.clone();
            async move { cs::status(&dst).await.is_ok_and(|s| s.in_flight == 1) }
        },
    )
    .await?;
    refused(
        cs::copy(&dst, "slow", "src", &src, None).await,
        Code::Aborted,
        "a copy of chunk slow is already in flight",
    );
    refused(
        write(&dst, "slow", &data, 1).await,
        Code::AlreadyExists,
        "chunk slow is being written or copied right now",
    );
    let r = tokio::time::timeout(cs::RPC_TIMEOUT, first).await???;
    assert_eq!(r.size, data.len() as u64);
    assert_eq!(read(&dst, "slow").await?, data);

    // A copy whose caller goes away is abandoned and cleaned up.
    write(&src, "gone", &data, 1).await?;
    let call = tokio::spawn({
        let (src, dst) = (src.clone(), dst.clone());
        async move { cs::copy(&dst, "gone", "src", &src, None).await }
    });
    cs::wait_temp_bytes(&dst_dir, 64).await?;
    call.abort();
    cs::wait_cleaned_up(&dst, &dst_dir, "the abandoned copy to be cleaned up").await?;
    left_nothing(&dst, &dst_dir, "gone").await?;
    Ok(())
}

/// Flips one byte of the stored file at `offset` from its end.
fn flip_byte(path: &Path, from_end: i64) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let pos = f.seek(SeekFrom::End(-from_end))?;
    let mut b = [0u8; 1];
    std::io::Read::read_exact(&mut f, &mut b)?;
    f.seek(SeekFrom::Start(pos))?;
    f.write_all(&[b[0] ^ 0x40])?;
    f.sync_all()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_is_never_served_or_copied() -> Result<()> {
    let mut cluster = Cluster::new()?;
    cluster.add_chunkserver("cs1", no_master(None, "1GiB"))?;
    cluster.add_chunkserver("cs2", no_master(None, "1GiB"))?;
    let (src, dst) = (cluster.cs("cs1").url(), cluster.cs("cs2").url());
    let data = pattern(13, 3 << 20);
    write(&src, "bad", &data, 1).await?;
    write(&src, "badhead", &data[..4096], 1).await?;
    let src_chunks = cluster.data_dir("cs1").join("chunks");
    // Damage the data (middle of the file) and, separately, a header.
    flip_byte(&src_chunks.join("bad"), (data.len() / 2) as i64)?;
    let head_len = std::fs::metadata(src_chunks.join("badhead"))?.len() as i64;
    flip_byte(&src_chunks.join("badhead"), head_len - 10)?;

    let r = cs::read_raw(&src, "bad", false).await?;
    let err = r.error.expect("the read must fail");
    assert_eq!(err.code(), Code::DataLoss, "{}", err.message());
    assert!(
        err.message().contains("chunk bad is corrupt"),
        "{}",
        err.message()
    );
    assert!(
        r.data.len() < data.len(),
        "every byte of a corrupt chunk was sent"
    );

    let r = cs::read_raw(&src, "badhead", false).await?;
    let err = r.error.expect("the read must fail");
    assert_eq!(err.code(), Code::DataLoss, "{}", err.message());
    assert!(r.header.is_none());

    let dst_dir = cluster.data_dir("cs2");
    for id in ["bad", "badhead"] {
        refused(
            cs::copy(&dst, id, "cs1", &src, None).await,
            Code::DataLoss,
            "corrupt",
        );
        left_nothing(&dst, &dst_dir, id).await?;
    }
    Ok(())
}
