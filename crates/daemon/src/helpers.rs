//! The one supervisor of the daemon's detached helper processes — disk servers (`vine disk
//! serve`, [`crate::disks`]) and DHCP servers (`vine network dhcp-serve`, [`crate::networks`]):
//! how they are started (their own process group, so they outlive the daemon; output appended to
//! a log), when they count as ready (a line they print), how they are known (pid and start time,
//! so a recycled pid is never mistaken for them), adopted by the next daemon, and stopped
//! (SIGTERM, so they finish and flush; SIGKILL after a grace period).

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use vmm::process::{self, Identity};

/// A helper process this daemon started or adopted.
#[derive(Debug)]
pub struct Helper {
    /// Its pid and start time.
    pub id: Identity,
    /// Its handle, when this daemon started it (so it is reaped).
    child: Option<Child>,
}

/// Why a helper did not start (said of it: "the DHCP server exited …").
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// It could not be spawned.
    #[error("could not be started: {0}")]
    Spawn(String),
    /// It exited before it was ready.
    #[error("exited ({status}): {said}")]
    Exited {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed, one line after another.
        said: String,
    },
    /// It was not ready in time (it is killed).
    #[error("did not start within {0:?}")]
    Timeout(Duration),
}

/// What `log` holds from byte `offset` on (at most 64 KiB).
pub fn read_from(log: &Path, offset: u64) -> String {
    use std::io::Seek;
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        let _ = f.seek(std::io::SeekFrom::Start(offset));
        let _ = f.take(64 << 10).read_to_string(&mut s);
    }
    s
}

impl Helper {
    /// Starts `cmd` detached with its output appended to `log`, hands its pid to `spawned` at
    /// once (to place it in a cgroup while it starts), and waits up to `within` until `ready`
    /// finds what it has printed since it started; returns the helper and that output.
    pub fn start(
        cmd: Command,
        log: &Path,
        within: Duration,
        spawned: impl FnOnce(u32),
        ready: impl Fn(&str) -> bool,
    ) -> Result<(Helper, String), HelperError> {
        let offset = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
        let (mut child, id) = process::spawn_detached(cmd, std::process::Stdio::null(), log)
            .map_err(|e| HelperError::Spawn(e.to_string()))?;
        spawned(id.pid);
        let deadline = Instant::now() + within;
        loop {
            let said = read_from(log, offset);
            if ready(&said) {
                return Ok((Helper { id, child: Some(child) }, said));
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(HelperError::Exited { status, said: said.trim().replace('\n', " | ") });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HelperError::Timeout(within));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The helper known as `id`, if it still runs (found again after a daemon restart).
    pub fn adopt(id: Identity) -> Option<Helper> {
        process::is_alive(id).then_some(Helper { id, child: None })
    }

    /// A helper known as `id`, whether or not it still runs (to stop one for good).
    pub fn known(id: Identity) -> Helper {
        Helper { id, child: None }
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => process::is_alive(self.id),
        }
    }

    /// Sends it `sig` if it still runs.
    fn signal(&self, sig: libc::c_int) {
        if process::is_alive(self.id) {
            // SAFETY: kill(2) on a helper this daemon started, re-identified by its start time
            // just now (a recycled pid is not it); it touches no memory of ours.
            unsafe {
                libc::kill(self.id.pid as libc::pid_t, sig);
            }
        }
    }

    /// Stops it: SIGTERM, then SIGKILL if it is still there after `grace`. Returns whether it
    /// had to be killed.
    pub fn stop(&mut self, grace: Duration) -> bool {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            if !self.running() {
                return false;
            }
            if Instant::now() > deadline {
                self.signal(libc::SIGKILL);
                if let Some(c) = self.child.as_mut() {
                    let _ = c.wait();
                }
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_helper_is_ready_when_it_says_so_and_stops_on_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("h.log");
        std::fs::write(&log, "an earlier run said ready\n").unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo starting; sleep 0.2; echo ready now; exec sleep 60"]);
        let mut placed = None;
        let (mut h, said) = Helper::start(
            cmd,
            &log,
            Duration::from_secs(10),
            |pid| placed = Some(pid),
            |s| s.contains("ready now"),
        )
        .unwrap();
        assert_eq!(placed, Some(h.id.pid));
        assert!(said.starts_with("starting"), "only what this run printed: {said:?}");
        assert!(h.running());
        let mut again = Helper::adopt(h.id).expect("adopted while it runs");
        assert!(again.running());
        assert!(!h.stop(Duration::from_secs(5)), "sleep ends on SIGTERM");
        assert!(!again.running());
        assert!(Helper::adopt(h.id).is_none());
    }

    #[test]
    fn a_helper_that_exits_or_never_gets_ready_is_an_error_naming_why() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("h.log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo no such image; exit 3"]);
        let e =
            Helper::start(cmd, &log, Duration::from_secs(10), |_| {}, |s| s.contains("ready")).unwrap_err();
        assert!(e.to_string().contains("no such image"), "{e}");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "exec sleep 60"]);
        let e = Helper::start(cmd, &log, Duration::from_millis(200), |_| {}, |s| s.contains("ready"))
            .unwrap_err();
        assert!(matches!(e, HelperError::Timeout(_)), "{e}");
    }

    #[test]
    fn a_helper_that_ignores_sigterm_is_killed_after_its_grace() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("h.log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "trap '' TERM; echo up; while :; do sleep 0.05; done"]);
        let (mut h, _) =
            Helper::start(cmd, &log, Duration::from_secs(10), |_| {}, |s| s.contains("up")).unwrap();
        assert!(h.stop(Duration::from_millis(300)), "it had to be killed");
        assert!(!h.running());
    }
}
