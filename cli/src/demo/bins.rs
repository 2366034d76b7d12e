//! Finding `keel-master` and `keel-chunkserver`: next to keelctl's own
//! executable (or in `KEEL_BIN_DIR`). `cargo run -p keelctl` builds only
//! keelctl, so when they are missing and cargo started this process (it sets
//! `CARGO` and `CARGO_MANIFEST_DIR` for the programs it runs), they are built
//! with the same profile first.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::error::DemoError;
use super::show::Narrator;
use crate::error::Error;

/// The master's binary.
pub const MASTER: &str = "keel-master";
/// The chunk server's binary.
pub const CHUNKSERVER: &str = "keel-chunkserver";

/// Paths of the daemons' binaries.
#[derive(Debug, Clone)]
pub struct Bins {
    /// `keel-master`.
    pub master: PathBuf,
    /// `keel-chunkserver`.
    pub chunkserver: PathBuf,
}

impl Bins {
    fn in_dir(dir: &Path) -> Self {
        Bins {
            master: dir.join(MASTER),
            chunkserver: dir.join(CHUNKSERVER),
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
    if let Some(dir) = std::env::var_os("KEEL_BIN_DIR") {
        let dir = PathBuf::from(dir);
        return found(&dir, "KEEL_BIN_DIR names a folder without them".into());
    }
    let exe = std::env::current_exe()
        .map_err(|e| DemoError::setup("find keelctl's own executable", e))?;
    let dir = exe.parent().unwrap_or(Path::new(".")).to_path_buf();
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
    build(&cargo_run, &dir, say).await?;
    found(
        &dir,
        "cargo built them somewhere else (is CARGO_TARGET_DIR set differently?); set KEEL_BIN_DIR"
            .into(),
    )
}

fn found(dir: &Path, hint: String) -> Result<Bins, Error> {
    let bins = Bins::in_dir(dir);
    let missing = bins.missing();
    if missing.is_empty() {
        return Ok(bins);
    }
    Err(DemoError::BinariesMissing {
        dir: dir.to_path_buf(),
        missing,
        hint,
    }
    .into())
}

/// `cargo build` flags for the profile whose output folder is `dir`.
pub fn profile_args(dir: &Path) -> Vec<String> {
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => vec![],
        Some("release") => vec!["--release".into()],
        Some(other) => vec!["--profile".into(), other.into()],
        None => vec!["--release".into()],
    }
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
    fn profile_follows_the_output_folder() {
        assert!(profile_args(Path::new("/t/target/debug")).is_empty());
        assert_eq!(profile_args(Path::new("/t/target/release")), ["--release"]);
        assert_eq!(
            profile_args(Path::new("/t/target/bench-fast")),
            ["--profile", "bench-fast"]
        );
    }

    #[test]
    fn missing_binaries_are_named_with_the_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(MASTER), b"").expect("touch");
        let err = found(dir.path(), "build them".into()).expect_err("one missing");
        let text = err.to_string();
        assert!(
            text.starts_with("keel-chunkserver not found in /"),
            "{text}"
        );
        assert!(text.ends_with(": build them"), "{text}");
    }
}
