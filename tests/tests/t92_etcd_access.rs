//! etcd with authentication and with TLS, against a real etcd. Whoever can
//! write the leader key can point clients anywhere, so the masters can
//! reach etcd over mutual TLS and as an etcd user:
//! - with auth enabled, a master given the wrong password says so in its
//!   log and never leads; one given the right password elects itself;
//! - with etcd serving TLS only (client certificates required), a master
//!   with `--etcd-tls-*` reaches it at a bare `host:port` (read as
//!   `https://`) and elects itself, and an `http://` endpoint is refused at
//!   start-up;
//! - a plaintext leader address written into etcd by someone else is named
//!   by a TLS standby, and keelctl set up for TLS never contacts it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};
use keel_tests::certs::dev_certs;
use keel_tests::ha::{Etcd, MASTER_FLAGS, list_servers};
use keel_tests::{Cluster, wait_until};

/// A generous bound for an election on a loaded machine.
const ELECTED: Duration = Duration::from_secs(30);

fn start_master(c: &mut Cluster, extra: &[String]) -> Result<String> {
    let mut args: Vec<&str> = MASTER_FLAGS.to_vec();
    args.extend(extra.iter().map(String::as_str));
    Ok(c.start_master(&args)?.url())
}

async fn leads(url: &str) -> bool {
    list_servers(url)
        .await
        .is_some_and(|r| r.answered_by_leader)
}

#[tokio::test]
async fn a_master_authenticates_to_etcd_and_a_wrong_password_is_named() -> Result<()> {
    let mut bad = Cluster::new()?;
    let etcd = Etcd::start(bad.dir.path()).await?;
    etcd.enable_auth("t92-right").await?;
    let (right, wrong) = (bad.dir.path().join("right"), bad.dir.path().join("wrong"));
    std::fs::write(&right, "t92-right\n")?;
    std::fs::write(&wrong, "t92-wrong\n")?;
    let flags = |file: &Path| {
        vec![
            "--etcd".to_string(),
            etcd.url(),
            "--etcd-user".into(),
            "root".into(),
            "--etcd-password-file".into(),
            file.display().to_string(),
        ]
    };

    let bad_url = start_master(&mut bad, &flags(&wrong))?;
    wait_until("the wrong password is named", ELECTED, || async {
        bad.master.as_ref().is_some_and(|m| {
            m.log_text()
                .contains(r#"authentication as user "root" failed"#)
        })
    })
    .await?;
    assert!(!leads(&bad_url).await, "a master etcd refused cannot lead");

    let mut good = Cluster::new()?;
    let good_url = start_master(&mut good, &flags(&right))?;
    wait_until("the master with the right password leads", ELECTED, || {
        leads(&good_url)
    })
    .await?;
    assert!(!leads(&bad_url).await);
    Ok(())
}

#[tokio::test]
async fn a_master_reaches_a_tls_etcd_at_a_bare_address() -> Result<()> {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("SKIPPED: the openssl CLI is not installed (apt-get install openssl)");
        return Ok(());
    }
    let mut c = Cluster::new()?;
    let certs = dev_certs(c.dir.path())?;
    let etcd = Etcd::start_with(c.dir.path(), Some(&certs)).await?;
    let p = |f: &str| certs.join(f).display().to_string();
    let tls = vec![
        "--etcd-tls-ca".to_string(),
        p("ca.crt"),
        "--etcd-tls-cert".into(),
        p("node.crt"),
        "--etcd-tls-key".into(),
        p("node.key"),
    ];

    let mut plain = tls.clone();
    plain.extend(["--etcd".into(), format!("http://{}", etcd.addr)]);
    if start_master(&mut c, &plain).is_ok() {
        bail!("an http:// etcd endpoint must be refused under --etcd-tls-*");
    }
    // The whole log: with RUST_BACKTRACE set the error's tail is a trace.
    let log = std::fs::read_to_string(c.dir.path().join("master.log"))?;
    assert!(
        log.contains("--etcd") && log.contains("plaintext http:// is refused"),
        "{log}"
    );

    let mut bare = tls;
    bare.extend(["--etcd".into(), etcd.addr.to_string()]);
    let url = start_master(&mut c, &bare)?;
    wait_until("the master leads through etcd over TLS", ELECTED, || {
        leads(&url)
    })
    .await?;
    Ok(())
}

/// Standard base64, for etcd's JSON gateway.
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Whoever can write etcd writes a plaintext leader address: a TLS
/// standby names it, and keelctl (set up for TLS) does not contact it, says
/// why, and carries on with the master that answered.
#[tokio::test]
async fn a_forged_plaintext_leader_gets_nothing_from_keelctl() -> Result<()> {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("SKIPPED: the openssl CLI is not installed (apt-get install openssl)");
        return Ok(());
    }
    let mut c = Cluster::new()?;
    let certs = dev_certs(c.dir.path())?;
    let etcd = Etcd::start(c.dir.path()).await?;
    // The rogue "leader": a plaintext listener that counts connections.
    let rogue = std::net::TcpListener::bind("127.0.0.1:0")?;
    rogue.set_nonblocking(true)?;
    let forged = format!("http://{}", rogue.local_addr()?);
    let put = format!(
        r#"{{"key":"{}","value":"{}"}}"#,
        base64(b"/keel/leader"),
        base64(forged.as_bytes())
    );
    let (code, body) = keel_tests::master::http_post(etcd.addr, "/v3/kv/put", &put).await?;
    assert_eq!(code, 200, "{body}");

    let p = |f: &str| certs.join(f).display().to_string();
    let flags = vec![
        "--tls-cert".to_string(),
        p("node.crt"),
        "--tls-key".into(),
        p("node.key"),
        "--tls-ca".into(),
        p("ca.crt"),
        "--etcd".into(),
        etcd.url(),
    ];
    let standby = start_master(&mut c, &flags)?.replace("http://", "https://");
    let ctl = |args: &[&str]| -> Result<(i32, String, String)> {
        let mut all = vec![
            "--tls-ca".to_string(),
            p("ca.crt"),
            "--tls-cert".into(),
            p("client.crt"),
            "--tls-key".into(),
            p("client.key"),
            "--master".into(),
            // Two masters, so keelctl asks who leads (the second is gone).
            format!("{standby},https://127.0.0.1:1"),
        ];
        all.extend(args.iter().map(|s| s.to_string()));
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        c.keelctl(&all)
    };
    let mut last = String::new();
    wait_until("keelctl hears of the forged leader", ELECTED, || {
        let r = ctl(&["servers"]);
        if let Ok((_, _, err)) = &r {
            last.clone_from(err);
        }
        async move { r.is_ok_and(|(code, _, err)| code == 0 && err.contains("not contacted")) }
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e:#}; last stderr: {last}"))?;
    let (_, _, err) = ctl(&["servers"])?;
    assert!(
        err.contains(&forged) && err.contains("plaintext http:// is refused"),
        "{err}"
    );
    assert!(
        rogue.accept().is_err(),
        "nothing may connect to the forged plaintext leader"
    );
    Ok(())
}
