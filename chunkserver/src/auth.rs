//! Credentials: the tokens checked on every incoming keel.v1 call (by the check
//! shared with the master, [`keel_proto::auth`]), the cluster token attached to
//! every outgoing one, and TLS both ways. Health and reflection are not
//! wrapped: they expose no data.

use std::sync::Arc;

use keel_proto::auth::Tokens;
use keel_proto::tls::ServerConfig;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::ClientTlsConfig;
use tonic::{Request, Status};

use crate::config::Config;
use crate::error::Error;

/// What this server enforces on its own `keel.v1.ChunkServer`, and presents
/// to the master and peers, read once from the flags and files.
pub struct Secured {
    /// The tokens every incoming call is checked against.
    pub tokens: Tokens,
    /// TLS of the gRPC listener; `None` serves plaintext.
    pub server_tls: Option<Arc<ServerConfig>>,
    /// The cluster token and TLS of outgoing calls.
    pub outgoing: AttachToken,
    /// The check of `WriteChunk` callers (needs `--id`, so built later).
    pub cluster_token: Option<String>,
    /// TLS of `--http-listen` (`/metrics`); `None` serves plaintext.
    pub http_tls: Option<Arc<ServerConfig>>,
}

impl Secured {
    /// Reads the token and TLS flags and files; an unusable one is a start-up error.
    pub fn from_config(config: &Config) -> Result<Self, Error> {
        let s = &config.security;
        let bad = |e: &dyn std::fmt::Display| Error::Config(e.to_string());
        let cluster = s
            .cluster_token(config.auth_token.as_deref())
            .map_err(|e| bad(&e))?;
        let tls = s.tls();
        Ok(Secured {
            tokens: s.tokens(cluster.as_deref()).map_err(|e| bad(&e))?,
            server_tls: tls.server().map_err(|e| bad(&e))?,
            http_tls: tls.http_server().map_err(|e| bad(&e))?,
            outgoing: AttachToken::new(cluster.as_deref())?
                .with_tls(tls.client().map_err(|e| bad(&e))?),
            cluster_token: cluster,
        })
    }
}

/// Client side: attaches the token to every call, and carries the TLS
/// settings of outgoing connections (what this server presents to others).
#[derive(Clone, Debug)]
pub struct AttachToken {
    /// `Bearer <token>`, or `None` to attach nothing.
    value: Option<MetadataValue<Ascii>>,
    /// TLS towards `https://` masters and peers; `None` refuses `https://`.
    tls: Option<ClientTlsConfig>,
}

impl AttachToken {
    /// Attaches `token` when set; refuses a token that cannot be sent as a header.
    pub fn new(token: Option<&str>) -> Result<Self, Error> {
        let value = token
            .map(|t| {
                format!("Bearer {t}").parse().map_err(|_| {
                    Error::Config("--auth-token must be printable ASCII without newlines".into())
                })
            })
            .transpose()?;
        Ok(AttachToken { value, tls: None })
    }

    /// The same, with TLS settings for `https://` addresses.
    pub fn with_tls(mut self, tls: Option<ClientTlsConfig>) -> Self {
        self.tls = tls;
        self
    }

    /// The TLS settings of outgoing connections.
    pub fn tls(&self) -> Option<&ClientTlsConfig> {
        self.tls.as_ref()
    }
}

impl Interceptor for AttachToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.value {
            req.metadata_mut().insert("authorization", v.clone());
        }
        // A copy's read from its source names the move it serves.
        keel_proto::move_id::attach(&mut req);
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_attached() {
        let mut attach = AttachToken::new(Some("s3cret")).expect("token");
        let req = attach.call(Request::new(())).expect("attach");
        assert_eq!(
            req.metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer s3cret")
        );
        let req = AttachToken::new(None)
            .expect("none")
            .call(Request::new(()))
            .expect("attach");
        assert!(req.metadata().get("authorization").is_none());
        assert!(AttachToken::new(Some("bad\nvalue")).is_err());
    }
}
