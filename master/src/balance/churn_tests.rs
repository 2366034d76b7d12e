//! Background passes over noisy read load, as the pass loop runs them: the
//! [`LoadGate`] observes each pass, [`plan_pass`] plans on its verdict.
//! Readers spread evenly over the chunks never start a load move, however
//! the listed top replicas wobble; copies under way hold a hot server; a
//! truly hot server is cooled once it has been hot for the dwell, and at
//! once by an operator's pass.

use std::collections::BTreeSet;
use std::time::Duration;

use keel_balancer::{ClusterView, InFlight, MoveReason, Policy, ReadRate, ServerIdx};

use super::dwell::{Held, LoadGate};
use super::pass::{PassInput, PassPlan, plan_pass};

const KIB: u64 = 1 << 10;

/// A seeded stream of numbers in [0, 1) (SplitMix64).
struct Noise(u64);

impl Noise {
    fn unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) as f64 / (u64::MAX as f64 + 1.0)
    }
}

/// Five servers with the same bytes (so no capacity move): `cs1` holds 400
/// chunks of 64 KiB, the others 200 of 128 KiB.
fn even_bytes() -> (ClusterView, Vec<(ServerIdx, u32)>) {
    let mut v = ClusterView::new();
    let mut chunks = vec![];
    for (id, n, size) in [
        ("cs1", 400, 64 * KIB),
        ("cs2", 200, 128 * KIB),
        ("cs3", 200, 128 * KIB),
        ("cs4", 200, 128 * KIB),
        ("cs5", 200, 128 * KIB),
    ] {
        let s = v.add_server(id, None, 100 << 20, true);
        for i in 0..n {
            let c = v.add_chunk(format!("{id}-{i:03}"), size, 0, 1, &[s]);
            chunks.push((s, c.0));
        }
    }
    (v, chunks)
}

/// One heartbeat round: each chunk's decayed rate is its true rate with
/// `noise` (a share, ±), each server reports the sum and its top 64.
fn report(
    v: &mut ClusterView,
    chunks: &[(ServerIdx, u32)],
    rate: impl Fn(u32) -> f64,
    noise: f64,
    rng: &mut Noise,
) {
    v.heat = Default::default();
    for s in &mut v.servers {
        s.reads = ReadRate::default();
    }
    let mut listed: Vec<(ServerIdx, f64, u32)> = chunks
        .iter()
        .map(|&(s, c)| (s, rate(c) * (1.0 + noise * (2.0 * rng.unit() - 1.0)), c))
        .collect();
    for &(s, r, _) in &listed {
        v.servers[s.0 as usize].reads.reads_per_sec += r;
    }
    listed.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
    for s in 0..v.servers.len() as u32 {
        let top = listed.iter().filter(|l| l.0 == ServerIdx(s)).take(64);
        for &(s, r, c) in top {
            v.heat
                .set(s, keel_balancer::ChunkIdx(c), ReadRate::new(r, r * 1e5));
        }
    }
}

/// One pass at `now` on `v`; background passes ask `gate` first.
fn pass(
    v: &ClusterView,
    gate: Option<&mut LoadGate>,
    copying: &BTreeSet<String>,
    now: Duration,
) -> PassPlan {
    let policy = Policy::default();
    let held = gate.map_or_else(Held::default, |g| {
        g.observe(v, policy.load_threshold_pct, copying, now)
    });
    let input = PassInput {
        view: v.clone(),
        in_flight: InFlight::new(),
        chunks: v.chunks.len(),
        held,
    };
    plan_pass(input, &policy)
}

fn load_moves(p: &PassPlan) -> usize {
    p.reasons.iter().filter(|&&r| r == MoveReason::Load).count()
}

fn gate() -> LoadGate {
    LoadGate::new(Duration::from_secs(60), Duration::from_secs(60))
}

