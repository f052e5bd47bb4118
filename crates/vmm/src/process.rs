//! Processes a VM needs (QEMU, its disk servers) started so that they outlive the daemon, and
//! recognised again after a daemon restart: a pid alone can be recycled, so a process is known by
//! its pid *and* its start time (field 22 of /proc/PID/stat, clock ticks since boot).

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

/// A process as recorded in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
}

/// Errors starting or identifying a process.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The log file could not be opened.
    #[error("cannot open log {path}: {source}")]
    Log {
        /// The log.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// /proc/PID/stat could not be read or parsed right after the start.
    #[error("process {0} vanished right after it started")]
    Vanished(u32),
}

/// Parses the start time (field 22) out of a /proc/PID/stat line. The command name (field 2) is
/// in parentheses and may itself contain spaces and parentheses, so fields are counted after the
/// last `)`.
pub fn start_ticks_from_stat(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After ")": field 3 (state) is the first; field 22 is the 20th.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The identity of a live process, or `None` if there is no such process.
pub fn identify(pid: u32) -> Option<Identity> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(Identity { pid, start_ticks: start_ticks_from_stat(&stat)? })
}

/// Whether the recorded process is still the one running under that pid (not a zombie).
pub fn is_alive(id: Identity) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", id.pid)) else { return false };
    let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
    start_ticks_from_stat(&stat) == Some(id.start_ticks) && state != Some("Z")
}

/// Starts `cmd` in its own process group (so signals to the daemon's group do not reach it),
/// stdin from `stdin`, stdout and stderr appended to `log`. The caller reaps it while it lives;
/// after a daemon restart it is adopted by init and watched through [`is_alive`].
///
/// Nothing runs between fork and exec here, so the standard library starts the child with
/// posix_spawn(3) and the caller's process is not copied; a command that needs such work goes
/// through `sandbox::launch` instead of `pre_exec`.
pub fn spawn_detached(
    mut cmd: Command,
    stdin: Stdio,
    log: &Path,
) -> Result<(std::process::Child, Identity), ProcessError> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| ProcessError::Log { path: log.display().to_string(), source })?;
    let err =
        out.try_clone().map_err(|source| ProcessError::Log { path: log.display().to_string(), source })?;
    let program = cmd.get_program().to_string_lossy().into_owned();
    cmd.stdin(stdin).stdout(out).stderr(err).process_group(0);
    let child = cmd.spawn().map_err(|source| ProcessError::Spawn { program, source })?;
    let id = identify(child.id()).ok_or(ProcessError::Vanished(child.id()))?;
    Ok((child, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_is_found_after_a_tricky_command_name() {
        let stat = "4242 (qemu) x (y)) S 1 4242 4242 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 987654 1000 10";
        assert_eq!(start_ticks_from_stat(stat), Some(987_654));
        assert_eq!(start_ticks_from_stat("garbage"), None);
        assert_eq!(start_ticks_from_stat("1 (x) S 1"), None);
    }

    #[test]
    fn a_detached_child_is_recognised_until_it_dies() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; exec sleep 30"]);
        let log = dir.path().join("log");
        let (mut child, id) = spawn_detached(cmd, Stdio::null(), &log).unwrap();
        assert!(is_alive(id));
        // Its output reaches the log.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("started") {
            assert!(std::time::Instant::now() < deadline, "the child's output never reached its log");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // Its own process group: not the test's.
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", id.pid)).unwrap();
        let pgrp: u32 =
            stat[stat.rfind(')').unwrap() + 1..].split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(pgrp, id.pid);
        // Same pid, other start time: not the same process.
        assert!(!is_alive(Identity { pid: id.pid, start_ticks: id.start_ticks + 1 }));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!is_alive(id));
    }
}
