//! How hot this server and its chunks are: decayed rates of client reads,
//! which heartbeats carry to the master (`ReadLoad` and the hottest
//! replicas, `HotChunk`) and `/metrics` shows.
//!
//! Only client reads count (a `ReadChunk` that is not a peer's migration
//! read): moving a chunk is not a use of it. A read counts once when its
//! file is open, and its bytes once when it ends (whole, failed or
//! abandoned): the bytes actually handed to the connection, so an abandoned
//! read counts only what it sent. Counting bytes at the end rather than per
//! frame keeps the lock off the frame path; with a [`TIME_CONSTANT`] of a
//! minute, the delay of one read's duration barely moves the figure.
//!
//! Each rate is an exponentially decayed counter, updated lazily (a value
//! and when it was last brought up to date): every read adds
//! `1 / TIME_CONSTANT`, and the value decays by `exp(-elapsed /
//! TIME_CONSTANT)`, applied whenever it is read or updated. A steady rate
//! converges to itself, a burst shows at once, and a chunk nobody reads
//! cools to nothing.
//!
//! The table holds only chunks read recently: an entry whose read rate
//! falls below [`PRUNE_BELOW_READS_PER_SEC`] is dropped when the hottest are
//! chosen (every heartbeat), and a chunk leaves the table when it leaves the
//! store. So its size is bounded by the chunks held, and idle chunks cost
//! nothing. One mutex, taken once when a read starts and once when it ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Time constant of every decayed rate: a rate that stops falls to 1/e of
/// itself after this long. A minute smooths the second-to-second noise of
/// reads while a burst still shows within a heartbeat or two, and a chunk
/// that stops being read is cool within a few minutes.
pub const TIME_CONSTANT: Duration = Duration::from_secs(60);

/// Entries below this many reads/s are forgotten: one read leaves about
/// 0.017 reads/s, which decays below this in under three minutes.
pub const PRUNE_BELOW_READS_PER_SEC: f64 = 1e-3;

/// How many of the hottest replicas a heartbeat carries.
pub const HOT_CHUNKS: usize = 64;

/// A client read rate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rate {
    /// Reads started per second.
    pub reads_per_sec: f64,
    /// Bytes sent to readers per second.
    pub bytes_per_sec: f64,
}

/// Exponentially decayed read and byte rates, brought up to date lazily.
#[derive(Debug, Clone, Copy)]
pub struct Decayed {
    /// Reads/s as of `at`.
    reads: f64,
    /// Bytes/s as of `at`.
    bytes: f64,
    /// When the values were last decayed.
    at: Instant,
}

impl Decayed {
    /// A zero rate as of `now`.
    pub fn new(now: Instant) -> Self {
        Decayed {
            reads: 0.0,
            bytes: 0.0,
            at: now,
        }
    }

    /// Counts `reads` reads and `bytes` bytes that happened at `now`.
    pub fn add(&mut self, reads: f64, bytes: f64, now: Instant) {
        self.decay_to(now);
        let tau = TIME_CONSTANT.as_secs_f64();
        self.reads += reads / tau;
        self.bytes += bytes / tau;
    }

    /// The rates as of `now` (nothing changes).
    pub fn rate(&self, now: Instant) -> Rate {
        // No decay, not even `exp(0)`, when it is already up to date.
        let f = if now > self.at {
            factor(now - self.at)
        } else {
            1.0
        };
        Rate {
            reads_per_sec: self.reads * f,
            bytes_per_sec: self.bytes * f,
        }
    }

    fn decay_to(&mut self, now: Instant) {
        // A caller's `now` taken just before another's may arrive second:
        // time never runs backwards here, the event counts as of `at`.
        if now > self.at {
            let f = factor(now - self.at);
            self.reads *= f;
            self.bytes *= f;
            self.at = now;
        }
    }
}

/// How much of a rate is left after `elapsed`.
fn factor(elapsed: Duration) -> f64 {
    (-elapsed.as_secs_f64() / TIME_CONSTANT.as_secs_f64()).exp()
}

/// The decayed client read rates of one server and of its chunks.
#[derive(Debug)]
pub struct Heat {
    /// Guarded together: a read's start and end each take it once.
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The whole server.
    server: Decayed,
    /// Chunks read recently, by id.
    chunks: HashMap<String, Decayed>,
}

impl Default for Heat {
    fn default() -> Self {
        Heat::new(Instant::now())
    }
}

