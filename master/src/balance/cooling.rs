//! The memory of load moves: a chunk moved for read load is not moved for
//! load again within `--load-cooldown` (hysteresis), so a hot chunk does
//! not chase the coolest server around the cluster as rates wobble.
//!
//! Each entry is stamped when its move was queued, and again when it
//! finished; it cools down `--load-cooldown` after the later stamp. Time
//! comes in as an argument (the queue's clock). The map is bounded: expired
//! entries are pruned as new ones come, and past [`MAX_COOLING`] the oldest
//! goes first (it is the one closest to expiring anyway). An index by stamp
//! finds the oldest in O(log n), so a large pass into a full map stays
//! O(n log n) under the lock.
//!
//! A finished move also corrects the rates the planner sees ([`Cooling::linger`]):
//! chunk servers report decayed averages, so for minutes after a move the
//! source still shows the moved chunk's past reads and the target lacks them.
//! Without the correction the next passes would move more hot chunks the
//! same way and overshoot.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use keel_balancer::{ClusterView, ReadRate};

/// Chunks remembered at most. A pass moves far fewer chunks for load than
/// this within any sane cooldown (the hottest replicas of each server, at
/// most 64 of them per heartbeat); the cap only bounds memory.
pub const MAX_COOLING: usize = 65_536;

/// One chunk's last load move.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadMove {
    /// The server it left (hot when planned, unless the move is the cold
    /// half of a swap).
    pub from: String,
    /// The server it went to.
    pub to: String,
    /// The source's reads/s when the move was planned.
    pub from_reads_per_sec: f64,
    /// The top of the load band then, reads/s.
    pub band_high: f64,
    /// The chunk's own client rate on `from` when planned (its heat): what
    /// the move takes along.
    pub rate: ReadRate,
    /// When it was queued, or finished once it has.
    pub at: Duration,
    /// Whether it has finished.
    pub finished: bool,
}

/// Chunks moved for load lately, by id.
#[derive(Debug, Clone)]
pub struct Cooling {
    cooldown: Duration,
    cap: usize,
    moves: HashMap<Box<str>, LoadMove>,
    /// `(at, chunk)` of every entry in `moves`: oldest first.
    by_time: BTreeSet<(Duration, Box<str>)>,
}

impl Cooling {
    /// An empty memory for `cooldown` (zero: nothing is remembered).
    pub fn new(cooldown: Duration) -> Self {
        Self::with_cap(cooldown, MAX_COOLING)
    }

    /// The same with another bound (tests).
    pub fn with_cap(cooldown: Duration, cap: usize) -> Self {
        Cooling {
            cooldown,
            cap: cap.max(1),
            moves: HashMap::new(),
            by_time: BTreeSet::new(),
        }
    }

    /// `--load-cooldown`.
    pub fn cooldown(&self) -> Duration {
        self.cooldown
    }

    /// Remembers `chunk`'s load move queued at `mv.at`.
    pub fn queued(&mut self, chunk: &str, mv: LoadMove) {
        if self.cooldown.is_zero() {
            return;
        }
        let now = mv.at;
        if !self.moves.contains_key(chunk) && self.moves.len() >= self.cap {
            self.prune(now);
            if self.moves.len() >= self.cap {
                self.evict_oldest();
            }
        }
        self.by_time.insert((mv.at, chunk.into()));
        if let Some(old) = self.moves.insert(chunk.into(), mv) {
            self.by_time.remove(&(old.at, chunk.into()));
        }
    }

    /// A move of `chunk` from `from` to `to` finished at `now`: if it is the
    /// remembered load move, its cooldown counts from here. Any other copy
    /// of the chunk (a repair, a capacity move) is left alone.
    pub fn finished(&mut self, chunk: &str, from: &str, to: &str, now: Duration) {
        let Some(m) = self.moves.get_mut(chunk) else {
            return;
        };
        if m.finished || m.from != from || m.to != to {
            return;
        }
        let key: Box<str> = chunk.into();
        self.by_time.remove(&(m.at, key.clone()));
        m.at = now;
        m.finished = true;
        self.by_time.insert((now, key));
    }

