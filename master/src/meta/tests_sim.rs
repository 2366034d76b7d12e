//! Seeded simulation of redundancy: random clusters in one to three racks
//! lose disks, servers and replicas, get drained, and take false and true corruption reports while
//! the maintenance decisions run against a model of what is really on disk.
//! Every step checks the invariants; a must-heal phase then requires every
//! chunk that still has a copy somewhere to end at exactly its factor, and
//! every drained server to hold nothing. `KEEL_SIM_SEED=S` replays one seed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use keel_balancer::sim::Rng;

use super::tests::{hb, rep};
use super::*;

const GRACE: Duration = Duration::from_secs(30);
const STEP: Duration = Duration::from_secs(1);

/// What is really on each server's disk, and which servers run.
struct World {
    servers: Vec<String>,
    /// Each server's rack (1 to 3 racks, so a drain sometimes has room only
    /// in another rack).
    racks: BTreeMap<String, String>,
    disk: BTreeMap<String, BTreeSet<String>>,
    running: BTreeSet<String>,
    draining: BTreeSet<String>,
    factor: BTreeMap<String, u32>,
    /// Chunks whose every copy an event destroyed: nothing can restore them.
    destroyed: BTreeSet<String>,
}

impl World {
    fn new(rng: &mut Rng) -> Self {
        let n = rng.range(4, 7) as usize;
        let servers: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let racks = rng.range(1, 3) as usize;
        let mut w = World {
            racks: servers
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), format!("r{}", i % racks)))
                .collect(),
            disk: servers
                .iter()
                .map(|s| (s.clone(), BTreeSet::new()))
                .collect(),
            running: servers.iter().cloned().collect(),
            draining: BTreeSet::new(),
            factor: BTreeMap::new(),
            destroyed: BTreeSet::new(),
            servers,
        };
        for c in 0..rng.range(10, 40) {
            let id = format!("c{c}");
            let f = rng.range(1, 3) as usize;
            let mut on = BTreeSet::new();
            while on.len() < f {
                on.insert(rng.range(0, n as u64 - 1) as usize);
            }
            for s in on {
                w.disk
                    .get_mut(&w.servers[s])
                    .expect("server")
                    .insert(id.clone());
            }
            w.factor.insert(id, f as u32);
        }
        w
    }

    fn heartbeats(&self, m: &mut Meta, now: Instant) {
        for s in &self.running {
            let chunks: Vec<ReplicaReport> = self.disk[s]
                .iter()
                .map(|c| {
                    let mut r = rep(c, 10);
                    r.replication = self.factor[c];
                    r
                })
                .collect();
            let n = chunks.len() as u64;
            let mut h = hb(s, true, chunks, &[], n);
            h.capacity = 1_000_000;
            h.rack = self.racks[s].clone();
            h.draining = self.draining.contains(s);
            m.apply_heartbeat(h, now);
        }
    }

    fn copies(&self, c: &str) -> usize {
        self.disk.values().filter(|d| d.contains(c)).count()
    }

    /// One random fault.
    fn fault(&mut self, m: &mut Meta, rng: &mut Rng) {
        let s = self.servers[rng.range(0, self.servers.len() as u64 - 1) as usize].clone();
        match rng.range(0, 5) {
            0 => {
                // A wiped disk.
                let lost: Vec<String> = std::mem::take(self.disk.get_mut(&s).expect("s"))
                    .into_iter()
                    .collect();
                self.note_destroyed(lost);
            }
            1 if self.running.len() > 3 => {
                self.running.remove(&s);
            }
            2 => {
                self.running.insert(s);
            }
            3 if self.draining.len() + 3 < self.running.len() => {
                self.draining.insert(s);
            }
            4 => {
                // A report on a replica: verified whole or corrupt at random.
                let Some(c) = self.disk[&s].iter().next().cloned() else {
                    return;
                };
                if let Ok(Some(v)) = m.report_corruption(&c, &s) {
                    let outcome = if rng.chance(0.5) {
                        self.disk.get_mut(&s).expect("s").remove(&c);
                        self.note_destroyed(vec![c.clone()]);
                        VerifyOutcome::Corrupt {
                            detail: "rot".into(),
                            replica: 1,
                        }
                    } else {
                        VerifyOutcome::Whole
                    };
                    m.verified(&v.chunk, v.server.no, &outcome, None);
                }
            }
            _ => {
                self.draining.remove(&s);
            }
        }
    }

    fn note_destroyed(&mut self, chunks: Vec<String>) {
        for c in chunks {
            if self.copies(&c) == 0 {
                self.destroyed.insert(c);
            }
        }
    }

    /// One maintenance pass: trims and copies succeed at once (a running
    /// server), or fail (a stopped one) leaving nothing behind.
    fn maintain(&mut self, m: &mut Meta, now: Instant) {
        for d in m.plan_trims(64) {
            for s in &d.servers {
                if m.source_deletable(&d.chunk, s.no).is_err() {
                    break;
                }
                if self.running.contains(&s.id) {
                    self.disk.get_mut(&s.id).expect("s").remove(&d.chunk);
                    m.record_removal(&d.chunk, s.no, None);
                }
            }
            m.end_busy(&d.chunk);
        }
        let plan = m.start_repairs(now, 64);
        for t in plan.copies {
            let ok = self.running.contains(&t.from.id)
                && self.running.contains(&t.to.id)
                && self.disk[&t.from.id].contains(&t.chunk);
            if ok {
                self.disk
                    .get_mut(&t.to.id)
                    .expect("to")
                    .insert(t.chunk.clone());
                m.record_copy(&t, None);
            }
            m.end_busy(&t.chunk);
        }
        for (c, s) in plan.damaged {
            self.disk.get_mut(&s.id).expect("s").remove(&c);
        }
    }
}

