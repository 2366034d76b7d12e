//! The measurements, each printing its Markdown section as soon as it is done
//! (so a later failure still leaves the earlier numbers).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use keel_tests::chunks::pattern;

use crate::baseline::{RsyncDaemon, RsyncInfo, TcpCost, rsync_info, tcp_copy};
use crate::moves::{MoveCost, Trio};
use crate::pair::{CopyCost, Pair};
use crate::payload::{upload_slice, write_file};
use crate::report::{busy, list, machine, median, rate, settle, table, verdict};
use crate::{Opts, limits};

/// Seed of every generated chunk.
pub const SEED: u64 = 0x6b65_656c;
/// Frame sizes tried for `WriteChunk`: up to 1 MiB, since the chunk server
/// refuses messages over its `WriteChunk` limit (2 MiB, four frames).
const FRAMES: [usize; 4] = [64 << 10, 256 << 10, 512 << 10, 1 << 20];

/// Runs every selected measurement under one temp dir in `opts.dir`.
pub async fn run(opts: &Opts) -> Result<()> {
    let bin = keel_tests::bench::sibling_bin("keel-chunkserver")?;
    let root = tempfile::Builder::new()
        .prefix("keel-copy-bench-")
        .tempdir_in(&opts.dir)
        .with_context(|| format!("creating a temp dir in {}", opts.dir.display()))?;
    emit(&format!(
        "## Machine\n\n{}- chunk server: `{}`\n",
        machine(root.path()),
        bin.display()
    ));
    unthrottled(opts, root.path(), &bin).await?;
    if opts.throttled {
        limits::throttled(root.path(), &bin, opts.settle).await?;
    }
    if opts.memory {
        limits::memory(root.path(), &bin, opts.settle).await?;
    }
    emit(&format!("At the end: {}\n", busy()));
    Ok(())
}

/// Prints a section to stdout at once.
pub fn emit(markdown: &str) {
    println!("{markdown}");
    let _ = std::io::stdout().flush();
}

/// One of the transfers compared.
#[derive(Clone, Copy, PartialEq)]
enum Method {
    Keel,
    Move,
    Tcp,
    Rsync,
}

/// The unthrottled comparison, then (on the same servers) the frame sweep.
async fn unthrottled(opts: &Opts, root: &Path, bin: &Path) -> Result<()> {
    let pair = Pair::start(root, bin, "0")?;
    let data = Arc::new(pattern(SEED, opts.size as usize));
    let crc = crc32c::crc32c(&data);
    upload_slice(&pair.a.url(), "bench", &data, keel_proto::FRAME_BYTES).await?;
    let (src_dir, dest_dir) = (root.join("src"), root.join("dest"));
    std::fs::create_dir_all(&src_dir)?;
    std::fs::create_dir_all(&dest_dir)?;
    let src = src_dir.join("chunk.bin");
    write_file(&src, &data)?;
    let rsync = start_rsync(opts, &src_dir, root).await?;
    let mut trio = Trio::start(root, &data).await?;

    let mut methods = vec![Method::Move, Method::Keel, Method::Tcp];
    if rsync.is_some() {
        methods.push(Method::Rsync);
    }
    let mut keel: Vec<CopyCost> = vec![];
    let mut moved: Vec<MoveCost> = vec![];
    let mut deletes: Vec<f64> = vec![];
    let (mut tcp, mut rs) = (vec![], vec![]);
    let dest = dest_dir.join("chunk.bin");
    // Round 0 warms up and is not counted; each round starts with a
    // different method so none always runs right after another.
    for round in 0..=opts.runs {
        settle(opts.settle).await;
        for k in 0..methods.len() {
            let m = methods[(round + k) % methods.len()];
            match (m, &rsync) {
                (Method::Keel, _) => {
                    let cost = pair.copy("bench", opts.size, crc).await?;
                    let t = std::time::Instant::now();
                    pair.delete(&pair.b.url(), "bench").await?;
                    deletes.extend((round > 0).then_some(t.elapsed().as_secs_f64()));
                    keel.extend((round > 0).then_some(cost));
                }
                (Method::Move, _) => {
                    let cost = trio.run().await?;
                    moved.extend((round > 0).then_some(cost));
                }
                (Method::Tcp, _) => {
                    let (s, d, b) = (src.clone(), dest.clone(), opts.buffer);
                    let t = tokio::task::spawn_blocking(move || tcp_copy(&s, &d, b)).await??;
                    std::fs::remove_file(&dest)?;
                    tcp.extend((round > 0).then_some(t));
                }
                (Method::Rsync, Some((daemon, info))) => {
                    let (t, cpu) = daemon.pull("chunk.bin", &dest, info.fsync).await?;
                    std::fs::remove_file(&dest)?;
                    rs.extend((round > 0).then_some((t.as_secs_f64(), cpu)));
                }
                (Method::Rsync, None) => {}
            }
        }
        eprintln!(
            "round {round}/{} done, round 0 is the warm-up ({})",
            opts.runs,
            busy()
        );
    }
    let info = rsync.as_ref().map(|(_, i)| i);
    emit(&comparison(opts, &keel, &tcp, &rs, info));
    emit(&crate::report::move_targets(
        opts.size, &moved, &keel, &tcp, &rs, &deletes,
    ));
    drop(rsync);
    drop(trio);
    std::fs::remove_file(&src)?;
    if opts.frames {
        settle(opts.settle).await;
        frames(&pair, &data, opts.runs.min(3)).await?;
    }
    Ok(())
}

async fn start_rsync(
    opts: &Opts,
    src_dir: &Path,
    root: &Path,
) -> Result<Option<(RsyncDaemon, RsyncInfo)>> {
    if !opts.rsync {
        return Ok(None);
    }
    let Some(info) = rsync_info() else {
        eprintln!("rsync is not installed (apt-get install rsync): skipping the rsync baseline");
        return Ok(None);
    };
    Ok(Some((RsyncDaemon::start(src_dir, root).await?, info)))
}