    /// Corrects `view`'s server rates for the load moves finished by `now`:
    /// the source's reported rate still holds the moved chunk's past reads,
    /// decayed by `exp(-t/τ)` (t since the move finished, τ the chunk
    /// servers' [`keel_proto::READ_RATE_TIME_CONSTANT`]); the target's lacks
    /// as much. So each source loses and each target gains `rate·exp(-t/τ)`
    /// ([`ReadRate::carry`], the one rule for a move taking its rate along;
    /// never below zero). A move whose source or target left the view is
    /// skipped. Moves still running are projected by the planner
    /// already and are left out.
    pub fn linger(&self, view: &mut ClusterView, now: Duration) {
        let tau = keel_proto::READ_RATE_TIME_CONSTANT.as_secs_f64();
        for m in self.moves.values().filter(|m| m.finished) {
            let f = (-now.saturating_sub(m.at).as_secs_f64() / tau).exp();
            let (Some(s), Some(t)) = (view.server_by_id(&m.from), view.server_by_id(&m.to)) else {
                continue;
            };
            if let Ok([from, to]) = view.servers.get_disjoint_mut([s.0 as usize, t.0 as usize]) {
                ReadRate::carry(&mut from.reads, &mut to.reads, m.rate.scaled(f));
            }
        }
    }

    /// When `m`'s cooldown ends.
    pub fn until(&self, m: &LoadMove) -> Duration {
        m.at.saturating_add(self.cooldown)
    }

    /// `chunk`'s last load move, while it cools.
    pub fn get(&self, chunk: &str, now: Duration) -> Option<&LoadMove> {
        self.moves.get(chunk).filter(|m| now < self.until(m))
    }

    /// Chunks cooling at `now`.
    pub fn cooling(&self, now: Duration) -> impl Iterator<Item = &str> + '_ {
        self.moves
            .iter()
            .filter(move |(_, m)| now < self.until(m))
            .map(|(c, _)| &**c)
    }

    /// Whether `chunk`'s queued load move has not finished yet.
    pub fn in_flight(&self, chunk: &str) -> bool {
        self.moves.get(chunk).is_some_and(|m| !m.finished)
    }

    /// Forgets the entries cooled down by `now`.
    pub fn prune(&mut self, now: Duration) {
        while let Some((at, _)) = self.by_time.first() {
            if now < at.saturating_add(self.cooldown) {
                break;
            }
            self.evict_oldest();
        }
    }

    /// Entries remembered (cooled-down ones included until pruned).
    pub fn len(&self) -> usize {
        self.moves.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }

    /// Adds to `e` what is remembered of `e.chunk`'s load move: queued or
    /// running, and why; or when it moved and until when it cools.
    pub fn explain(&self, now: Duration, e: &mut crate::meta::Explanation) {
        let Some(m) = self.get(&e.chunk, now) else {
            return;
        };
        let why = if m.rate.reads_per_sec > 0.0 {
            format!(
                "{} is hot at {:.0} reads/s, band ≤ {:.0}",
                m.from, m.from_reads_per_sec, m.band_high
            )
        } else {
            // A chunk its source did not report hot moves for load only as
            // the cold half of a swap.
            format!("half of a swap, to make room on {} for a hot chunk", m.from)
        };
        let until = self.until(m).saturating_sub(now);
        let cools = format!("not moved for load again for {}", words(until));
        if m.finished {
            let ago = words(now.saturating_sub(m.at));
            e.reasons.push(format!(
                "moved for load from {} to {} {ago} ago ({why}); {cools}",
                m.from, m.to
            ));
        } else {
            let running = e.jobs.iter().any(|j| j.state == "running");
            let state = if running { "moving" } else { "queued to move" };
            e.reasons
                .push(format!("{state} for load: {why}; then {cools}"));
        }
    }

    /// Forgets the entry with the oldest stamp (ties by chunk id).
    fn evict_oldest(&mut self) {
        if let Some((_, c)) = self.by_time.pop_first() {
            self.moves.remove(&c);
        }
    }
}

