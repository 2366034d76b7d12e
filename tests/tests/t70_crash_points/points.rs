//! Reaching a kill point, seeing where the move is, and the kill itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use keel_proto::v1::Move;
use keel_tests::{Cluster, cs};

use crate::plan::{KillPoint, Plan, Victim};

/// Longest wait for a kill point.
const POINT_LIMIT: Duration = Duration::from_secs(20);

/// The files that tell where a move is.
struct Paths {
    chunk: String,
    from: PathBuf,
    to: PathBuf,
}

impl Paths {
    fn of(c: &Cluster, mv: &Move) -> Self {
        Paths {
            chunk: mv.chunk.clone(),
            from: c.data_dir(&mv.from),
            to: c.data_dir(&mv.to),
        }
    }

    fn committed(&self, dir: &Path) -> bool {
        dir.join("chunks").join(&self.chunk).exists()
    }

    /// Bytes in the target's temp file for the chunk, if there is one.
    fn streamed(&self) -> Option<u64> {
        let prefix = format!("{}.", self.chunk);
        cs::temp_files(&self.to).iter().find_map(|f| {
            let name = f.file_name()?.to_str()?;
            if !name.starts_with(&prefix) {
                return None;
            }
            std::fs::metadata(f).ok().map(|m| m.len())
        })
    }
}

/// Waits until the plan's kill point is reached (true), or the request has
/// ended or [`POINT_LIMIT`] passed (false). Disk points are polled every
/// 200 µs on a blocking thread, so the kill lands within a millisecond.
pub async fn reach(c: &Cluster, p: &Plan, ended: Arc<AtomicBool>) -> Result<bool> {
    if let KillPoint::After { ms } = p.point {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return Ok(!ended.load(Ordering::SeqCst));
    }
    let paths = Paths::of(c, &p.moves[0]);
    let want = 64 + p.chunks[0].known.size * pct(p.point) / 100;
    let point = p.point;
    let reached = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + POINT_LIMIT;
        while Instant::now() < deadline && !ended.load(Ordering::SeqCst) {
            let hit = match point {
                KillPoint::Streaming { .. } => paths.streamed().is_some_and(|n| n >= want),
                KillPoint::TargetCommitted => paths.committed(&paths.to),
                KillPoint::SourceDeleted => {
                    paths.committed(&paths.to) && !paths.committed(&paths.from)
                }
                KillPoint::After { .. } => true,
            };
            if hit {
                return true;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        false
    });
    Ok(reached.await?)
}

fn pct(point: KillPoint) -> u64 {
    match point {
        KillPoint::Streaming { pct } => pct,
        _ => 0,
    }
}

/// Where the first move is, judged from the files of its two servers.
pub fn phase(c: &Cluster, mv: &Move) -> &'static str {
    let paths = Paths::of(c, mv);
    let (from, to) = (paths.committed(&paths.from), paths.committed(&paths.to));
    match (from, paths.streamed().is_some(), to) {
        (true, false, false) => "before the copy",
        (true, true, false) => "while streaming",
        (true, _, true) => "after the commit, source not yet deleted",
        (false, _, true) => "after the source's delete",
        _ => "nowhere (a bug)",
    }
}

fn victim<'a>(c: &'a mut Cluster, p: &Plan) -> Result<&'a mut keel_tests::Daemon> {
    match p.victim {
        Victim::Master => c.master.as_mut().context("master"),
        Victim::Source | Victim::Target => {
            let name = p.victim_name().to_owned();
            Ok(c.cs(&name))
        }
    }
}

/// SIGKILL of the plan's victim.
pub fn kill(c: &mut Cluster, p: &Plan) -> Result<()> {
    victim(c, p)?.kill9();
    Ok(())
}

/// Starts the victim again on its address and data dir.
pub fn start_again(c: &mut Cluster, p: &Plan) -> Result<()> {
    victim(c, p)?.start_again()
}
