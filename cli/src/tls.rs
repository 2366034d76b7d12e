//! keelctl's credentials: the token (`--auth-token` or `--token-file`) and TLS
//! (`--tls-ca`, `--tls-cert`, `--tls-key`), read once before any connection.

use std::path::Path;

use keel_proto::auth::secret;
use keel_proto::tls::TlsFiles;
use tonic::transport::{ClientTlsConfig, Endpoint};

/// The global flags that name the credentials.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credentials<'a> {
    /// `--auth-token`.
    pub auth_token: Option<&'a str>,
    /// `--token-file`.
    pub token_file: Option<&'a Path>,
    /// `--tls-ca`.
    pub tls_ca: Option<&'a Path>,
    /// `--tls-cert`.
    pub tls_cert: Option<&'a Path>,
    /// `--tls-key`.
    pub tls_key: Option<&'a Path>,
}

/// The token to send and the TLS settings for `https://` addresses; the
/// error says which flag or file is unusable.
pub fn credentials(
    flags: &Credentials<'_>,
) -> Result<(Option<String>, Option<ClientTlsConfig>), String> {
    let token = secret(
        ("--auth-token", "--token-file"),
        flags.auth_token.map(str::trim).filter(|t| !t.is_empty()),
        flags.token_file,
    )
    .map_err(|e| e.to_string())?;
    let files = TlsFiles {
        cert: flags.tls_cert.map(Path::to_path_buf),
        key: flags.tls_key.map(Path::to_path_buf),
        ca: flags.tls_ca.map(Path::to_path_buf),
    };
    let tls = files.client().map_err(|e| e.to_string())?;
    Ok((token, tls))
}

/// Applies the TLS settings to `endpoint` (an `https://` one needs them).
pub fn endpoint(endpoint: Endpoint, tls: Option<&ClientTlsConfig>) -> Result<Endpoint, String> {
    keel_proto::tls::endpoint(endpoint, tls).map_err(|e| e.to_string())
}

/// Why a TLS server may close a connection right after the handshake.
const CLOSED_HINT: &str = "the server closed the TLS connection: it may require a client \
     certificate (--tls-cert and --tls-key, signed by its CA) or have refused the one given";

/// Signs of a connection the other side closed on us (or, over TLS, refused
/// with an alert).
const CLOSED_SIGNS: [&str; 7] = [
    "fatal alert",
    "frame with invalid size",
    "connection reset",
    "broken pipe",
    "connection closed",
    "operation was canceled",
    "unexpected end of file",
];

/// `reason` (a failure talking to `peer`, whose text holds its URL) with a
/// hint when it looks like a TLS mismatch: an `http://` peer hanging up is
/// probably a TLS server; an `https://` one, a refused client certificate.
pub fn annotate(peer: &str, reason: String) -> String {
    let lower = reason.to_lowercase();
    if !CLOSED_SIGNS.iter().any(|s| lower.contains(s)) {
        return reason;
    }
    if peer.contains("https://") {
        format!("{reason} ({CLOSED_HINT})")
    } else if peer.contains("http://") && !lower.contains("tls") {
        format!("{reason} ({})", keel_proto::tls::PLAINTEXT_HINT)
    } else {
        reason
    }
}
