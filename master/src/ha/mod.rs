//! Several masters: who leads, elected through etcd, and how the others
//! stand by.
//!
//! Without `--etcd` the one master leads forever at term 0: exactly the
//! single-master behaviour. With it, every master campaigns with the usual
//! etcd recipe (see `campaign.rs`): a lease of `--leader-lease`, a
//! transaction that creates `<prefix>/leader` only if it does not exist,
//! keep-alives every third of the lease. The **term** is that key's create
//! revision, which grows with every new leader.
//!
//! Every master keeps a warm view from heartbeats (chunk servers heartbeat
//! to all of them). Only the leader plans, moves, repairs, trims, places and
//! takes operator commands; standbys answer reads from their own view and
//! refuse the rest with the leader's address (see `front.rs`).
//!
//! A leader steps down **first**: [`Leadership::term_if_leading`] holds only
//! until a local deadline, three quarters of the lease after the send time
//! of the last keep-alive etcd acknowledged, so it ends before etcd could
//! let the lease go and another master win. Every `CopyChunk`, `DeleteChunk`
//! and `SetDrain` asks for the term at the moment it is sent and carries it
//! (a copy or delete: the term of the decision that planned it, and it is
//! not sent once this master leads under another term; see
//! `Clients::fenced_at`); chunk servers refuse terms below the highest they
//! have seen, which fences a leader that was frozen past its deadline.
//!
//! # Layout
//! - this file: [`Leadership`], the handle every component reads.
//! - `etcd.rs`: a small client of etcd's KV and Lease services.
//! - `access.rs`: etcd's TLS and authentication flags, and the token.
//! - `campaign.rs`: the election loop and the keep-alives.
//! - `operator.rs`: operator state kept in etcd (pause), loaded by each new leader.

mod access;
mod campaign;
mod etcd;
mod operator;

#[cfg(test)]
mod etcd_tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub use access::{EtcdAccess, EtcdAccessFlags};
pub use campaign::{Campaign, CampaignSettings, call_timeout};
pub use etcd::{Etcd, EtcdError};
pub use operator::OperatorState;

/// Heartbeats a new leader waits for from every live server before it trims.
pub const SETTLE_HEARTBEATS: u32 = 2;

/// Who leads, as this master knows it; cheap to clone.
#[derive(Debug, Clone)]
pub struct Leadership {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// false: a single master without etcd, the leader at term 0 forever.
    elected: bool,
    /// This master's `--advertise` address.
    advertise: String,
    view: Mutex<View>,
}

/// What is known about the leadership right now.
#[derive(Debug, Default, Clone)]
struct View {
    /// While this master leads: its term and when it must consider itself
    /// deposed unless a keep-alive renews it.
    leading: Option<(u64, Instant)>,
    /// The leader as last read from etcd: address and term.
    leader: Option<(String, u64)>,
    /// Heartbeats received from each server since this master began to lead.
    heard: HashMap<String, u32>,
}

/// The leader as a reply names it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaderInfo {
    /// The leader's advertised address; empty when unknown (or no etcd).
    pub address: String,
    /// Its term (0 without etcd).
    pub term: u64,
    /// Whether the answering master is the leader.
    pub is_self: bool,
}

impl Leadership {
    /// A single master without etcd: the leader at term 0, always.
    pub fn single() -> Self {
        Self::with(false, String::new())
    }

    /// One of several masters, a standby until [`Campaign`] wins.
    pub fn elected(advertise: String) -> Self {
        Self::with(true, advertise)
    }

