//! TLS both ways, with real certificates made at run time by
//! `scripts/dev-certs.sh` and the openssl CLI: a cluster in mTLS (every
//! daemon serves TLS and requires a client certificate from the dev CA; the
//! chunk servers heartbeat over it; tokens come from files) stores and reads
//! a chunk and moves it between servers (the peer copy runs over mTLS too).
//! Then every way in that must fail does, with a message that says why, on
//! the client and in the daemon's log: plaintext to a TLS port, `https://`
//! without a CA, a server from another CA, no client certificate, a client
//! certificate from another CA, an expired client certificate, and an
//! expired server certificate.
//!
//! Skips (saying so) only when `openssl` is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};
use keel_tests::certs::openssl_missing;
use keel_tests::{Cluster, CsOpts, wait_until};

/// Certificates and tokens for one test, in the cluster's temp dir.
struct Certs {
    /// Made by `scripts/dev-certs.sh`: the cluster's CA, node and client certificates.
    good: PathBuf,
    /// A second run of the script: a CA the cluster does not trust.
    other: PathBuf,
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd.output()?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Certs {
    fn make(dir: &Path) -> Result<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/dev-certs.sh");
        let (good, other) = (dir.join("certs"), dir.join("other-certs"));
        for d in [&good, &other] {
            run(Command::new("bash").arg(&script).arg(d))?;
        }
        let certs = Certs { good, other };
        certs.expired("expired-client", "clientAuth", "")?;
        certs.expired(
            "expired-node",
            "serverAuth,clientAuth",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )?;
        Ok(certs)
    }

    /// `NAME.crt` and `NAME.key` signed by the good CA, whose validity ended
    /// before it began (openssl 3.0's `x509 -days -1`).
    fn expired(&self, name: &str, eku: &str, sans: &str) -> Result<()> {
        let g = &self.good;
        let key = g.join(format!("{name}.key"));
        let csr = g.join(format!("{name}.csr"));
        let ext = g.join(format!("{name}.ext"));
        std::fs::write(&ext, format!("extendedKeyUsage={eku}\n{sans}"))?;
        run(Command::new("openssl")
            .args(["genpkey", "-algorithm", "EC", "-pkeyopt"])
            .arg("ec_paramgen_curve:P-256")
            .arg("-out")
            .arg(&key))?;
        run(Command::new("openssl")
            .args(["req", "-new", "-subj", "/CN=expired", "-key"])
            .arg(&key)
            .arg("-out")
            .arg(&csr))?;
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "-1", "-CAcreateserial", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(g.join("ca.crt"))
            .arg("-CAkey")
            .arg(g.join("ca.key"))
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(g.join(format!("{name}.crt"))))
    }

    fn path(&self, name: &str) -> String {
        self.good.join(name).display().to_string()
    }

    /// Daemon flags: serve TLS with the node certificate, require client
    /// certificates from the dev CA, tokens from files.
    fn daemon_flags(&self) -> Vec<String> {
        [
            ("--tls-cert", "node.crt"),
            ("--tls-key", "node.key"),
            ("--tls-ca", "ca.crt"),
            ("--auth-token-file", "cluster.token"),
            ("--client-token-file", "client.token"),
        ]
        .iter()
        .flat_map(|(flag, file)| [flag.to_string(), self.path(file)])
        .collect()
    }

    /// keelctl flags: verify against the dev CA, present `cert` (a name in
    /// the good dir), send the token in `token`.
    fn keelctl(&self, url: &str, cert: &str, token: &str) -> Vec<String> {
        vec![
            "--master".into(),
            url.into(),
            "--tls-ca".into(),
            self.path("ca.crt"),
            "--tls-cert".into(),
            self.path(&format!("{cert}.crt")),
            "--tls-key".into(),
            self.path(&format!("{cert}.key")),
            "--token-file".into(),
            self.path(token),
        ]
    }
}

fn keelctl(c: &Cluster, base: &[String], args: &[&str]) -> Result<(i32, String, String)> {
    let mut all: Vec<&str> = base.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    c.keelctl(&all)
}

/// The `server` field of `keelctl get --json`.
fn served_by(out: &str) -> Result<String> {
    let v: serde_json::Value = serde_json::from_str(out)?;
    Ok(v["server"].as_str().unwrap_or_default().to_owned())
}