impl Heat {
    /// Nothing read yet, as of `now`.
    pub fn new(now: Instant) -> Self {
        Heat {
            inner: Mutex::new(Inner {
                server: Decayed::new(now),
                chunks: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a client read of `chunk` starting at `now`; its bytes are
    /// counted when the returned guard is dropped.
    pub fn start(self: &Arc<Self>, chunk: &str, now: Instant) -> Reading {
        self.read_started(chunk, now);
        Reading {
            heat: Arc::clone(self),
            chunk: chunk.to_owned(),
            sent: 0,
        }
    }

    /// Counts one read of `chunk` at `now`.
    pub fn read_started(&self, chunk: &str, now: Instant) {
        let mut inner = self.lock();
        inner.server.add(1.0, 0.0, now);
        match inner.chunks.get_mut(chunk) {
            Some(d) => d.add(1.0, 0.0, now),
            None => {
                let mut d = Decayed::new(now);
                d.add(1.0, 0.0, now);
                inner.chunks.insert(chunk.to_owned(), d);
            }
        }
    }

    /// Counts `bytes` sent to a reader of `chunk`, at `now`. A chunk no
    /// longer in the table (deleted meanwhile) counts for the server only.
    pub fn read_ended(&self, chunk: &str, bytes: u64, now: Instant) {
        let mut inner = self.lock();
        inner.server.add(0.0, bytes as f64, now);
        if let Some(d) = inner.chunks.get_mut(chunk) {
            d.add(0.0, bytes as f64, now);
        }
    }

    /// Drops `chunk` (it left the store).
    pub fn forget(&self, chunk: &str) {
        self.lock().chunks.remove(chunk);
    }

    /// The whole server's client read rate at `now`.
    pub fn server(&self, now: Instant) -> Rate {
        self.lock().server.rate(now)
    }

    /// Chunks in the table.
    pub fn len(&self) -> usize {
        self.lock().chunks.len()
    }

    /// Whether no chunk was read recently.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `k` hottest chunks by reads/s at `now`, hottest first (ties by
    /// id); chunks that cooled below [`PRUNE_BELOW_READS_PER_SEC`] are
    /// dropped on the way. Linear in the chunks read recently, plus a sort
    /// of the `k` chosen: never a sort of the whole table.
    pub fn hottest(&self, now: Instant, k: usize) -> Vec<(String, Rate)> {
        let mut inner = self.lock();
        // One pass brings every entry up to `now` and drops the cold ones;
        // the ids are borrowed, and only the `k` chosen are copied out.
        inner.chunks.retain(|_, d| {
            d.decay_to(now);
            d.reads >= PRUNE_BELOW_READS_PER_SEC
        });
        if k == 0 {
            return Vec::new();
        }
        let mut hot: Vec<(&str, Rate)> = inner
            .chunks
            .iter()
            .map(|(id, d)| (id.as_str(), d.rate(d.at)))
            .collect();
        if hot.len() > k {
            hot.select_nth_unstable_by(k - 1, hotter);
            hot.truncate(k);
        }
        hot.sort_unstable_by(hotter);
        hot.into_iter().map(|(id, r)| (id.to_owned(), r)).collect()
    }
}

/// Orders hottest first, then by id so equal rates list the same way.
fn hotter(a: &(&str, Rate), b: &(&str, Rate)) -> std::cmp::Ordering {
    b.1.reads_per_sec
        .total_cmp(&a.1.reads_per_sec)
        .then_with(|| a.0.cmp(b.0))
}

/// One running client read: counts the bytes it sent when dropped.
#[derive(Debug)]
pub struct Reading {
    /// Where they are counted.
    heat: Arc<Heat>,
    /// The chunk read.
    chunk: String,
    /// Data bytes handed to the connection so far.
    sent: u64,
}

impl Reading {
    /// Notes `n` more bytes handed to the connection.
    pub fn sent(&mut self, n: u64) {
        self.sent += n;
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        self.heat.read_ended(&self.chunk, self.sent, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance * b.abs().max(1e-12)
    }

    #[test]
    fn a_steady_rate_converges_to_itself() {
        let t0 = Instant::now();
        let mut d = Decayed::new(t0);
        // 10 reads/s of 1 KiB each for ten time constants.
        let step = Duration::from_millis(100);
        let mut now = t0;
        for _ in 0..6000 {
            now += step;
            d.add(1.0, 1024.0, now);
        }
        let r = d.rate(now + step / 2);
        assert!(close(r.reads_per_sec, 10.0, 0.01), "{r:?}");
        assert!(close(r.bytes_per_sec, 10240.0, 0.01), "{r:?}");
    }

    #[test]
    fn a_burst_shows_at_once_and_a_stopped_chunk_cools() {
        let t0 = Instant::now();
        let mut d = Decayed::new(t0);
        for _ in 0..60 {
            d.add(1.0, 0.0, t0);
        }
        assert!(close(d.rate(t0).reads_per_sec, 1.0, 1e-9));
        // One time constant later: 1/e of it; ten later: nearly nothing.
        let r = d.rate(t0 + TIME_CONSTANT).reads_per_sec;
        assert!(close(r, (-1.0f64).exp(), 1e-9), "{r}");
        assert!(d.rate(t0 + TIME_CONSTANT * 10).reads_per_sec < 1e-4);
        // Reading the rate changes nothing; an older `now` never un-decays.
        d.add(0.0, 0.0, t0 + TIME_CONSTANT);
        d.add(0.0, 0.0, t0);
        assert!(close(
            d.rate(t0 + TIME_CONSTANT).reads_per_sec,
            (-1.0f64).exp(),
            1e-9
        ));
    }

    #[test]
    fn server_counts_reads_at_start_and_bytes_at_end() {
        let t0 = Instant::now();
        let heat = Arc::new(Heat::new(t0));
        heat.read_started("a", t0);
        assert_eq!(heat.server(t0).bytes_per_sec, 0.0);
        heat.read_ended("a", 6000, t0);
        let tau = TIME_CONSTANT.as_secs_f64();
        assert!(close(heat.server(t0).reads_per_sec, 1.0 / tau, 1e-9));
        assert!(close(heat.server(t0).bytes_per_sec, 6000.0 / tau, 1e-9));
        let hot = heat.hottest(t0, 1);
        assert!(close(hot[0].1.bytes_per_sec, 6000.0 / tau, 1e-9));
    }

    #[test]
    fn the_guard_counts_what_was_sent() {
        let heat = Arc::new(Heat::default());
        let mut r = heat.start("a", Instant::now());
        r.sent(100);
        r.sent(23);
        drop(r);
        let b = heat.hottest(Instant::now(), 1)[0].1.bytes_per_sec;
        let tau = TIME_CONSTANT.as_secs_f64();
        assert!(close(b, 123.0 / tau, 0.01), "{b}");
    }

    #[test]
    fn top_k_is_bounded_and_hottest_first() {
        let t0 = Instant::now();
        let heat = Heat::new(t0);
        // Chunk i read i % 97 + 1 times: many ties, and a known top.
        for i in 0..10_000u32 {
            for _ in 0..(i % 97 + 1) {
                heat.read_started(&format!("c{i:05}"), t0);
            }
        }
        let hot = heat.hottest(t0, HOT_CHUNKS);
        assert_eq!(hot.len(), HOT_CHUNKS);
        let rates: Vec<f64> = hot.iter().map(|h| h.1.reads_per_sec).collect();
        assert!(rates.windows(2).all(|w| w[0] >= w[1]), "{rates:?}");
        // The hottest read 97 times each: c00096, c00193, ... (103 of
        // them); the first 64 by id are listed.
        let tau = TIME_CONSTANT.as_secs_f64();
        let want: Vec<String> = (0..10_000u32)
            .filter(|i| i % 97 == 96)
            .take(HOT_CHUNKS)
            .map(|i| format!("c{i:05}"))
            .collect();
        let got: Vec<String> = hot.iter().map(|h| h.0.clone()).collect();
        assert_eq!(got, want);
        assert!(close(rates[0], 97.0 / tau, 1e-9));
        // Fewer than k: all of them, still in order.
        let few = Heat::new(t0);
        few.read_started("x", t0);
        few.read_started("y", t0);
        few.read_started("y", t0);
        let names: Vec<_> = few.hottest(t0, 64).into_iter().map(|h| h.0).collect();
        assert_eq!(names, ["y", "x"]);
        assert!(few.hottest(t0, 0).is_empty());
    }

    #[test]
    fn cold_chunks_are_pruned_and_deleted_ones_forgotten() {
        let t0 = Instant::now();
        let heat = Heat::new(t0);
        heat.read_started("old", t0);
        heat.read_started("kept", t0);
        heat.read_started("gone", t0);
        heat.forget("gone");
        assert_eq!(heat.len(), 2);
        let later = t0 + Duration::from_secs(200);
        for _ in 0..10 {
            heat.read_started("kept", later);
        }
        let hot = heat.hottest(later, HOT_CHUNKS);
        assert_eq!(hot.len(), 1, "{hot:?}");
        assert_eq!(hot[0].0, "kept");
        assert_eq!(heat.len(), 1);
        // The server's own rate is never pruned; bytes of a read of a
        // forgotten chunk still count for the server.
        heat.read_ended("gone", 600, later);
        assert_eq!(heat.len(), 1);
        assert!(heat.server(later).bytes_per_sec > 0.0);
    }

    #[test]
    #[ignore = "takes seconds; run to measure a heartbeat's cost at a million recently read chunks"]
    fn hottest_of_a_million() {
        let t0 = Instant::now();
        let heat = Heat::new(t0);
        let ids: Vec<String> = (0..1_000_000u32).map(|i| format!("chunk-{i:07}")).collect();
        let started = Instant::now();
        for (i, id) in ids.iter().enumerate() {
            heat.read_started(id, t0 + Duration::from_micros(i as u64));
            heat.read_ended(id, 65536, t0 + Duration::from_micros(i as u64));
        }
        let per_read = started.elapsed() / 1_000_000;
        let started = Instant::now();
        let hot = heat.hottest(t0 + Duration::from_secs(2), HOT_CHUNKS);
        let took = started.elapsed();
        assert_eq!(hot.len(), HOT_CHUNKS);
        eprintln!("start+end of one read: {per_read:?}; hottest of 1,000,000: {took:?}");
    }
}
