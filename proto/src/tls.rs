//! TLS for both daemons and `keelctl`, from PEM files (`--tls-cert`,
//! `--tls-key`, `--tls-ca`), with rustls and the ring provider (no system
//! OpenSSL, no system roots: servers are verified against `--tls-ca` only).
//!
//! - A server serves TLS when given a certificate and key; with `--tls-ca`
//!   it also requires a client certificate signed by that CA (mTLS).
//! - A client verifies `https://` servers against `--tls-ca` and presents its
//!   own certificate and key when given.
//! - Once any TLS flag is set, TLS cannot be skipped: [`url`] reads a bare
//!   `host:port` as `https://host:port` and refuses `http://`, and
//!   [`endpoint`] refuses to dial `http://` at all, so no token is ever
//!   sent in the clear by a process set up for TLS.
//! - [`incoming`] is the servers' accept loop: it handshakes off the accept
//!   path, under a deadline, and says in the log when a client spoke
//!   plaintext to a TLS port.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::RootCertStore;
/// rustls' server configuration, as [`TlsFiles::server`] builds it.
pub use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tracing::{info, warn};

use crate::connections::{Cap, Conn, Counted, goodbye_frames};

/// How long a TLS handshake may take, on either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a client that should have used TLS is told to do.
pub const PLAINTEXT_HINT: &str =
    "the server probably speaks TLS: use an https:// address and --tls-ca";

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Only one of `--tls-cert` and `--tls-key` was given.
    #[error("--tls-cert and --tls-key go together ({given} alone was given)")]
    Half {
        /// The flag that was given.
        given: &'static str,
    },
    /// A file could not be read.
    #[error("{flag} {path}: {source}")]
    Read {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A file holds no usable PEM item.
    #[error("{flag} {path}: {what}")]
    Pem {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// rustls refused the combination.
    #[error("TLS set-up: {0}")]
    Rustls(String),
    /// An `https://` address with no CA to verify it against.
    #[error("{url}: an https:// address needs --tls-ca (Keel trusts no system roots)")]
    NoCa {
        /// The address.
        url: String,
    },
    /// An `http://` address while this process is set up for TLS.
    #[error(
        "{url}: plaintext http:// is refused once TLS is set up (--tls-*): use https:// or a bare host:port"
    )]
    Plaintext {
        /// The address.
        url: String,
    },
    /// An endpoint tonic refuses.
    #[error("{url}: {reason}")]
    Endpoint {
        /// The address.
        url: String,
        /// Why tonic refused it.
        reason: String,
    },
}

/// The three TLS flags of a binary.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// `--tls-cert`: this process's certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// `--tls-key`: its private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// `--tls-ca`: the CA that signs the cluster's certificates (PEM).
    pub ca: Option<PathBuf>,
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.to_owned(),
        source,
    })
}

