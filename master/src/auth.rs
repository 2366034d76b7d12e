//! The master's credentials and TLS, resolved once at start-up: the cluster
//! token (`--auth-token` or its file), the client token, and the TLS files.
//! The check itself is [`keel_proto::auth`], shared with the chunk servers;
//! health and reflection are not wrapped (they expose no data) and stay open.

use std::sync::Arc;

use keel_proto::auth::{SecretError, Tokens};
use keel_proto::tls::ServerConfig;
use keel_proto::tls::TlsError;
use tonic::transport::ClientTlsConfig;

use crate::config::Config;

/// A secret or TLS file the master cannot use.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A token flag or file.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// A TLS flag or file.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// What the master enforces and presents.
#[derive(Debug, Clone)]
pub struct Secured {
    /// The cluster token, sent on calls to chunk servers.
    pub cluster_token: Option<String>,
    /// The tokens every `keel.v1.Master` call is checked against.
    pub tokens: Tokens,
    /// TLS of the gRPC listener; `None` serves plaintext.
    pub server_tls: Option<Arc<ServerConfig>>,
    /// TLS towards `https://` chunk servers.
    pub client_tls: Option<ClientTlsConfig>,
    /// TLS of the HTTP listener (dashboard, metrics); `None` serves plaintext.
    pub http_tls: Option<Arc<ServerConfig>>,
}

impl Secured {
    /// Reads the flags and files; an unusable one is a start-up error.
    pub fn from_config(config: &Config) -> Result<Self, SecurityError> {
        let s = &config.security;
        let tls = s.tls();
        let cluster_token = s.cluster_token(config.auth_token.as_deref())?;
        Ok(Secured {
            tokens: s.tokens(cluster_token.as_deref())?,
            cluster_token,
            server_tls: tls.server()?,
            client_tls: tls.client()?,
            http_tls: tls.http_server()?,
        })
    }
}
