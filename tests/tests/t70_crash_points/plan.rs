//! What one trial does, drawn from its seed: the chunks and where they
//! start, the moves, who dies, when, and for how long.

use std::time::Duration;

use keel_proto::v1::Move;
use keel_tests::chunks::pattern;
use keel_tests::faults::{Known, Rng};

/// The chunk servers.
pub const SERVERS: [&str; 3] = ["cs1", "cs2", "cs3"];

/// Who is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Victim {
    /// The first move's source.
    Source,
    /// The first move's target.
    Target,
    /// The master.
    Master,
}

/// When the first move's victim is killed. Every point but `After` is seen
/// on disk, polled every 200 µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillPoint {
    /// The target's temp file holds this percentage of the chunk.
    Streaming {
        /// Share of the chunk's bytes written.
        pct: u64,
    },
    /// The target's chunk file exists: it has committed, and the master has
    /// most likely not yet recorded the copy nor asked the source to delete.
    TargetCommitted,
    /// The source's chunk file is gone: the delete ran, and its answer may
    /// not have reached the master yet.
    SourceDeleted,
    /// This long after the request was sent, wherever the move is.
    After {
        /// Delay in milliseconds.
        ms: u64,
    },
}

/// One chunk of a trial.
pub struct TrialChunk {
    /// Id, size, checksum and factor.
    pub known: Known,
    /// Its bytes.
    pub data: Vec<u8>,
    /// Servers it is written to.
    pub holders: Vec<&'static str>,
}

/// Everything a trial does.
pub struct Plan {
    /// The seed everything follows from.
    pub seed: u64,
    /// Two chunks of 2–4 MiB, factor 1 or 2.
    pub chunks: Vec<TrialChunk>,
    /// One or two moves, of distinct chunks; the first one is the one hit.
    pub moves: Vec<Move>,
    /// Who dies.
    pub victim: Victim,
    /// When.
    pub point: KillPoint,
    /// How long it stays down (4 s is past the harness's heartbeat timeout,
    /// so a chunk server is marked dead first).
    pub downtime: Duration,
}

fn chunk(rng: &mut Rng, seed: u64, i: u64) -> TrialChunk {
    let size = rng.range(2 << 20, (4 << 20) + 1) as usize;
    let replication = rng.range(1, 3) as u32;
    let mut holders = SERVERS.to_vec();
    while holders.len() > replication as usize {
        holders.remove(rng.range(0, holders.len() as u64) as usize);
    }
    let id = format!("t{seed}-{i}");
    let data = pattern(seed * 16 + i, size);
    TrialChunk {
        known: Known::of(&id, &data, replication),
        data,
        holders,
    }
}

impl Plan {
    /// The trial of `seed`.
    pub fn new(seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let chunks: Vec<TrialChunk> = (0..2).map(|i| chunk(&mut rng, seed, i)).collect();
        let n_moves = rng.range(1, 3) as usize;
        let moves = chunks[..n_moves]
            .iter()
            .map(|c| {
                let to: Vec<&str> = SERVERS
                    .iter()
                    .copied()
                    .filter(|s| !c.holders.contains(s))
                    .collect();
                Move {
                    chunk: c.known.id.clone(),
                    from: rng.pick(&c.holders).to_string(),
                    to: rng.pick(&to).to_string(),
                }
            })
            .collect();
        let victim = *rng.pick(&[Victim::Source, Victim::Target, Victim::Master]);
        let point = match rng.range(0, 20) {
            0..6 => KillPoint::Streaming {
                pct: rng.range(5, 96),
            },
            6..11 => KillPoint::TargetCommitted,
            11..15 => KillPoint::SourceDeleted,
            _ => KillPoint::After {
                ms: rng.range(0, 2000),
            },
        };
        let downtime_ms = match victim {
            Victim::Master => *rng.pick(&[0, 0, 500, 2000]),
            _ => *rng.pick(&[0, 0, 200, 1000, 4000]),
        };
        Plan {
            seed,
            chunks,
            moves,
            victim,
            point,
            downtime: Duration::from_millis(downtime_ms),
        }
    }

    /// The server or master that is killed.
    pub fn victim_name(&self) -> &str {
        match self.victim {
            Victim::Source => &self.moves[0].from,
            Victim::Target => &self.moves[0].to,
            Victim::Master => "master",
        }
    }

    /// The plan in a line, for the report and for failures.
    pub fn describe(&self) -> String {
        let moves: Vec<String> = self
            .moves
            .iter()
            .map(|m| format!("{}:{}->{}", m.chunk, m.from, m.to))
            .collect();
        format!(
            "seed {} (kill {:?} = {} at {:?}, down {:?}; moves {moves:?})",
            self.seed,
            self.victim,
            self.victim_name(),
            self.point,
            self.downtime
        )
    }
}

#[test]
fn plans_follow_from_their_seed() {
    for seed in 1..=40 {
        let (a, b) = (Plan::new(seed), Plan::new(seed));
        assert_eq!(a.describe(), b.describe());
        for (m, c) in a.moves.iter().zip(&a.chunks) {
            assert!(c.holders.contains(&m.from.as_str()), "{}", a.describe());
            assert!(!c.holders.contains(&m.to.as_str()), "{}", a.describe());
        }
    }
}
