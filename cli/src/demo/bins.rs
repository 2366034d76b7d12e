//! Finding `keel-master` and `keel-chunkserver` with the launcher's finder
//! ([`keel_launch::bins`]): next to keelctl's own executable, or in
//! `KEEL_BIN_DIR`. `cargo run -p keelctl` builds only keelctl, so when they
//! are missing and cargo started this process (it sets `CARGO` and
//! `CARGO_MANIFEST_DIR` for the programs it runs), they are built with the
//! same profile first.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use keel_launch::BinDir;
use keel_launch::bins::{CHUNKSERVER, MASTER, profile_args};

use super::error::DemoError;
use super::show::Narrator;
use crate::error::Error;

/// Paths of the daemons' binaries.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `keel-master`.
    pub master: PathBuf,
    /// `keel-chunkserver`.
    pub chunkserver: PathBuf,
}

impl Bins {
    fn in_dir(dir: &BinDir) -> Self {
        Bins {
            master: dir.path_of(MASTER),
            chunkserver: dir.path_of(CHUNKSERVER),
        }
    }

    fn missing(&self) -> Vec<&'static str> {
        [(MASTER, &self.master), (CHUNKSERVER, &self.chunkserver)]
            .into_iter()
            .filter(|(_, p)| !p.is_file())
            .map(|(name, _)| name)
            .collect()
    }
}

/// Where cargo is and which package it ran, when cargo started us.
struct CargoRun {
    cargo: OsString,
    manifest_dir: OsString,
}

/// Finds the binaries, building them when cargo started keelctl.
pub async fn locate(say: &Narrator) -> Result<Bins, Error> {
    let dir = BinDir::locate()
        .map_err(|e| DemoError::setup("find keelctl's own executable", std::io::Error::other(e)))?;
    if dir.from_env {
        return found(&dir, "KEEL_BIN_DIR names a folder without them".into());
    }
    let bins = Bins::in_dir(&dir);
    if bins.missing().is_empty() {
        return Ok(bins);
    }
    let cargo_run = match (
        std::env::var_os("CARGO"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
    ) {
        (Some(cargo), Some(manifest_dir)) => CargoRun {
            cargo,
            manifest_dir,
        },
        _ => {
            let hint = "build them (`cargo build --release --bins`) or set KEEL_BIN_DIR to the folder that holds them";
            return found(&dir, hint.into());
        }
    };
    build(&cargo_run, &dir.path, say).await?;
    found(
        &dir,
        "cargo built them somewhere else (is CARGO_TARGET_DIR set differently?); set KEEL_BIN_DIR"
            .into(),
    )
}

fn found(dir: &BinDir, hint: String) -> Result<Bins, Error> {
    let bins = Bins::in_dir(dir);
    let missing = bins.missing();
    if missing.is_empty() {
        return Ok(bins);
    }
    Err(DemoError::BinariesMissing {
        dir: dir.path.clone(),
        missing,
        hint,
    }
    .into())
}

/// Runs `cargo build [profile] -p keel-master -p keel-chunkserver`, its
/// output going straight to the terminal.
async fn build(run: &CargoRun, dir: &Path, say: &Narrator) -> Result<(), Error> {
    let mut args = vec!["build".to_owned()];
    args.extend(profile_args(dir));
    args.extend(["-p", MASTER, "-p", CHUNKSERVER].map(String::from));
    let command = format!("cargo {}", args.join(" "));
    say.line(&format!(
        "{MASTER} and {CHUNKSERVER} are not built yet: running `{command}` (a few minutes the first time)"
    ))?;
    let status = tokio::process::Command::new(&run.cargo)
        .args(&args)
        .current_dir(&run.manifest_dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| DemoError::setup(format!("run `{command}`"), e))?;
    if !status.success() {
        return Err(DemoError::BuildFailed {
            command,
            status: status.to_string(),
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_are_named_with_the_folder() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::write(tmp.path().join(MASTER), b"").expect("touch");
        let dir = BinDir {
            path: tmp.path().to_path_buf(),
            from_env: false,
        };
        let err = found(&dir, "build them".into()).expect_err("one missing");
        let text = err.to_string();
        assert!(
            text.starts_with("keel-chunkserver not found in /"),
            "{text}"
        );
        assert!(text.ends_with(": build them"), "{text}");
    }
}
