//! Bearer tokens and roles, shared by both daemons so there is one check.
//!
//! Two credentials: the cluster token (`--auth-token`) admits every call; the
//! client token (`--client-token`) admits only the data path listed in
//! [`CLIENT_METHODS`]. A method not listed there, including any added later,
//! needs the cluster token. Tokens are compared in constant time.
//!
//! [`Guard`] wraps one generated `keel.v1` service and puts the admitted
//! [`Role`] into the request's extensions (none on an open service); health and reflection are not
//! wrapped (they expose no data) and stay open.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::serving::Answer;
use subtle::ConstantTimeEq;
use tonic::Status;
use tonic::body::Body;
use tonic::server::NamedService;
use tower_service::Service;

/// Calls a client token may make: the data path and read-only views.
/// Everything else (heartbeats, moves, deletes, balancer control, draining,
/// and any method not named here) needs the cluster token.
pub const CLIENT_METHODS: [&str; 10] = [
    "/keel.v1.Master/AllocateChunk",
    "/keel.v1.Master/LocateChunk",
    "/keel.v1.Master/ListServers",
    "/keel.v1.Master/RebalanceCheck",
    "/keel.v1.Master/RebalanceStatus",
    "/keel.v1.Master/ReportCorruption",
    "/keel.v1.Master/ExplainChunk",
    "/keel.v1.ChunkServer/WriteChunk",
    "/keel.v1.ChunkServer/ReadChunk",
    "/keel.v1.ChunkServer/StatChunk",
];

/// Whether a client token may call the gRPC method at `path`
/// (`/package.Service/Method`).
pub fn client_may_call(path: &str) -> bool {
    CLIENT_METHODS.contains(&path)
}

/// Why a secret could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Both the flag and its file form were given.
    #[error("{flag} and {file_flag} both given; use one")]
    Both {
        /// The flag, e.g. `--auth-token`.
        flag: &'static str,
        /// Its file form, e.g. `--auth-token-file`.
        file_flag: &'static str,
    },
    /// The file could not be read.
    #[error("{file_flag} {path}: {source}")]
    Read {
        /// The file flag, e.g. `--auth-token-file`.
        file_flag: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The secret is empty (an empty file, or only a newline).
    #[error("{flag}{from}: the secret is empty")]
    Empty {
        /// The flag, e.g. `--auth-token`.
        flag: &'static str,
        /// ` (from FILE)` when it came from a file, else empty.
        from: String,
    },
    /// The secret cannot travel as an HTTP/2 header value.
    #[error("{flag}{from}: the secret must be printable ASCII without spaces or line breaks")]
    NotPrintable {
        /// The flag, e.g. `--auth-token`.
        flag: &'static str,
        /// ` (from FILE)` when it came from a file, else empty.
        from: String,
    },
    /// A client token without a cluster token would leave every other call open.
    #[error("--client-token needs --auth-token (the cluster's own token) as well")]
    ClientWithoutCluster,
}

/// The secret given as `flag` directly or in the file named by `file_flag`:
/// a file's trailing line break is dropped; an empty or unprintable secret is
/// refused.
pub fn secret(
    (flag, file_flag): (&'static str, &'static str),
    value: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<String>, SecretError> {
    let (raw, from) = match (value, file) {
        (Some(_), Some(_)) => return Err(SecretError::Both { flag, file_flag }),
        (None, None) => return Ok(None),
        (Some(v), None) => (v.to_owned(), String::new()),
        (None, Some(p)) => {
            let text = std::fs::read_to_string(p).map_err(|source| SecretError::Read {
                file_flag,
                path: p.display().to_string(),
                source,
            })?;
            (text, format!(" (from {file_flag} {})", p.display()))
        }
    };
    let token = raw.trim_end_matches(['\n', '\r']);
    if token.is_empty() {
        return Err(SecretError::Empty { flag, from });
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(SecretError::NotPrintable { flag, from });
    }
    Ok(Some(token.to_owned()))
}

/// Who a request's token says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The cluster token: every call.
    Cluster,
    /// The client token: [`CLIENT_METHODS`] only.
    Client,
}

/// The expected tokens of one daemon.
#[derive(Clone, Default)]
pub struct Tokens {
    /// `Bearer <--auth-token>`; `None` leaves the service open.
    cluster: Option<Arc<[u8]>>,
    /// `Bearer <--client-token>`.
    client: Option<Arc<[u8]>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("cluster", &self.cluster.is_some())
            .field("client", &self.client.is_some())
            .finish()
    }
}

fn bearer(token: &str) -> Arc<[u8]> {
    format!("Bearer {token}").into_bytes().into()
}

impl Tokens {
    /// Expects `cluster` (everything) and `client` (data calls); with neither
    /// the service is open. A client token alone is refused.
    pub fn new(cluster: Option<&str>, client: Option<&str>) -> Result<Self, SecretError> {
        if cluster.is_none() && client.is_some() {
            return Err(SecretError::ClientWithoutCluster);
        }
        Ok(Tokens {
            cluster: cluster.map(bearer),
            client: client.map(bearer),
        })
    }

