//! The HTTP listeners under TLS. A master with a certificate serves its
//! dashboard, login and `/metrics` over HTTPS with the node's certificate,
//! so the token typed into the login form never crosses the network in
//! the clear; the session cookie is `Secure`. A plaintext request to that
//! port gets no HTTP answer at all. Logins are limited per source address:
//! after the burst, even the right token gets `429` with a sentence. A
//! chunk server's `--http-listen` (`/metrics`) is HTTPS likewise.
//!
//! The HTTPS client here trusts only the dev CA of `scripts/dev-certs.sh`
//! (skips, saying so, only when `openssl` is not installed).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use keel_tests::certs::{dev_certs, node_tls_flags, openssl_missing};
use keel_tests::{Cluster, CsOpts, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// The dashboard's login burst per address (`LOGIN_BURST` in the master).
const LOGIN_BURST: usize = 5;

/// An answer: status code, head, body.
struct Answer {
    code: u16,
    head: String,
    body: String,
}

/// The daemons' TLS flags, with the cluster token from its file.
fn daemon_tls(certs: &Path) -> Vec<String> {
    let mut flags = node_tls_flags(certs);
    flags.extend([
        "--auth-token-file".into(),
        certs.join("cluster.token").display().to_string(),
    ]);
    flags
}

fn parse(raw: &[u8]) -> Result<Answer> {
    let text = String::from_utf8_lossy(raw).into_owned();
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no HTTP answer: {text:?}");
    };
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok(Answer {
        code,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

fn request(method: &str, path: &str, addr: SocketAddr, form: Option<&str>) -> Vec<u8> {
    let body = form.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: localhost:{}\r\n",
        addr.port()
    );
    if form.is_some() {
        req.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    req.into_bytes()
}

/// One HTTPS request, verifying the server against `ca`.
async fn https(
    ca: &Path,
    addr: SocketAddr,
    method: &str,
    path: &str,
    form: Option<&str>,
) -> Result<Answer> {
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca)? {
        roots.add(c?)?;
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost")?;
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    tls.write_all(&request(method, path, addr, form)).await?;
    let mut raw = Vec::new();
    // A close without close_notify is fine once the answer is in.
    let _ = tls.read_to_end(&mut raw).await;
    parse(&raw)
}

/// The same request in plaintext: the raw bytes that came back (none, or
/// a TLS alert, from an HTTPS port).
async fn plaintext(addr: SocketAddr, method: &str, path: &str, form: Option<&str>) -> Vec<u8> {
    let Ok(mut s) = TcpStream::connect(addr).await else {
        return Vec::new();
    };
    let _ = s.write_all(&request(method, path, addr, form)).await;
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut raw)).await;
    raw
}

#[tokio::test]
async fn the_dashboard_logs_in_over_https_only_and_logins_are_throttled() -> Result<()> {
    if openssl_missing() {
        return Ok(());
    }
    let mut c = Cluster::new()?;
    let certs = dev_certs(c.dir.path())?;
    let flags = daemon_tls(&certs);
    let m = c.start_master_with(&flags)?;
    let http = m.http_addr.context("the master's HTTP address")?;
    let ca = certs.join("ca.crt");
    let token = std::fs::read_to_string(certs.join("cluster.token"))?;
    let form = format!("token={}", token.trim());

    let metrics = https(&ca, http, "GET", "/metrics", None).await?;
    assert_eq!(metrics.code, 200, "/metrics over HTTPS");
    assert!(metrics.body.contains("keel_master_is_leader"));

    let login = https(&ca, http, "POST", "/login", Some(&form)).await?;
    assert_eq!(login.code, 303, "{}", login.head);
    let cookie = login
        .head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .context("a session cookie")?;
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );

    // The token in plaintext to the same port: no HTTP answer, no session.
    let raw = plaintext(http, "POST", "/login", Some(&form)).await;
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains("HTTP/1"), "plaintext got an answer: {text}");

    // The burst (one login above already counted), then 429 even for the
    // right token.
    for _ in 1..LOGIN_BURST {
        let wrong = https(&ca, http, "POST", "/login", Some("token=wrong")).await?;
        assert_eq!(wrong.code, 401, "a wrong token within the burst");
    }
    let held = https(&ca, http, "POST", "/login", Some(&form)).await?;
    assert_eq!(held.code, 429, "over the burst: {}", held.head);
    assert!(
        held.body
            .contains("Too many login attempts from this address"),
        "{}",
        held.body
    );
    assert!(!held.head.to_ascii_lowercase().contains("set-cookie"));
    Ok(())
}

#[tokio::test]
async fn a_chunk_servers_metrics_are_https_under_tls() -> Result<()> {
    if openssl_missing() {
        return Ok(());
    }
    let mut c = Cluster::new()?;
    let certs = dev_certs(c.dir.path())?;
    let flags = daemon_tls(&certs);
    c.start_master_with(&flags)?;
    let master = c.master_addr();
    let mut extra = flags.clone();
    extra.extend([
        "--master".into(),
        master,
        "--http-listen".into(),
        "127.0.0.1:0".into(),
    ]);
    let opts = CsOpts {
        with_master: false,
        extra,
        ..CsOpts::default()
    };
    let http = c
        .add_chunkserver("cs1", opts)?
        .http_addr
        .context("the chunk server's HTTP address")?;
    let ca = certs.join("ca.crt");
    wait_until("cs1 /metrics over HTTPS", Duration::from_secs(30), || {
        let ca = ca.clone();
        async move {
            https(&ca, http, "GET", "/metrics", None)
                .await
                .is_ok_and(|a| a.code == 200 && a.body.contains("keel_"))
        }
    })
    .await?;
    let raw = plaintext(http, "GET", "/metrics", None).await;
    assert!(
        !String::from_utf8_lossy(&raw).contains("HTTP/1"),
        "plaintext /metrics must get no answer"
    );
    Ok(())
}
