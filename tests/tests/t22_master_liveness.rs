//! Liveness and the view rebuilt from heartbeats: a chunk server killed and
//! restarted is marked dead (its replicas listed last, `alive: false`) and
//! alive again; a master restarted mid-cluster rebuilds exactly the same view
//! from heartbeats alone; a chunk found on more servers than its replication
//! factor (what an interrupted move leaves) is trimmed to its factor, from
//! the most utilized holders, and never below it.

use std::time::Duration;

use anyhow::Result;
use keel_tests::chunks::{pattern, read, write};
use keel_tests::master::{View, at, locate, metric_of, servers, view, wait_located};
use keel_tests::{Cluster, CsOpts, wait_until};

/// How long the master may take to locate a chunk as expected.
const LOCATED: Duration = Duration::from_secs(15);

async fn wait_state(url: &str, id: &str, alive: bool) -> Result<()> {
    wait_until(
        &format!("{id} alive={alive}"),
        Duration::from_secs(15),
        || {
            let url = url.to_owned();
            async move {
                servers(&url)
                    .await
                    .is_ok_and(|s| s.iter().any(|s| s.id == id && s.alive == alive))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_is_dead_then_alive_again() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    c.add_chunkserver("cs1", CsOpts::default())?;
    c.add_chunkserver("cs2", CsOpts::default())?;
    c.wait_alive(2).await?;
    let url = c.master_url();
    let data = pattern(1, 100_000);
    for s in ["cs1", "cs2"] {
        write(&c.cs(s).url(), "k", &data, 2).await?;
    }
    wait_located(&url, "k", at(&[("cs1", true), ("cs2", true)]), LOCATED).await?;

    c.cs("cs1").kill9();
    wait_state(&url, "cs1", false).await?;
    assert_eq!(
        locate(&url, "k").await?,
        at(&[("cs2", true), ("cs1", false)]),
        "live replicas first"
    );
    let http = c
        .master
        .as_ref()
        .and_then(|d| d.http_addr)
        .expect("http address");
    assert_eq!(
        metric_of(http, "keel_server_alive{server=\"cs1\"}").await?,
        Some(0.0)
    );

    c.cs("cs1").start_again()?;
    wait_state(&url, "cs1", true).await?;
    wait_located(&url, "k", at(&[("cs1", true), ("cs2", true)]), LOCATED).await?;
    let log = c.master.as_ref().map(|m| m.log_text()).unwrap_or_default();
    assert!(
        log.contains("server marked dead") && log.contains("server=cs1"),
        "no death logged"
    );
    assert!(log.contains("server alive again"), "no return logged");
    Ok(())
}

/// Chunks of the restart test: id, size, servers, replication.
const LAYOUT: [(&str, usize, &[&str], u32); 5] = [
    ("a", 300_000, &["cs1"], 1),
    ("b", 200_000, &["cs2", "cs3"], 2),
    ("c", 50_000, &["cs1", "cs2", "cs3"], 3),
    ("d", 1, &["cs3"], 1),
    ("e", 0, &["cs2"], 1),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_master_rebuilds_the_same_view() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    for (i, s) in ["cs1", "cs2", "cs3"].into_iter().enumerate() {
        let rack = Some(format!("r{}", i % 2));
        c.add_chunkserver(
            s,
            CsOpts {
                rack,
                ..CsOpts::default()
            },
        )?;
    }
    c.wait_alive(3).await?;
    let url = c.master_url();
    for (i, (id, size, on, replication)) in LAYOUT.iter().enumerate() {
        for s in *on {
            write(&c.cs(s).url(), id, &pattern(i as u64, *size), *replication).await?;
        }
    }
    let names: Vec<&str> = LAYOUT.iter().map(|l| l.0).collect();
    for (id, _, on, _) in LAYOUT {
        let mut want: Vec<(&str, bool)> = on.iter().map(|s| (*s, true)).collect();
        want.sort();
        wait_located(&url, id, at(&want), LOCATED).await?;
    }
    let before: View = view(&url, &names).await?;
    assert_eq!(
        before.servers.iter().map(|s| s.used).collect::<Vec<_>>(),
        [350_000, 250_000, 250_001]
    );

    c.master.as_mut().expect("master").restart()?;
    let u = url.clone();
    let names2 = names.clone();
    let want = before.clone();
    wait_until(
        "the same view after the restart",
        Duration::from_secs(15),
        || {
            let (u, names, want) = (u.clone(), names2.clone(), want.clone());
            async move { view(&u, &names).await.ok() == Some(want) }
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_move_is_trimmed_to_its_factor() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    for s in ["cs1", "cs2", "cs3"] {
        c.add_chunkserver(s, CsOpts::default())?;
    }
    c.wait_alive(3).await?;
    let url = c.master_url();
    let (cs1, cs2, cs3) = (c.cs("cs1").url(), c.cs("cs2").url(), c.cs("cs3").url());
    // cs1 is the most utilized holder of everything below.
    write(&cs1, "filler", &pattern(9, 4 << 20), 1).await?;
    let dup = pattern(1, 1 << 20);
    let tri = pattern(2, 512 << 10);
    for url in [&cs1, &cs2] {
        write(url, "dup", &dup, 1).await?;
    }
    for url in [&cs1, &cs2, &cs3] {
        write(url, "tri", &tri, 2).await?;
    }
    wait_located(&url, "dup", at(&[("cs2", true)]), LOCATED).await?;
    wait_located(&url, "tri", at(&[("cs2", true), ("cs3", true)]), LOCATED).await?;
    let gone = |e: anyhow::Error| {
        e.downcast_ref::<tonic::Status>().map(tonic::Status::code) == Some(tonic::Code::NotFound)
    };
    assert!(read(&cs1, "dup").await.is_err_and(gone), "dup still on cs1");
    assert!(read(&cs1, "tri").await.is_err_and(gone), "tri still on cs1");
    assert!(read(&cs2, "dup").await? == dup);
    assert!(read(&cs3, "tri").await? == tri);
    // Another maintenance pass or two change nothing: never below the factor.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(locate(&url, "dup").await?, at(&[("cs2", true)]));
    assert_eq!(
        locate(&url, "tri").await?,
        at(&[("cs2", true), ("cs3", true)])
    );
    assert_eq!(locate(&url, "filler").await?, at(&[("cs1", true)]));
    Ok(())
}
