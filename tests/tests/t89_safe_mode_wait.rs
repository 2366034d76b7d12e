//! keelctl waits out safe mode. Right after a master starts it refuses
//! `RebalanceRun` until its view is whole (`--safe-mode`); keelctl reached
//! it, so this is no outage: a command that changes something says once
//! that it waits, asks again when safe mode ends, and succeeds. When
//! `--timeout` runs out first, the error names safe mode, not an
//! unreachable master.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Result;
use keel_tests::{Cluster, CsOpts, bin};

/// Long enough that keelctl, started right after the master, still finds
/// it in safe mode on a loaded machine.
const SAFE_MODE: &str = "10s";

fn cluster(safe_mode: &str) -> Result<Cluster> {
    let mut c = Cluster::new()?;
    c.start_master(&["--safe-mode", safe_mode])?;
    c.add_chunkserver("cs1", CsOpts::default())?;
    Ok(c)
}

#[tokio::test]
async fn rebalance_run_waits_out_safe_mode() -> Result<()> {
    let mut c = Cluster::new()?;
    c.start_master(&["--safe-mode", SAFE_MODE])?;
    // keelctl asks at once, before anything else can use up safe mode on a
    // loaded machine; the chunk server joins while it waits.
    let started = Instant::now();
    let ctl = Command::new(bin("keelctl"))
        .args(["--timeout", "60s", "rebalance", "run"])
        .env("KEEL_MASTER", c.master_url())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    c.add_chunkserver("cs1", CsOpts::default())?;
    let done = ctl.wait_with_output()?;
    let (out, err) = (
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr),
    );
    assert_eq!(
        done.status.code(),
        Some(0),
        "run after safe mode: {out} {err}"
    );
    let waiting: Vec<&str> = err.lines().filter(|l| l.contains("waiting")).collect();
    assert_eq!(waiting.len(), 1, "one line says it waits: {err}");
    assert!(waiting[0].contains("safe mode"), "{err}");
    assert!(!err.contains("cannot reach"), "{err}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "it waited rather than failing"
    );
    Ok(())
}

#[tokio::test]
async fn giving_up_names_safe_mode_not_an_outage() -> Result<()> {
    let c = cluster("5m")?;
    let (code, _, err) = c.keelctl(&["--timeout", "2s", "rebalance", "run"])?;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("waiting"), "it said it waits: {err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("safe mode"),
        "the error names safe mode: {err}"
    );
    assert!(!last.contains("cannot reach"), "{err}");
    Ok(())
}
