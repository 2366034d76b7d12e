//! How the master reaches etcd safely: client TLS (`--etcd-tls-ca`,
//! `--etcd-tls-cert`, `--etcd-tls-key`) and etcd's own authentication
//! (`--etcd-user` with `--etcd-password-file`). Whoever can write the leader
//! key can point clients at any address, so a production etcd should have
//! both.
//!
//! - With any `--etcd-tls-*` flag, a bare `--etcd` endpoint means
//!   `https://` and `http://` is refused, as for every Keel address
//!   ([`keel_proto::tls::url`]).
//! - With a user, each call carries etcd's `token` metadata, from
//!   `Auth/Authenticate`. A token etcd no longer accepts (it expired, or
//!   etcd restarted) is dropped when a call fails `UNAUTHENTICATED`, and the
//!   next call authenticates again.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use clap::Args;
use keel_proto::tls::TlsFiles;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::ClientTlsConfig;

use super::EtcdError;

/// The etcd access flags of `keel-master`.
#[derive(Debug, Clone, Default, Args)]
pub struct EtcdAccessFlags {
    /// PEM CA that signs etcd's server certificates: talk TLS to etcd.
    #[arg(long, env = "KEEL_ETCD_TLS_CA")]
    pub etcd_tls_ca: Option<PathBuf>,

    /// PEM client certificate presented to etcd (with `--etcd-tls-key`).
    #[arg(long, env = "KEEL_ETCD_TLS_CERT")]
    pub etcd_tls_cert: Option<PathBuf>,

    /// PEM private key of `--etcd-tls-cert`.
    #[arg(long, env = "KEEL_ETCD_TLS_KEY")]
    pub etcd_tls_key: Option<PathBuf>,

    /// etcd user to authenticate as (needs `--etcd-password-file`).
    #[arg(long, env = "KEEL_ETCD_USER")]
    pub etcd_user: Option<String>,

    /// File holding the etcd user's password (a trailing line break is ignored).
    #[arg(long, env = "KEEL_ETCD_PASSWORD_FILE")]
    pub etcd_password_file: Option<PathBuf>,
}

/// A user and password for etcd's `Auth/Authenticate`.
#[derive(Clone)]
pub struct Credentials {
    /// `--etcd-user`.
    pub user: String,
    /// The password read from `--etcd-password-file`.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// TLS and credentials, read and checked at start-up.
#[derive(Debug, Clone, Default)]
pub struct EtcdAccess {
    /// Client TLS towards etcd; `None`: plaintext `http://` endpoints.
    pub tls: Option<ClientTlsConfig>,
    /// etcd authentication; `None`: calls carry no token.
    pub credentials: Option<Credentials>,
}

impl EtcdAccessFlags {
    /// Reads the files; an unusable flag is a start-up error.
    pub fn access(&self) -> Result<EtcdAccess, EtcdError> {
        let files = TlsFiles {
            cert: self.etcd_tls_cert.clone(),
            key: self.etcd_tls_key.clone(),
            ca: self.etcd_tls_ca.clone(),
        };
        // The shared TLS code names the cluster's flags; these are etcd's.
        let tls = files.client().map_err(|e| EtcdError::Access {
            detail: e.to_string().replace("--tls-", "--etcd-tls-"),
        })?;
        let credentials = self.credentials()?;
        if let (Some(c), None) = (&credentials, &tls) {
            // Allowed, as etcd allows it, but said: the password and the
            // token then cross the network readable by anyone on the path.
            tracing::warn!(
                user = %c.user,
                "etcd credentials are sent without TLS; set --etcd-tls-ca (and a client certificate) to protect them"
            );
        }
        Ok(EtcdAccess { tls, credentials })
    }

    fn credentials(&self) -> Result<Option<Credentials>, EtcdError> {
        let bad = |detail: String| EtcdError::Access { detail };
        let user = self.etcd_user.as_deref().map(str::trim);
        let (user, file) = match (user, &self.etcd_password_file) {
            (None, None) => return Ok(None),
            (Some(u), Some(f)) if !u.is_empty() => (u, f),
            (Some(_), None) => return Err(bad("--etcd-user needs --etcd-password-file".into())),
            _ => return Err(bad("--etcd-password-file needs --etcd-user".into())),
        };
        let text = std::fs::read_to_string(file)
            .map_err(|e| bad(format!("--etcd-password-file {}: {e}", file.display())))?;
        let password = text.trim_end_matches(['\r', '\n']).to_owned();
        if password.is_empty() {
            return Err(bad(format!(
                "--etcd-password-file {}: the file is empty",
                file.display()
            )));
        }
        Ok(Some(Credentials {
            user: user.to_owned(),
            password,
        }))
    }
}

/// The token etcd issued, shared by every call.
#[derive(Debug, Default)]
pub struct TokenCache(Mutex<Option<MetadataValue<Ascii>>>);

impl TokenCache {
    /// The cached token.
    pub fn get(&self) -> Option<MetadataValue<Ascii>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps `token` for the following calls.
    pub fn set(&self, token: MetadataValue<Ascii>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(token);
    }

    /// Forgets the token: the next call authenticates again.
    pub fn clear(&self) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

/// Adds etcd's `token` metadata to a request when there is one.
#[derive(Debug, Clone, Default)]
pub struct TokenHeader(pub Option<MetadataValue<Ascii>>);

impl Interceptor for TokenHeader {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut().insert("token", t.clone());
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_and_a_password_file_go_together() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").expect("write");
        let mut f = EtcdAccessFlags {
            etcd_user: Some("root".into()),
            etcd_password_file: Some(file.clone()),
            ..EtcdAccessFlags::default()
        };
        let c = f.access().expect("ok").credentials.expect("set");
        assert_eq!((c.user.as_str(), c.password.as_str()), ("root", "s3cret"));
        assert!(!format!("{c:?}").contains("s3cret"), "never logged");
        f.etcd_password_file = None;
        assert!(f.access().is_err());
        f.etcd_user = None;
        f.etcd_password_file = Some(file);
        assert!(f.access().is_err());
    }

    #[test]
    fn tls_errors_name_the_etcd_flags() {
        let f = EtcdAccessFlags {
            etcd_tls_ca: Some("/nonexistent/ca.crt".into()),
            ..EtcdAccessFlags::default()
        };
        let err = f.access().expect_err("no file").to_string();
        assert!(err.contains("--etcd-tls-ca"), "{err}");
    }
}