    fn with(elected: bool, advertise: String) -> Self {
        Leadership {
            inner: Arc::new(Inner {
                elected,
                advertise,
                view: Mutex::new(View::default()),
            }),
        }
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.inner
            .view
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether leadership is elected through etcd (`--etcd`).
    pub fn is_elected(&self) -> bool {
        self.inner.elected
    }

    /// This master's term if it leads at this instant, else `None`. Asked
    /// right before every request that changes data on a chunk server.
    pub fn term_if_leading(&self) -> Option<u64> {
        if !self.inner.elected {
            return Some(0);
        }
        let now = Instant::now();
        match self.view().leading {
            Some((term, until)) if now < until => Some(term),
            _ => None,
        }
    }

    /// Whether this master leads at this instant.
    pub fn is_leader(&self) -> bool {
        self.term_if_leading().is_some()
    }

    /// The highest term known, this master's or the leader's it read from
    /// etcd; sent to chunk servers in heartbeat answers.
    pub fn known_term(&self) -> u64 {
        let v = self.view();
        let own = v.leading.map_or(0, |(t, _)| t);
        own.max(v.leader.as_ref().map_or(0, |(_, t)| *t))
    }

    /// The leader, for replies and refusals.
    pub fn leader(&self) -> LeaderInfo {
        if let Some(term) = self.term_if_leading() {
            return LeaderInfo {
                address: self.inner.advertise.clone(),
                term,
                is_self: true,
            };
        }
        match &self.view().leader {
            Some((address, term)) if *address != self.inner.advertise => LeaderInfo {
                address: address.clone(),
                term: *term,
                is_self: false,
            },
            _ => LeaderInfo::default(),
        }
    }

    /// This master won `term`; it leads until `until` unless renewed.
    pub fn lead(&self, term: u64, until: Instant) {
        let mut v = self.view();
        v.leading = Some((term, until));
        v.leader = Some((self.inner.advertise.clone(), term));
        v.heard.clear();
    }

    /// A heartbeat (or a whole paged report) from `server` has been
    /// applied to the view (counted while leading). Called after applying,
    /// never before: [`Leadership::settled`] promises that the view holds
    /// what the counted reports said.
    pub fn heard(&self, server: &str) {
        if !self.inner.elected {
            return;
        }
        let mut v = self.view();
        if v.leading.is_some() {
            *v.heard.entry(server.to_owned()).or_default() += 1;
        }
    }

    /// Whether deletes that rely on the whole view (trims) may run: always
    /// for a single master; for an elected leader once every live server has
    /// sent [`SETTLE_HEARTBEATS`] heartbeats since it began to lead, each
    /// counted once applied and only when the server built it under this
    /// leader's term. The first answer tells a server the new term; it
    /// records it once no delete of an older term is running, and refuses
    /// the old leader's deletes from then on. A report built under the new
    /// term so lists every delete the old leader made, and once it is applied
    /// no replica the old leader removed is still counted here, even when an
    /// answer was lost or a server could not record the term at once.
    pub fn settled<'a>(&self, live: impl IntoIterator<Item = &'a str>) -> bool {
        if !self.inner.elected {
            return true;
        }
        let v = self.view();
        v.leading.is_some()
            && live
                .into_iter()
                .all(|s| v.heard.get(s).is_some_and(|n| *n >= SETTLE_HEARTBEATS))
    }

    /// While this master leads: when it stops unless a keep-alive renews it.
    pub(crate) fn lead_until(&self) -> Option<Instant> {
        self.view().leading.map(|(_, until)| until)
    }

    /// A keep-alive sent at `sent` was acknowledged: lead until `until`.
    pub(crate) fn renew(&self, until: Instant) {
        if let Some((_, u)) = &mut self.view().leading {
            *u = (*u).max(until);
        }
    }

    /// This master no longer leads.
    pub fn step_down(&self) {
        let mut v = self.view();
        v.leading = None;
        if v.leader
            .as_ref()
            .is_some_and(|(a, _)| *a == self.inner.advertise)
        {
            v.leader = None;
        }
    }

    /// Another master leads (or nobody, `None`), as read from etcd.
    pub fn observe(&self, leader: Option<(String, u64)>) {
        self.view().leader = leader;
    }

    /// The metric lines `keel_master_is_leader` and `keel_master_term`.
    pub fn render_metrics(&self) -> String {
        let leader = self.leader();
        format!(
            "# HELP keel_master_is_leader 1 while this master leads (always 1 without --etcd).\n\
             # TYPE keel_master_is_leader gauge\n\
             keel_master_is_leader {}\n\
             # HELP keel_master_term The leader's term as this master knows it (its etcd create revision; 0 without --etcd).\n\
             # TYPE keel_master_term gauge\n\
             keel_master_term {}\n",
            u8::from(leader.is_self),
            self.known_term()
        )
    }
}

