//! The two limits a copy must keep: the migration throttle's rate, and the
//! chunk servers' resident memory during a large copy.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::pair::Pair;
use crate::payload::upload_generated;
use crate::phases::{SEED, emit};
use crate::report::{MIB, busy, pct, rate, settle, table, verdict};
use crate::sample::{Sampler, progress, status_kib, watch_dir};

/// Throttle settings and chunk sizes: each copy takes at least 11 s.
const THROTTLED: [(u64, u64); 2] = [(32 << 20, 352 << 20), (128 << 20, 1408 << 20)];
/// Chunk of the memory measurement.
const MEMORY_CHUNK: u64 = 1 << 30;
/// Bytes in front of the data in a chunk file (`chunk_file::HEADER_LEN`).
const CHUNK_HEADER: u64 = 64;
/// How often the samplers look.
const EVERY: Duration = Duration::from_millis(50);

/// Copies at 32 MiB/s and 128 MiB/s, both servers set alike, with B's temp
/// file watched while it grows.
pub async fn throttled(root: &Path, bin: &Path, quiet: Duration) -> Result<()> {
    let mut rows = vec![];
    for (bps, size) in THROTTLED {
        let pair = Pair::start(root, bin, &bps.to_string())?;
        let crc = upload_generated(&pair.a.url(), "throttled", SEED, size).await?;
        let setting = format!("{} MiB/s", bps >> 20);
        settle(quiet).await;
        eprintln!("copy at {setting} of {} MiB ({})", size >> 20, busy());
        let watch = watch_dir(pair.target_tmp(), EVERY);
        let c = pair.copy("throttled", size, crc).await?;
        let samples = watch.finish()?;
        let set = bps as f64 / MIB;
        let err = |mib_s: f64| pct(mib_s / set - 1.0);
        let (whole, transfer) = (rate(size, c.rpc_secs), rate(size, c.transfer_secs));
        let (steady, stall) = match progress(&samples, size + CHUNK_HEADER) {
            Some(p) => (
                format!("{:.2} MiB/s, {}", p.steady / MIB, err(p.steady / MIB)),
                format!("{:.2} s", p.longest_stall),
            ),
            None => ("not sampled".into(), "—".into()),
        };
        rows.push(vec![
            setting,
            format!("{} MiB", size >> 20),
            format!("{:.2} s, {whole:.2} MiB/s, {}", c.rpc_secs, err(whole)),
            format!(
                "{:.2} s, {transfer:.2} MiB/s, **{}** — {}",
                c.transfer_secs,
                err(transfer),
                verdict((transfer / set - 1.0).abs() < 0.02)
            ),
            steady,
            stall,
            format!("{:.3} s", c.commit_secs),
            format!("{:.1} / {:.1} s", c.cpu_a, c.cpu_b),
            busy(),
        ]);
    }
    let header = [
        "setting",
        "chunk",
        "whole RPC",
        "transfer only (target ±2 %)",
        "steady 10–90 %",
        "longest stall",
        "commit",
        "CPU A / B",
        "machine after",
    ];
    emit(&format!(
        "## Throttled copies (`--migrate-bandwidth` on both servers)\n\n{}\n\
         \"Transfer only\" is B's logged `transfer_secs` (connect, stream, write); the whole \
         RPC adds the commit (fsync of everything written, rename, directory fsync). \
         \"Steady\" is the growth of B's temp file, sampled every {} ms, between 10 % and 90 % \
         of the chunk (no initial burst, no tail); a stall is the longest time it did not grow.\n",
        table(&header, &rows),
        EVERY.as_millis(),
    ));
    Ok(())
}

/// A 1 GiB unthrottled copy with both servers' `VmRSS` sampled every 50 ms.
pub async fn memory(root: &Path, bin: &Path, quiet: Duration) -> Result<()> {
    let mut pair = Pair::start(root, bin, "0")?;
    let crc = upload_generated(&pair.a.url(), "memory", SEED, MEMORY_CHUNK).await?;
    // A fresh process, so A's high-water mark is the copy's, not the write's.
    pair.a.restart()?;
    let pids: Vec<u32> = [&pair.a, &pair.b].iter().filter_map(|d| d.pid()).collect();
    let rss = |pids: &[u32]| -> Vec<u64> {
        pids.iter()
            .map(|p| status_kib(*p, "VmRSS").unwrap_or(0))
            .collect()
    };
    settle(quiet).await;
    let before = rss(&pids);
    let watched = pids.clone();
    let sampler = Sampler::start(EVERY, move || rss(&watched));
    let cost = pair.copy("memory", MEMORY_CHUNK, crc).await?;
    let samples = sampler.finish()?;
    let peak = |i: usize| samples.iter().filter_map(|(_, v)| v.get(i)).max().copied();
    let mib = |kib: u64| format!("{:.1} MiB", kib as f64 / 1024.0);
    let mut rows = vec![];
    for (i, (name, pid)) in ["A (source)", "B (target)"].iter().zip(&pids).enumerate() {
        let hwm = status_kib(*pid, "VmHWM").unwrap_or(0);
        rows.push(vec![
            name.to_string(),
            mib(before.get(i).copied().unwrap_or(0)),
            mib(peak(i).unwrap_or(0)),
            mib(hwm),
            format!("< 64 MiB — {}", verdict(hwm > 0 && hwm < 64 * 1024)),
        ]);
    }
    emit(&format!(
        "## Memory during an unthrottled copy of 1 GiB ({:.2} s, {:.0} MiB/s; {} samples)\n\n{}",
        cost.rpc_secs,
        rate(MEMORY_CHUNK, cost.rpc_secs),
        samples.len(),
        table(
            &[
                "server",
                "VmRSS before",
                "peak VmRSS (every 50 ms)",
                "VmHWM at end",
                "target",
            ],
            &rows
        )
    ));
    Ok(())
}