fn run(seed: u64) {
    let mut rng = Rng::new(seed);
    let mut w = World::new(&mut rng);
    let mut m = Meta::new(MetaSettings {
        re_replicate_after: GRACE,
        heartbeat_timeout: Duration::from_secs(3),
        min_free_pct: 0.0,
        ..MetaSettings::default()
    });
    let mut now = Instant::now();
    w.heartbeats(&mut m, now);
    for _ in 0..60 {
        if rng.chance(0.3) {
            w.fault(&mut m, &mut rng);
        }
        now += STEP;
        w.heartbeats(&mut m, now);
        m.sweep_liveness(now);
        w.maintain(&mut m, now);
        m.check().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    // Must heal: no more faults; dead servers stay dead past the grace.
    for _ in 0..(GRACE.as_secs() + 40) {
        now += STEP;
        w.heartbeats(&mut m, now);
        m.sweep_liveness(now);
        w.maintain(&mut m, now);
        m.check().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    }
    let takers = w
        .running
        .iter()
        .filter(|s| !w.draining.contains(*s))
        .count();
    for (c, &f) in &w.factor {
        if w.destroyed.contains(c) || takers < f as usize {
            // Nothing to restore from, or not enough servers to hold it.
            continue;
        }
        let on_live: usize = w
            .running
            .iter()
            .filter(|s| !w.draining.contains(*s) && w.disk[*s].contains(c))
            .count();
        let any = w.copies(c);
        if any == 0 {
            // Its only copies were on servers that stopped and were wiped: gone.
            continue;
        }
        let live_any = w.running.iter().any(|s| w.disk[s].contains(c));
        if !live_any {
            continue; // only on stopped servers: nothing to copy from
        }
        assert_eq!(
            on_live,
            f as usize,
            "seed {seed}: chunk {c} has {on_live} live replicas for factor {f}: {:?}",
            m.explain(c, now).reasons
        );
    }
    for s in &w.draining {
        let room = w.disk[s].iter().all(|c| w.factor[c] as usize <= takers);
        if w.running.contains(s) && room {
            let no = m.server_no(s).expect("known");
            let stuck: Vec<(&String, Vec<String>)> = w.disk[s]
                .iter()
                .map(|c| (c, m.explain(c, now).reasons))
                .collect();
            assert_eq!(
                m.drain_state(no).0,
                "drained",
                "seed {seed}: {s} still draining, holding {stuck:?}; takers {takers}"
            );
        }
    }
}

#[test]
fn the_factor_is_restored_after_losses_and_drains() {
    if let Some(seed) = std::env::var("KEEL_SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run(seed);
        return;
    }
    for seed in 0..200 {
        run(seed);
    }
}
