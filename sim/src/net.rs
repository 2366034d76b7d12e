//! The one seeded scheduler: events in time order (ties in the order they
//! were scheduled), and the simulated network's delays, losses and
//! duplicates.

use std::collections::BTreeMap;
use std::time::Duration;

use keel_balancer::sim::Rng;
use keel_master::meta::Heartbeat;

use crate::chunkserver::Answer;

/// What a delete was decided for: the ground truth the invariants compare
/// the delete's effect with (the master never sees it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// The indexed copy of this generation (`None`: the master counted a
    /// copy the server did not hold when the delete was decided).
    Whole(Option<u64>),
    /// The copy in `damaged/`.
    Damaged,
}

/// A request from a master to a chunk server.
#[derive(Debug, Clone)]
pub enum Request {
    /// `CopyChunk`: pull `chunk` from server `from`.
    Copy {
        /// Chunk id.
        chunk: String,
        /// Source server index.
        from: usize,
        /// Expected size and CRC32C.
        size: u64,
        /// Expected CRC32C.
        crc32c: u32,
        /// Factor stored beside the copy.
        factor: u32,
        /// Term sent.
        term: u64,
    },
    /// `DeleteChunk`.
    Delete {
        /// Chunk id.
        chunk: String,
        /// The replica named (0: whatever is held).
        replica: u64,
        /// Term sent.
        term: u64,
        /// Term under which the delete was decided (ground truth).
        decided: u64,
        /// What it was meant to remove (ground truth).
        intent: Intent,
        /// Which step decided it: `trim`, `move source`, `damaged copy`.
        kind: &'static str,
        /// The copies its master confirmed it relies on (ground truth):
        /// each one's generation and when its server answered for it.
        relied: Vec<(u64, Duration)>,
    },
    /// `VerifyChunk`.
    Verify {
        /// Chunk id.
        chunk: String,
    },
    /// `StatChunk`.
    Stat {
        /// Chunk id.
        chunk: String,
    },
    /// `SetDrain`: set or clear the drain mark.
    SetDrain {
        /// The mark wanted.
        draining: bool,
        /// Term sent.
        term: u64,
    },
    /// A heartbeat's answer: the master's known term, and whether it wants
    /// a full report next; `covers` is the sequence the report covered.
    HeartbeatAnswer {
        /// The master's known term.
        term: u64,
        /// Send a full report next.
        full: bool,
        /// The report's sequence.
        covers: u64,
        /// The run that built the report.
        incarnation: u64,
    },
}

/// Something that happens at an instant.
#[derive(Debug, Clone)]
pub enum Event {
    /// Master `m`'s maintenance and mover tick.
    Tick(usize),
    /// Server `s` builds and sends its heartbeats.
    Beat(usize),
    /// A request reaches server `to` from master `from` (`op` 0: no answer wanted).
    ToServer {
        /// Sending master.
        from: usize,
        /// Receiving server.
        to: usize,
        /// Operation id at the master.
        op: u64,
        /// The request.
        req: Request,
    },
    /// An answer reaches master `to` from server `from`.
    Answer {
        /// Receiving master.
        to: usize,
        /// Answering server.
        from: usize,
        /// Operation id.
        op: u64,
        /// The answer.
        answer: Answer,
    },
    /// A heartbeat reaches master `to`.
    Heartbeat {
        /// Receiving master.
        to: usize,
        /// Sending server.
        from: usize,
        /// The report.
        hb: Heartbeat,
        /// The term the server had recorded when it built it.
        term: u64,
        /// The sequence it covers.
        covers: u64,
        /// When it was built.
        built: Duration,
    },
    /// A delete's blocking part ends on server `on` (in run `incarnation`).
    DeleteRuns {
        /// Server.
        on: usize,
        /// Its run when the delete began.
        incarnation: u64,
        /// Master and op to answer.
        master: usize,
        /// Operation id.
        op: u64,
        /// The request.
        req: Request,
    },
    /// A verification's reread ends on server `on` (in run `incarnation`).
    VerifyRuns {
        /// Server.
        on: usize,
        /// Its run when the verification began.
        incarnation: u64,
        /// Master to answer.
        master: usize,
        /// Operation id.
        op: u64,
        /// Chunk id.
        chunk: String,
    },
    /// Master `m`'s request `op` timed out.
    Timeout(usize, u64),
    /// The fault injector acts.
    Fault,
    /// Server `s` starts again.
    ServerUp(usize),
    /// Master `m` starts again.
    MasterUp(usize),
    /// Master `m` wakes from a freeze.
    Thaw(usize),
    /// The leader key of term `t` expired in etcd (its holder was silent).
    LeaseLapsed(u64),
    /// A client reports server `s`'s copy of a chunk corrupt to the leader.
    Report(String, usize),
    /// Faults stop: the must-heal phase begins.
    Heal,
}

