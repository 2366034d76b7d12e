//! Crash safety of a chunk server: `kill -9` of the target in the middle of a
//! slow copy, then a restart — the half-copied chunk is not visible, no temp
//! file remains, and every committed chunk and the used-bytes figure survive.
//! A clean SIGTERM restart keeps everything too; SIGTERM lets a copy in flight
//! finish before the process exits; and starting on the data dir with another
//! `--id` is refused with a clear error.

use anyhow::Result;
use keel_tests::chunks::{pattern, read, write};
use keel_tests::cs::{self, no_master};
use keel_tests::{Cluster, Daemon, bin};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_mid_copy_then_restart() -> Result<()> {
    let mut cluster = Cluster::new()?;
    cluster.add_chunkserver("src", no_master(Some("1MiB"), "1GiB"))?;
    cluster.add_chunkserver("dst", no_master(Some("1MiB"), "64MiB"))?;
    let src = cluster.cs("src").url();
    let dst = cluster.cs("dst").url();
    let dst_dir = cluster.data_dir("dst");

    let kept: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            (
                format!("k{i}"),
                pattern(30 + i, 700_000 + i as usize * 1000),
            )
        })
        .collect();
    for (id, data) in &kept {
        write(&dst, id, data, 2).await?;
    }
    let before = cs::status(&dst).await?;
    let used: u64 = kept.iter().map(|(_, d)| d.len() as u64).sum();
    assert_eq!(before.used_bytes, used);

    // A 4 MiB copy at 1 MiB/s runs for ~4 s; kill the target once bytes have landed.
    let big = pattern(39, 4 << 20);
    write(&src, "big", &big, 1).await?;
    let copy = tokio::spawn({
        let (src, dst) = (src.clone(), dst.clone());
        async move { cs::copy(&dst, "big", "src", &src, None).await }
    });
    cs::wait_temp_bytes(&dst_dir, 512 * 1024).await?;
    cluster.cs("dst").kill9();
    let r = tokio::time::timeout(cs::RPC_TIMEOUT, copy).await??;
    assert!(r.is_err(), "a copy whose target died cannot succeed");
    assert_eq!(
        cs::temp_files(&dst_dir).len(),
        1,
        "the crash left its temp file"
    );

    cluster.cs("dst").start_again()?;
    let dst = cluster.cs("dst").url();
    let s = cs::stat(&dst, "big")
        .await
        .expect_err("half a copy is not a chunk");
    assert_eq!(s.code(), Code::NotFound);
    assert!(
        cs::temp_files(&dst_dir).is_empty(),
        "{:?}",
        cs::temp_files(&dst_dir)
    );
    let after = cs::status(&dst).await?;
    assert_eq!((after.used_bytes, after.chunk_count), (used, 3));
    assert_eq!(after.reserved_bytes, 0);
    for (id, data) in &kept {
        let st = cs::stat(&dst, id).await?;
        assert_eq!(
            st.header.map(|h| (h.size, h.replication)),
            Some((data.len() as u64, 2))
        );
        assert_eq!(&read(&dst, id).await?, data);
    }

    // The interrupted copy can simply be done again.
    cs::copy(
        &dst,
        "big",
        "src",
        &src,
        Some((big.len() as u64, crc32c::crc32c(&big))),
    )
    .await?;
    assert_eq!(cs::status(&dst).await?.used_bytes, used + big.len() as u64);

    // A clean restart keeps everything as well.
    cluster.cs("dst").restart()?;
    let dst = cluster.cs("dst").url();
    let s = cs::status(&dst).await?;
    assert_eq!((s.used_bytes, s.chunk_count), (used + big.len() as u64, 4));
    assert_eq!(read(&dst, "big").await?, big);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_id_on_the_same_data_dir_is_refused() -> Result<()> {
    let mut cluster = Cluster::new()?;
    cluster.add_chunkserver("cs1", no_master(None, "64MiB"))?;
    write(&cluster.cs("cs1").url(), "c", b"bytes", 1).await?;
    cluster.cs("cs1").stop();

    let data = cluster.data_dir("cs1");
    let args: Vec<String> = [
        "--id",
        "cs2",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &data.display().to_string(),
        "--master",
        cs::NO_MASTER,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = cluster.dir.path().join("cs2-on-cs1-dir.log");
    let err = match Daemon::start("cs2", bin("keel-chunkserver"), args, vec![], log.clone()) {
        Ok(_) => panic!("a chunk server started on another server's data dir"),
        Err(e) => format!("{e:#}"),
    };
    let text = std::fs::read_to_string(&log)?;
    assert!(
        text.contains(
            "belongs to chunk server \"cs1\", but this process was started with --id \"cs2\""
        ),
        "{err}\n{text}"
    );
    // The rightful owner still starts and has its chunk.
    cluster.cs("cs1").start_again()?;
    assert_eq!(read(&cluster.cs("cs1").url(), "c").await?, b"bytes");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_copy_in_flight_finish() -> Result<()> {
    let mut cluster = Cluster::new()?;
    cluster.add_chunkserver("src", no_master(Some("1MiB"), "1GiB"))?;
    cluster.add_chunkserver("dst", no_master(Some("1MiB"), "1GiB"))?;
    let src = cluster.cs("src").url();
    let dst = cluster.cs("dst").url();
    let dst_dir = cluster.data_dir("dst");
    let data = pattern(40, 2 << 20);
    write(&src, "late", &data, 1).await?;

    let copy = tokio::spawn({
        let (src, dst) = (src.clone(), dst.clone());
        async move { cs::copy(&dst, "late", "src", &src, None).await }
    });
    cs::wait_temp_bytes(&dst_dir, 256 * 1024).await?;
    // SIGTERM, then wait for the process to exit (the harness kills after 10 s).
    let mut daemon = cluster.chunkservers.remove("dst").expect("dst");
    let stopped = tokio::task::spawn_blocking(move || {
        daemon.stop();
        daemon
    });
    let r = tokio::time::timeout(cs::RPC_TIMEOUT, copy).await??;
    assert_eq!(r?.size, data.len() as u64, "the copy in flight was cut off");
    let mut daemon = stopped.await?;
    assert!(daemon.log_text().contains("shutdown requested"));
    daemon.start_again()?;
    assert_eq!(read(&daemon.url(), "late").await?, data);
    Ok(())
}
