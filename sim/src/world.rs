//! The simulated cluster: chunk servers, masters, a one-key etcd, and the
//! loop that runs one event per step and checks the invariants after each.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keel_balancer::sim::Rng;

use crate::chunkserver::{Answer, ChunkServer, File, Header};
use crate::invariants;
use crate::master::{Ctx, SimMaster};
use crate::net::{Event, Intent, Request, Scheduler, Weather};

/// How often a chunk server reports (`--heartbeat-interval`).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// How often a master's maintenance and mover loops look (`balance::TICK`).
pub const TICK: Duration = Duration::from_millis(500);

/// The leader key's lease (`--leader-lease`).
pub const LEASE: Duration = Duration::from_secs(5);

/// What is true of a chunk, whatever any master believes.
#[derive(Debug, Clone, Copy)]
pub struct Truth {
    /// Its size.
    pub size: u64,
    /// Its CRC32C.
    pub crc32c: u32,
    /// Its factor.
    pub factor: u32,
}

/// The one etcd key that says who leads.
#[derive(Debug, Clone, Copy, Default)]
pub struct Etcd {
    /// The newest term handed out (a create revision).
    pub term: u64,
    /// Who holds the key now.
    pub leader: Option<usize>,
}

/// The whole simulated cluster.
pub struct World {
    /// The one random source.
    pub rng: Rng,
    /// The clock and event queue.
    pub sched: Scheduler,
    /// The network now.
    pub weather: Weather,
    /// Time zero as an `Instant`, for the metadata.
    pub base: Instant,
    /// The chunk servers.
    pub servers: Vec<ChunkServer>,
    /// The masters; `None` while one is down.
    pub masters: Vec<Option<SimMaster>>,
    /// Until when each master is frozen (SIGSTOP).
    pub frozen_until: Vec<Duration>,
    /// The leader key.
    pub etcd: Etcd,
    /// Every chunk's facts.
    pub truth: BTreeMap<String, Truth>,
    /// Generation of the next committed file.
    pub next_generation: u64,
    /// Op ids over every master.
    pub next_op: u64,
    /// Faults stop here; the must-heal phase runs until `end`.
    pub faults_until: Duration,
    /// The end of the run.
    pub end: Duration,
    /// Invariant violations seen at events, in order.
    pub violations: Vec<String>,
    /// When each (server, chunk) stopped holding its indexed copy.
    pub gone_at: BTreeMap<(usize, String), Duration>,
    /// Per master and server: when the newest report it applied was built.
    pub applied_built: Vec<Vec<Duration>>,
    /// When each master's current process started.
    pub master_started: Vec<Duration>,
    /// Events run.
    pub steps: u64,
    /// Whether this seed turns copies into other bytes under the same id.
    /// Such seeds never restart a master: a master that starts afresh takes
    /// the first copy it hears of as the chunk, and when that is the odd
    /// one no rule could tell which copy is the chunk.
    pub mismatches: bool,
    /// Rotten copies a client has read and reported: (server, generation).
    pub found_rotten: std::collections::BTreeSet<(usize, u64)>,
    /// When each copy (by generation) was lost to a fault as far as anyone
    /// could tell: its rot found by a read, its file vanished, its bytes
    /// replaced.
    pub faulted_at: BTreeMap<u64, Duration>,
    /// Deletes that removed the last intact copy only because every copy
    /// they were confirmed to rely on was lost to a fault after its
    /// confirmation (see [`invariants::last_copy`]).
    pub double_faults: u64,
    /// Copies a master accepted as already there: (server, chunk).
    pub accepted: Vec<(usize, String)>,
    /// Run to the end after a violation (to time full runs).
    pub keep_going: bool,
    /// Print every event (`--seed S --trace`).
    pub trace: bool,
}

impl World {
    /// Server index of id `csN`.
    pub fn server_index(id: &str) -> Option<usize> {
        id.strip_prefix("cs")?.parse().ok()
    }

    /// The whole copies of `chunk` on every disk, up or down.
    pub fn whole_copies(&self, chunk: &str) -> usize {
        self.whole_copies_off(chunk, &[])
    }

    /// The whole copies of `chunk` on every disk but those of `except`.
    pub fn whole_copies_off(&self, chunk: &str, except: &[usize]) -> usize {
        let Some(t) = self.truth.get(chunk) else {
            return 0;
        };
        self.servers
            .iter()
            .enumerate()
            .filter(|(s, _)| !except.contains(s))
            .filter_map(|(_, s)| s.files.get(chunk))
            .filter(|f| !f.rot && f.size == t.size && f.crc32c == t.crc32c)
            .count()
    }

