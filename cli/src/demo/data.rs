//! The demo's skewed data set: chunks of pseudo-random bytes, two replicas
//! each, two thirds pinned to cs1+cs2 and the rest to cs3+cs4, written
//! through the normal client path (`put`'s [`store`]), a few at a time.
//!
//! The capacities are derived from the data set, so a small set (as tests
//! use) makes the same picture as the default one: cs1 and cs2 about three
//! quarters full, cs3 and cs4 about a fifth, cs5 empty.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, stream};

use super::error::DemoError;
use crate::client::Clients;
use crate::error::Error;
use crate::output;
use crate::put::{Upload, store};
use crate::rebalance::run::Drawer;

/// Replicas of every demo chunk.
pub const REPLICATION: usize = 2;
/// Chunks written at once.
const PARALLEL: usize = 3;
/// Capacity of each server in units (see [`unit_bytes`]); cs5 joins later.
pub const CAPACITY_UNITS: [(&str, u64); 5] =
    [("cs1", 2), ("cs2", 2), ("cs3", 3), ("cs4", 4), ("cs5", 4)];
/// The two pairs of servers chunks are pinned to.
const HEAVY: [&str; REPLICATION] = ["cs1", "cs2"];
const LIGHT: [&str; REPLICATION] = ["cs3", "cs4"];

/// One chunk to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Chunk id, `demo-000` on.
    pub id: String,
    /// Its size: between half of the largest size and the largest.
    pub size: u64,
    /// Seed of its bytes.
    pub seed: u64,
    /// The servers it is pinned to.
    pub on: [&'static str; REPLICATION],
}

/// One chunk as written.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Chunk id.
    pub id: String,
    /// Its size.
    pub size: u64,
    /// The CRC32C of the bytes sent.
    pub crc32c: u32,
}

/// The data set: `n` chunks of at most `max` bytes; every third goes to
/// cs3+cs4, the others to cs1+cs2. Deterministic.
pub fn skewed(n: u32, max: u64) -> Vec<Spec> {
    let mut rng = XorShift::new(0x6b65_656c);
    (0..n)
        .map(|i| {
            let half = max / 2;
            let size = half + rng.next() % (max - half + 1);
            Spec {
                id: format!("demo-{i:03}"),
                size,
                seed: rng.next(),
                on: if i % 3 == 2 { LIGHT } else { HEAVY },
            }
        })
        .collect()
}

/// Bytes of one capacity unit: a third of `n` chunks at the largest size,
/// rounded up to 64 KiB, so cs1 (two units) ends up about three quarters
/// full; never less than needed to keep cs1 and cs2 under 85 %.
pub fn unit_bytes(specs: &[Spec], max: u64) -> u64 {
    let nominal = specs.len() as u64 * max / 3;
    let heavy: u64 = specs.iter().filter(|s| s.on == HEAVY).map(|s| s.size).sum();
    let needed = heavy * 100 / 85 / 2;
    let unit = nominal.max(needed).max(1);
    unit.div_ceil(64 << 10) * (64 << 10)
}

/// Writes every chunk, showing progress on stderr; returns them as stored
/// and the time it took.
pub async fn write_all(
    clients: &Clients,
    dir: &Path,
    specs: &[Spec],
) -> Result<(Vec<Stored>, Duration), Error> {
    let spool = dir.join("spool");
    tokio::fs::create_dir_all(&spool)
        .await
        .map_err(|e| DemoError::setup(format!("create {}", spool.display()), e))?;
    let started = Instant::now();
    let total: u64 = specs.iter().map(|s| s.size).sum();
    let mut draw = Drawer::new(crate::output::redraws());
    let mut done = Vec::with_capacity(specs.len());
    let mut written = 0u64;
    let mut results = stream::iter(specs)
        .map(|s| write_one(clients, &spool, s))
        .buffer_unordered(PARALLEL);
    while let Some(stored) = results.try_next().await? {
        written += stored.size;
        done.push(stored);
        draw.show(&progress(
            written,
            total,
            done.len(),
            specs.len(),
            draw.width(),
        ));
    }
    draw.finish();
    done.sort_by(|a, b| a.id.cmp(&b.id));
    Ok((done, started.elapsed()))
}

