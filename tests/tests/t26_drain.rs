//! Drain and undrain through `keelctl`, with real processes: a draining
//! server takes nothing new, every chunk on it is copied elsewhere under the
//! rack rule, it turns `drained` and can then be stopped with no chunk below
//! its factor; the mark survives a master restart; a drain with no room
//! elsewhere says why and waits, deleting nothing.

use std::time::Duration;

use anyhow::{Context, Result};
use keel_tests::chunks::{pattern, write};
use keel_tests::master::{at, locate, wait_located};
use keel_tests::{Cluster, CsOpts, wait_until};

/// `keelctl servers --json`, as (id, state) pairs.
fn states(c: &Cluster) -> Result<Vec<(String, String)>> {
    let (code, out, err) = c.keelctl(&["servers", "--json"])?;
    anyhow::ensure!(code == 0, "keelctl servers failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    let rows = v.as_array().context("an array")?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_owned(),
                r["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

fn state_of(c: &Cluster, id: &str) -> Option<String> {
    states(c)
        .ok()?
        .into_iter()
        .find(|(s, _)| s == id)
        .map(|(_, st)| st)
}

async fn wait_state(c: &Cluster, id: &str, want: &str, timeout: Duration) -> Result<()> {
    wait_until(&format!("{id} {want}"), timeout, || async {
        state_of(c, id).as_deref() == Some(want)
    })
    .await
}

async fn racked(servers: &[(&str, &str)]) -> Result<Cluster> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    for (s, rack) in servers {
        let opts = CsOpts {
            rack: Some(rack.to_string()),
            ..CsOpts::default()
        };
        c.add_chunkserver(s, opts)?;
    }
    c.wait_alive(servers.len()).await?;
    Ok(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_empties_the_server_under_the_rack_rule_and_survives_a_master_restart() -> Result<()>
{
    let mut c = racked(&[("cs1", "r1"), ("cs2", "r1"), ("cs3", "r2"), ("cs4", "r2")]).await?;
    let url = c.master_url();
    let ids: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let data = pattern(i as u64, 150_000);
        for s in ["cs1", "cs3"] {
            write(&c.cs(s).url(), id, &data, 2).await?;
        }
    }
    // The master learns of the writes from heartbeats: a drain asked for
    // before then finds nothing on cs1 to move.
    for id in &ids {
        let both = at(&[("cs1", true), ("cs3", true)]);
        wait_located(&url, id, both, Duration::from_secs(10)).await?;
    }
    let (code, out, err) = c.keelctl(&["server", "drain", "cs1"])?;
    anyhow::ensure!(code == 0, "drain failed: {err}");
    anyhow::ensure!(
        out.contains("cs1 is draining") || out.contains("cs1 is drained"),
        "{out}"
    );
    wait_state(&c, "cs1", "drained", Duration::from_secs(30)).await?;

    // Every chunk: two live replicas, none on cs1, one per rack (cs2 is the
    // only other r1 server, so every copy went there).
    for id in &ids {
        let held: Vec<String> = locate(&url, id)
            .await?
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, alive)| *alive)
            .map(|(s, _)| s)
            .collect();
        anyhow::ensure!(
            held.len() == 2 && !held.contains(&"cs1".into()),
            "{id} on {held:?}"
        );
        anyhow::ensure!(
            held.contains(&"cs2".into()) && held.contains(&"cs3".into()),
            "{id} on {held:?}"
        );
    }

    // The mark is the chunk server's: a new master learns it from heartbeats.
    let master = c.master.as_mut().context("master")?;
    master.kill9();
    master.start_again()?;
    c.wait_alive(3).await?;
    wait_state(&c, "cs1", "drained", Duration::from_secs(20)).await?;

    // A drained server takes no new data, even pinned there.
    let file = c.dir.path().join("pinned");
    std::fs::write(&file, pattern(7, 50_000))?;
    let file = file.to_str().context("path")?;
    let (code, _, err) = c.keelctl(&["put", "p", file, "--on", "cs1", "--replication", "1"])?;
    anyhow::ensure!(
        code != 0 && err.contains("draining"),
        "a pinned write onto a drained server: {code} {err}"
    );
    let (code, out, err) = c.keelctl(&["server", "undrain", "cs1", "--json"])?;
    anyhow::ensure!(code == 0, "undrain failed: {err}");
    let v: serde_json::Value = serde_json::from_str(&out)?;
    anyhow::ensure!(v["state"] == "alive", "{out}");
    wait_state(&c, "cs1", "alive", Duration::from_secs(10)).await?;
    // Undrained, it takes data again.
    let (code, _, err) = c.keelctl(&["put", "p", file, "--on", "cs1", "--replication", "1"])?;
    anyhow::ensure!(code == 0, "a pinned write after undrain: {err}");
    anyhow::ensure!(c.data_dir("cs1").join("chunks").join("p").exists());

    let (code, _, err) = c.keelctl(&["server", "drain", "cs9"])?;
    anyhow::ensure!(
        code != 0 && err.contains("cs9"),
        "unknown server: {code} {err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_with_no_room_elsewhere_waits_deletes_nothing_and_finishes_once_room_comes()
-> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    for s in ["cs1", "cs2"] {
        c.add_chunkserver(s, CsOpts::default())?;
    }
    // cs3 is too small to take the chunk above its free-space floor.
    c.add_chunkserver(
        "cs3",
        CsOpts {
            capacity: "100KiB".into(),
            ..CsOpts::default()
        },
    )?;
    c.wait_alive(3).await?;
    let data = pattern(9, 100_000);
    for s in ["cs1", "cs2"] {
        write(&c.cs(s).url(), "n", &data, 2).await?;
    }
    let (code, _, err) = c.keelctl(&["server", "drain", "cs1"])?;
    anyhow::ensure!(code == 0, "drain failed: {err}");
    wait_until(
        "explain to say why the drain waits",
        Duration::from_secs(20),
        || async {
            let Ok((0, out, _)) = c.keelctl(&["explain", "n"]) else {
                return false;
            };
            out.contains("cannot get one now")
                && out.contains("cs1 is draining")
                && out.contains("free-space floor")
        },
    )
    .await?;
    // Several maintenance passes later nothing is deleted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    anyhow::ensure!(c.data_dir("cs1").join("chunks").join("n").exists());
    anyhow::ensure!(!c.data_dir("cs3").join("chunks").join("n").exists());
    anyhow::ensure!(state_of(&c, "cs1").as_deref() == Some("draining"));

    c.add_chunkserver("cs4", CsOpts::default())?;
    wait_state(&c, "cs1", "drained", Duration::from_secs(30)).await?;
    let (code, out, _) = c.keelctl(&["explain", "n", "--json"])?;
    anyhow::ensure!(code == 0);
    let v: serde_json::Value = serde_json::from_str(&out)?;
    anyhow::ensure!(v["status"] == "healthy", "{out}");
    Ok(())
}