/// The network's behaviour now.
#[derive(Debug, Clone, Copy)]
pub struct Weather {
    /// Chance a message is lost.
    pub loss: f64,
    /// Chance a message is delivered twice.
    pub duplicate: f64,
    /// Chance a message is held for a long time (reordering it).
    pub slow: f64,
    /// Longest such hold.
    pub slow_max: Duration,
}

impl Weather {
    /// A healthy network: prompt, nothing lost.
    pub const CALM: Weather = Weather {
        loss: 0.0,
        duplicate: 0.0,
        slow: 0.0,
        slow_max: Duration::ZERO,
    };
}

/// The event queue and the simulated clock.
#[derive(Debug)]
pub struct Scheduler {
    /// Time now, since the simulation started.
    pub now: Duration,
    queue: BTreeMap<(Duration, u64), Event>,
    next_seq: u64,
    /// The last delivery time on each ordered link (see [`link`]).
    links: BTreeMap<(u8, usize, usize), Duration>,
}

/// The connection a message travels on, when it keeps its order: a
/// master's requests to a chunk server and their answers share the one
/// HTTP/2 connection the master's `Clients` keeps per server, and TCP
/// delivers it in order, so a stalled connection holds up what follows
/// instead of letting it overtake (a `StatChunk` never arrives before a
/// `DeleteChunk` sent earlier). Heartbeats go over the chunk server's own
/// connections and may still arrive in any order.
fn link(e: &Event) -> Option<(u8, usize, usize)> {
    match e {
        Event::ToServer { from, to, op, .. } if *op != 0 => Some((0, *from, *to)),
        Event::Answer { to, from, .. } => Some((1, *from, *to)),
        _ => None,
    }
}

impl Scheduler {
    /// An empty queue at time zero.
    pub fn new() -> Self {
        Scheduler {
            now: Duration::ZERO,
            queue: BTreeMap::new(),
            next_seq: 0,
            links: BTreeMap::new(),
        }
    }

    /// Schedules `e` after `delay`.
    pub fn after(&mut self, delay: Duration, e: Event) {
        self.at(self.now + delay, e);
    }

    /// Schedules `e` at `when`.
    fn at(&mut self, when: Duration, e: Event) {
        self.next_seq += 1;
        self.queue.insert((when, self.next_seq), e);
    }

    /// Every event still to come, in order.
    pub fn pending(&self) -> impl Iterator<Item = &Event> + '_ {
        self.queue.values()
    }

    /// The next event, advancing the clock to it.
    pub fn pop(&mut self) -> Option<Event> {
        let ((at, _), e) = self.queue.pop_first()?;
        self.now = at;
        Some(e)
    }

    /// Sends a message through the network: lost, delivered once or twice,
    /// promptly or late, as `w` and `rng` decide; never before a message
    /// sent earlier on the same ordered link.
    pub fn send(&mut self, rng: &mut Rng, w: &Weather, e: Event) {
        if rng.unit() < w.loss {
            return;
        }
        let copies = if rng.unit() < w.duplicate { 2 } else { 1 };
        for _ in 0..copies {
            let delay = if rng.unit() < w.slow {
                Duration::from_millis(rng.range(0, w.slow_max.as_millis() as u64))
            } else {
                Duration::from_micros(rng.range(200, 5_000))
            };
            let mut when = self.now + delay;
            if let Some(key) = link(&e) {
                let last = self.links.entry(key).or_default();
                when = when.max(*last);
                *last = when;
            }
            self.at(when, e.clone());
        }
    }
}

impl Default for Scheduler {
    fn default() -> Self {
        Self::new()
    }
}
