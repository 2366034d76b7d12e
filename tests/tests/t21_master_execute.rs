//! `RebalanceExecute` against real chunk servers: a move's bytes read back
//! identical from the target and are gone from the source, with
//! `bytes_transferred` equal to the chunk's size; every kind of invalid move
//! is rejected with its own reason and changes nothing (the master's view and
//! the bytes on disk are the same before and after); a chunk that is already
//! moving is refused; an empty request is INVALID_ARGUMENT.

use std::time::Duration;

use anyhow::Result;
use keel_proto::v1::{Move, MoveOutcome, RebalanceExecuteRequest, RebalanceExecuteResponse};
use keel_tests::chunks::{pattern, read, write};
use keel_tests::master::{View, at, locate, metric_of, mv, view, wait_located};
use keel_tests::{Cluster, CsOpts, master_client, wait_until};

async fn execute(url: &str, moves: Vec<Move>) -> Result<RebalanceExecuteResponse> {
    let mut m = master_client(url).await?;
    Ok(m.rebalance_execute(RebalanceExecuteRequest { moves })
        .await?
        .into_inner())
}

/// How long the master may take to locate a chunk as written.
const LOCATED: Duration = Duration::from_secs(15);

fn opts(capacity: &str, bandwidth: Option<&str>) -> CsOpts {
    CsOpts {
        capacity: capacity.into(),
        bandwidth: bandwidth.map(Into::into),
        ..CsOpts::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_reads_back_from_the_target_and_is_gone_from_the_source() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    c.add_chunkserver("cs1", CsOpts::default())?;
    c.add_chunkserver("cs4", CsOpts::default())?;
    c.wait_alive(2).await?;
    let (url, cs1, cs4) = (c.master_url(), c.cs("cs1").url(), c.cs("cs4").url());
    let data = pattern(10, 64 << 20);
    write(&cs1, "ch_010", &data, 1).await?;
    wait_located(&url, "ch_010", at(&[("cs1", true)]), LOCATED).await?;

    let r = execute(&url, vec![mv("ch_010", "cs1", "cs4")]).await?;
    assert_eq!((r.moved, r.bytes_transferred), (1, 67_108_864));
    assert_eq!(r.results.len(), 1);
    let res = &r.results[0];
    assert_eq!(
        (res.outcome, res.bytes, res.error.as_str()),
        (MoveOutcome::Done as i32, 67_108_864, "")
    );
    assert_eq!(res.r#move, Some(mv("ch_010", "cs1", "cs4")));

    assert!(read(&cs4, "ch_010").await? == data, "target bytes differ");
    let gone = read(&cs1, "ch_010")
        .await
        .expect_err("source still has the chunk");
    let code = gone
        .downcast_ref::<tonic::Status>()
        .map(tonic::Status::code);
    assert_eq!(code, Some(tonic::Code::NotFound), "{gone}");
    assert_eq!(
        locate(&url, "ch_010").await?,
        Some(vec![("cs4".into(), true)])
    );
    // Heartbeats after the move agree with what the master recorded.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        locate(&url, "ch_010").await?,
        Some(vec![("cs4".into(), true)])
    );

    let http = c
        .master
        .as_ref()
        .and_then(|d| d.http_addr)
        .expect("http address");
    assert_eq!(metric_of(http, "keel_moves_done_total").await?, Some(1.0));
    assert_eq!(
        metric_of(http, "keel_bytes_moved_total").await?,
        Some(67_108_864.0)
    );
    assert_eq!(metric_of(http, "keel_moves_running").await?, Some(0.0));
    Ok(())
}

/// Chunks of the invalid-moves test and where they are written.
const CHUNKS: [(&str, usize, &[&str], u32); 7] = [
    ("big", 4 << 20, &["cs1"], 1),
    ("u", 64 << 10, &["cs1"], 1),
    ("d", 64 << 10, &["cs1"], 1),
    ("s", 64 << 10, &["cs1"], 1),
    ("other", 1 << 20, &["cs2"], 1),
    ("both", 256 << 10, &["cs1", "cs2"], 2),
    ("slow", 2 << 20, &["cs4"], 1),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_invalid_move_has_its_reason_and_changes_nothing() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    c.add_chunkserver("cs1", opts("64MiB", None))?;
    c.add_chunkserver("cs2", opts("64MiB", None))?;
    c.add_chunkserver("cs3", opts("4MiB", None))?;
    c.add_chunkserver("cs4", opts("64MiB", Some("1MiB")))?;
    c.add_chunkserver("cs5", opts("64MiB", None))?;
    c.wait_alive(5).await?;
    let url = c.master_url();
    for (i, (id, size, on, replication)) in CHUNKS.iter().enumerate() {
        let data = pattern(i as u64, *size);
        for s in *on {
            write(&c.chunkservers[*s].url(), id, &data, *replication).await?;
        }
    }
    c.cs("cs5").kill9();
    for (id, _, on, _) in CHUNKS {
        let on: Vec<(&str, bool)> = on.iter().map(|s| (*s, true)).collect();
        wait_located(&url, id, at(&on), LOCATED).await?;
    }
    let u = url.clone();
    wait_until("cs5 to be marked dead", Duration::from_secs(10), || {
        let u = u.clone();
        async move {
            keel_tests::master::servers(&u)
                .await
                .is_ok_and(|s| s.iter().any(|s| s.id == "cs5" && !s.alive))
        }
    })
    .await?;

    let names: Vec<&str> = CHUNKS.iter().map(|c| c.0).collect();
    let before: View = view(&url, &names).await?;
    let moves = vec![
        mv("../x", "cs1", "cs2"),
        mv("nope", "cs1", "cs2"),
        mv("other", "cs1", "cs3"),
        mv("both", "cs1", "cs2"),
        mv("u", "cs9", "cs2"),
        mv("d", "cs1", "cs5"),
        mv("s", "cs1", "cs1"),
        mv("big", "cs1", "cs3"),
        mv("slow", "cs4", "cs1"),
        mv("slow", "cs4", "cs2"),
    ];
    let r = execute(&url, moves.clone()).await?;
    assert_eq!((r.moved, r.bytes_transferred), (0, 0));
    let reasons: Vec<&str> = r.results.iter().map(|m| m.error.as_str()).collect();
    assert!(
        reasons[0].starts_with("bad chunk id: chunk id \"../x\" starts with '.'"),
        "{}",
        reasons[0]
    );
    assert_eq!(
        reasons[1..],
        [
            "unknown chunk nope",
            "chunk other is not on cs1",
            "cs2 already holds chunk both",
            "unknown server cs9",
            "server cs5 is dead",
            "from and to are the same server (cs1)",
            "moving chunk big (4194304 bytes) would leave cs3 with less than 10% free",
            "chunk slow is listed 2 times in this request",
            "chunk slow is listed 2 times in this request",
        ]
    );
    for (res, m) in r.results.iter().zip(&moves) {
        assert_eq!((res.outcome, res.bytes), (MoveOutcome::Rejected as i32, 0));
        assert_eq!(
            res.r#move.as_ref(),
            Some(m),
            "results come in request order"
        );
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        view(&url, &names).await?,
        before,
        "rejected moves changed the master's view"
    );
    for (i, (id, size, on, _)) in CHUNKS.iter().enumerate() {
        for s in *on {
            assert!(
                read(&c.chunkservers[*s].url(), id).await? == pattern(i as u64, *size),
                "{id} on {s}"
            );
        }
    }

    let err = master_client(&url)
        .await?
        .rebalance_execute(RebalanceExecuteRequest { moves: vec![] })
        .await;
    assert_eq!(
        err.map_err(|s| s.code()).err(),
        Some(tonic::Code::InvalidArgument)
    );

    // A chunk already moving (2 MiB from a server throttled to 1 MiB/s) is refused.
    let http = c
        .master
        .as_ref()
        .and_then(|d| d.http_addr)
        .expect("http address");
    let u = url.clone();
    let first = tokio::spawn(async move { execute(&u, vec![mv("slow", "cs4", "cs1")]).await });
    wait_until(
        "the slow move to run",
        Duration::from_secs(10),
        || async move { metric_of(http, "keel_moves_running").await.ok().flatten() == Some(1.0) },
    )
    .await?;
    let r = execute(&url, vec![mv("slow", "cs4", "cs2")]).await?;
    assert_eq!(r.results[0].error, "chunk slow is already moving");
    let r = first.await??;
    assert_eq!((r.moved, r.bytes_transferred), (1, 2 << 20));
    assert_eq!(
        locate(&url, "slow").await?,
        Some(vec![("cs1".into(), true)])
    );
    Ok(())
}
