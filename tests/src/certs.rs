//! Certificates for the TLS tests, made by the project's own
//! `scripts/dev-certs.sh` with the openssl CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

/// Whether the openssl CLI is missing; says so, for a test that then skips.
pub fn openssl_missing() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        println!("SKIPPED: the openssl CLI is not installed (apt-get install openssl)");
    }
    !ok
}

/// Makes the dev CA, node and client certificates and tokens in `dir/certs`.
pub fn dev_certs(dir: &Path) -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/dev-certs.sh");
    let out = dir.join("certs");
    let r = Command::new("bash").arg(script).arg(&out).output()?;
    if !r.status.success() {
        bail!("dev-certs: {}", String::from_utf8_lossy(&r.stderr));
    }
    Ok(out)
}

/// A daemon's TLS flags over the dev certificates in `certs`: serve with the
/// node certificate and ask peers for one signed by the dev CA. The caller
/// adds the token flag it needs.
pub fn node_tls_flags(certs: &Path) -> Vec<String> {
    [
        ("--tls-cert", "node.crt"),
        ("--tls-key", "node.key"),
        ("--tls-ca", "ca.crt"),
    ]
    .iter()
    .flat_map(|(flag, file)| [flag.to_string(), certs.join(file).display().to_string()])
    .collect()
}
