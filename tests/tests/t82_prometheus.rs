//! Prometheus against a real cluster: the master's `/metrics` passes
//! `promtool check metrics`; `deploy/prometheus/alerts.yml` passes `promtool
//! check rules` and its unit tests (`promtool test rules`); and a real
//! Prometheus server scrapes the running master, loads the rules, and
//! answers queries with the cluster's own numbers; `keel_queue_stuck`
//! rises while moves wait with nothing finishing and falls once they move,
//! and each copy lands in the duration histogram of its kind; a chunk
//! server's own `/metrics` counts the bytes it wrote, sent and received and
//! passes `promtool` too. Needs Debian's
//! `prometheus` package (`.ci/run` installs it when missing).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use keel_tests::chunks::{pattern, write};
use keel_tests::master::{http_get, metric_of, wait_known};
use keel_tests::{Cluster, CsOpts, wait_until};
use serde_json::Value;

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

/// Runs `promtool` with `args` (stdin from `input`); its output on failure.
fn promtool(args: &[&str], input: Option<&str>) -> Result<String> {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("promtool not found: install Debian's prometheus package")?;
    if let Some(text) = input {
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(text.as_bytes())?;
    }
    drop(child.stdin.take());
    let out = child.wait_with_output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    anyhow::ensure!(out.status.success(), "promtool {args:?} failed:\n{text}");
    Ok(text)
}

#[test]
fn the_alert_rules_check_and_pass_their_unit_tests() -> Result<()> {
    let dir = rules_dir();
    let rules = dir.join("alerts.yml");
    let out = promtool(&["check", "rules", rules.to_str().context("path")?], None)?;
    anyhow::ensure!(out.contains("SUCCESS: 6 rules found"), "{out}");
    let tests = dir.join("alerts_test.yml");
    promtool(&["test", "rules", tests.to_str().context("path")?], None)?;
    Ok(())
}

