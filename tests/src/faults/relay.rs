//! A TCP relay in front of a daemon, so a test can lose replies or cut the
//! network on purpose.
//!
//! A daemon reached only through its relay (a chunk server started with
//! `--advertise http://<relay>`, or a master its chunk servers know as
//! `--master http://<relay>`) can be made unreachable for some peers and not
//! others. Each accepted connection is attributed to the process that opened
//! it (its socket's owner, found through `/proc`), so the relay can tell the
//! master's connections from a peer's even though all of them come from
//! 127.0.0.1.
//!
//! - [`Relay::cut_from`] partitions: every connection from that process,
//!   open or new, stops carrying bytes both ways, the way a network that
//!   drops packets stalls TCP. Nothing is closed or lost; the bytes waiting
//!   flow again after [`Relay::heal_from`] (TCP retransmits), unless an end
//!   gave up on the connection first (deadlines, keep-alive).
//! - [`Relay::hold_replies`]: connections accepted from then on forward
//!   requests as usual but keep every byte the daemon answers: the request is
//!   carried out, its reply never arrives.
//!
//! When one side closes (a daemon was killed), the other side is closed too,
//! as a real network would report it.
//!
//! Every relay counts what it carries ([`Relay::traffic`]): connections,
//! bytes each way, and requests (HTTP/2 HEADERS frames towards the daemon:
//! one per gRPC call, since gRPC clients send no trailers).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::Result;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Shared between the relay's handle and its tasks.
#[derive(Debug)]
struct State {
    /// Where connections are forwarded; none until the daemon is bound.
    upstream: Mutex<Option<SocketAddr>>,
    /// Whether connections accepted now have their replies held back.
    hold: AtomicBool,
    /// Processes whose connections carry nothing, now.
    cut: watch::Sender<BTreeSet<u32>>,
    /// What the relay has carried.
    counts: Counts,
}

/// Counters of what a relay carried, updated as bytes pass.
#[derive(Debug, Default)]
struct Counts {
    connections: AtomicU64,
    requests: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// What a relay has carried since it started; subtract two to get a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Connections forwarded to the daemon.
    pub connections: u64,
    /// HTTP/2 requests (HEADERS frames) sent to the daemon.
    pub requests: u64,
    /// Bytes sent to the daemon (TCP payload).
    pub bytes_in: u64,
    /// Bytes the daemon sent back (TCP payload), held replies included.
    pub bytes_out: u64,
}

impl std::ops::Sub for Traffic {
    type Output = Traffic;

    fn sub(self, earlier: Traffic) -> Traffic {
        Traffic {
            connections: self.connections - earlier.connections,
            requests: self.requests - earlier.requests,
            bytes_in: self.bytes_in - earlier.bytes_in,
            bytes_out: self.bytes_out - earlier.bytes_out,
        }
    }
}

/// Finds the frames that open HTTP/2 requests in a client's byte stream,
/// fed in whatever pieces TCP delivers: the 24-byte connection preface,
/// then frames of a 9-byte header (24-bit length, type, flags, stream) and
/// a payload. Type 1 is HEADERS.
#[derive(Debug)]
struct RequestCounter {
    /// Preface bytes still to skip.
    preface: usize,
    /// The frame header being read.
    head: [u8; 9],
    /// How much of `head` has arrived.
    have: usize,
    /// Payload bytes of the current frame still to skip.
    payload: usize,
}

impl RequestCounter {
    const PREFACE: usize = 24;
    const HEADERS: u8 = 1;

    fn new() -> Self {
        RequestCounter {
            preface: Self::PREFACE,
            head: [0; 9],
            have: 0,
            payload: 0,
        }
    }

    /// Consumes `bytes`; returns how many HEADERS frames began in them.
    fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut found = 0;
        while !bytes.is_empty() {
            let skip = if self.preface > 0 {
                &mut self.preface
            } else {
                &mut self.payload
            };
            if *skip > 0 {
                let n = (*skip).min(bytes.len());
                *skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 9 {
                let h = self.head;
                self.payload = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                found += u64::from(h[3] == Self::HEADERS);
                self.have = 0;
            }
        }
        found
    }
}