/// `d` in whole seconds rounded up, as `1h 2m 3s` (units that are 0 left
/// out; `0s` for nothing), for sentences.
fn words(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let parts: Vec<String> = [(h, "h"), (m, "m"), (s, "s")]
        .into_iter()
        .filter(|&(v, _)| v > 0)
        .map(|(v, unit)| format!("{v}{unit}"))
        .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(at: u64) -> LoadMove {
        LoadMove {
            from: "a".into(),
            to: "b".into(),
            from_reads_per_sec: 120.0,
            band_high: 94.0,
            rate: ReadRate::new(30.0, 3000.0),
            at: Duration::from_secs(at),
            finished: false,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_chunk_cools_for_the_cooldown_after_its_move_finished() {
        let mut c = Cooling::new(secs(600));
        c.queued("x", mv(10));
        assert!(c.get("x", secs(11)).is_some() && c.in_flight("x"));
        c.finished("x", "a", "b", secs(100));
        c.finished("capacity-move", "a", "b", secs(100));
        assert_eq!(c.len(), 1);
        assert!(!c.in_flight("x"));
        assert!(c.get("x", secs(699)).is_some());
        assert_eq!(c.cooling(secs(699)).collect::<Vec<_>>(), ["x"]);
        assert!(c.get("x", secs(700)).is_none());
        assert_eq!(c.cooling(secs(700)).count(), 0);
        c.prune(secs(700));
        assert!(c.is_empty());
    }

    #[test]
    fn the_memory_is_bounded_expired_first_then_oldest() {
        let mut c = Cooling::with_cap(secs(100), 3);
        c.queued("a", mv(0));
        c.queued("b", mv(50));
        c.queued("c", mv(60));
        // Full: `a` expired at 100 and goes first.
        c.queued("d", mv(120));
        assert_eq!(c.len(), 3);
        assert!(c.get("a", secs(120)).is_none());
        // Full and nothing expired: the oldest (`b`) goes.
        c.queued("e", mv(121));
        assert_eq!(c.len(), 3);
        let mut left: Vec<_> = c.cooling(secs(121)).collect();
        left.sort_unstable();
        assert_eq!(left, ["c", "d", "e"]);
        // Queuing a remembered chunk again evicts nothing.
        c.queued("e", mv(122));
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn explain_says_why_and_until_when() {
        let mut c = Cooling::new(secs(600));
        c.queued("x", mv(10));
        let mut e = crate::meta::Explanation {
            chunk: "x".into(),
            ..Default::default()
        };
        c.explain(secs(20), &mut e);
        assert_eq!(
            e.reasons,
            [
                "queued to move for load: a is hot at 120 reads/s, band ≤ 94; then not moved for load again for 9m 50s"
            ]
        );
        c.finished("x", "a", "b", secs(30));
        e.reasons.clear();
        c.explain(secs(90), &mut e);
        assert_eq!(
            e.reasons,
            [
                "moved for load from a to b 1m ago (a is hot at 120 reads/s, band ≤ 94); not moved for load again for 9m"
            ]
        );
        e.reasons.clear();
        c.explain(secs(630), &mut e);
        assert!(e.reasons.is_empty());
    }

    #[test]
    fn explain_names_the_cold_half_of_a_swap() {
        let mut c = Cooling::new(secs(600));
        c.queued(
            "cold",
            LoadMove {
                rate: ReadRate::default(),
                ..mv(10)
            },
        );
        let mut e = crate::meta::Explanation {
            chunk: "cold".into(),
            ..Default::default()
        };
        c.explain(secs(20), &mut e);
        assert_eq!(
            e.reasons,
            [
                "queued to move for load: half of a swap, to make room on a for a hot chunk; then not moved for load again for 9m 50s"
            ]
        );
    }

    #[test]
    fn only_the_load_move_itself_ends_its_cooling() {
        let mut c = Cooling::new(secs(600));
        c.queued("x", mv(10));
        // A repair of `x` to elsewhere, or a copy the other way: not it.
        c.finished("x", "a", "c", secs(20));
        c.finished("x", "b", "a", secs(20));
        assert!(c.in_flight("x"));
        c.finished("x", "a", "b", secs(30));
        assert!(!c.in_flight("x"));
        // A later copy with the same ends does not stretch the cooldown.
        c.finished("x", "a", "b", secs(500));
        assert!(c.get("x", secs(629)).is_some() && c.get("x", secs(630)).is_none());
    }

    #[test]
    fn a_finished_move_shifts_its_rate_decaying_with_time() {
        let mut view = ClusterView::new();
        for id in ["a", "b", "c"] {
            let s = view.add_server(id, None, 100, true);
            view.servers[s.0 as usize].reads = ReadRate::new(100.0, 10_000.0);
        }
        let mut c = Cooling::new(secs(600));
        c.queued("x", mv(10));
        // In flight: the planner projects it; no correction yet.
        let mut v = view.clone();
        c.linger(&mut v, secs(20));
        assert_eq!(v.servers[0].reads, view.servers[0].reads);
        c.finished("x", "a", "b", secs(40));
        // Just finished: the whole rate (30 reads/s) moves over.
        let mut v = view.clone();
        c.linger(&mut v, secs(40));
        assert_eq!(v.servers[0].reads, ReadRate::new(70.0, 7_000.0));
        assert_eq!(v.servers[1].reads, ReadRate::new(130.0, 13_000.0));
        assert_eq!(v.servers[2].reads, view.servers[2].reads);
        // One time constant later, 1/e of it.
        let mut v = view.clone();
        c.linger(&mut v, secs(100));
        let left = 30.0 * (-1.0f64).exp();
        assert!((v.servers[0].reads.reads_per_sec - (100.0 - left)).abs() < 1e-9);
        assert!((v.servers[1].reads.reads_per_sec - (100.0 + left)).abs() < 1e-9);
        // Never below zero, and servers no longer in the view are skipped.
        let mut v = view.clone();
        v.servers[0].reads = ReadRate::new(5.0, 0.0);
        c.linger(&mut v, secs(40));
        assert_eq!(v.servers[0].reads, ReadRate::default());
    }

    #[test]
    fn a_full_memory_evicts_by_its_time_index() {
        let cap = 1_000;
        let mut c = Cooling::with_cap(secs(1_000_000), cap);
        for i in 0..100_000u64 {
            c.queued(&format!("c{i}"), mv(i));
            // The index holds exactly the entries: the oldest is found in
            // it, not by a scan of the map.
            assert_eq!(c.by_time.len(), c.moves.len());
        }
        assert_eq!(c.len(), cap);
        let oldest = c.by_time.first().map(|(at, id)| (*at, id.to_string()));
        assert_eq!(oldest, Some((secs(99_000), "c99000".into())));
        // Re-queuing and finishing move an entry in the index, not copy it.
        c.queued("c99000", mv(100_000));
        c.finished("c99000", "a", "b", secs(100_001));
        assert_eq!(c.by_time.len(), cap);
        assert_eq!(c.by_time.last().map(|(at, _)| *at), Some(secs(100_001)));
        c.prune(secs(1_099_500));
        assert_eq!(c.len(), 500);
        assert_eq!(c.by_time.len(), 500);
    }

    #[test]
    fn a_zero_cooldown_remembers_nothing() {
        let mut c = Cooling::new(Duration::ZERO);
        c.queued("x", mv(1));
        assert!(c.is_empty() && c.get("x", secs(1)).is_none());
    }
}
