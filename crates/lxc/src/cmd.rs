//! LXC's commands for one container directory (`lxc-start -P PATH -n NAME` …), with their
//! failures turned into sentences that carry LXC's own reason (the last lines of its log).
//!
//! The commands run with a `PATH` that leaves out shadow's `newuidmap` and `newgidmap`. When
//! LXC finds both on `PATH` it writes every id map through them, even for root: two set-user-id
//! programs started per map, about a third of a busybox container's start on this machine
//! (bench/containers.sh). Without them LXC, run by root, writes `/proc/PID/uid_map` and
//! `gid_map` itself: the same maps. What the helpers guard, that shadow never hands another user
//! ids a container uses, holds because vine registers its whole range for root in `/etc/subuid`
//! and `/etc/subgid` ([`crate::idmap::ensure_registered`]).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

/// A failed LXC command.
#[derive(Debug, thiserror::Error)]
pub enum LxcError {
    /// The command could not be run at all.
    #[error("cannot run {command}: {source} (is Debian's lxc package installed?)")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// The command ran and failed.
    #[error("{command} failed: {why}")]
    Failed {
        /// The command.
        command: String,
        /// LXC's words.
        why: String,
    },
    /// The container's configuration could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// What LXC says of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Not running.
    Stopped,
    /// Running, with its init's host pid.
    Running(u32),
    /// Frozen, with its init's host pid.
    Frozen(u32),
    /// Between those (starting, stopping, freezing).
    Busy,
}

/// LXC's commands on containers under one directory (`-P`): each container has
/// `PATH/NAME/config`.
#[derive(Debug, Clone)]
pub struct Lxc {
    path: PathBuf,
    /// The `PATH` LXC's commands run with (this process's, less the id-map helpers' folders).
    search: OsString,
}

/// The shadow helpers LXC would write id maps through.
const IDMAP_HELPERS: [&str; 2] = ["newuidmap", "newgidmap"];

impl Lxc {
    /// Containers under `path`.
    pub fn new(path: impl Into<PathBuf>) -> Lxc {
        let search = std::env::var_os("PATH").unwrap_or_default();
        Lxc { path: path.into(), search: without_idmap_helpers(&search) }
    }

