//! The one binary finder: Keel's binaries sit together in cargo's output
//! folder (`target/<profile>/`), so whoever starts a daemon looks beside its
//! own executable, or in `KEEL_BIN_DIR` when that is set.

use std::path::{Path, PathBuf};

/// The environment variable naming the folder that holds the binaries.
pub const BIN_DIR_ENV: &str = "KEEL_BIN_DIR";
/// The master's binary.
pub const MASTER: &str = "keel-master";
/// The chunk server's binary.
pub const CHUNKSERVER: &str = "keel-chunkserver";
/// The command line's binary.
pub const KEELCTL: &str = "keelctl";

/// A binary that is not where it was looked for.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// The running executable's own path is unknown.
    #[error("cannot find this program's own executable: {0}")]
    OwnExe(#[source] std::io::Error),
    /// The binary is not in the folder.
    #[error("{name} not found in {}: {}", dir.display(), hint(dir, *from_env))]
    Missing {
        /// The binary.
        name: String,
        /// Where it was looked for.
        dir: PathBuf,
        /// Whether `KEEL_BIN_DIR` named the folder.
        from_env: bool,
    },
}

fn hint(dir: &Path, from_env: bool) -> String {
    if from_env {
        return format!("{BIN_DIR_ENV} names a folder without it");
    }
    let mut command = vec!["cargo", "build"];
    let profile = profile_args(dir);
    command.extend(profile.iter().map(String::as_str));
    command.push("--bins");
    format!(
        "build it (`{}`) or set {BIN_DIR_ENV} to the folder that holds it",
        command.join(" ")
    )
}

/// Where Keel's binaries are looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinDir {
    /// The folder.
    pub path: PathBuf,
    /// Whether `KEEL_BIN_DIR` named it (else it is this program's own).
    pub from_env: bool,
}

impl BinDir {
    /// `KEEL_BIN_DIR`, else the folder of the running executable. Test
    /// executables live one level down, in `target/<profile>/deps/`, so a
    /// folder named `deps` stands for its parent.
    pub fn locate() -> Result<Self, FindError> {
        if let Some(dir) = std::env::var_os(BIN_DIR_ENV) {
            return Ok(BinDir {
                path: PathBuf::from(dir),
                from_env: true,
            });
        }
        let exe = std::env::current_exe().map_err(FindError::OwnExe)?;
        Ok(BinDir {
            path: beside(&exe),
            from_env: false,
        })
    }

    /// The path `name` would have here, whether or not it exists.
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The binary `name`, or an error saying where it was looked for and how
    /// to build it.
    pub fn find(&self, name: &str) -> Result<PathBuf, FindError> {
        let path = self.path_of(name);
        if path.is_file() {
            return Ok(path);
        }
        Err(FindError::Missing {
            name: name.to_owned(),
            dir: self.path.clone(),
            from_env: self.from_env,
        })
    }
}

/// The binary `name` from [`BinDir::locate`].
pub fn find(name: &str) -> Result<PathBuf, FindError> {
    BinDir::locate()?.find(name)
}

/// The folder Keel's binaries share with the executable `exe`.
fn beside(exe: &Path) -> PathBuf {
    let dir = exe.parent().unwrap_or(Path::new("."));
    match dir.file_name() {
        Some(n) if n == "deps" => dir.parent().unwrap_or(dir).to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// `cargo build` flags for the profile whose output folder is `dir`
/// (`target/debug` → none, `target/release` → `--release`).
pub fn profile_args(dir: &Path) -> Vec<String> {
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => vec![],
        Some("release") => vec!["--release".into()],
        Some(other) => vec!["--profile".into(), other.into()],
        None => vec!["--release".into()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_executables_find_binaries_one_folder_up() {
        assert_eq!(
            beside(Path::new("/t/target/debug/deps/t10-abc")),
            Path::new("/t/target/debug")
        );
        assert_eq!(
            beside(Path::new("/t/target/release/keelctl")),
            Path::new("/t/target/release")
        );
    }

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
    fn a_missing_binary_is_named_with_its_folder_and_the_fix() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("release");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::write(dir.join(MASTER), b"").expect("touch");
        let own = BinDir {
            path: dir.clone(),
            from_env: false,
        };
        assert_eq!(own.find(MASTER).expect("found"), dir.join(MASTER));
        let text = own.find(CHUNKSERVER).expect_err("missing").to_string();
        assert!(
            text.starts_with("keel-chunkserver not found in /"),
            "{text}"
        );
        assert!(text.contains("`cargo build --release --bins`"), "{text}");
        let env = BinDir {
            from_env: true,
            ..own
        };
        let text = env.find(CHUNKSERVER).expect_err("missing").to_string();
        assert!(
            text.ends_with("KEEL_BIN_DIR names a folder without it"),
            "{text}"
        );
    }
}