#[test]
fn evenly_spread_readers_never_start_a_load_move() {
    // t76's shape: every chunk read alike, at 0.03 reads/s, so cs1 (twice
    // the chunks) reads at twice the others and is hot. Its top 64 are
    // whichever chunks drew more reads by chance (±80 %, as a minute's
    // count of two reads wobbles): moving them cools nothing.
    let (mut v, chunks) = even_bytes();
    let mut rng = Noise(76);
    let mut g = gate();
    let none = BTreeSet::new();
    let mut hot_passes = 0;
    for t in 0..300u64 {
        report(&mut v, &chunks, |_| 0.03, 0.8, &mut rng);
        let p = pass(&v, Some(&mut g), &none, Duration::from_secs(t));
        let check = keel_balancer::load::check(&v, 20.0, 25.0);
        hot_passes += usize::from(check.hot.iter().any(|s| s.server == "cs1"));
        if t >= 60 {
            let said = "cs1 is hot but none of its chunks stands out: its reads are spread evenly";
            assert!(p.notes.iter().any(|n| n.starts_with(said)), "{:?}", p.notes);
        }
        assert_eq!(load_moves(&p), 0, "pass {t}: {:?}", p.notes);
        assert_eq!(load_moves(&pass(&v, None, &none, Duration::ZERO)), 0);
    }
    assert!(hot_passes > 250, "cs1 was hot in only {hot_passes} passes");
}

/// cs1's chunks 0–9 are read at 5 reads/s each, every other chunk at 0.03.
fn hot_set(c: u32) -> f64 {
    if c < 10 { 5.0 } else { 0.03 }
}

#[test]
fn a_truly_hot_server_is_cooled_after_the_dwell_and_at_once_on_request() {
    let (mut v, chunks) = even_bytes();
    let mut rng = Noise(98);
    let mut g = gate();
    let none = BTreeSet::new();
    let mut first = None;
    for t in (0..=120u64).step_by(30) {
        report(&mut v, &chunks, hot_set, 0.2, &mut rng);
        let p = pass(&v, Some(&mut g), &none, Duration::from_secs(t));
        if load_moves(&p) > 0 {
            first = first.or(Some(t));
        } else if first.is_none() {
            let held = p.notes.iter().any(|n| {
                n.starts_with("cs1 is hot but its chunks do not move for load yet: hot for")
            });
            assert!(held, "pass {t}: {:?}", p.notes);
        }
    }
    assert_eq!(first, Some(60), "the dwell is a minute of hot passes");
    // An operator's pass is not held: it moves hot chunks, and only those.
    let p = pass(&v, None, &none, Duration::ZERO);
    assert!(load_moves(&p) > 0, "{:?}", p.notes);
    let hot: BTreeSet<String> = (0..10).map(|i| format!("cs1-{i:03}")).collect();
    for (m, r) in p.moves.iter().zip(&p.reasons) {
        assert!(*r != MoveReason::Load || hot.contains(&m.mv.chunk), "{m:?}");
    }
}

#[test]
fn copies_under_way_hold_a_hot_server_until_its_rates_settle() {
    let (mut v, chunks) = even_bytes();
    let mut rng = Noise(23);
    let mut g = gate();
    let copying: BTreeSet<String> = ["cs1".to_owned()].into();
    for t in (0..=300u64).step_by(30) {
        report(&mut v, &chunks, hot_set, 0.2, &mut rng);
        let p = pass(&v, Some(&mut g), &copying, Duration::from_secs(t));
        assert_eq!(load_moves(&p), 0, "pass {t}: {:?}", p.notes);
    }
    // The copies end at 300 s: the rates are trusted a minute later.
    g.changed("cs1", Duration::from_secs(300));
    let none = BTreeSet::new();
    let p = pass(&v, Some(&mut g), &none, Duration::from_secs(330));
    assert_eq!(load_moves(&p), 0, "{:?}", p.notes);
    let p = pass(&v, Some(&mut g), &none, Duration::from_secs(360));
    assert!(load_moves(&p) > 0, "{:?}", p.notes);
}