/// The flags that make a master one of several (`--etcd` and its kin).
#[derive(Debug, Clone, Copy)]
pub struct HaFlags<'a> {
    /// `--etcd`: the endpoints; empty for a single master.
    pub etcd: &'a [String],
    /// `--etcd-prefix`.
    pub prefix: &'a str,
    /// `--leader-lease`.
    pub leader_lease: Duration,
    /// etcd's TLS and authentication flags.
    pub access: &'a EtcdAccessFlags,
}

/// Leadership, and etcd when several masters share the cluster.
#[derive(Debug, Clone)]
pub struct Ha {
    /// Who leads, as this master knows it.
    pub leadership: Leadership,
    /// etcd and the key prefix (`--etcd`, `--etcd-prefix`); `None` for a single master.
    pub etcd: Option<(Arc<Etcd>, String)>,
}

impl Ha {
    /// A single master without etcd.
    pub fn single() -> Self {
        Ha {
            leadership: Leadership::single(),
            etcd: None,
        }
    }

    /// From the flags; `advertise` is this master's gRPC address.
    pub fn from_flags(flags: &HaFlags<'_>, advertise: String) -> Result<Self, EtcdError> {
        if flags.etcd.is_empty() {
            return Ok(Ha::single());
        }
        let timeout = call_timeout(flags.leader_lease);
        let access = flags.access.access()?;
        let etcd = Etcd::with_access(flags.etcd, timeout, access)?;
        Ok(Ha {
            leadership: Leadership::elected(advertise),
            etcd: Some((
                Arc::new(etcd),
                flags.prefix.trim_end_matches('/').to_owned(),
            )),
        })
    }
}

/// The election's key: the leader's address, under its lease; its create
/// revision is the term.
pub(crate) fn leader_key(prefix: &str) -> String {
    format!("{prefix}/leader")
}

/// The local deadline of a leader whose keep-alive was sent at `sent` for a
/// lease of `ttl`: three quarters of the lease, so a leader that cannot
/// renew steps down well before etcd could let another master win.
pub fn lead_deadline(sent: Instant, ttl: Duration) -> Instant {
    sent + ttl * 3 / 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_master_always_leads_at_term_zero() {
        let l = Leadership::single();
        assert_eq!(l.term_if_leading(), Some(0));
        assert!(l.leader().is_self);
        assert!(l.render_metrics().contains("keel_master_is_leader 1"));
    }

    #[test]
    fn an_elected_master_leads_only_until_its_deadline() {
        let l = Leadership::elected("http://m1:7000".into());
        assert_eq!(l.term_if_leading(), None);
        l.observe(Some(("http://m2:7000".into(), 4)));
        assert_eq!(l.leader().address, "http://m2:7000");
        assert_eq!(l.known_term(), 4);
        l.lead(9, Instant::now() + Duration::from_secs(60));
        assert_eq!(l.term_if_leading(), Some(9));
        assert_eq!(l.leader().address, "http://m1:7000");
        assert!(!l.settled(["cs1"]));
        l.heard("cs1");
        l.heard("cs1");
        assert!(l.settled(["cs1"]));
        assert!(!l.settled(["cs1", "cs2"]));
        l.step_down();
        assert_eq!(l.term_if_leading(), None);
        assert!(!l.settled(["cs1"]));
        assert_eq!(l.leader(), LeaderInfo::default());
        // A deadline already past: not the leader, whatever the task thinks.
        l.lead(10, Instant::now());
        assert_eq!(l.term_if_leading(), None);
        assert!(l.render_metrics().contains("keel_master_term 10"));
    }

    #[test]
    fn the_deadline_is_well_inside_the_lease() {
        let now = Instant::now();
        let d = lead_deadline(now, Duration::from_secs(4));
        assert_eq!(d - now, Duration::from_secs(3));
    }
}
