//! keelctl in an 80-column terminal (a real pseudo-terminal, through
//! `script`): the servers table fits without wrapping, `rebalance run --wait`
//! redraws one progress line in place (never wider than the terminal, with
//! rate and ETA) instead of leaving a line per redraw, and `TERM=dumb` gets
//! plain lines with no escape codes.

use std::process::Command;

use anyhow::{Context, Result, bail};
use keel_tests::chunks::pattern;
use keel_tests::{Cluster, CsOpts, bin};

/// The terminal's width.
const COLUMNS: usize = 80;

/// cs1 holds every chunk; three empty servers, each moving at most 1 MiB/s,
/// make the rebalance last a few seconds of redraws.
async fn lopsided_cluster() -> Result<Cluster> {
    let mut c = Cluster::new()?;
    c.start_master(&[])?;
    for (i, id) in ["cs1", "cs2", "cs3", "cs4"].into_iter().enumerate() {
        let opts = CsOpts {
            capacity: "16MiB".into(),
            rack: Some(format!("rack-{}", i % 2)),
            bandwidth: Some("1MiB".into()),
            ..CsOpts::default()
        };
        c.add_chunkserver(id, opts)?;
    }
    c.wait_alive(4).await?;
    let dir = tempfile::tempdir()?;
    for i in 0..8u64 {
        let chunk = format!("term-{i}");
        let path = dir.path().join(&chunk);
        std::fs::write(&path, pattern(i, 1 << 20))?;
        let path = path.to_str().context("utf-8 path")?;
        let args = ["put", &chunk, path, "--on", "cs1", "--replication", "1"];
        let (code, out, err) = c.keelctl(&args)?;
        if code != 0 {
            bail!("put {chunk}: {out} {err}");
        }
    }
    Ok(c)
}

/// Runs keelctl with `args` in a pseudo-terminal `COLUMNS` wide, with `term`
/// as TERM; returns everything the terminal received.
fn in_terminal(c: &Cluster, term: &str, args: &[&str]) -> Result<String> {
    let mut cmd = format!(
        "stty cols {COLUMNS} rows 24; exec '{}' --master '{}'",
        bin("keelctl").display(),
        c.master_url()
    );
    for a in args {
        cmd.push_str(&format!(" '{a}'"));
    }
    let out = Command::new("script")
        .args(["--quiet", "--return", "--command", &cmd, "/dev/null"])
        .env("TERM", term)
        .env_remove("COLUMNS")
        .output()
        .context("run `script` (util-linux)")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!("keelctl {args:?} in a terminal: {text}");
    }
    Ok(text)
}

/// The text of each screen line the output draws: split at line feeds and
/// carriage returns, escape sequences removed.
fn drawn_lines(text: &str) -> Vec<String> {
    text.split(['\n', '\r'])
        .map(strip_escapes)
        .filter(|l| !l.is_empty())
        .collect()
}

fn strip_escapes(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(ch) = chars.next() {
        if ch == '\x1b' {
            // CSI: ESC [ parameters, then one final byte in @..~.
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

fn too_wide(lines: &[String], width: usize) -> Vec<&String> {
    lines.iter().filter(|l| l.chars().count() > width).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_80_column_terminal_gets_fitted_tables_and_one_redrawn_progress_line() -> Result<()> {
    let c = lopsided_cluster().await?;

    // Piped, the table keeps every column (wider than 80 here).
    let (code, piped, err) = c.keelctl(&["servers"])?;
    assert_eq!(code, 0, "{err}");
    assert!(piped.lines().any(|l| l.len() > COLUMNS), "{piped}");

    let shown = in_terminal(&c, "xterm", &["servers"])?;
    let lines = drawn_lines(&shown);
    assert!(too_wide(&lines, COLUMNS).is_empty(), "{shown}");
    for id in ["cs1", "cs2", "cs3", "cs4"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(id) && l.ends_with("alive")),
            "{id} on one line: {shown}"
        );
    }

    let run = in_terminal(
        &c,
        "xterm",
        &[
            "rebalance",
            "run",
            "--wait",
            "--wait-timeout",
            "120s",
            "--poll-interval",
            "200ms",
        ],
    )?;
    let redraws = run.matches("\r\x1b[2K").count();
    assert!(redraws >= 5, "redrawn in place {redraws} times: {run:?}");
    let feeds = run.matches('\n').count();
    assert!(
        feeds <= 6,
        "{feeds} line feeds for {redraws} redraws: every redraw left a line behind: {run:?}"
    );
    let lines = drawn_lines(&run);
    assert!(
        too_wide(&lines, COLUMNS - 1).is_empty(),
        "a progress line as wide as the terminal wraps: {run:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("ETA ") && l.contains("/s")),
        "rate and ETA shown: {lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("rebalance finished in")),
        "{lines:#?}"
    );

    // A terminal without cursor controls gets plain lines.
    let (code, _, err) = c.keelctl(&["rebalance", "run"])?;
    assert_eq!(code, 0, "{err}");
    let dumb = in_terminal(
        &c,
        "dumb",
        &["rebalance", "run", "--wait", "--poll-interval", "200ms"],
    )?;
    assert!(
        !dumb.contains('\x1b'),
        "escape codes for TERM=dumb: {dumb:?}"
    );
    assert!(
        !dumb.replace("\r\n", "\n").contains('\r'),
        "carriage returns for TERM=dumb: {dumb:?}"
    );
    Ok(())
}