/// A child process (Prometheus, a keelctl run), killed when dropped, so a
/// failing test leaves nothing running.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `GET` on Prometheus' HTTP API; the parsed `data` of a success.
async fn api(addr: std::net::SocketAddr, path: &str) -> Result<Value> {
    let (code, body) = http_get(addr, path).await?;
    anyhow::ensure!(code == 200, "{path}: HTTP {code}: {body}");
    let v: Value = serde_json::from_str(&body)?;
    anyhow::ensure!(v["status"] == "success", "{path}: {body}");
    Ok(v["data"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_master_and_loads_the_alerts() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    for s in ["cs1", "cs2"] {
        c.add_chunkserver(s, CsOpts::default())?;
    }
    c.wait_alive(2).await?;
    write(&c.cs("cs1").url(), "scraped", &pattern(3, 8192), 1).await?;
    let http = c
        .master
        .as_ref()
        .and_then(|m| m.http_addr)
        .context("the master's http address")?;

    // The exposition format itself.
    let (code, body) = http_get(http, "/metrics").await?;
    anyhow::ensure!(code == 200, "/metrics: HTTP {code}");
    promtool(&["check", "metrics"], Some(&body))?;
    // Every gRPC method the master served has its latency histogram.
    for method in ["Heartbeat", "ListServers"] {
        let count = format!("keel_rpc_duration_seconds_count{{method=\"{method}\"}} ");
        anyhow::ensure!(body.contains(&count), "no {count} in {body}");
    }

    // A real server scraping it every second, with the alert rules loaded.
    let dir = c.dir.path().join("prometheus");
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("prometheus.yml");
    let rules = rules_dir().join("alerts.yml").canonicalize()?;
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: keel-master\n    static_configs:\n      - targets: [\"{http}\"]\n",
            rules.display()
        ),
    )?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("prometheus.log"))?;
    let _prometheus = Reaped(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("prometheus not found: install Debian's prometheus package")?,
    );
    let prom: std::net::SocketAddr = format!("127.0.0.1:{port}").parse()?;
    wait_until("prometheus ready", Duration::from_secs(30), || async move {
        http_get(prom, "/-/ready")
            .await
            .is_ok_and(|(c, _)| c == 200)
    })
    .await?;

    // It sees both servers alive and the one chunk's bytes, as the master says.
    wait_until(
        "prometheus to have scraped both servers",
        Duration::from_secs(30),
        || async move {
            api(prom, "/api/v1/query?query=sum(keel_server_alive)")
                .await
                .is_ok_and(|d| d["result"][0]["value"][1] == "2")
        },
    )
    .await?;
    let up = api(prom, "/api/v1/query?query=up").await?;
    anyhow::ensure!(up["result"][0]["value"][1] == "1", "{up}");
    let rules = api(prom, "/api/v1/rules").await?;
    let loaded: Vec<&str> = rules["groups"][0]["rules"]
        .as_array()
        .context("rules")?
        .iter()
        .filter(|r| r["health"] == "ok" || r["health"] == "unknown")
        .filter_map(|r| r["name"].as_str())
        .collect();
    for name in ["KeelChunksUnavailable", "KeelServerDead", "KeelQueueStuck"] {
        anyhow::ensure!(loaded.contains(&name), "{name} not loaded: {rules}");
    }
    // Nothing is wrong with this cluster: no alert is pending or firing.
    let alerts = api(prom, "/api/v1/alerts").await?;
    anyhow::ensure!(
        alerts["alerts"].as_array().is_some_and(Vec::is_empty),
        "{alerts}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stuck_gauge_rises_while_nothing_finishes_and_falls_after() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&["--stuck-after", "1s", "--max-concurrent-moves", "1"])?;
    let slow = CsOpts {
        bandwidth: Some("1MiB".into()),
        ..CsOpts::default()
    };
    for s in ["cs1", "cs2"] {
        c.add_chunkserver(s, slow.clone())?;
    }
    c.wait_alive(2).await?;
    for (i, id) in ["a", "b"].into_iter().enumerate() {
        write(&c.cs("cs1").url(), id, &pattern(i as u64, 3 << 20), 1).await?;
    }
    let http = c
        .master
        .as_ref()
        .and_then(|m| m.http_addr)
        .context("the master's http address")?;
    let url = c.master_url();
    let u = &url;
    wait_known(u, &["a", "b"]).await?;
    // Two moves, one slot, about 3 s each at 1 MiB/s: the second waits.
    let moves = Command::new(keel_tests::bin("keelctl"))
        .args([
            "rebalance",
            "execute",
            "--move",
            "a:cs1:cs2",
            "--move",
            "b:cs1:cs2",
        ])
        .env("KEEL_MASTER", &url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut moves = Reaped(moves);
    let stuck = |want: f64| async move {
        metric_of(http, "keel_queue_stuck")
            .await
            .ok()
            .flatten()
            .is_some_and(|v| v == want)
    };
    wait_until("keel_queue_stuck 1", Duration::from_secs(10), || stuck(1.0)).await?;
    let status = moves.0.wait()?;
    anyhow::ensure!(status.success(), "keelctl rebalance execute failed");
    wait_until("keel_queue_stuck 0", Duration::from_secs(10), || stuck(0.0)).await?;
    let copies = metric_of(http, "keel_move_duration_seconds_count{kind=\"operator\"}").await?;
    anyhow::ensure!(copies == Some(2.0), "operator copies timed: {copies:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_servers_count_their_bytes_on_their_own_metrics() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    let http = CsOpts {
        extra: vec!["--http-listen".into(), "127.0.0.1:0".into()],
        ..CsOpts::default()
    };
    for s in ["cs1", "cs2"] {
        c.add_chunkserver(s, http.clone())?;
    }
    c.wait_alive(2).await?;
    let size = 300_000usize;
    write(&c.cs("cs1").url(), "counted", &pattern(9, size), 1).await?;
    let src = c.cs("cs1").http_addr.context("cs1's http address")?;
    let dst = c.cs("cs2").http_addr.context("cs2's http address")?;
    let url = c.master_url();
    let u = &url;
    wait_known(u, &["counted"]).await?;
    let (code, _, err) = c.keelctl(&["rebalance", "execute", "--move", "counted:cs1:cs2"])?;
    anyhow::ensure!(code == 0, "keelctl: {err}");
    let at_least = |addr, series: &'static str| async move {
        let v = metric_of(addr, series).await?.unwrap_or(0.0);
        anyhow::ensure!(v >= size as f64, "{series} is {v}, want at least {size}");
        Ok::<(), anyhow::Error>(())
    };
    at_least(src, "keel_chunkserver_bytes_written_total").await?;
    at_least(src, "keel_chunkserver_bytes_migrated_out_total").await?;
    at_least(dst, "keel_chunkserver_bytes_migrated_in_total").await?;
    let (code, body) = http_get(dst, "/metrics").await?;
    anyhow::ensure!(code == 200, "/metrics: HTTP {code}");
    promtool(&["check", "metrics"], Some(&body))?;
    anyhow::ensure!(
        body.contains("keel_build_info{binary=\"keel-chunkserver\""),
        "{body}"
    );
    // The target answered the copy; its latency is on its own histogram.
    anyhow::ensure!(
        body.contains("keel_rpc_duration_seconds_count{method=\"CopyChunk\"} 1"),
        "{body}"
    );
    anyhow::ensure!(keel_tests::master::metric(&body, "keel_chunkserver_chunks") == Some(1.0));
    let (code, ok) = http_get(dst, "/healthz").await?;
    anyhow::ensure!(code == 200 && ok == "ok");
    Ok(())
}
