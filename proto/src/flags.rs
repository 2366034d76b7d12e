//! The security flags both daemons share (`--auth-token` itself stays in each
//! daemon's config, where it always was).

use std::path::PathBuf;

use clap::Args;

use crate::auth::{SecretError, Tokens, secret};
use crate::tls::TlsFiles;

/// Token files, the client token, and TLS.
#[derive(Debug, Clone, Default, Args)]
pub struct Security {
    /// File holding the cluster token (instead of `--auth-token`, so it is not
    /// on the command line). A trailing line break is ignored.
    #[arg(long, env = "KEEL_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,

    /// Token of data clients: admits only writes, reads, stats, allocation,
    /// location, server lists, rebalance check/status, explain and corruption
    /// reports (see docs/security.md). Needs `--auth-token`.
    #[arg(long, env = "KEEL_CLIENT_TOKEN", hide_env_values = true)]
    pub client_token: Option<String>,

    /// File holding the client token.
    #[arg(long, env = "KEEL_CLIENT_TOKEN_FILE")]
    pub client_token_file: Option<PathBuf>,

    /// PEM certificate chain: serve TLS (with `--tls-key`), and present it when
    /// calling other daemons.
    #[arg(long, env = "KEEL_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "KEEL_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA: clients must present a certificate it signed (mTLS), and
    /// `https://` daemons this one calls are verified against it.
    #[arg(long, env = "KEEL_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
}

impl Security {
    /// The cluster token, from `--auth-token` (`flag`) or its file.
    pub fn cluster_token(&self, flag: Option<&str>) -> Result<Option<String>, SecretError> {
        secret(
            ("--auth-token", "--auth-token-file"),
            flag,
            self.auth_token_file.as_deref(),
        )
    }

    /// Both expected tokens, given the cluster token from [`Self::cluster_token`].
    pub fn tokens(&self, cluster: Option<&str>) -> Result<Tokens, SecretError> {
        let client = secret(
            ("--client-token", "--client-token-file"),
            self.client_token.as_deref(),
            self.client_token_file.as_deref(),
        )?;
        Tokens::new(cluster, client.as_deref())
    }

    /// The TLS files.
    pub fn tls(&self) -> TlsFiles {
        TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
        }
    }
}
