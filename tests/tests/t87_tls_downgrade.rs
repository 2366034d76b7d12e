//! TLS that cannot be skipped. With any TLS flag set, every binary reads a
//! bare `host:port` as `https://host:port` and refuses `http://` before it
//! sends anything. A plaintext listener stands in for the peer and records
//! what each connection sent first: a TLS ClientHello (record type 0x16) is
//! fine; an HTTP/2 preface or an `authorization` header would be the token
//! in the clear. Then a real TLS cluster is run with bare addresses only, to
//! show they reach TLS daemons.
//!
//! Certificates come from `scripts/dev-certs.sh` (skips, saying so, only when
//! `openssl` is not installed).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use keel_tests::certs::{dev_certs, node_tls_flags, openssl_missing};
use keel_tests::{Cluster, CsOpts, bin, wait_until};
use std::io::Read;
use std::net::TcpListener;

/// A generous bound for a binary to start, fail and exit on a loaded machine.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);

/// The token the clients carry: it must never be seen in the clear.
const TOKEN: &str = "t87-secret-token";

/// A plaintext TCP listener that keeps the first bytes of every
/// connection. It runs on its own threads, so it records even while the
/// test blocks on a child process.
struct Recorder {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Recorder {
    fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    // What arrives in the first second is all a client sends
                    // before it waits for an answer that never comes.
                    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
                    let (mut buf, mut got) = (vec![0u8; 4096], Vec::new());
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    log.lock().expect("recorder lock").push(got);
                });
            }
        });
        Ok(Recorder { addr, seen })
    }

    fn connections(&self) -> Vec<Vec<u8>> {
        self.seen.lock().expect("recorder lock").clone()
    }

    /// Every connection so far opened with a TLS handshake, and none
    /// carried plaintext HTTP/2 or the token.
    fn only_tls(&self) -> Result<usize> {
        let all = self.connections();
        for c in &all {
            let text = String::from_utf8_lossy(c);
            if c.first() != Some(&0x16) || text.contains("PRI * HTTP/2") || text.contains(TOKEN) {
                bail!("plaintext reached the listener: {text:?}");
            }
        }
        Ok(all.len())
    }
}

/// The TLS flags of a daemon (serve with the node certificate, mTLS),
/// with this test's token.
fn daemon_tls(certs: &Path) -> Vec<String> {
    let mut flags = node_tls_flags(certs);
    flags.extend(["--auth-token".into(), TOKEN.into()]);
    flags
}

/// keelctl's TLS flags and token.
fn keelctl_tls(certs: &Path) -> Vec<String> {
    let p = |f: &str| certs.join(f).display().to_string();
    vec![
        "--tls-ca".into(),
        p("ca.crt"),
        "--tls-cert".into(),
        p("client.crt"),
        "--tls-key".into(),
        p("client.key"),
        "--auth-token".into(),
        TOKEN.into(),
    ]
}

