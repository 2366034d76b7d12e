//! The dashboard in a real headless Chromium against a real cluster.
//!
//! Moves planned while the balancer is paused raise the stuck banner, naming
//! the cause, once nothing has finished for `--stuck-after`; resuming clears
//! it. Mid-rebalance (one overloaded server sending at 1 MiB/s) the page
//! shows every server (with its read load, when the master reports it), the
//! load band, and the queue with its waiting reasons; once the
//! rebalance is over, the replay steps and plays through its moves, and its
//! bars start where the servers were and end where they are. On a master with
//! tokens, the API answers 401 without one and the login form takes the
//! read-only client token, refuses a wrong one without echoing it, and
//! leaves an HttpOnly cookie. Screenshots land in a temp dir, and in
//! `docs/img/` with `KEEL_UPDATE_SCREENSHOTS=1`.
//!
//! Needs Chromium (Debian's `chromium`; `.ci/run` installs it when missing).
//! Without it the tests skip loudly, except under `CI`, where they fail.

mod cdp;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use cdp::{Browser, find_chromium};
use keel_tests::chunks::{pattern, write};
use keel_tests::master::wait_known;
use keel_tests::{Cluster, CsOpts};
use serde_json::Value;

const KIB: usize = 1024;
/// Every chunk: 512 KiB, half a second of cs1's migration bandwidth.
const CHUNK: usize = 512 * KIB;
/// Chunks written to each server: cs1 holds half its capacity.
const SEED: [(&str, &str, usize); 4] = [
    ("cs1", "a", 32),
    ("cs2", "a", 6),
    ("cs3", "b", 2),
    ("cs4", "b", 0),
];
const WAIT: Duration = Duration::from_secs(15);

/// Chromium, or `None` (with a loud message) where the tests may skip.
fn chromium() -> Option<PathBuf> {
    let found = find_chromium();
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but Chromium was not found (install Debian's chromium, or set KEEL_CHROMIUM)"
        );
        // Straight to stderr: the test harness captures eprintln! of a
        // passing test, and a skip must be seen.
        let _ = std::io::stderr().write_all(
            b"\n\n*** t83_dashboard SKIPPED: Chromium not found (apt-get install chromium, or set KEEL_CHROMIUM) ***\n\n",
        );
    }
    found
}

/// Keeps a screenshot: always in `dir`, and in `docs/img/` when asked to.
fn keep(dir: &Path, name: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    if std::env::var("KEEL_UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/img");
        std::fs::create_dir_all(&docs)?;
        std::fs::copy(&path, docs.join(name))?;
    }
    Ok(path)
}

/// A screenshot of the viewport, or of the element `clip` when given.
fn shot(b: &mut Browser, dir: &Path, name: &str, clip: Option<&str>) -> Result<()> {
    match clip {
        Some(selector) => b.screenshot_of(&dir.join(name), selector)?,
        None => b.screenshot(&dir.join(name))?,
    }
    let kept = keep(dir, name)?;
    eprintln!("screenshot: {}", kept.display());
    Ok(())
}

fn http_addr(c: &Cluster) -> Result<SocketAddr> {
    c.master
        .as_ref()
        .and_then(|m| m.http_addr)
        .context("the master's http address")
}

/// `GET path` with an optional bearer token: status code and body.
fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(addr)?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no header end")?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("status code")?;
    Ok((code, body.to_owned()))
}

/// A JS expression reading one replay bar's bytes.
fn replay_used(id: &str) -> String {
    format!(
        "Number(document.querySelector('#replay-servers .server[data-id=\"{id}\"]').dataset.used)"
    )
}

fn click(b: &mut Browser, id: &str) -> Result<()> {
    b.eval(&format!("document.getElementById('{id}').click()"))?;
    Ok(())
}

fn pos(b: &mut Browser) -> Result<String> {
    Ok(b.eval("document.getElementById('replay-pos').textContent")?
        .as_str()
        .unwrap_or_default()
        .to_owned())
}

