//! `rebalance run [--wait]`: queue the balancer's plan now and, with
//! `--wait`, follow the queue with a progress bar on stderr until nothing is
//! pending or running.

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Args;
use keel_proto::units::parse_duration;
use keel_proto::v1::{RebalanceRunRequest, RebalanceRunResponse, RebalanceStatusResponse};
use serde::Serialize;
use tonic::Code;

use super::queue;
use crate::client::Master;
use crate::error::Error;
use crate::output::{self, MoveCounts, Progress, Rate};

/// `keelctl rebalance run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Show progress until no move is pending or running, then a summary.
    #[arg(long, env = "KEEL_WAIT")]
    pub wait: bool,
    /// With `--wait`: give up waiting after this long (the moves go on).
    #[arg(long = "wait-timeout", env = "KEEL_WAIT_TIMEOUT", value_parser = parse_duration, requires = "wait")]
    pub wait_timeout: Option<Duration>,
    /// With `--wait`: how often to poll the master.
    #[arg(long, env = "KEEL_POLL_INTERVAL", default_value = "500ms", value_parser = parse_duration)]
    pub poll_interval: Duration,
}

/// Lines on a non-terminal stderr come at most this often.
const PLAIN_EVERY: Duration = Duration::from_secs(3);
/// Consecutive failed polls tolerated (the master may be restarting).
const MAX_POLL_FAILURES: u32 = 20;

/// `rebalance run --json`.
#[derive(Debug, Serialize, PartialEq)]
pub struct RunJson {
    /// Moves this pass added to the queue.
    pub enqueued: u32,
    /// Their bytes.
    pub bytes: u64,
    /// What the planner had to say.
    pub notes: Vec<String>,
    /// With `--wait`: how the queue ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<WaitJson>,
}

/// How a waited-for run ended.
#[derive(Debug, Serialize, PartialEq)]
pub struct WaitJson {
    /// Time spent waiting.
    pub elapsed_ms: u64,
    /// Moves done during the wait.
    pub done: u64,
    /// Moves failed during the wait.
    pub failed: u64,
    /// Bytes moved during the wait.
    pub bytes_moved: u64,
    /// Whether the cluster is balanced now.
    pub balanced: bool,
    /// The average now.
    pub average_utilization_pct: f64,
}

/// Runs `rebalance run`.
pub async fn run(master: &Master, args: RunArgs, json: bool) -> Result<(), Error> {
    // The baseline comes first, so a master that cannot report progress is
    // found out before anything is queued.
    let baseline = match args.wait {
        true => Some(queue::fetch(master).await?),
        false => None,
    };
    let resp = master
        .call_changing("rebalance run", || {
            let mut c = master.client.clone();
            async move { c.rebalance_run(RebalanceRunRequest {}).await }
        })
        .await?;
    if !json {
        output::print_stdout(&render_run(&resp))?;
    }
    let mut out = RunJson {
        enqueued: resp.enqueued,
        bytes: resp.bytes,
        notes: resp.notes,
        finished: None,
    };
    if let Some(base) = baseline {
        let (end, elapsed) = follow(master, &base, &args).await?;
        let waited = summary(&base, &end, elapsed);
        if !json {
            output::print_stdout(&render_summary(&waited))?;
        }
        out.finished = Some(waited);
    }
    if json {
        output::print_json(&out)?;
    }
    match &out.finished {
        Some(w) if w.failed > 0 => Err(Error::MovesFailed {
            failed: w.failed,
            total: w.done + w.failed,
        }),
        _ => Ok(()),
    }
}

fn render_run(r: &RebalanceRunResponse) -> String {
    let mut out = if r.enqueued == 0 {
        "nothing to queue\n".to_owned()
    } else {
        format!(
            "queued {} ({})\n",
            output::count(u64::from(r.enqueued), "move"),
            output::size(r.bytes)
        )
    };
    for n in &r.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}

/// Counts of the moves since `base` (the queue may hold older moves too).
pub fn counts(base: &RebalanceStatusResponse, now: &RebalanceStatusResponse) -> MoveCounts {
    MoveCounts {
        pending: now.pending,
        running: now.running,
        done: now.done.saturating_sub(base.done),
        failed: now.failed.saturating_sub(base.failed),
    }
}