    /// The directory of containers (LXC's `-P`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The container's directory (its `config` is there).
    pub fn dir(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes the container's configuration (not when the file holds it already: most starts
    /// write the same text, and a write and rename cost more than a read).
    pub fn write_config(&self, name: &str, text: &str) -> Result<(), LxcError> {
        let dir = self.dir(name);
        let path = dir.join("config");
        if std::fs::read(&path).is_ok_and(|old| old == text.as_bytes()) {
            return Ok(());
        }
        let w = std::fs::create_dir_all(&dir).and_then(|()| {
            let tmp = dir.join("config.tmp");
            std::fs::write(&tmp, text)?;
            std::fs::rename(&tmp, &path)
        });
        w.map_err(|source| LxcError::Write { path, source })
    }

    fn run(&self, tool: &str, name: &str, args: &[&str]) -> Result<Output, LxcError> {
        // Found on this process's PATH: the command's own PATH may lack LXC's folder.
        let program = std::env::var_os("PATH")
            .and_then(|p| std::env::split_paths(&p).map(|d| d.join(tool)).find(|f| f.is_file()))
            .unwrap_or_else(|| PathBuf::from(tool));
        let mut cmd = Command::new(program);
        cmd.env("PATH", &self.search);
        cmd.arg("-P").arg(&self.path).arg("-n").arg(name).args(args);
        cmd.output().map_err(|source| LxcError::Spawn { command: tool.into(), source })
    }

    fn check(&self, tool: &str, name: &str, args: &[&str], log: Option<&Path>) -> Result<Output, LxcError> {
        // Only what this command adds to the log is its reason.
        let from = log.and_then(|l| std::fs::metadata(l).ok()).map_or(0, |m| m.len());
        let out = self.run(tool, name, args)?;
        if out.status.success() {
            return Ok(out);
        }
        let added = log.map(|l| log_since(l, from)).unwrap_or_default();
        Err(LxcError::Failed {
            command: format!("{tool} {}", args.join(" ")).trim().into(),
            why: reason(&out, &added),
        })
    }

    /// Starts the container in the background (`lxc-start -d`); it runs once this returns.
    /// `log` is its LXC log, read for the reason when it cannot start.
    pub fn start(&self, name: &str, log: &Path) -> Result<(), LxcError> {
        self.check("lxc-start", name, &["-d"], Some(log)).map(|_| ())
    }

    /// Asks its init to power off and waits up to `timeout` (`lxc-stop --nokill -t`): an
    /// error when it is still running then.
    pub fn shutdown(&self, name: &str, timeout: Duration, log: &Path) -> Result<(), LxcError> {
        let t = timeout.as_secs().max(1).to_string();
        self.check("lxc-stop", name, &["--nokill", "-t", &t], Some(log)).map(|_| ())
    }

    /// Kills it at once (`lxc-stop -k`).
    pub fn kill(&self, name: &str, log: &Path) -> Result<(), LxcError> {
        self.check("lxc-stop", name, &["-k"], Some(log)).map(|_| ())
    }

    /// Freezes every process (the freezer cgroup).
    pub fn freeze(&self, name: &str, log: &Path) -> Result<(), LxcError> {
        self.check("lxc-freeze", name, &[], Some(log)).map(|_| ())
    }

    /// Thaws it.
    pub fn unfreeze(&self, name: &str, log: &Path) -> Result<(), LxcError> {
        self.check("lxc-unfreeze", name, &[], Some(log)).map(|_| ())
    }

    /// What LXC says of it (`lxc-info -s -p`).
    pub fn state(&self, name: &str) -> Result<RunState, LxcError> {
        let out = self.run("lxc-info", name, &["-s", "-p", "-H"])?;
        Ok(parse_info(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Checkpoints it into `dir` with CRIU and stops it (`lxc-checkpoint -s`).
    pub fn checkpoint(&self, name: &str, dir: &Path, log: &Path) -> Result<(), LxcError> {
        let d = dir.display().to_string();
        self.check("lxc-checkpoint", name, &["-s", "-D", &d], Some(log)).map(|_| ())
    }

    /// Restores it from `dir` (`lxc-checkpoint -r`).
    pub fn restore(&self, name: &str, dir: &Path, log: &Path) -> Result<(), LxcError> {
        let d = dir.display().to_string();
        self.check("lxc-checkpoint", name, &["-r", "-D", &d], Some(log)).map(|_| ())
    }
}

/// `search` less every folder that holds one of the id-map helpers (on a merged-/usr system
/// `/bin` is `/usr/bin`, so both go).
fn without_idmap_helpers(search: &OsStr) -> OsString {
    let kept = std::env::split_paths(search)
        .filter(|d| !IDMAP_HELPERS.iter().any(|h| d.join(h).exists()))
        .collect::<Vec<_>>();
    std::env::join_paths(kept).unwrap_or_default()
}

/// `lxc-info -s -p`'s answer: `State:` and `PID:` lines.
fn parse_info(text: &str) -> RunState {
    let field =
        |key: &str| text.lines().find_map(|l| l.trim().strip_prefix(key).map(|v| v.trim().to_string()));
    let state = field("State:").unwrap_or_default();
    let pid = field("PID:").and_then(|p| p.parse::<u32>().ok());
    match (state.as_str(), pid) {
        ("RUNNING", Some(p)) => RunState::Running(p),
        ("FROZEN", Some(p)) => RunState::Frozen(p),
        ("STOPPED", _) | ("", _) => RunState::Stopped,
        _ => RunState::Busy,
    }
}

/// What a log holds from byte `from` on.
fn log_since(log: &Path, from: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        if f.seek(SeekFrom::Start(from)).is_ok() {
            let _ = f.take(1 << 20).read_to_string(&mut text);
        }
    }
    text
}

/// A failed command's reason: its error lines and those it added to the log.
fn reason(out: &Output, log: &str) -> String {
    let pick = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.contains("ERROR") || l.contains("Error"))
            .map(|l| l.rsplit(" - ").next().unwrap_or(l).trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    };
    let mut lines = pick(&String::from_utf8_lossy(&out.stderr));
    lines.extend(pick(log));
    if lines.is_empty() {
        let all = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return if all.is_empty() { format!("exit status {}", out.status) } else { all };
    }
    lines.dedup();
    let n = lines.len();
    lines[n.saturating_sub(4)..].join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn the_commands_path_leaves_out_the_id_map_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let (helpers, tools, other) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
        for d in [&helpers, &tools, &other] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(helpers.join("newuidmap"), "").unwrap();
        std::fs::write(tools.join("lxc-start"), "").unwrap();
        std::fs::write(other.join("newgidmap"), "").unwrap();
        let search = std::env::join_paths([&tools, &helpers, &other]).unwrap();
        assert_eq!(without_idmap_helpers(&search), std::env::join_paths([&tools]).unwrap());
        assert_eq!(without_idmap_helpers(&std::env::join_paths([&helpers]).unwrap()), OsString::new());
    }

    #[test]
    fn lxc_info_is_read_by_its_keys() {
        assert_eq!(parse_info("State:          RUNNING\nPID:            4242\n"), RunState::Running(4242));
        assert_eq!(parse_info("State:          FROZEN\nPID:            7\n"), RunState::Frozen(7));
        assert_eq!(parse_info("State:          STOPPED\n"), RunState::Stopped);
        assert_eq!(parse_info("State:          STARTING\n"), RunState::Busy);
    }

    #[test]
    fn a_failure_s_reason_is_lxc_s_error_lines() {
        let out = Output {
            status: std::process::ExitStatus::from_raw(256),
            stdout: vec![],
            stderr: b"lxc-start: c1: ../src/lxc/tools/lxc_start.c: main: 306 The container failed to start\n"
                .to_vec(),
        };
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("lxc.log");
        std::fs::write(&log, "lxc-start c1 2025 ERROR    conf - ../src/lxc/conf.c:1 - an old failure\n")
            .unwrap();
        let from = std::fs::metadata(&log).unwrap().len();
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(
            &mut f,
            b"lxc-start c1 2026 ERROR    conf - ../src/lxc/conf.c:lxc_map_ids:3708 - newuidmap failed to write mapping\n",
        )
        .unwrap();
        assert_eq!(reason(&out, &log_since(&log, from)), "newuidmap failed to write mapping");
        assert_eq!(
            reason(&out, ""),
            "lxc-start: c1: ../src/lxc/tools/lxc_start.c: main: 306 The container failed to start"
        );
    }
}