/// `[#####...] 20.8%  59.6 MiB / 286.5 MiB  10/48 chunks`, fitted to `width`.
fn progress(written: u64, total: u64, chunks: usize, of: usize, width: Option<usize>) -> String {
    let pct = if total == 0 {
        100.0
    } else {
        100.0 * written as f64 / total as f64
    };
    let mut parts = output::Parts::default();
    parts
        .push(2, "", output::bar(pct, 24))
        .push(0, " ", output::pct(pct).trim_start().to_owned())
        .push(
            1,
            "  ",
            format!("{} / {}", output::size(written), output::size(total)),
        )
        .push(0, "  ", format!("{chunks}/{of} chunks"));
    parts.fit(width)
}

/// Fills a spool file with the chunk's bytes, stores it, removes the file.
async fn write_one(clients: &Clients, spool: &Path, spec: &Spec) -> Result<Stored, Error> {
    let path = spool.join(&spec.id);
    let bytes = fill(spec.seed, spec.size);
    let crc32c = crc32c::crc32c(&bytes);
    tokio::fs::write(&path, &bytes)
        .await
        .map_err(|e| Error::file("cannot write", &path, e))?;
    drop(bytes);
    let on: Vec<String> = spec.on.iter().map(|s| (*s).to_owned()).collect();
    let upload = Upload {
        chunk: &spec.id,
        path: &path,
        size: spec.size,
        crc32c,
        replication: REPLICATION as u32,
        on: &on,
    };
    let stored = store(clients, &upload).await;
    let _ = tokio::fs::remove_file(&path).await;
    stored?;
    Ok(Stored {
        id: spec.id.clone(),
        size: spec.size,
        crc32c,
    })
}

/// `size` pseudo-random bytes from `seed`.
pub fn fill(seed: u64, size: u64) -> Vec<u8> {
    let len = usize::try_from(size).unwrap_or(usize::MAX);
    let mut rng = XorShift::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// xorshift64: fast, seeded, good enough for incompressible demo bytes.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn set_is_skewed_sized_and_deterministic() {
        let specs = skewed(48, 8 * MIB);
        assert_eq!(specs, skewed(48, 8 * MIB));
        assert_eq!(specs[0].id, "demo-000");
        assert!(specs.iter().all(|s| (4 * MIB..=8 * MIB).contains(&s.size)));
        let heavy = specs.iter().filter(|s| s.on == HEAVY).count();
        assert_eq!(heavy, 32);
        let ids: std::collections::BTreeSet<_> = specs.iter().map(|s| &s.id).collect();
        assert_eq!(ids.len(), 48);
    }

    #[test]
    fn default_set_gives_round_capacities_and_heavy_servers_fit() {
        let specs = skewed(48, 8 * MIB);
        let unit = unit_bytes(&specs, 8 * MIB);
        assert_eq!(unit, 128 * MIB, "256/256/384/512 MiB as in the README");
        for n in [6, 12, 24, 48, 200] {
            let specs = skewed(n, MIB);
            let unit = unit_bytes(&specs, MIB);
            let heavy: u64 = specs.iter().filter(|s| s.on == HEAVY).map(|s| s.size).sum();
            assert!(heavy * 100 <= 2 * unit * 86, "n={n}: cs1 over 85 %");
            assert_eq!(unit % (64 << 10), 0);
        }
    }

    #[test]
    fn write_progress_counts_bytes_and_chunks() {
        assert_eq!(
            progress(10 * MIB, 40 * MIB, 2, 8, None),
            "[######..................] 25.0%  10.0 MiB / 40.0 MiB  2/8 chunks"
        );
        assert_eq!(
            progress(10 * MIB, 40 * MIB, 2, 8, Some(40)),
            "25.0%  10.0 MiB / 40.0 MiB  2/8 chunks"
        );
        assert!(progress(0, 0, 0, 0, None).contains("100.0%"));
    }

    #[test]
    fn bytes_are_seeded_and_sized() {
        assert_eq!(fill(7, 13), fill(7, 13));
        assert_ne!(fill(7, 64), fill(8, 64));
        assert_eq!(fill(1, 0).len(), 0);
        assert_eq!(fill(1, 1_000_003).len(), 1_000_003);
    }
}