    /// The copies of `chunk` on every disk, up or down, that no one has
    /// found damaged: whole ones, and rotten ones no client has read yet
    /// (no protocol can tell those from whole ones before a read).
    pub fn intact_copies(&self, chunk: &str) -> usize {
        let Some(t) = self.truth.get(chunk) else {
            return 0;
        };
        self.servers
            .iter()
            .enumerate()
            .filter_map(|(s, srv)| srv.files.get(chunk).map(|f| (s, f)))
            .filter(|(_, f)| f.size == t.size && f.crc32c == t.crc32c)
            .filter(|(s, f)| !(f.rot && self.found_rotten.contains(&(*s, f.generation))))
            .count()
    }

    /// A new file of `chunk` as the truth says it is.
    pub fn new_file(&mut self, chunk: &str) -> File {
        self.next_generation += 1;
        let t = self.truth[chunk];
        File {
            generation: self.next_generation,
            size: t.size,
            crc32c: t.crc32c,
            factor: t.factor,
            rot: false,
            suspect: false,
        }
    }

    /// Puts `f` into server `s`'s index.
    pub fn put_file(&mut self, s: usize, chunk: &str, f: File) {
        self.servers[s].files.insert(chunk.to_owned(), f);
        self.servers[s].touch(chunk);
        self.gone_at.remove(&(s, chunk.to_owned()));
    }

    /// Notes that copy `generation` was lost to a fault now (the first
    /// time counts).
    pub fn note_fault(&mut self, generation: u64) {
        self.faulted_at.entry(generation).or_insert(self.sched.now);
    }

    /// Notes that `chunk`'s indexed copy on `s` is gone (or no longer the chunk).
    pub fn note_gone(&mut self, s: usize, chunk: &str) {
        self.gone_at.insert((s, chunk.to_owned()), self.sched.now);
    }

    /// Runs until the end; returns the violations found (first first).
    pub fn run(&mut self) -> Result<(), String> {
        while let Some(e) = self.sched.pop() {
            if self.sched.now > self.end {
                break;
            }
            self.steps += 1;
            if self.trace {
                eprintln!("{:>12.6} {e:?}", self.sched.now.as_secs_f64());
            }
            self.step(e);
            if let Err(v) = invariants::check_counted(self) {
                self.violations.push(v);
            }
            if !self.keep_going && !self.violations.is_empty() {
                break;
            }
        }
        if self.violations.is_empty()
            && let Err(v) =
                invariants::check_healed(self).and_then(|()| crate::drain::check_drained(self))
        {
            self.violations.push(v);
        }
        match self.violations.first() {
            Some(v) => Err(v.clone()),
            None => Ok(()),
        }
    }

    /// Master `m`, when it runs (not down, not frozen) at this instant.
    fn running_master(&self, m: usize) -> bool {
        self.masters[m].is_some() && self.frozen_until[m] <= self.sched.now
    }