    /// Whether any token is required.
    pub fn enabled(&self) -> bool {
        self.cluster.is_some()
    }

    /// The role the `authorization` header value proves. Both tokens are
    /// always compared, each in constant time.
    pub fn role(&self, header: &[u8]) -> Option<Role> {
        let eq = |t: &Option<Arc<[u8]>>| t.as_ref().is_some_and(|t| bool::from(t.ct_eq(header)));
        let (cluster, client) = (eq(&self.cluster), eq(&self.client));
        match (cluster, client) {
            (true, _) => Some(Role::Cluster),
            (false, true) => Some(Role::Client),
            (false, false) => None,
        }
    }

    /// Admits or refuses a call of `path` carrying `header`.
    pub fn admit(&self, path: &str, header: Option<&[u8]>) -> Result<(), Status> {
        self.admit_as(path, header).map(|_| ())
    }

    /// The same, returning the role admitted (`None` on an open service,
    /// where every caller may do everything).
    pub fn admit_as(&self, path: &str, header: Option<&[u8]>) -> Result<Option<Role>, Status> {
        if !self.enabled() {
            return Ok(None);
        }
        let Some(header) = header else {
            return Err(Status::unauthenticated(
                "missing `authorization: Bearer <token>` metadata (this server requires --auth-token or --client-token)",
            ));
        };
        match self.role(header) {
            Some(Role::Cluster) => Ok(Some(Role::Cluster)),
            Some(Role::Client) if client_may_call(path) => Ok(Some(Role::Client)),
            Some(Role::Client) => Err(Status::permission_denied(format!(
                "{path} needs the cluster token (--auth-token); a client token admits only data calls"
            ))),
            None => Err(Status::unauthenticated("wrong auth token")),
        }
    }
}

/// A `keel.v1` service behind the token check.
#[derive(Debug, Clone)]
pub struct Guard<S> {
    /// The generated server.
    inner: S,
    /// What to expect.
    tokens: Tokens,
}

impl<S> Guard<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, tokens: Tokens) -> Self {
        Guard { inner, tokens }
    }
}

impl<S: NamedService> NamedService for Guard<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Guard<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Answer {
        let header = req.headers().get(http::header::AUTHORIZATION);
        match self
            .tokens
            .admit_as(req.uri().path(), header.map(http::HeaderValue::as_bytes))
        {
            Ok(role) => {
                // Handlers read it to honour what only the cluster may ask
                // (e.g. a migration read).
                if let Some(role) = role {
                    req.extensions_mut().insert(role);
                }
                Box::pin(self.inner.call(req))
            }
            Err(status) => Box::pin(std::future::ready(Ok(status.into_http()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    const READ: &str = "/keel.v1.ChunkServer/ReadChunk";
    const DELETE: &str = "/keel.v1.ChunkServer/DeleteChunk";

    fn code(t: &Tokens, path: &str, h: Option<&str>) -> Option<Code> {
        t.admit(path, h.map(str::as_bytes)).err().map(|s| s.code())
    }

    #[test]
    fn roles_follow_the_table() {
        let t = Tokens::new(Some("c1"), Some("d1")).expect("tokens");
        assert_eq!(code(&t, DELETE, Some("Bearer c1")), None);
        assert_eq!(code(&t, READ, Some("Bearer d1")), None);
        assert_eq!(
            code(&t, DELETE, Some("Bearer d1")),
            Some(Code::PermissionDenied)
        );
        assert_eq!(
            code(&t, "/keel.v1.Master/Future", Some("Bearer d1")),
            Some(Code::PermissionDenied)
        );
        for bad in [None, Some("Bearer c"), Some("c1"), Some("Bearer c1 ")] {
            assert_eq!(code(&t, READ, bad), Some(Code::Unauthenticated), "{bad:?}");
        }
        let open = Tokens::new(None, None).expect("open");
        assert_eq!(code(&open, DELETE, None), None);
        assert!(Tokens::new(None, Some("d1")).is_err());
    }

    const AUTH: (&str, &str) = ("--auth-token", "--auth-token-file");

    #[test]
    fn secrets_come_from_flags_or_files() {
        let dir = std::env::temp_dir().join(format!("keel-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("t");
        std::fs::write(&f, "s3cret\r\n").expect("write");
        assert_eq!(
            secret(AUTH, None, Some(&f)).expect("read"),
            Some("s3cret".into())
        );
        std::fs::write(&f, "\n").expect("write");
        let e = secret(AUTH, None, Some(&f)).expect_err("empty");
        assert!(e.to_string().contains("empty"), "{e}");
        assert!(secret(AUTH, Some("a"), Some(&f)).is_err());
        assert!(secret(AUTH, Some("a b"), None).is_err());
        assert_eq!(secret(AUTH, None, None).expect("none"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
