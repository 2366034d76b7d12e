//! The connections of the servers' accept loop ([`crate::tls::incoming`]):
//! each one, plaintext or TLS ([`Conn`]), and the cap on how many are open.
//!
//! Every accepted connection holds a slot until it closes. Past the cap a
//! new connection is told why in an HTTP/2 GOAWAY (`ENHANCE_YOUR_CALM`, with
//! a sentence as its debug data) and closed, so a flood of connections costs
//! a bounded number of file descriptors, and the connections already served
//! keep working.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tracing::warn;

/// Refused connections being told why at once; beyond this they are simply
/// closed (each goodbye holds its socket for up to [`GOODBYE_GRACE`]).
const GOODBYES: usize = 32;

/// How long a refused client gets to read its goodbye.
pub const GOODBYE_GRACE: Duration = Duration::from_secs(1);

/// HTTP/2 `ENHANCE_YOUR_CALM`: the peer is generating excessive load.
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The slots of one server's connections.
#[derive(Debug, Clone)]
pub struct Cap {
    /// One permit per open connection.
    open: Arc<Semaphore>,
    /// The cap, for messages.
    limit: usize,
    /// Goodbyes being sent.
    goodbyes: Arc<Semaphore>,
}

impl Cap {
    /// At most `limit` connections open at once (clamped to what a
    /// semaphore can count).
    pub fn new(limit: usize) -> Self {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        Cap {
            open: Arc::new(Semaphore::new(limit)),
            limit,
            goodbyes: Arc::new(Semaphore::new(GOODBYES)),
        }
    }

    /// A slot for a new connection, or `None` after refusing it (in a task
    /// of its own, so the accept loop goes on).
    pub fn admit(
        &self,
        stream: TcpStream,
        peer: std::net::SocketAddr,
    ) -> Option<(TcpStream, OwnedSemaphorePermit)> {
        if let Ok(slot) = Arc::clone(&self.open).try_acquire_owned() {
            return Some((stream, slot));
        }
        warn!(%peer, limit = self.limit, "connection refused: the server has as many connections open as it allows");
        if let Ok(goodbye) = Arc::clone(&self.goodbyes).try_acquire_owned() {
            let text = format!(
                "the server has {} connections open, its limit; retry later",
                self.limit
            );
            tokio::spawn(async move {
                goodbye_frames(stream, ENHANCE_YOUR_CALM, &text).await;
                drop(goodbye);
            });
        }
        None
    }
}

/// Sends an empty SETTINGS frame, then a GOAWAY with `code` and `text` as
/// its debug data (which clients show in their error), and reads what the
/// client sends until it hangs up or [`GOODBYE_GRACE`] passes, so the close
/// does not reset the goodbye away.
pub async fn goodbye_frames(mut stream: TcpStream, code: u32, text: &str) {
    let hint = text.as_bytes();
    let len = 8 + hint.len();
    let mut frames = vec![0, 0, 0, 0x4, 0, 0, 0, 0, 0];
    frames.extend_from_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, 0x7, 0]);
    frames.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    frames.extend_from_slice(&code.to_be_bytes());
    frames.extend_from_slice(hint);
    let _ = tokio::time::timeout(GOODBYE_GRACE, async {
        stream.write_all(&frames).await?;
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
}

/// One accepted connection, plaintext or TLS.
#[derive(Debug)]
pub enum Conn {
    /// A plaintext TCP connection (no `--tls-cert`).
    Plain(TcpStream),
    /// A TLS connection whose handshake is done.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    /// The address of the other end.
    pub fn peer(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            Conn::Plain(s) => s.peer_addr(),
            Conn::Tls(s) => s.get_ref().0.peer_addr(),
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match self {
            Conn::Plain(s) => s.connect_info(),
            Conn::Tls(s) => s.get_ref().0.connect_info(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, b),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, b),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, b),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, b),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An accepted connection holding its slot until it is dropped.
#[derive(Debug)]
pub struct Counted {
    /// The connection.
    conn: Conn,
    /// Its slot under the cap.
    _slot: OwnedSemaphorePermit,
}

impl Counted {
    /// `conn`, counted by `slot`.
    pub fn new(conn: Conn, slot: OwnedSemaphorePermit) -> Self {
        Counted { conn, _slot: slot }
    }

    /// The remote address, for logs and per-source limits.
    pub fn peer(&self) -> io::Result<std::net::SocketAddr> {
        self.conn.peer()
    }
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.conn.connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        b: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().conn).poll_write_vectored(cx, b)
    }

    fn is_write_vectored(&self) -> bool {
        self.conn.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_shutdown(cx)
    }
}