fn certs(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(flag, path)?;
    let pem_err = |what: String| TlsError::Pem {
        flag,
        path: path.to_owned(),
        what,
    };
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(pem_err("no CERTIFICATE in the file".into()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read("--tls-key", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        flag: "--tls-key",
        path: path.to_owned(),
        what: format!("no usable private key: {e}"),
    })
}

impl TlsFiles {
    /// The certificate and key, when both are given.
    fn pair(&self) -> Result<Option<(&Path, &Path)>, TlsError> {
        match (&self.cert, &self.key) {
            (Some(c), Some(k)) => Ok(Some((c, k))),
            (None, None) => Ok(None),
            (Some(_), None) => Err(TlsError::Half {
                given: "--tls-cert",
            }),
            (None, Some(_)) => Err(TlsError::Half { given: "--tls-key" }),
        }
    }

    /// The server side: `None` (plaintext) without a certificate and key;
    /// with `--tls-ca`, clients must present a certificate it signed.
    pub fn server(&self) -> Result<Option<Arc<ServerConfig>>, TlsError> {
        let Some((cert, key_path)) = self.pair()? else {
            return Ok(None);
        };
        let chain = certs("--tls-cert", cert)?;
        let key = key(key_path)?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let rustls = |e: tokio_rustls::rustls::Error| TlsError::Rustls(e.to_string());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(rustls)?;
        let builder = match &self.ca {
            Some(ca) => {
                let roots = Arc::new(roots(ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| TlsError::Rustls(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).map_err(rustls)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Some(Arc::new(config)))
    }

    /// The server side of `--http-listen`: `None` (plaintext) without a
    /// certificate and key; HTTP/1.1 with the same certificate, and no
    /// client certificate asked for (see [`crate::https`]).
    pub fn http_server(&self) -> Result<Option<Arc<ServerConfig>>, TlsError> {
        let Some((cert, key_path)) = self.pair()? else {
            return Ok(None);
        };
        let chain = certs("--tls-cert", cert)?;
        let key = key(key_path)?;
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let rustls = |e: tokio_rustls::rustls::Error| TlsError::Rustls(e.to_string());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(rustls)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(rustls)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Arc::new(config)))
    }

    /// The client side: `None` when no TLS flag is given (then `https://`
    /// addresses are refused); otherwise the CA to verify servers against and
    /// the identity to present. The files are read and checked now.
    pub fn client(&self) -> Result<Option<ClientTlsConfig>, TlsError> {
        let pair = self.pair()?;
        if pair.is_none() && self.ca.is_none() {
            return Ok(None);
        }
        let mut config = ClientTlsConfig::new().timeout(HANDSHAKE_TIMEOUT);
        if let Some(ca) = &self.ca {
            certs("--tls-ca", ca)?;
            config = config.ca_certificate(Certificate::from_pem(read("--tls-ca", ca)?));
        }
        if let Some((cert, key_path)) = pair {
            certs("--tls-cert", cert)?;
            key(key_path)?;
            let identity =
                Identity::from_pem(read("--tls-cert", cert)?, read("--tls-key", key_path)?);
            config = config.identity(identity);
        }
        Ok(Some(config))
    }

    /// Whether any flag is set (for start-up logs).
    pub fn any(&self) -> bool {
        self.cert.is_some() || self.key.is_some() || self.ca.is_some()
    }
}

fn roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for c in certs("--tls-ca", ca)? {
        store.add(c).map_err(|e| TlsError::Pem {
            flag: "--tls-ca",
            path: ca.to_owned(),
            what: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(store)
}

/// Why an address is not usable under the scheme rule of [`url`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Nothing was given.
    #[error("no address given (expected HOST:PORT)")]
    Empty,
    /// A scheme other than `http` and `https`.
    #[error(
        "{address:?}: unsupported scheme {scheme:?} (use https://, http:// or a bare host:port)"
    )]
    Scheme {
        /// The address.
        address: String,
        /// Its scheme.
        scheme: String,
    },
    /// `http://` while TLS is set up.
    #[error(
        "{address:?}: plaintext http:// is refused once TLS is set up (--tls-*): use https:// or a bare host:port"
    )]
    Plaintext {
        /// The address.
        address: String,
    },
}

/// `address` as `scheme://host:port` (no trailing `/`), by the one rule all
/// binaries share: with `tls` (any TLS flag set), a bare `host:port` means
/// `https://host:port` and `http://` is refused; without, a bare address
/// means `http://`. Only the scheme is checked here; the rest is left to the
/// URI parser of the caller.
pub fn url(address: &str, tls: bool) -> Result<String, AddressError> {
    let s = address.trim();
    let (scheme, rest) = match s.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None if tls => ("https".to_owned(), s),
        None => ("http".to_owned(), s),
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return Err(AddressError::Empty);
    }
    match scheme.as_str() {
        "https" => {}
        "http" if !tls => {}
        "http" => {
            return Err(AddressError::Plaintext {
                address: s.to_owned(),
            });
        }
        _ => {
            return Err(AddressError::Scheme {
                address: s.to_owned(),
                scheme,
            });
        }
    }
    Ok(format!("{scheme}://{rest}"))
}

/// Applies the client TLS settings to `endpoint`: `https://` needs them;
/// `http://` is dialled only by a process with no TLS set up at all (the
/// last check before anything is sent, whatever the address came from).
pub fn endpoint(endpoint: Endpoint, tls: Option<&ClientTlsConfig>) -> Result<Endpoint, TlsError> {
    let url = endpoint.uri().to_string();
    if endpoint.uri().scheme_str() != Some("https") {
        if tls.is_some() {
            return Err(TlsError::Plaintext { url });
        }
        return Ok(endpoint);
    }
    let Some(tls) = tls else {
        return Err(TlsError::NoCa { url });
    };
    endpoint
        .tls_config(tls.clone())
        .map_err(|e| TlsError::Endpoint {
            url,
            reason: e.to_string(),
        })
}

/// Connections queued between the accept loop and the gRPC server.
const BACKLOG: usize = 64;

/// Pause after an accept error (e.g. out of file descriptors) before the next try.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts connections on `listener` (with `TCP_NODELAY` and TCP keep-alive) until the returned
/// stream is dropped; with `tls`, each is handshaken in its own task under
/// [`HANDSHAKE_TIMEOUT`], and failures are logged, never fatal. Without, a
/// connection must send its first bytes within [`HANDSHAKE_TIMEOUT`] (a
/// gRPC client sends its preface at once): one that never speaks would
/// otherwise hold a slot under the connection cap for good.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
) -> ReceiverStream<io::Result<Counted>> {
    incoming_capped(listener, tls, crate::serving::MAX_CONNECTIONS)
}