/// One method's line in the comparison.
struct Line {
    /// What ran.
    name: String,
    /// Seconds per run.
    secs: Vec<f64>,
    /// CPU seconds per run, where known.
    cpu: Vec<f64>,
    /// Least keel ÷ this ratio wanted.
    target: Option<f64>,
}

/// The comparison table and where each method's time went.
fn comparison(
    opts: &Opts,
    keel: &[CopyCost],
    tcp: &[TcpCost],
    rs: &[(f64, Option<f64>)],
    rsync: Option<&RsyncInfo>,
) -> String {
    let size = opts.size;
    let buf = keel_proto::units::format_size(opts.buffer as u64);
    let mut lines = vec![
        Line {
            name: "Keel `CopyChunk` A→B, whole RPC (stream, CRC32C, fsync, rename, dir fsync)"
                .into(),
            secs: keel.iter().map(|c| c.rpc_secs).collect(),
            cpu: keel.iter().map(|c| c.cpu_a + c.cpu_b).collect(),
            target: None,
        },
        Line {
            name: format!("plain TCP, {buf} reads/writes, fsync"),
            secs: tcp.iter().map(|c| c.total.as_secs_f64()).collect(),
            cpu: tcp.iter().map(|c| c.cpu).collect(),
            target: Some(0.9),
        },
    ];
    if let Some(i) = rsync {
        let fsync = if i.fsync {
            " --fsync"
        } else {
            " (no --fsync here)"
        };
        lines.push(Line {
            name: format!("rsync daemon, `--whole-file{fsync}` ({})", i.version),
            secs: rs.iter().map(|r| r.0).collect(),
            cpu: rs.iter().filter_map(|r| r.1).collect(),
            target: None,
        });
    }
    let rates = |secs: &[f64]| secs.iter().map(|s| rate(size, *s)).collect::<Vec<_>>();
    let k = median(&rates(&lines[0].secs));
    let mut rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            let r = rates(&l.secs);
            let m = median(&r);
            let cpu = if l.cpu.is_empty() {
                "—".into()
            } else {
                format!("{:.2}", median(&l.cpu))
            };
            let (ratio, target) = match l.target {
                Some(t) => (
                    format!("**{:.2}**", k / m),
                    format!("≥ {t} — {}", verdict(k / m >= t)),
                ),
                None => ("—".into(), "—".into()),
            };
            vec![
                l.name.clone(),
                list(&r),
                format!("{m:.0}"),
                cpu,
                ratio,
                target,
            ]
        })
        .collect();
    if rsync.is_none() {
        rows.push(vec!["rsync: skipped (not installed, or --no-rsync)".into()]);
    }
    let med = |f: fn(&CopyCost) -> f64| median(&keel.iter().map(f).collect::<Vec<_>>());
    let tt = median(&lines[1].secs);
    let tf = median(
        &tcp.iter()
            .map(|c| c.fsync.as_secs_f64())
            .collect::<Vec<_>>(),
    );
    format!(
        "## Unthrottled copy of a {} chunk (median of {} runs after a warm-up, interleaved)\n\n{}\n\
         Medians per copy. Keel: transfer {:.3} s ({:.0} MiB/s), commit {:.3} s; \
         CPU A {:.2} s, B {:.2} s. Plain TCP: stream {:.3} s ({:.0} MiB/s), fsync {:.3} s. \
         CPU is user + system time of the processes doing the transfer (both chunk servers; \
         the bench process for TCP; rsync client and daemon). The source file and A's chunk \
         are in the page cache for every method (nothing is dropped from it).\n",
        keel_proto::units::format_size(size),
        opts.runs,
        table(
            &[
                "transfer",
                "runs, MiB/s",
                "median MiB/s",
                "CPU s",
                "keel ÷ this",
                "target"
            ],
            &rows
        ),
        med(|c| c.transfer_secs),
        rate(size, med(|c| c.transfer_secs)),
        med(|c| c.commit_secs),
        med(|c| c.cpu_a),
        med(|c| c.cpu_b),
        tt - tf,
        rate(size, tt - tf),
        tf,
    )
}

/// `WriteChunk` of the same bytes at several frame sizes, into B.
async fn frames(pair: &Pair, data: &Arc<Vec<u8>>, runs: usize) -> Result<()> {
    let url = pair.b.url();
    let mut secs = vec![vec![]; FRAMES.len()];
    for round in 0..=runs {
        for k in 0..FRAMES.len() {
            let i = (round + k) % FRAMES.len();
            let t = upload_slice(&url, "frames", data, FRAMES[i]).await?;
            pair.delete(&url, "frames").await?;
            secs[i].extend((round > 0).then_some(t.as_secs_f64()));
        }
    }
    let size = data.len() as u64;
    let rows: Vec<Vec<String>> = FRAMES
        .iter()
        .zip(&secs)
        .map(|(f, s)| {
            let r: Vec<f64> = s.iter().map(|t| rate(size, *t)).collect();
            let name = keel_proto::units::format_size(*f as u64);
            vec![name, list(&r), format!("{:.0}", median(&r))]
        })
        .collect();
    emit(&format!(
        "## Frame size: `WriteChunk` of the same {} from this process into B \
         (median of {runs} after a warm-up)\n\n{}\nThe chunk server streams copies in \
         frames of {}.\n",
        keel_proto::units::format_size(size),
        table(&["frame", "runs, MiB/s", "median MiB/s"], &rows),
        keel_proto::units::format_size(keel_proto::FRAME_BYTES as u64),
    ));
    Ok(())
}
