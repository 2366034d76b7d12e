//! The two process-level calls the launcher makes: SIGTERM to a child, and
//! the parent-death signal set in a child before it runs its program.

use std::process::Command;

/// SIGTERM to `pid`, a child not yet reaped (so the pid is still ours).
pub fn terminate(pid: u32) {
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
}

/// Makes the kernel SIGTERM the child when the thread that spawned it dies.
#[allow(unsafe_code)]
pub fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = i32::try_from(std::process::id()).unwrap_or_default();
    // SAFETY: the closure runs in the forked child before exec; it only makes
    // two system calls (prctl, getppid) and builds an io::Error from an errno
    // without allocating, all async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))?;
            // The parent may have died between fork and prctl.
            if rustix::process::Pid::as_raw(rustix::process::getppid()) != parent {
                return Err(rustix::io::Errno::SRCH.into());
            }
            Ok(())
        });
    }
}
