//! HTTPS for the daemons' `--http-listen` (metrics, the dashboard): the
//! node's certificate, served through the same handshake loop as gRPC
//! ([`crate::tls::incoming`]) but speaking HTTP/1.1, and asking no client
//! certificate (browsers and scrapers rarely carry one; what needs a
//! credential there asks for a token).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::connections::Counted;
use crate::tls::ServerConfig;

/// An axum listener that hands over connections whose TLS handshake is done.
pub struct HttpsListener {
    conns: ReceiverStream<io::Result<Counted>>,
    local: SocketAddr,
}

impl HttpsListener {
    /// Serves TLS with `config` (see [`crate::tls::TlsFiles::http_server`])
    /// on `listener`.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        Ok(HttpsListener {
            conns: crate::tls::incoming(listener, Some(config)),
            local,
        })
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Counted, SocketAddr) {
        loop {
            match self.conns.next().await {
                Some(Ok(conn)) => {
                    // The address is only for logs and per-source limits.
                    let peer = conn.peer().unwrap_or(self.local);
                    return (conn, peer);
                }
                // Failed handshakes are logged by the accept loop.
                Some(Err(_)) => {}
                // The accept loop ended: no connection comes any more.
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}