/// A running relay; it stops when dropped.
#[derive(Debug)]
pub struct Relay {
    /// Address the relay listens on.
    pub addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl Relay {
    /// Listens on a free loopback port; forwards nothing until
    /// [`Relay::forward_to`].
    pub async fn start() -> Result<Self> {
        Self::start_at("127.0.0.1:0".parse()?).await
    }

    /// Listens on `addr` (again: a relay dropped closes its port, so its
    /// daemon's clients are refused, and one started here opens it again).
    pub async fn start_at(addr: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            upstream: Mutex::new(None),
            hold: AtomicBool::new(false),
            cut: watch::Sender::new(BTreeSet::new()),
            counts: Counts::default(),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Ok(Relay {
            addr,
            state,
            accept,
        })
    }

    /// `http://ADDR` of the relay, for `--advertise` or `--master`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the daemon's real address (again after it restarted elsewhere).
    pub fn forward_to(&self, upstream: SocketAddr) {
        let mut u = self
            .state
            .upstream
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *u = Some(upstream);
    }

    /// Holds back (or again passes) the replies on connections accepted from
    /// now on; connections already open keep their mode.
    pub fn hold_replies(&self, on: bool) {
        self.state.hold.store(on, Ordering::SeqCst);
    }

    /// Stalls every connection process `pid` has through this relay, open or
    /// opened later, in both directions.
    pub fn cut_from(&self, pid: u32) {
        self.state.cut.send_modify(|s| {
            s.insert(pid);
        });
    }

    /// Lets process `pid`'s connections carry bytes again.
    pub fn heal_from(&self, pid: u32) {
        self.state.cut.send_modify(|s| {
            s.remove(&pid);
        });
    }

    /// Lets every connection carry bytes again.
    pub fn heal_all(&self) {
        self.state.cut.send_modify(BTreeSet::clear);
    }

    /// What this relay has carried so far.
    pub fn traffic(&self) -> Traffic {
        let c = &self.state.counts;
        Traffic {
            connections: c.connections.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut conns = tokio::task::JoinSet::new();
    while let Ok((client, peer)) = listener.accept().await {
        let upstream = *state
            .upstream
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let hold = state.hold.load(Ordering::SeqCst);
        let Some(up) = upstream else { continue };
        // Attributed before anything else happens on the connection, while
        // the client's socket certainly exists.
        let pid = socket_owner(peer, listener.local_addr().ok());
        conns.spawn(relay(client, up, hold, pid, Arc::clone(&state)));
    }
}

/// Forwards one connection; with `hold`, the daemon's bytes are read and
/// kept, never passed on. While `pid` is cut, neither direction moves.
async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    hold: bool,
    pid: Option<u32>,
    state: Arc<State>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    state.counts.connections.fetch_add(1, Ordering::Relaxed);
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let ins = {
        let state = Arc::clone(&state);
        let mut requests = RequestCounter::new();
        move |b: &[u8]| {
            let c = &state.counts;
            c.bytes_in.fetch_add(b.len() as u64, Ordering::Relaxed);
            c.requests.fetch_add(requests.feed(b), Ordering::Relaxed);
        }
    };
    let outs = {
        let state = Arc::clone(&state);
        move |b: &[u8]| {
            let c = &state.counts;
            c.bytes_out.fetch_add(b.len() as u64, Ordering::Relaxed);
        }
    };
    let cut = state.cut.subscribe();
    let requests = tokio::spawn(pump(cr, sw, pid, cut.clone(), false, ins));
    pump(sr, cw, pid, cut, hold, outs).await;
    requests.abort();
}

/// Copies `from` to `to` until either ends, pausing while `pid` is cut; with
/// `discard`, what is read is dropped instead. `count` sees every piece read.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    pid: Option<u32>,
    mut cut: watch::Receiver<BTreeSet<u32>>,
    discard: bool,
    mut count: impl FnMut(&[u8]),
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 64 << 10];
    loop {
        if wait_uncut(&mut cut, pid).await.is_err() {
            break;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        count(&buf[..n]);
        // Bytes read just as the cut began wait for the heal, like bytes
        // already in flight when a link drops.
        if wait_uncut(&mut cut, pid).await.is_err() {
            break;
        }
        if !discard && to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Returns once `pid` is not cut; an error when the relay is gone.
async fn wait_uncut(
    cut: &mut watch::Receiver<BTreeSet<u32>>,
    pid: Option<u32>,
) -> Result<(), watch::error::RecvError> {
    let Some(pid) = pid else { return Ok(()) };
    cut.wait_for(|s| !s.contains(&pid)).await.map(|_| ())
}

/// The process that owns the loopback socket `peer` connected to `local`:
/// its inode from `/proc/net/tcp`, then the process holding that inode open.
fn socket_owner(peer: SocketAddr, local: Option<SocketAddr>) -> Option<u32> {
    let (SocketAddr::V4(peer), Some(SocketAddr::V4(local))) = (peer, local) else {
        return None;
    };
    let hex = |a: std::net::SocketAddrV4| {
        format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(a.ip().octets()),
            a.port()
        )
    };
    let (want_local, want_remote) = (hex(peer), hex(local));
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1] == want_local && f[2] == want_remote).then(|| f[9].to_owned())
    })?;
    let link = format!("socket:[{inode}]");
    for proc_entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc_entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == link.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HEADERS frames are found however the stream is split, and DATA
    /// frames (even ones whose payload looks like a frame header) are not.
    #[test]
    fn request_counter_counts_headers_frames() {
        let frame = |kind: u8, payload: &[u8]| {
            let len = (payload.len() as u32).to_be_bytes();
            let mut f = vec![len[1], len[2], len[3], kind, 0, 0, 0, 0, 1];
            f.extend_from_slice(payload);
            f
        };
        let mut stream = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        stream.extend(frame(4, &[0; 6])); // SETTINGS
        stream.extend(frame(1, &[7; 20]));
        stream.extend(frame(0, &frame(1, &[1; 3]))); // DATA
        stream.extend(frame(1, &[]));
        for piece in [1, 2, 5, 9, 4096] {
            let mut c = RequestCounter::new();
            let found: u64 = stream.chunks(piece).map(|p| c.feed(p)).sum();
            assert_eq!(found, 2, "pieces of {piece} bytes");
        }
    }

    /// A connection from this process is attributed to it, and a cut stalls
    /// it both ways until healed, without losing a byte.
    #[tokio::test]
    async fn cut_stalls_and_heal_resumes() -> Result<()> {
        let echo = TcpListener::bind("127.0.0.1:0").await?;
        let echo_addr = echo.local_addr()?;
        tokio::spawn(async move {
            while let Ok((mut s, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let relay = Relay::start().await?;
        relay.forward_to(echo_addr);
        let mut c = TcpStream::connect(relay.addr).await?;
        let mut got = [0u8; 5];
        c.write_all(b"hello").await?;
        c.read_exact(&mut got).await?;
        assert_eq!(&got, b"hello");

        relay.cut_from(std::process::id());
        c.write_all(b"again").await?;
        let stalled = tokio::time::timeout(
            std::time::Duration::from_millis(300),
            c.read_exact(&mut got),
        )
        .await;
        assert!(stalled.is_err(), "bytes crossed a cut");
        relay.heal_from(std::process::id());
        c.read_exact(&mut got).await?;
        assert_eq!(&got, b"again");

        // Another process being cut leaves this one alone.
        relay.cut_from(1);
        c.write_all(b"third").await?;
        c.read_exact(&mut got).await?;
        assert_eq!(&got, b"third");
        Ok(())
    }
}