/// A TLS master (and `servers` chunk servers, cs1.. over `https://`).
fn tls_cluster(servers: usize) -> Result<Option<(Cluster, Certs, String)>> {
    if openssl_missing() {
        return Ok(None);
    }
    let mut c = Cluster::new()?;
    let certs = Certs::make(c.dir.path())?;
    let flags = certs.daemon_flags();
    c.start_master_with(&flags)?;
    let master = c.master_url().replace("http://", "https://");
    for i in 1..=servers {
        let mut extra = flags.clone();
        extra.extend(["--master".into(), master.clone()]);
        let opts = CsOpts {
            with_master: false,
            extra,
            ..CsOpts::default()
        };
        c.add_chunkserver(&format!("cs{i}"), opts)?;
    }
    Ok(Some((c, certs, master)))
}

#[tokio::test]
async fn a_chunk_is_stored_read_and_moved_over_mtls() -> Result<()> {
    let Some((c, certs, master)) = tls_cluster(2)? else {
        return Ok(());
    };
    let client = certs.keelctl(&master, "client", "client.token");
    let operator = certs.keelctl(&master, "client", "cluster.token");
    wait_until(
        "two chunk servers alive over TLS",
        Duration::from_secs(20),
        || async {
            keelctl(&c, &client, &["--json", "servers"])
                .is_ok_and(|(code, out, _)| code == 0 && out.matches("\"alive\"").count() == 2)
        },
    )
    .await?;
    let (_, out, _) = keelctl(&c, &client, &["--json", "servers"])?;
    assert_eq!(
        out.matches("\"https://127.0.0.1:").count(),
        2,
        "https addresses: {out}"
    );

    let src = c.dir.path().join("in.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&src, &data)?;
    let src = src.display().to_string();
    let (code, _, err) = keelctl(
        &c,
        &client,
        &["put", "c1", &src, "--replication", "1", "--on", "cs1"],
    )?;
    assert_eq!(code, 0, "put with the client token over mTLS: {err}");
    let back = c.dir.path().join("back.bin").display().to_string();
    let (code, out, err) = keelctl(&c, &client, &["--json", "get", "c1", &back])?;
    assert_eq!(code, 0, "get: {err}");
    assert_eq!(served_by(&out)?, "cs1", "{out}");
    assert_eq!(std::fs::read(&back)?, data);

    let (code, _, err) = keelctl(
        &c,
        &client,
        &["rebalance", "execute", "--move", "c1:cs1:cs2"],
    )?;
    assert_eq!(code, 1, "a client token cannot move chunks");
    assert!(err.contains("permission denied"), "{err}");
    let (code, out, err) = keelctl(
        &c,
        &operator,
        &["rebalance", "execute", "--move", "c1:cs1:cs2"],
    )?;
    assert_eq!(code, 0, "move over mTLS (cs2 copies from cs1): {out} {err}");
    std::fs::remove_file(&back)?;
    let (code, out, err) = keelctl(&c, &client, &["--json", "get", "c1", &back])?;
    assert_eq!(code, 0, "get after the move: {err}");
    assert_eq!(served_by(&out)?, "cs2", "{out}");
    assert_eq!(std::fs::read(&back)?, data);
    Ok(())
}

/// The log of the master, for what it said about refused connections.
fn master_log(c: &Cluster) -> String {
    c.master.as_ref().map(|m| m.log_text()).unwrap_or_default()
}

#[tokio::test]
async fn every_bad_way_in_fails_with_a_reason() -> Result<()> {
    let Some((c, certs, master)) = tls_cluster(0)? else {
        return Ok(());
    };
    let good = certs.keelctl(&master, "client", "client.token");
    let (code, _, err) = keelctl(&c, &good, &["servers"])?;
    assert_eq!(code, 0, "the good client gets in: {err}");

    // Plaintext to the TLS port: both sides say so.
    let plain = master.replace("https://", "http://");
    let (code, _, err) = c.keelctl(&["--master", &plain, "servers"])?;
    assert_eq!(code, 1);
    assert!(
        err.contains("speaks TLS") && err.contains("https://"),
        "{err}"
    );
    wait_until(
        "the master logs the plaintext client",
        Duration::from_secs(5),
        || async { master_log(&c).contains("plaintext connection to the TLS port refused") },
    )
    .await?;

    let (code, _, err) = c.keelctl(&["--master", &master, "servers"])?;
    assert_eq!(code, 1);
    assert!(err.contains("needs --tls-ca"), "https without a CA: {err}");

    // The server's certificate is not from the CA the client trusts.
    let mut other_ca = good.clone();
    other_ca[3] = certs.other.join("ca.crt").display().to_string();
    let (code, _, err) = keelctl(&c, &other_ca, &["servers"])?;
    assert_eq!(code, 1);
    assert!(
        err.contains("invalid peer certificate"),
        "server from another CA: {err}"
    );

    // No client certificate, to a server that requires one.
    let mut no_cert = good.clone();
    no_cert.drain(4..8);
    let (code, _, err) = keelctl(&c, &no_cert, &["servers"])?;
    assert_eq!(code, 1);
    assert!(err.contains("client certificate"), "{err}");
    wait_until(
        "the master logs the missing certificate",
        Duration::from_secs(5),
        || async { master_log(&c).contains("peer sent no certificates") },
    )
    .await?;

    // A client certificate from another CA.
    let mut foreign = good.clone();
    foreign[5] = certs.other.join("client.crt").display().to_string();
    foreign[7] = certs.other.join("client.key").display().to_string();
    let before = master_log(&c).matches("TLS handshake failed").count();
    let (code, _, err) = keelctl(&c, &foreign, &["servers"])?;
    assert_eq!(code, 1, "a foreign client certificate: {err}");
    wait_until(
        "the master logs the foreign certificate",
        Duration::from_secs(5),
        || async { master_log(&c).matches("TLS handshake failed").count() > before },
    )
    .await?;

    // An expired client certificate.
    let expired = certs.keelctl(&master, "expired-client", "client.token");
    let (code, _, err) = keelctl(&c, &expired, &["servers"])?;
    assert_eq!(code, 1, "an expired client certificate: {err}");
    wait_until(
        "the master logs the expired certificate",
        Duration::from_secs(5),
        || async { master_log(&c).to_lowercase().contains("expired") },
    )
    .await?;
    Ok(())
}

/// Keys and tokens at rest: only their owner may read them; certificates
/// are public.
#[test]
fn dev_certs_keeps_keys_and_tokens_private() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if openssl_missing() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let certs = Certs::make(dir.path())?;
    let mode = |name: &str| -> Result<u32> {
        Ok(std::fs::metadata(certs.good.join(name))?
            .permissions()
            .mode()
            & 0o777)
    };
    for secret in [
        "ca.key",
        "node.key",
        "client.key",
        "cluster.token",
        "client.token",
    ] {
        assert_eq!(mode(secret)?, 0o600, "{secret} must be private");
    }
    for public in ["ca.crt", "node.crt", "client.crt"] {
        assert_eq!(mode(public)?, 0o644, "{public}");
    }
    Ok(())
}

