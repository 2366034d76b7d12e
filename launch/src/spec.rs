//! What to run: a daemon's program, arguments, environment, log file and
//! ready file, and how it is detached from the terminal. A [`Spec`] is
//! kept after the start, so a restart can run it again (with a changed
//! flag, e.g. the same port).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::process::LaunchError;

/// How to start one daemon. Cheap to clone, so a restart can reuse it.
#[derive(Debug, Clone)]
pub struct Spec {
    pub(crate) name: String,
    pub(crate) program: PathBuf,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    removed: Vec<OsString>,
    keep_keel_env: bool,
    pub(crate) log: PathBuf,
    pub(crate) ready_file: Option<PathBuf>,
    piped: bool,
    own_group: bool,
    die_with_parent: bool,
}

impl Spec {
    /// Runs `program` as `name` (e.g. `master`, `cs1`), appending its
    /// stdout and stderr to `log`. It inherits this process's environment.
    pub fn new(name: &str, program: impl Into<PathBuf>, log: impl Into<PathBuf>) -> Self {
        Spec {
            name: name.to_owned(),
            program: program.into(),
            args: Vec::new(),
            envs: Vec::new(),
            removed: Vec::new(),
            keep_keel_env: true,
            log: log.into(),
            ready_file: None,
            piped: false,
            own_group: false,
            die_with_parent: false,
        }
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable of the child.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Removes an inherited environment variable from the child.
    pub fn env_remove(mut self, key: impl Into<OsString>) -> Self {
        self.removed.push(key.into());
        self
    }

    /// Starts the child without this process's `KEEL_*` variables (the
    /// operator's settings are for this program, not its daemons); those
    /// set with [`Spec::env`] still reach it.
    pub fn without_keel_env(mut self) -> Self {
        self.keep_keel_env = false;
        self
    }

    /// Passes `--ready-file` beside the log (`master.log` → `master.ready`)
    /// and waits on it: for Keel's daemons.
    pub fn keel_daemon(mut self) -> Self {
        self.ready_file = Some(self.log.with_extension("ready"));
        self
    }

    /// Pipes the child's stdin and stdout to this process instead (stderr
    /// still goes to the log): `keel-master --stdio`.
    pub fn piped_stdio(mut self) -> Self {
        self.piped = true;
        self
    }

    /// Puts the child in a process group of its own, so a Ctrl-C in the
    /// terminal reaches only this process, which then stops it in order.
    pub fn own_process_group(mut self) -> Self {
        self.own_group = true;
        self
    }

    /// Asks the kernel to SIGTERM the child when the thread that spawned it
    /// dies: covers a SIGKILLed parent, which no guard can. Only for
    /// parents that spawn from a thread living as long as the process.
    pub fn die_with_parent(mut self) -> Self {
        self.die_with_parent = true;
        self
    }

    /// Replaces the value after `flag` (e.g. `--listen`) when it is given.
    pub fn set_flag(&mut self, flag: &str, value: &str) {
        if let Some(i) = self.args.iter().position(|a| a == flag)
            && let Some(v) = self.args.get_mut(i + 1)
        {
            *v = value.into();
        }
    }

    /// Whether `arg` is one of the arguments.
    pub fn has_arg(&self, arg: &str) -> bool {
        self.args.iter().any(|a| a == arg)
    }

    /// The daemon's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn command(&self) -> Result<Command, LaunchError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|source| self.log_error(source))?;
        let out = if self.piped {
            Stdio::piped()
        } else {
            Stdio::from(log.try_clone().map_err(|e| self.log_error(e))?)
        };
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(if self.piped {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(out)
            .stderr(log);
        if let Some(ready) = &self.ready_file {
            cmd.arg("--ready-file").arg(ready);
        }
        if !self.keep_keel_env {
            for (key, _) in std::env::vars_os() {
                if key.to_string_lossy().starts_with("KEEL_") {
                    cmd.env_remove(key);
                }
            }
        }
        for key in &self.removed {
            cmd.env_remove(key);
        }
        cmd.envs(self.envs.iter().map(|(k, v)| (k, v)));
        if self.own_group {
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        }
        if self.die_with_parent {
            crate::signal::die_with_parent(&mut cmd);
        }
        Ok(cmd)
    }

    fn log_error(&self, source: std::io::Error) -> LaunchError {
        LaunchError::Log {
            name: self.name.clone(),
            path: self.log.clone(),
            source,
        }
    }
}