/// The seeded cluster: cs1 at 50 %, the others far below, 32 MiB each.
async fn cluster() -> Result<Cluster> {
    let mut c = Cluster::new()?;
    // The old slot limits, set explicitly: the page must show moves waiting
    // for a slot.
    c.start_master(&[
        "--threshold-pct",
        "5",
        "--stuck-after",
        "2s",
        "--max-concurrent-moves",
        "4",
        "--max-moves-per-server",
        "2",
    ])?;
    for (id, rack, _) in SEED {
        let opts = CsOpts {
            capacity: "32MiB".into(),
            rack: Some(rack.into()),
            // cs1 sends every move: it sets the pace.
            bandwidth: Some(if id == "cs1" { "1MiB" } else { "64MiB" }.into()),
            ..CsOpts::default()
        };
        c.add_chunkserver(id, opts)?;
    }
    c.wait_alive(SEED.len()).await?;
    let mut names = vec![];
    for (n, (id, _, count)) in SEED.into_iter().enumerate() {
        let url = c.cs(id).url();
        for i in 0..count {
            let name = format!("{}{i:02}", &id[2..]);
            write(&url, &name, &pattern((n * 100 + i) as u64, CHUNK), 1).await?;
            names.push(name);
        }
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    wait_known(&c.master_url(), &names).await?;
    Ok(c)
}

/// The load band chip, from the master's policy (`--load-threshold-pct`,
/// 25 by default); and, for every server whose read load `/api/status`
/// reports, its reads/s line and its hot/cold mark as the master placed it.
fn read_load_shows(b: &mut Browser) -> Result<()> {
    let chips = b.eval("document.getElementById('chips').innerText")?;
    ensure!(
        chips
            .as_str()
            .is_some_and(|c| c.contains("load band ±25 %")),
        "{chips}"
    );
    let live: Value = b.eval("fetch('/api/status').then(r => r.json())")?;
    for s in live["servers"].as_array().context("servers")? {
        let (Some(id), Some(reads)) = (s["id"].as_str(), s["reads_per_sec"].as_f64()) else {
            continue;
        };
        let sel = format!("#servers .server[data-id=\"{id}\"]");
        let shown = b.eval(&format!(
            "[document.querySelector('{sel} .load .reads')?.textContent ?? '', \
              document.querySelector('{sel}')?.dataset.load ?? '']"
        ))?;
        // The page may have polled once more since: a rate moves a little.
        let text = shown[0].as_str().unwrap_or_default();
        let on_page: f64 = text.trim_end_matches(" reads/s").parse().unwrap_or(-1.0);
        ensure!(
            text.ends_with(" reads/s") && (on_page - reads).abs() <= 1.0 + reads * 0.2,
            "{id}: {shown} against {reads}"
        );
        ensure!(shown[1] == s["load"], "{id}: {shown} against {}", s["load"]);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_rebalance_live_and_replays_it() -> Result<()> {
    let Some(chromium) = chromium() else {
        return Ok(());
    };
    let c = cluster().await?;
    let http = http_addr(&c)?;
    let shots = c.dir.path().join("screenshots");
    std::fs::create_dir_all(&shots)?;
    let mut b = Browser::start(&chromium, c.dir.path())?;
    b.viewport(1280, 800, false)?;
    b.navigate(&format!("http://{http}/"))?;
    b.wait_for(
        "the first render",
        "document.body.dataset.ready === '1'",
        WAIT,
    )?;
    let empty = b.eval("document.getElementById('replay-empty').hidden")?;
    ensure!(empty == false, "a replay before any rebalance");

    // Planned while paused: the moves wait, nothing finishes, and after
    // --stuck-after the banner says so and why.
    for args in [&["rebalance", "pause"][..], &["--json", "rebalance", "run"]] {
        let (code, out, err) = c.keelctl(args)?;
        ensure!(code == 0, "{args:?}: {out} {err}");
    }
    b.wait_for(
        "the stuck banner",
        "!document.getElementById('stuck').hidden \
         && document.getElementById('stuck-cause').textContent === 'paused'",
        WAIT,
    )?;
    let detail = b.eval("document.getElementById('stuck-detail').textContent")?;
    let detail = detail.as_str().unwrap_or_default();
    ensure!(
        detail.contains("pending moves wait because the balancer is paused"),
        "{detail}"
    );
    shot(&mut b, &shots, "dashboard-stuck.png", None)?;
    let (code, _, err) = c.keelctl(&["rebalance", "resume"])?;
    ensure!(code == 0, "resume: {err}");
    b.wait_for(
        "the banner to go",
        "document.getElementById('stuck').hidden",
        WAIT,
    )?;

    // Mid-rebalance: every server, the queue, and why moves wait.
    for (id, rack, _) in SEED {
        let sel = format!("#servers .server[data-id=\"{id}\"]");
        let text = b.eval(&format!("document.querySelector('{sel}')?.innerText ?? ''"))?;
        let text = text.as_str().unwrap_or_default();
        ensure!(
            text.contains("alive") && text.contains(&format!("rack {rack}")),
            "{id}: {text:?}"
        );
    }
    read_load_shows(&mut b)?;
    b.wait_for(
        "moves done (and in the replay), running and waiting",
        "document.querySelectorAll('#moves .move[data-state=running]').length > 0 \
         && document.querySelectorAll('#moves .move[data-state=pending]').length > 0 \
         && Number(document.querySelector('#queue-counts [data-count=done] b').textContent) >= 4 \
         && !document.getElementById('replay-body').hidden",
        WAIT,
    )?;
    let counts = b.eval(
        "[...document.querySelectorAll('#queue-counts .count')].map(c => c.dataset.count).join(',')",
    )?;
    ensure!(counts == "pending,running,done,failed", "{counts}");
    let reasons = b.eval("document.getElementById('reasons').innerText")?;
    ensure!(
        reasons.as_str().is_some_and(|r| r.contains("no slot")),
        "{reasons}"
    );
    shot(&mut b, &shots, "dashboard-desktop.png", None)?;
    b.viewport(390, 844, true)?;
    b.wait_for(
        "the phone layout (one column)",
        "window.innerWidth === 390 \
         && document.querySelector('.progress-card').getBoundingClientRect().left < 20",
        WAIT,
    )?;
    let overflow = b.eval("document.documentElement.scrollWidth")?;
    ensure!(
        overflow.as_u64() <= Some(390),
        "wider than the phone: {overflow}"
    );
    shot(&mut b, &shots, "dashboard-phone.png", None)?;
    b.viewport(1280, 800, false)?;

    // Over: the replay starts at the cluster before the first move and
    // ends where the servers are now.
    b.wait_for(
        "the rebalance to finish in the replay",
        "document.getElementById('replay-sub').textContent.includes('finished')",
        Duration::from_secs(45),
    )?;
    let p = pos(&mut b)?;
    let (done, n) = p.split_once(" / ").context("replay position")?;
    ensure!(done == n && n.parse::<u32>()? >= 5, "replay at {p}");
    let live: Value = b.eval("fetch('/api/status').then(r => r.json())")?;
    for s in live["servers"].as_array().context("servers")? {
        let id = s["id"].as_str().context("id")?;
        let at_end = b.eval(&replay_used(id))?;
        ensure!(
            at_end == s["used_bytes"],
            "{id}: replay ends at {at_end}, server has {}",
            s["used_bytes"]
        );
    }
    click(&mut b, "replay-first")?;
    ensure!(pos(&mut b)? == format!("0 / {n}"));
    let start = b.eval(&replay_used("cs1"))?;
    ensure!(
        start.as_u64() == Some(32 * CHUNK as u64),
        "cs1 at the start: {start}"
    );
    click(&mut b, "replay-step")?;
    ensure!(pos(&mut b)? == format!("1 / {n}"));
    let first = b.eval("document.getElementById('replay-move').innerText")?;
    let after = b.eval(&replay_used("cs1"))?;
    ensure!(
        after.as_u64() == Some(31 * CHUNK as u64),
        "cs1 after the first move: {after} ({first})"
    );
    click(&mut b, "replay-play")?;
    b.wait_for(
        "play to advance",
        "document.getElementById('replay-pos').textContent.startsWith('3 /')",
        WAIT,
    )?;
    click(&mut b, "replay-play")?;
    b.eval(
        "(() => { const r = document.getElementById('replay-range'); r.value = Math.ceil(r.max / 2); \
         r.dispatchEvent(new Event('input')); })()",
    )?;
    shot(&mut b, &shots, "dashboard-replay.png", Some(".replay-card"))?;

    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_protected_dashboard_takes_the_login_form() -> Result<()> {
    let Some(chromium) = chromium() else {
        return Ok(());
    };
    const CLUSTER: &str = "cluster-secret-83";
    const READER: &str = "reader-token-83";
    const WRONG: &str = "not-the-token-83";
    let mut c = Cluster::new()?;
    c.start_master(&["--auth-token", CLUSTER, "--client-token", READER])?;
    let http = http_addr(&c)?;

    // The API: 401 without a token or with a wrong one; either token reads.
    for token in [None, Some(WRONG)] {
        let (code, body) = get(http, "/api/status", token)?;
        ensure!(code == 401, "{token:?}: {code} {body}");
    }
    for token in [CLUSTER, READER] {
        let (code, body) = get(http, "/api/status", Some(token))?;
        ensure!(code == 200, "{code} {body}");
        let v: Value = serde_json::from_str(&body)?;
        ensure!(
            v["servers"] == serde_json::json!([]) && v["auth"] == true,
            "{v}"
        );
    }
    let (code, page) = get(http, "/", None)?;
    ensure!(
        code == 401 && page.contains("name=\"token\""),
        "{code} {page}"
    );

    let mut b = Browser::start(&chromium, c.dir.path())?;
    b.viewport(390, 844, true)?;
    b.navigate(&format!("http://{http}/"))?;
    b.wait_for("the login form", "!!document.getElementById('token')", WAIT)?;
    let submit = |b: &mut Browser, token: &str| {
        b.eval(&format!(
            "document.getElementById('token').value = '{token}'; \
             document.getElementById('login-submit').click()"
        ))
    };
    submit(&mut b, WRONG)?;
    b.wait_for(
        "the wrong-token message",
        "(document.getElementById('login-message')?.textContent ?? '').includes('Wrong token')",
        WAIT,
    )?;
    let shots = c.dir.path().join("screenshots");
    std::fs::create_dir_all(&shots)?;
    shot(&mut b, &shots, "dashboard-login-phone.png", None)?;
    let html = b.eval("document.documentElement.outerHTML + location.href")?;
    ensure!(
        !html.as_str().unwrap_or_default().contains(WRONG),
        "the token was echoed"
    );

    submit(&mut b, READER)?;
    b.wait_for("the dashboard", "document.body.dataset.ready === '1'", WAIT)?;
    b.wait_for(
        "the empty state",
        "document.getElementById('no-servers')?.innerText.includes('No chunk servers yet') === true",
        WAIT,
    )?;
    let seen =
        b.eval("[document.cookie, location.href, document.getElementById('logout').hidden]")?;
    ensure!(
        seen[0] == "",
        "the session cookie is readable from scripts: {seen}"
    );
    ensure!(
        !seen[1].as_str().unwrap_or_default().contains(READER),
        "{seen}"
    );
    ensure!(seen[2] == false, "no log-out button: {seen}");
    shot(&mut b, &shots, "dashboard-empty-phone.png", None)?;

    b.eval("document.querySelector('#logout button').click()")?;
    b.wait_for(
        "the login form again",
        "!!document.getElementById('token')",
        WAIT,
    )?;
    Ok(())
}