/// The progress line for one poll, with the rate and ETA `rate` has seen,
/// fitted to `width`.
pub fn line(
    base: &RebalanceStatusResponse,
    now: &RebalanceStatusResponse,
    rate: &Rate,
    width: Option<usize>,
) -> String {
    let moved = now.bytes_moved.saturating_sub(base.bytes_moved);
    let nothing_yet = moved == 0 && now.bytes_remaining == 0 && now.pending + now.running == 0;
    let note = match (now.paused, now.safe_mode) {
        (true, _) => "paused (keelctl rebalance resume)",
        (false, true) => "safe mode",
        // An empty plan would otherwise draw a full bar before any work.
        _ if nothing_yet => "waiting for the balancer to plan",
        _ => "",
    };
    let progress = Progress {
        done_bytes: moved,
        total_bytes: moved + now.bytes_remaining,
        moves: counts(base, now),
        // Bytes count when a move lands: no rate before the first one.
        rate: rate.per_second().filter(|&r| r > 0.0),
        eta: rate
            .eta(now.bytes_remaining)
            .filter(|_| !now.paused && now.bytes_remaining > 0),
        note,
    };
    output::progress_line(&progress, width)
}

/// Polls until nothing is pending or running; returns the last status.
async fn follow(
    master: &Master,
    base: &RebalanceStatusResponse,
    args: &RunArgs,
) -> Result<(RebalanceStatusResponse, Duration), Error> {
    let idle = |s: &RebalanceStatusResponse| s.pending == 0 && s.running == 0;
    follow_until(master, base, args.poll_interval, args.wait_timeout, idle).await
}

/// Polls the queue every `poll`, drawing the progress of the moves since
/// `base` on stderr, until `done` holds for a status (returned with the time
/// spent) or `limit` passes ([`Error::WaitTimedOut`]).
pub async fn follow_until(
    master: &Master,
    base: &RebalanceStatusResponse,
    poll: Duration,
    limit: Option<Duration>,
    done: impl Fn(&RebalanceStatusResponse) -> bool,
) -> Result<(RebalanceStatusResponse, Duration), Error> {
    let start = Instant::now();
    let mut draw = Drawer::new(output::redraws());
    let mut rate = Rate::default();
    let mut failures = 0;
    loop {
        match queue::fetch(master).await {
            Ok(now) => {
                failures = 0;
                rate.sample(
                    start.elapsed(),
                    now.bytes_moved.saturating_sub(base.bytes_moved),
                );
                draw.show(&line(base, &now, &rate, draw.width()));
                if done(&now) {
                    draw.finish();
                    return Ok((now, start.elapsed()));
                }
            }
            Err(e) if transient(&e) && failures < MAX_POLL_FAILURES => failures += 1,
            Err(e) => return Err(e),
        }
        if let Some(limit) = limit
            && start.elapsed() >= limit
        {
            draw.finish();
            return Err(Error::WaitTimedOut { after: limit });
        }
        tokio::time::sleep(poll).await;
    }
}

fn transient(e: &Error) -> bool {
    matches!(e, Error::Unreachable { .. })
        || matches!(e.code(), Some(Code::Unavailable | Code::DeadlineExceeded))
}

/// What a wait from `base` to `end` achieved.
pub fn summary(
    base: &RebalanceStatusResponse,
    end: &RebalanceStatusResponse,
    elapsed: Duration,
) -> WaitJson {
    let c = counts(base, end);
    WaitJson {
        elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        done: c.done,
        failed: c.failed,
        bytes_moved: end.bytes_moved.saturating_sub(base.bytes_moved),
        balanced: end.balanced,
        average_utilization_pct: end.average_utilization_pct,
    }
}

/// One line: moves done and failed, bytes moved, balanced or not.
pub fn render_summary(w: &WaitJson) -> String {
    format!(
        "rebalance finished in {}: {} done, {} failed, {} moved\ncluster {} (average {})\n",
        output::age(Duration::from_millis(w.elapsed_ms)),
        output::count(w.done, "move"),
        w.failed,
        output::size(w.bytes_moved),
        if w.balanced {
            "balanced"
        } else {
            "not balanced"
        },
        output::pct(w.average_utilization_pct).trim_start(),
    )
}

/// Draws progress on stderr: in place on a terminal, else a line now and then.
pub struct Drawer {
    tty: bool,
    width: Option<usize>,
    last_plain: Option<Instant>,
    pending_line: Option<String>,
    drawn: bool,
}