#[tokio::test]
async fn an_expired_server_certificate_is_refused() -> Result<()> {
    let Some((mut c, certs, master)) = tls_cluster(0)? else {
        return Ok(());
    };
    // Under TLS the default `--master` (`http://…`) is refused: name it.
    let mut extra = certs.daemon_flags();
    extra[1] = certs.path("expired-node.crt");
    extra[3] = certs.path("expired-node.key");
    extra.extend(["--master".into(), master.clone()]);
    let opts = CsOpts {
        with_master: false,
        extra,
        ..CsOpts::default()
    };
    let addr = c.add_chunkserver("old", opts)?.addr;
    let url = format!("https://{addr}");
    let base = certs.keelctl(&url, "client", "client.token");
    let (code, _, err) = keelctl(&c, &base, &["health", &url])?;
    assert_eq!(code, 1);
    assert!(err.to_lowercase().contains("expired"), "{err}");
    // The same server is fine once given a valid certificate: the failure
    // above was the certificate's date, nothing else.
    let mut extra = certs.daemon_flags();
    extra.extend(["--master".into(), master]);
    let opts = CsOpts {
        with_master: false,
        extra,
        ..CsOpts::default()
    };
    let addr = c.add_chunkserver("fresh", opts)?.addr;
    let url = format!("https://{addr}");
    let (code, out, err) = keelctl(&c, &base, &["health", &url])?;
    assert_eq!((code, out.trim()), (0, "SERVING"), "{err}");
    Ok(())
}
