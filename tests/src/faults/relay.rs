//! A TCP relay in front of a daemon, so a test can lose replies on purpose.
//!
//! A chunk server started with `--advertise http://<relay>` is reached by
//! the master and its peers through the relay. While [`Relay::hold_replies`]
//! is on, connections accepted from then on forward requests as usual but
//! keep every byte the daemon answers: the request is carried out, its reply
//! never arrives. When the daemon's side closes (it was killed), the client's
//! side is closed too, as a real network would report it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Shared between the relay's handle and its tasks.
#[derive(Debug, Default)]
struct State {
    /// Where connections are forwarded; none until the daemon is bound.
    upstream: Mutex<Option<SocketAddr>>,
    /// Whether connections accepted now have their replies held back.
    hold: AtomicBool,
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
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Ok(Relay {
            addr,
            state,
            accept,
        })
    }

    /// `http://ADDR` of the relay, for `--advertise`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the daemon's real address.
    pub fn forward_to(&self, upstream: SocketAddr) {
        let mut u = self
            .state
            .upstream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *u = Some(upstream);
    }

    /// Holds back (or again passes) the replies on connections accepted from
    /// now on; connections already open keep their mode.
    pub fn hold_replies(&self, on: bool) {
        self.state.hold.store(on, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut conns = tokio::task::JoinSet::new();
    while let Ok((client, _)) = listener.accept().await {
        let upstream = *state
            .upstream
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let hold = state.hold.load(Ordering::SeqCst);
        if let Some(up) = upstream {
            conns.spawn(relay(client, up, hold));
        }
    }
}

/// Forwards one connection; with `hold`, the daemon's bytes are read and
/// kept, never passed on.
async fn relay(client: TcpStream, upstream: SocketAddr, hold: bool) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let requests = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    });
    if hold {
        let mut kept = Vec::new();
        let _ = sr.read_to_end(&mut kept).await;
    } else {
        let _ = tokio::io::copy(&mut sr, &mut cw).await;
    }
    let _ = cw.shutdown().await;
    requests.abort();
}