impl Drawer {
    /// In place when `tty`, else a plain line at most every few seconds.
    pub fn new(tty: bool) -> Self {
        Drawer {
            tty,
            // One column spare: a line that fills the last column makes some
            // terminals wrap, and every redraw would then leave a line behind.
            width: tty
                .then(output::stderr_width)
                .flatten()
                .map(|w| w.saturating_sub(1).max(1)),
            last_plain: None,
            pending_line: None,
            drawn: false,
        }
    }

    /// The columns a redrawn line may take (`None`: no limit).
    pub fn width(&self) -> Option<usize> {
        self.width
    }

    /// Shows `line` as the current progress.
    pub fn show(&mut self, line: &str) {
        let mut err = std::io::stderr().lock();
        if self.tty {
            let line = match self.width {
                Some(w) => output::cut(line, w),
                None => line.to_owned(),
            };
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
            self.drawn = true;
        } else if self.last_plain.is_none_or(|t| t.elapsed() >= PLAIN_EVERY) {
            let _ = writeln!(err, "{line}");
            self.last_plain = Some(Instant::now());
            self.pending_line = None;
        } else {
            self.pending_line = Some(line.to_owned());
        }
    }

    /// Ends the in-place line, or prints the last unprinted plain line.
    pub fn finish(&mut self) {
        let mut err = std::io::stderr().lock();
        if self.tty && self.drawn {
            let _ = writeln!(err);
            self.drawn = false;
        } else if let Some(line) = self.pending_line.take() {
            let _ = writeln!(err, "{line}");
        }
    }
}

impl Drop for Drawer {
    fn drop(&mut self) {
        // Interrupted mid-draw: leave the cursor on a fresh line.
        if self.tty && self.drawn {
            let _ = writeln!(std::io::stderr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(
        pending: u64,
        running: u64,
        done: u64,
        failed: u64,
        moved: u64,
        left: u64,
    ) -> RebalanceStatusResponse {
        RebalanceStatusResponse {
            pending,
            running,
            done,
            failed,
            bytes_moved: moved << 20,
            bytes_remaining: left << 20,
            ..Default::default()
        }
    }

    #[test]
    fn progress_counts_only_this_run() {
        let base = st(0, 0, 10, 1, 500, 0);
        let now = st(2, 1, 12, 1, 564, 192);
        assert_eq!(
            counts(&base, &now),
            MoveCounts {
                pending: 2,
                running: 1,
                done: 2,
                failed: 0
            }
        );
        let mut rate = Rate::default();
        assert_eq!(
            line(&base, &now, &rate, None),
            "[######..................] 25.0%  64.0 MiB / 256.0 MiB  moves 2/5 (1 running, 0 failed)"
        );
        rate.sample(Duration::ZERO, 0);
        rate.sample(Duration::from_secs(2), 64 << 20);
        assert_eq!(
            line(&base, &now, &rate, Some(79)),
            "[###.......] 25.0%  64.0 MiB / 256.0 MiB  moves 2/5  32.0 MiB/s  ETA 6.0s"
        );
        let paused = RebalanceStatusResponse {
            paused: true,
            ..now
        };
        let text = line(&base, &paused, &rate, Some(79));
        assert!(
            text.ends_with("paused (keelctl rebalance resume)"),
            "{text}"
        );
        assert!(!text.contains("ETA"), "no ETA while paused: {text}");
    }

    #[test]
    fn summary_and_json() {
        let base = st(0, 0, 10, 1, 500, 0);
        let end = RebalanceStatusResponse {
            balanced: true,
            average_utilization_pct: 50.0,
            ..st(0, 0, 13, 2, 692, 0)
        };
        let w = summary(&base, &end, Duration::from_millis(12_300));
        assert_eq!((w.done, w.failed, w.bytes_moved), (3, 1, 192 << 20));
        assert_eq!(
            render_summary(&w),
            "rebalance finished in 12.3s: 3 moves done, 1 failed, 192.0 MiB moved\ncluster balanced (average 50.0%)\n"
        );
        let out = RunJson {
            enqueued: 3,
            bytes: 5,
            notes: vec![],
            finished: None,
        };
        let v = serde_json::to_value(&out).expect("encodes");
        assert_eq!(
            v,
            serde_json::json!({"enqueued": 3, "bytes": 5, "notes": []})
        );
    }
}