    /// Runs `f` on master `m` with a context over the rest of the world.
    pub fn with_master(&mut self, m: usize, f: impl FnOnce(&mut SimMaster, &mut Ctx<'_>)) {
        let Some(master) = self.masters[m].as_mut() else {
            return;
        };
        let mut cx = Ctx {
            sched: &mut self.sched,
            rng: &mut self.rng,
            weather: self.weather,
            servers: &self.servers,
            next_op: &mut self.next_op,
            base: self.base,
            accepted: &mut self.accepted,
        };
        f(master, &mut cx);
    }

    fn step(&mut self, e: Event) {
        // A frozen master does nothing until it thaws; what reaches it waits.
        let held = match &e {
            Event::Tick(m) | Event::Timeout(m, _) => Some(*m),
            Event::Answer { to, .. } | Event::Heartbeat { to, .. } => Some(*to),
            _ => None,
        };
        if let Some(m) = held
            && self.masters[m].is_some()
            && self.frozen_until[m] > self.sched.now
        {
            let wait = self.frozen_until[m] - self.sched.now;
            self.sched.after(wait, e);
            return;
        }
        match e {
            Event::Tick(m) => {
                self.with_master(m, |master, cx| master.tick(cx));
                self.sched.after(TICK, Event::Tick(m));
            }
            Event::Beat(s) => {
                self.beat(s);
                self.sched.after(HEARTBEAT_INTERVAL, Event::Beat(s));
            }
            Event::ToServer { from, to, op, req } => self.deliver(from, to, op, req),
            Event::Answer { to, op, answer, .. } => {
                self.with_master(to, |m, cx| m.answered(cx, op, Some(answer)))
            }
            Event::Heartbeat {
                built, to, from, ..
            } if built < self.master_started[to] => {
                // Sent over a connection to the master's previous process,
                // which died with it: TCP brings nothing sent before a
                // restart to the new process (seed 137143: a full report
                // held up past the restart, then the server's delta built
                // on what the previous process had acknowledged).
                if self.trace {
                    eprintln!("             dropped: sent to m{to}'s previous process (cs{from})");
                }
            }
            Event::Heartbeat {
                to,
                from,
                hb,
                term,
                covers,
                built,
            } => {
                let mut applied = false;
                self.with_master(to, |m, cx| {
                    applied = m.heartbeat(cx, from, hb, term, covers)
                });
                if applied {
                    self.applied_built[to][from] = self.applied_built[to][from].max(built);
                }
                if self.trace {
                    eprintln!("             applied: {applied}");
                }
            }
            Event::DeleteRuns {
                on,
                incarnation,
                master,
                op,
                req,
            } => self.delete_runs(on, incarnation, master, op, req),
            Event::VerifyRuns {
                on,
                incarnation,
                master,
                op,
                chunk,
            } => {
                let srv = &mut self.servers[on];
                if srv.up && srv.incarnation == incarnation {
                    let a = srv.verify(&chunk);
                    if let Answer::Corrupt(_, g) = a {
                        // Its rot found: lost to a fault from now on, as
                        // when a client's read finds it (seed 206657).
                        self.note_gone(on, &chunk);
                        self.note_fault(g);
                    }
                    self.answer(on, master, op, a);
                }
            }
            Event::Timeout(m, op) => {
                self.with_master(m, |master, cx| master.answered(cx, op, None))
            }
            other => crate::faults::handle(self, other),
        }
    }

    /// Server `s` sends its report to every master.
    fn beat(&mut self, s: usize) {
        if !self.servers[s].up {
            return;
        }
        for m in 0..self.masters.len() {
            let address = format!("sim://cs{s}");
            let (hb, covers) = self.servers[s].report(m, &address);
            let e = Event::Heartbeat {
                to: m,
                from: s,
                hb,
                term: self.servers[s].term,
                covers,
                built: self.sched.now,
            };
            self.sched.send(&mut self.rng, &self.weather, e);
        }
    }

    fn answer(&mut self, from: usize, to: usize, op: u64, answer: Answer) {
        let e = Event::Answer {
            to,
            from,
            op,
            answer,
        };
        self.sched.send(&mut self.rng, &self.weather, e);
    }

    /// A request reaches server `to` (dropped when it is down: the master's
    /// deadline answers for it).
    fn deliver(&mut self, from: usize, to: usize, op: u64, req: Request) {
        if !self.servers[to].up {
            return;
        }
        match req {
            Request::HeartbeatAnswer {
                term,
                full,
                covers,
                incarnation,
            } => {
                let s = &mut self.servers[to];
                s.record_term(term);
                if incarnation == s.incarnation {
                    s.cursor[from] = if full { None } else { Some(covers) };
                }
            }
            Request::SetDrain { draining, term } => {
                let a = self.servers[to].set_drain(draining, term);
                self.answer(to, from, op, a);
            }
            Request::Copy { .. } => {
                let a = self.copy(to, &req);
                self.answer(to, from, op, a);
            }
            Request::Delete {
                term, ref chunk, ..
            } => {
                self.servers[to].delete_begun(chunk);
                if !self.servers[to].admit(term) {
                    self.servers[to].delete_refused(chunk);
                    return self.answer(to, from, op, Answer::Fenced);
                }
                self.servers[to].running_deletes += 1;
                let slow = self.sched.now < self.faults_until && self.rng.unit() < 0.1;
                let runs = if slow {
                    Duration::from_millis(self.rng.range(5_000, 25_000))
                } else {
                    Duration::from_millis(self.rng.range(1, 20))
                };
                let incarnation = self.servers[to].incarnation;
                let e = Event::DeleteRuns {
                    on: to,
                    incarnation,
                    master: from,
                    op,
                    req,
                };
                self.sched.after(runs, e);
            }
            Request::Verify { chunk } => {
                // Marked suspect at once; the reread takes a while, and
                // a crash meanwhile leaves the mark.
                self.servers[to].mark_suspect(&chunk);
                let slow = self.sched.now < self.faults_until && self.rng.unit() < 0.1;
                let runs = if slow {
                    Duration::from_millis(self.rng.range(2_000, 20_000))
                } else {
                    Duration::from_millis(self.rng.range(5, 50))
                };
                let e = Event::VerifyRuns {
                    on: to,
                    incarnation: self.servers[to].incarnation,
                    master: from,
                    op,
                    chunk,
                };
                self.sched.after(runs, e);
            }
            Request::Stat { chunk } => {
                let srv = &self.servers[to];
                let deleting = srv.deleting.contains_key(&chunk);
                let a = match srv.files.get(&chunk) {
                    Some(f) => Answer::Header(Header {
                        size: f.size,
                        crc32c: f.crc32c,
                        replica: f.generation,
                        deleting,
                        suspect: f.suspect,
                        stamp: srv.stamp(),
                        at: self.sched.now,
                    }),
                    None => Answer::NotFound,
                };
                self.answer(to, from, op, a);
            }
        }
    }

    /// `CopyChunk` on `to`: fence, then pull from the source and check
    /// size and CRC32C before committing.
    fn copy(&mut self, to: usize, req: &Request) -> Answer {
        let Request::Copy {
            chunk,
            from,
            size,
            crc32c,
            term,
            ..
        } = req
        else {
            return Answer::Unavailable;
        };
        if !self.servers[to].admit(*term) {
            return Answer::Fenced;
        }
        if self.servers[to].files.contains_key(chunk) {
            return Answer::AlreadyExists;
        }
        let source = &self.servers[*from];
        if !source.up {
            return Answer::Unavailable;
        }
        let Some(f) = source.files.get(chunk).copied() else {
            return Answer::NotFound;
        };
        if f.rot || f.size != *size || f.crc32c != *crc32c {
            return Answer::DataLoss;
        }
        let mut copy = self.new_file(chunk);
        copy.factor = f.factor;
        self.put_file(to, chunk, copy);
        let s = &self.servers[to];
        Answer::Copied(copy.size, copy.crc32c, s.stamp(), copy.generation)
    }

    /// A delete's blocking part runs: the invariants on deletes are
    /// checked against what it really removes.
    fn delete_runs(&mut self, on: usize, incarnation: u64, master: usize, op: u64, req: Request) {
        if !self.servers[on].up || self.servers[on].incarnation != incarnation {
            return;
        }
        let Request::Delete {
            chunk,
            replica,
            term,
            decided,
            intent,
            kind,
            relied,
        } = req
        else {
            return;
        };
        // Lost to faults the master could not see: every copy it confirmed
        // went, by a fault, after it was confirmed.
        let double_fault = !relied.is_empty()
            && relied
                .iter()
                .all(|(g, at)| self.faulted_at.get(g).is_some_and(|f| f > at));
        let was_accepted = self.accepted.contains(&(on, chunk.clone()));
        let before = self.intact_copies(&chunk);
        let recorded = self.servers[on].term;
        let (answer, whole, _damaged) = self.servers[on].delete(&chunk, replica);
        self.servers[on].delete_ended(&chunk);
        let t = self.truth[&chunk];
        let removed = whole.map(|f| {
            let intact = f.size == t.size
                && f.crc32c == t.crc32c
                && !(f.rot && self.found_rotten.contains(&(on, f.generation)));
            (f.generation, intact)
        });
        if whole.is_some() {
            self.note_gone(on, &chunk);
        }
        let after = self.intact_copies(&chunk);
        let rotten: Vec<String> = (0..self.servers.len())
            .filter_map(|s| {
                let f = self.servers[s].files.get(&chunk).filter(|f| f.rot)?;
                let found = self.found_rotten.contains(&(s, f.generation));
                Some(format!("cs{s}{}", if found { " (reported)" } else { "" }))
            })
            .collect();
        let mut what = format!(
            "{kind} delete of {chunk} on cs{on} by m{master} (decided under term {decided}, sent under {term})"
        );
        if was_accepted {
            what.push_str(" [a copy accepted as already there]");
        }
        if !rotten.is_empty() {
            what.push_str(&format!(" [rotten copies left: {}]", rotten.join(" ")));
        }
        let facts = invariants::DeleteFacts {
            what: &what,
            before,
            after,
            decided,
            sent: term,
            recorded,
            intent,
            removed,
            double_fault,
        };
        if double_fault && before > 0 && after == 0 {
            self.double_faults += 1;
            if self.trace {
                eprintln!(
                    "             double fault: {what}: every copy it relied on was lost to a fault after its confirmation"
                );
            }
        }
        if let Err(v) = invariants::check_delete(&facts) {
            self.violations.push(format!("t={:?}: {v}", self.sched.now));
        }
        self.answer(on, master, op, answer);
    }

    /// Whether master `m` runs and leads now.
    pub fn leads(&self, m: usize) -> bool {
        self.running_master(m) && self.masters[m].as_ref().is_some_and(|x| x.lead.is_leader())
    }

    /// The intent a delete of `chunk` on `s` would carry now (for faults).
    pub fn intent_now(&self, s: usize, chunk: &str) -> Intent {
        Intent::Whole(self.servers[s].files.get(chunk).map(|f| f.generation))
    }
}
