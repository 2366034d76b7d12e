//! The ready file: `{"grpc": "ADDR", "http": "ADDR" | null}`, written by a
//! daemon started with `--ready-file PATH` once it is serving, read by
//! whoever started it. Both sides live here so they cannot drift apart.
//!
//! The daemon writes a temp file in the same directory, fsyncs it and
//! renames it into place, so a reader sees either no file or the whole
//! object, never a half-written one.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// What a daemon serves on, as it writes it to its ready file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The bound gRPC address.
    pub grpc: SocketAddr,
    /// The bound HTTP address; `None` when the daemon has no HTTP listener.
    pub http: Option<SocketAddr>,
}

/// A ready file that could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    /// Writing, syncing or renaming failed.
    #[error("cannot write the ready file {}: {source}", path.display())]
    Write {
        /// The ready file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Reading failed for a reason other than the file being absent.
    #[error("cannot read the ready file {}: {source}", path.display())]
    Read {
        /// The ready file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is there but is not a ready object.
    #[error("the ready file {} is not {{\"grpc\": ADDR, \"http\": ADDR|null}}: {why}", path.display())]
    Malformed {
        /// The ready file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

impl Ready {
    /// The file's text, one JSON object and a newline.
    pub fn to_json(&self) -> String {
        let http = self
            .http
            .map_or_else(|| serde_json::Value::Null, |a| a.to_string().into());
        let v = serde_json::json!({ "grpc": self.grpc.to_string(), "http": http });
        format!("{v}\n")
    }

    /// Parses a ready file's text.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let addr = |key: &str| -> Result<Option<SocketAddr>, String> {
            match &v[key] {
                serde_json::Value::Null => Ok(None),
                serde_json::Value::String(s) => s
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{key} {s:?} is not HOST:PORT")),
                other => Err(format!("{key} is {other}, not a string")),
            }
        };
        let grpc = addr("grpc")?.ok_or("grpc is missing")?;
        Ok(Ready {
            grpc,
            http: addr("http")?,
        })
    }

    /// Writes `path` atomically: a temp file beside it, fsync, rename.
    pub fn write(&self, path: &Path) -> Result<(), ReadyError> {
        let failed = |source| ReadyError::Write {
            path: path.to_path_buf(),
            source,
        };
        let tmp = temp_path(path);
        let written = std::fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(self.to_json().as_bytes())?;
            f.sync_all()
        });
        if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(failed(e));
        }
        Ok(())
    }

    /// Reads `path`: `None` while the daemon has not written it yet.
    pub fn read(path: &Path) -> Result<Option<Self>, ReadyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ready::from_json(&text)
                .map(Some)
                .map_err(|why| ReadyError::Malformed {
                    path: path.to_path_buf(),
                    why,
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ReadyError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

/// `DIR/.NAME.tmp-PID`: in the same directory, so the rename stays on one
/// file system and is atomic; the pid keeps two daemons given one path from
/// writing the same temp file.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "ready".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_http() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.ready");
        assert_eq!(Ready::read(&path).expect("absent is fine"), None);
        let both = Ready {
            grpc: "127.0.0.1:7000".parse().expect("addr"),
            http: Some("127.0.0.1:7080".parse().expect("addr")),
        };
        both.write(&path).expect("write");
        assert_eq!(
            std::fs::read_to_string(&path).expect("text"),
            "{\"grpc\":\"127.0.0.1:7000\",\"http\":\"127.0.0.1:7080\"}\n"
        );
        assert_eq!(Ready::read(&path).expect("read"), Some(both));
        let grpc_only = Ready {
            grpc: "[::1]:7001".parse().expect("addr"),
            http: None,
        };
        grpc_only.write(&path).expect("overwrite");
        assert_eq!(Ready::read(&path).expect("read"), Some(grpc_only));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["master.ready"], "no temp file is left behind");
    }

    #[test]
    fn malformed_files_say_what_is_wrong() {
        for (text, why) in [
            (
                "{\"grpc\": \"nope\", \"http\": null}",
                "grpc \"nope\" is not HOST:PORT",
            ),
            ("{\"http\": null}", "grpc is missing"),
            (
                "{\"grpc\": \"127.0.0.1:1\", \"http\": 7}",
                "http is 7, not a string",
            ),
        ] {
            assert_eq!(Ready::from_json(text), Err(why.to_owned()), "{text}");
        }
        assert!(Ready::from_json("{\"grpc\": \"127.0.0").is_err());
    }

    #[test]
    fn an_unwritable_directory_is_an_error_naming_the_file() {
        let path = Path::new("/nonexistent-keel-dir/x.ready");
        let r = Ready {
            grpc: "127.0.0.1:1".parse().expect("addr"),
            http: None,
        };
        let err = r.write(path).expect_err("no such directory");
        assert!(
            err.to_string().contains("/nonexistent-keel-dir/x.ready"),
            "{err}"
        );
    }
}
