//! The QEMU process a test owns: the command line that boots the kit, and a guard that kills the
//! process when the test ends, however it ends.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::Kit;

/// The QEMU binary the tests run.
const QEMU: &str = "qemu-system-x86_64";

/// Guest memory for kit guests, MiB: the kernel and initramfs need about 100.
const GUEST_MEMORY_MIB: u32 = 256;

/// How often a wait checks whether QEMU has exited.
const POLL: Duration = Duration::from_millis(50);

/// Why a QEMU process could not be started or waited for.
#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    /// The process could not be spawned.
    #[error("cannot start {program}")]
    Spawn {
        /// The program that was run.
        program: String,
        /// The spawn failure.
        #[source]
        source: std::io::Error,
    },
    /// Asking the OS about the child failed.
    #[error("cannot wait for QEMU (pid {pid})")]
    Wait {
        /// QEMU's PID.
        pid: u32,
        /// The wait failure.
        #[source]
        source: std::io::Error,
    },
    /// QEMU was still running when the wait gave up.
    #[error("QEMU (pid {pid}) still running after {waited:?}")]
    StillRunning {
        /// QEMU's PID.
        pid: u32,
        /// How long the wait lasted.
        waited: Duration,
    },
}

/// `qemu-system-x86_64` booting `kit` under TCG with no devices but a serial console written to
/// `serial_log`: `-accel tcg -nographic -nodefaults -serial file:LOG -m 256 -no-reboot -kernel
/// … -initrd … -append "<kit cmdline> <options>"`. Add disks, NICs and QMP with `.args(…)`.
pub fn tcg_command(kit: &Kit, serial_log: &Path, options: &[&str]) -> Command {
    let mut cmd = Command::new(QEMU);
    cmd.args(["-accel", "tcg", "-nographic", "-nodefaults", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", serial_log.display()))
        .args(["-m", &GUEST_MEMORY_MIB.to_string()])
        .arg("-kernel")
        .arg(&kit.vmlinuz)
        .arg("-initrd")
        .arg(&kit.initrd)
        .arg("-append")
        .arg(kit.cmdline_with(options));
    cmd
}

/// A running QEMU that is killed (SIGKILL to its PID) and reaped when the guard drops.
/// Its stderr is collected for error messages; stdin and stdout are `/dev/null`.
#[derive(Debug)]
pub struct QemuGuard {
    child: Child,
    exit: Option<ExitStatus>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl QemuGuard {
    /// Spawns `cmd` (usually from [`tcg_command`]).
    pub fn spawn(mut cmd: Command) -> Result<QemuGuard, QemuError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| QemuError::Spawn { program, source })?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stderr.take().expect("stderr was set to Stdio::piped()");
        let sink = Arc::clone(&stderr);
        let stderr_reader = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(&buf[..n]);
            }
        });
        Ok(QemuGuard { child, exit: None, stderr, stderr_reader: Some(stderr_reader) })
    }

    /// QEMU's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status if it has exited, without blocking.
    pub fn try_exit(&mut self) -> Result<Option<ExitStatus>, QemuError> {
        if self.exit.is_none() {
            self.exit =
                self.child.try_wait().map_err(|source| QemuError::Wait { pid: self.pid(), source })?;
        }
        Ok(self.exit)
    }

    /// Waits up to `timeout` for QEMU to exit by itself (guest power-off, `quit`).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, QemuError> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_exit()? {
                return Ok(status);
            }
            if start.elapsed() >= timeout {
                return Err(QemuError::StillRunning { pid: self.pid(), waited: start.elapsed() });
            }
            thread::sleep(POLL);
        }
    }

    /// What QEMU has written to stderr so far (all of it once it has exited and been waited for).
    pub fn stderr(&mut self) -> String {
        if self.exit.is_some() {
            if let Some(reader) = self.stderr_reader.take() {
                // The pipe closes when QEMU exits; the reader has then read everything.
                let _ = reader.join();
            }
        }
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Kills QEMU now (SIGKILL to its PID) and reaps it; a no-op once it has exited.
    pub fn kill(&mut self) -> Result<ExitStatus, QemuError> {
        if let Some(status) = self.try_exit()? {
            return Ok(status);
        }
        let pid = self.pid();
        // Fails only if the child has already been reaped, which `try_exit` rules out.
        self.child.kill().map_err(|source| QemuError::Wait { pid, source })?;
        let status = self.child.wait().map_err(|source| QemuError::Wait { pid, source })?;
        self.exit = Some(status);
        Ok(status)
    }
}

impl Drop for QemuGuard {
    fn drop(&mut self) {
        // Nothing useful to do with an error while dropping: the child is gone or unkillable.
        let _ = self.kill();
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
    }
}
