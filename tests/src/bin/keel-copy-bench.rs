//! `keel-copy-bench`: how fast two real chunk servers copy a chunk on
//! loopback, next to a plain TCP transfer and an rsync daemon on the same
//! bytes and disk; how closely the migration throttle holds its setting; and
//! how much memory a chunk server needs during a large copy.
//!
//! Prints Markdown on stdout (progress on stderr). Run it through
//! `scripts/bench-copy.sh`, which builds the release binaries first; the
//! chunk server is taken from the directory of this executable, or from
//! `KEEL_BIN_DIR`.
//!
//! # Layout
//! - `phases`: the run, the unthrottled comparison and the frame sweep.
//! - `moves`: the end-to-end move through a master (`RebalanceExecute`).
//! - `limits`: throttled copies against their setting; memory during a copy.
//! - `pair`: two chunk servers, one timed copy and its CPU time.
//! - `sample`: watching a copy while it runs (`/proc`, the temp file).
//! - `baseline`: the TCP and rsync transfers.
//! - `payload`: the pseudo-random bytes and how they reach a server.
//! - `report`: medians, Markdown, the machine and its load.

#[path = "keel-copy-bench/baseline.rs"]
mod baseline;
#[path = "keel-copy-bench/limits.rs"]
mod limits;
#[path = "keel-copy-bench/moves.rs"]
mod moves;
#[path = "keel-copy-bench/pair.rs"]
mod pair;
#[path = "keel-copy-bench/payload.rs"]
mod payload;
#[path = "keel-copy-bench/phases.rs"]
mod phases;
#[path = "keel-copy-bench/report.rs"]
mod report;
#[path = "keel-copy-bench/sample.rs"]
mod sample;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use keel_proto::units::parse_size;

const USAGE: &str = "\
usage: keel-copy-bench [options]

  --dir DIR         where the temp dirs go (default: $TMPDIR or /tmp); needs ~4 GiB free
  --runs N          timed runs of each unthrottled transfer, after one warm-up (default 5)
  --size SIZE       chunk for the unthrottled comparison (default 256MiB)
  --buffer SIZE     read/write size of the plain TCP baseline (default 1MiB)
  --no-rsync        skip the rsync baseline
  --skip-frames     skip the WriteChunk frame-size sweep
  --skip-throttled  skip the 32 MiB/s and 128 MiB/s copies
  --skip-memory     skip the 1 GiB copy with memory sampling
  --settle SECS     before each timed run, wait up to SECS for the CPU pressure
                    (/proc/pressure/cpu, avg10) to fall below 25 % (default 0: don't wait)
";

/// What to run.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Parent of the temp dirs.
    pub dir: PathBuf,
    /// Timed runs per unthrottled method.
    pub runs: usize,
    /// Chunk size of the unthrottled comparison.
    pub size: u64,
    /// Buffer of the TCP baseline.
    pub buffer: usize,
    /// Run the rsync baseline.
    pub rsync: bool,
    /// Run the frame-size sweep.
    pub frames: bool,
    /// Run the throttled copies.
    pub throttled: bool,
    /// Run the memory measurement.
    pub memory: bool,
    /// Longest wait for a quiet machine before each timed run.
    pub settle: Duration,
}

impl Opts {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Opts>> {
        let mut o = Opts {
            dir: std::env::temp_dir(),
            runs: 5,
            size: 256 << 20,
            buffer: 1 << 20,
            rsync: true,
            frames: true,
            throttled: true,
            memory: true,
            settle: Duration::ZERO,
        };
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--dir" => o.dir = value()?.into(),
                "--runs" => o.runs = value()?.parse().context("--runs")?,
                "--size" => o.size = parse_size(&value()?).context("--size")?,
                "--buffer" => o.buffer = parse_size(&value()?).context("--buffer")? as usize,
                "--no-rsync" => o.rsync = false,
                "--skip-frames" => o.frames = false,
                "--skip-throttled" => o.throttled = false,
                "--skip-memory" => o.memory = false,
                "--settle" => o.settle = Duration::from_secs(value()?.parse().context("--settle")?),
                "-h" | "--help" => return Ok(None),
                _ => bail!("unknown argument {arg:?}\n{USAGE}"),
            }
        }
        if o.runs == 0 || o.size == 0 || !o.size.is_multiple_of(8) || o.buffer == 0 {
            bail!("--runs, --size and --buffer must be above 0, and --size a multiple of 8");
        }
        Ok(Some(o))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let parsed = Opts::parse(std::env::args().skip(1));
    keel_tests::bench::main("keel-copy-bench", USAGE, parsed, |o| async move {
        phases::run(&o).await
    })
    .await
}