/// Runs `cmd`, which must exit on its own within [`EXIT_DEADLINE`]; returns
/// its exit status and stderr.
fn run_to_exit(name: &str, args: &[String]) -> Result<(i32, String)> {
    let err_path = tempfile::NamedTempFile::new()?;
    let mut child = Command::new(bin(name))
        .args(args)
        .env_remove("KEEL_MASTER")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err_path.reopen()?)
        .spawn()?;
    let deadline = Instant::now() + EXIT_DEADLINE;
    loop {
        if let Some(status) = child.try_wait()? {
            let err = std::fs::read_to_string(err_path.path())?;
            return Ok((status.code().unwrap_or(-1), err));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{name} {args:?} did not exit within {EXIT_DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn with(base: &[String], more: &[&str]) -> Vec<String> {
    let mut all = base.to_vec();
    all.extend(more.iter().map(|s| s.to_string()));
    all
}

#[tokio::test]
async fn keelctl_sends_nothing_in_the_clear_once_tls_is_set() -> Result<()> {
    if openssl_missing() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let certs = dev_certs(dir.path())?;
    let rec = Recorder::start()?;
    let tls = keelctl_tls(&certs);

    let plain = format!("http://{}", rec.addr);
    for args in [
        with(&tls, &["--master", &plain, "servers"]),
        with(&tls, &["--master", &plain, "rebalance", "run"]),
        with(&tls, &["health", &plain]),
    ] {
        let (code, err) = run_to_exit("keelctl", &args)?;
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("plaintext http:// is refused"),
            "{args:?}: {err}"
        );
    }
    assert!(
        rec.connections().is_empty(),
        "http:// must not even connect"
    );

    // A bare address is dialled as https://: the listener sees a handshake.
    let bare = rec.addr.to_string();
    let (code, err) = run_to_exit("keelctl", &with(&tls, &["--master", &bare, "servers"]))?;
    assert_eq!(code, 1, "a plaintext listener is no master: {err}");
    let n = rec.only_tls()?;
    assert!(n >= 1, "keelctl dialled the bare address: {err}");
    Ok(())
}

#[tokio::test]
async fn chunk_servers_send_nothing_in_the_clear_once_tls_is_set() -> Result<()> {
    if openssl_missing() {
        return Ok(());
    }
    let mut c = Cluster::new()?;
    let certs = dev_certs(c.dir.path())?;
    let rec = Recorder::start()?;
    let tls = daemon_tls(&certs);
    let data = c.dir.path().join("data-x").display().to_string();
    let base = with(
        &tls,
        &["--id", "x", "--listen", "127.0.0.1:0", "--data-dir", &data],
    );

    let plain = format!("http://{}", rec.addr);
    let (code, err) = run_to_exit("keel-chunkserver", &with(&base, &["--master", &plain]))?;
    assert_ne!(code, 0);
    assert!(
        err.contains("--master") && err.contains("plaintext http:// is refused"),
        "{err}"
    );
    let bare = rec.addr.to_string();
    let advertise = ["--master", &bare, "--advertise", "http://127.0.0.1:1"];
    let (code, err) = run_to_exit("keel-chunkserver", &with(&base, &advertise))?;
    assert_ne!(code, 0);
    assert!(
        err.contains("--advertise") && err.contains("plaintext"),
        "{err}"
    );
    assert!(rec.connections().is_empty(), "nothing was dialled");

    // A bare --master is https://: its heartbeats open with a handshake.
    let opts = CsOpts {
        with_master: false,
        extra: with(&tls, &["--master", &bare]),
        ..CsOpts::default()
    };
    c.add_chunkserver("cs1", opts)?;
    wait_until(
        "the chunk server dials the bare master address",
        Duration::from_secs(30),
        || async { !rec.connections().is_empty() },
    )
    .await?;
    rec.only_tls()?;
    Ok(())
}

#[tokio::test]
async fn a_master_refuses_an_http_advertise_address_under_tls() -> Result<()> {
    if openssl_missing() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let certs = dev_certs(dir.path())?;
    let args = with(
        &daemon_tls(&certs),
        &[
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--advertise",
            "http://127.0.0.1:7000",
        ],
    );
    let (code, err) = run_to_exit("keel-master", &args)?;
    assert_ne!(code, 0);
    assert!(
        err.contains("--advertise") && err.contains("plaintext http:// is refused"),
        "{err}"
    );
    Ok(())
}

#[tokio::test]
async fn a_tls_cluster_runs_on_bare_addresses() -> Result<()> {
    if openssl_missing() {
        return Ok(());
    }
    let mut c = Cluster::new()?;
    let certs = dev_certs(c.dir.path())?;
    let tls = daemon_tls(&certs);
    c.start_master_with(&tls)?;
    let bare = c.master_addr();
    let opts = CsOpts {
        with_master: false,
        extra: with(&tls, &["--master", &bare]),
        ..CsOpts::default()
    };
    c.add_chunkserver("cs1", opts)?;
    let ctl = with(
        &keelctl_tls(&certs),
        &["--master", &bare, "--json", "servers"],
    );
    let ctl: Vec<&str> = ctl.iter().map(String::as_str).collect();
    wait_until(
        "cs1 alive over TLS, reached by bare addresses",
        Duration::from_secs(30),
        || async {
            c.keelctl(&ctl)
                .is_ok_and(|(code, out, _)| code == 0 && out.contains("\"alive\""))
        },
    )
    .await?;
    let (_, out, _) = c.keelctl(&ctl)?;
    assert!(out.contains("\"https://127.0.0.1:"), "{out}");
    Ok(())
}