/// [`incoming`] with at most `max_connections` open at once (see
/// [`crate::connections`]).
pub fn incoming_capped(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    max_connections: usize,
) -> ReceiverStream<io::Result<Counted>> {
    let cap = Cap::new(max_connections);
    let (tx, rx) = mpsc::channel(BACKLOG);
    let acceptor = tls.map(TlsAcceptor::from);
    if acceptor.is_some() {
        info!("serving TLS");
    }
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                () = tx.closed() => return,
                a = listener.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            let Some((stream, slot)) = cap.admit(stream, peer) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let keepalive = socket2::TcpKeepalive::new().with_time(crate::serving::TCP_KEEPALIVE);
            let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
            match &acceptor {
                None => {
                    tokio::spawn(first_bytes(stream, peer, slot, tx.clone()));
                }
                Some(a) => {
                    tokio::spawn(handshake(a.clone(), stream, peer, slot, tx.clone()));
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Hands over a plaintext connection once it has sent something; closes it
/// when it sends nothing within [`HANDSHAKE_TIMEOUT`].
async fn first_bytes(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    slot: OwnedSemaphorePermit,
    tx: mpsc::Sender<io::Result<Counted>>,
) {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(n)) if n > 0 => {
            let _ = tx.send(Ok(Counted::new(Conn::Plain(stream), slot))).await;
        }
        // Closed, or failed, before a byte: nothing to serve.
        Ok(_) => {}
        Err(_) => info!(%peer, timeout = ?HANDSHAKE_TIMEOUT, "connection closed: it sent nothing"),
    }
}

/// The first bytes of a plaintext HTTP/2 connection (its preface).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2";

async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: std::net::SocketAddr,
    slot: OwnedSemaphorePermit,
    tx: mpsc::Sender<io::Result<Counted>>,
) {
    let mut first = [0u8; 12];
    let peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await;
    if let Ok(Ok(n)) = peeked
        && n > 0
        && H2_PREFACE.starts_with(&first[..n.min(H2_PREFACE.len())])
    {
        warn!(%peer, "plaintext connection to the TLS port refused: the client must use an https:// address and --tls-ca");
        refuse_plaintext(stream).await;
        return;
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let _ = tx
                .send(Ok(Counted::new(Conn::Tls(Box::new(tls)), slot)))
                .await;
        }
        Ok(Err(e)) => warn!(%peer, error = %e, "TLS handshake failed"),
        Err(_) => warn!(%peer, timeout = ?HANDSHAKE_TIMEOUT, "TLS handshake timed out"),
    }
}

/// HTTP/2 `INADEQUATE_SECURITY`, the error code of the goodbye to a
/// plaintext client.
const INADEQUATE_SECURITY: u32 = 0xc;

/// Tells a plaintext HTTP/2 client why it is refused, in words its error
/// message shows: a GOAWAY whose debug data is [`PLAINTEXT_HINT`].
async fn refuse_plaintext(stream: TcpStream) {
    goodbye_frames(stream, INADEQUATE_SECURITY, PLAINTEXT_HINT).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_address_follows_tls() {
        assert_eq!(url("h:1", false).as_deref(), Ok("http://h:1"));
        assert_eq!(url(" h:1/ ", true).as_deref(), Ok("https://h:1"));
        assert_eq!(url("https://h:1", false).as_deref(), Ok("https://h:1"));
        assert_eq!(url("http://h:1", false).as_deref(), Ok("http://h:1"));
    }

    #[test]
    fn plaintext_is_refused_once_tls_is_set_up() {
        assert!(matches!(
            url("http://h:1", true),
            Err(AddressError::Plaintext { .. })
        ));
        assert!(matches!(
            url("HTTP://h:1", true),
            Err(AddressError::Plaintext { .. })
        ));
        assert!(matches!(
            url("ftp://h", false),
            Err(AddressError::Scheme { .. })
        ));
        assert_eq!(url("https://", true), Err(AddressError::Empty));
        assert_eq!(url("http://", false), Err(AddressError::Empty));
        assert_eq!(url("  ", false), Err(AddressError::Empty));
    }

    #[test]
    fn no_endpoint_dials_http_with_tls_set_up() {
        let tls = ClientTlsConfig::new();
        let http = Endpoint::from_static("http://127.0.0.1:1");
        let err = endpoint(http.clone(), Some(&tls)).expect_err("refused");
        assert!(err.to_string().contains("plaintext"), "{err}");
        assert!(endpoint(http, None).is_ok());
    }
}
