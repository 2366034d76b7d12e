//! The memory of load moves: a chunk moved for read load is not moved for
//! load again within `--load-cooldown` (hysteresis), so a hot chunk does
//! not chase the coolest server around the cluster as rates wobble.
//!
//! Each entry is stamped when its move was queued, and again when it
//! finished; it cools down `--load-cooldown` after the later stamp. Time
//! comes in as an argument (the queue's clock). The map is bounded: expired
//! entries are pruned as new ones come, and past [`MAX_COOLING`] the oldest
//! goes first (it is the one closest to expiring anyway).

use std::collections::HashMap;
use std::time::Duration;

/// Chunks remembered at most. A pass moves far fewer chunks for load than
/// this within any sane cooldown (the hottest replicas of each server, at
/// most 64 of them per heartbeat); the cap only bounds memory.
pub const MAX_COOLING: usize = 65_536;

/// One chunk's last load move.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadMove {
    /// The server it left (hot when planned).
    pub from: String,
    /// The server it went to.
    pub to: String,
    /// The source's reads/s when the move was planned.
    pub from_reads_per_sec: f64,
    /// The top of the load band then, reads/s.
    pub band_high: f64,
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
        self.moves.insert(chunk.into(), mv);
    }

    /// `chunk`'s move finished at `now`: its cooldown counts from here. A
    /// chunk not remembered (a capacity move) is left alone.
    pub fn finished(&mut self, chunk: &str, now: Duration) {
        if let Some(m) = self.moves.get_mut(chunk) {
            m.at = now;
            m.finished = true;
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
        let cooldown = self.cooldown;
        self.moves
            .retain(|_, m| now < m.at.saturating_add(cooldown));
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
        let why = format!(
            "{} is hot at {:.0} reads/s, band ≤ {:.0}",
            m.from, m.from_reads_per_sec, m.band_high
        );
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

    fn evict_oldest(&mut self) {
        let oldest = self
            .moves
            .iter()
            .min_by(|a, b| a.1.at.cmp(&b.1.at).then_with(|| a.0.cmp(b.0)))
            .map(|(c, _)| c.clone());
        if let Some(c) = oldest {
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
        c.finished("x", secs(100));
        c.finished("capacity-move", secs(100));
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
        c.finished("x", secs(30));
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
    fn a_zero_cooldown_remembers_nothing() {
        let mut c = Cooling::new(Duration::ZERO);
        c.queued("x", mv(1));
        assert!(c.is_empty() && c.get("x", secs(1)).is_none());
    }
}
