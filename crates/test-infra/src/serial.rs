//! Waiting for marker lines in a guest's serial console log (the file behind QEMU's
//! `-serial file:PATH`).

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread;
use std::time::{Duration, Instant};

use crate::{QemuError, QemuGuard};

/// How often the log file is re-read.
const POLL: Duration = Duration::from_millis(50);

/// How much of the log's end an error quotes, bytes.
const TAIL: usize = 2000;

/// Why a marker was not seen.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    /// The marker did not appear in time.
    #[error("no {marker:?} in {path} after {waited:?}; the log ends with:\n{tail}")]
    Timeout {
        /// The awaited marker.
        marker: String,
        /// The log file.
        path: PathBuf,
        /// How long the wait lasted.
        waited: Duration,
        /// The end of the log.
        tail: String,
    },
    /// QEMU exited before the marker appeared.
    #[error("QEMU exited ({status}) before {marker:?} appeared in {path}; stderr:\n{stderr}\nthe log ends with:\n{tail}")]
    QemuExited {
        /// The awaited marker.
        marker: String,
        /// The log file.
        path: PathBuf,
        /// QEMU's exit status.
        status: ExitStatus,
        /// What QEMU wrote to stderr.
        stderr: String,
        /// The end of the log.
        tail: String,
    },
    /// The log file exists but could not be read.
    #[error("cannot read serial log {path}")]
    Read {
        /// The log file.
        path: PathBuf,
        /// The read failure.
        #[source]
        source: std::io::Error,
    },
    /// Asking whether QEMU is still running failed.
    #[error(transparent)]
    Qemu(#[from] QemuError),
}

/// A serial console log read from front to back: each wait resumes after the line where the
/// previous one matched, so two waits prove that two markers appeared in that order.
#[derive(Debug)]
pub struct SerialLog {
    path: PathBuf,
    /// Bytes of the file already consumed by earlier waits.
    consumed: usize,
}

impl SerialLog {
    /// A reader for `path`, which need not exist yet (QEMU creates it when it starts).
    pub fn new(path: impl Into<PathBuf>) -> SerialLog {
        SerialLog { path: path.into(), consumed: 0 }
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole log so far (invalid UTF-8 replaced); empty if the file does not exist yet.
    pub fn contents(&self) -> Result<String, SerialError> {
        Ok(String::from_utf8_lossy(&self.read()?).into_owned())
    }

    /// Waits up to `timeout` for a complete line containing `marker` after the previous match, and
    /// returns that line from the marker on, without the line ending (`"VINE-IP 10.0.2.15"`): what
    /// precedes the marker on the line (a shell prompt, a firmware escape sequence) is dropped.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> Result<String, SerialError> {
        self.wait(marker, timeout, None)
    }

    /// Like [`SerialLog::wait_for`], but fails as soon as `qemu` exits instead of waiting out the
    /// timeout, quoting QEMU's stderr.
    pub fn wait_for_running(
        &mut self,
        marker: &str,
        timeout: Duration,
        qemu: &mut QemuGuard,
    ) -> Result<String, SerialError> {
        self.wait(marker, timeout, Some(qemu))
    }

    fn wait(
        &mut self,
        marker: &str,
        timeout: Duration,
        mut qemu: Option<&mut QemuGuard>,
    ) -> Result<String, SerialError> {
        let start = Instant::now();
        loop {
            // Check for exit before reading, so the last read sees everything QEMU wrote.
            let exited = match qemu.as_deref_mut() {
                Some(q) => q.try_exit()?,
                None => None,
            };
            let log = self.read()?;
            if let Some((line, next)) = find_line(&log, self.consumed, marker.as_bytes()) {
                self.consumed = next;
                return Ok(line);
            }
            if let (Some(status), Some(q)) = (exited, qemu.as_deref_mut()) {
                return Err(SerialError::QemuExited {
                    marker: marker.to_owned(),
                    path: self.path.clone(),
                    status,
                    stderr: q.stderr(),
                    tail: tail(&log),
                });
            }
            if start.elapsed() >= timeout {
                return Err(SerialError::Timeout {
                    marker: marker.to_owned(),
                    path: self.path.clone(),
                    waited: start.elapsed(),
                    tail: tail(&log),
                });
            }
            thread::sleep(POLL);
        }
    }

    fn read(&self) -> Result<Vec<u8>, SerialError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(SerialError::Read { path: self.path.clone(), source }),
        }
    }
}

/// The first complete line of `log[from..]` containing `marker`: the text from the marker to the
/// end of the line (`\r` dropped) and the offset just past the line's `\n`.
fn find_line(log: &[u8], from: usize, marker: &[u8]) -> Option<(String, usize)> {
    let rest = log.get(from..)?;
    // `windows(0)` would panic; an empty marker matches where the search starts.
    let at =
        from + if marker.is_empty() { 0 } else { rest.windows(marker.len()).position(|w| w == marker)? };
    let end = at + log[at..].iter().position(|&b| b == b'\n')?;
    let line = String::from_utf8_lossy(&log[at..end]).trim_end_matches('\r').to_owned();
    Some((line, end + 1))
}

/// The last [`TAIL`] bytes of `log`, as text.
fn tail(log: &[u8]) -> String {
    String::from_utf8_lossy(&log[log.len().saturating_sub(TAIL)..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_line_returns_the_line_from_the_marker_on() {
        let log = b"\x1b[2JBooting\r\n/ # VINE-IP 10.0.2.15\r\nmore\r\n";
        let (line, next) = find_line(log, 0, b"VINE-IP").expect("marker present");
        assert_eq!(line, "VINE-IP 10.0.2.15");
        assert_eq!(&log[next..], b"more\r\n");
    }

    #[test]
    fn find_line_waits_for_the_end_of_the_line() {
        assert_eq!(find_line(b"VINE-IP 10.0", 0, b"VINE-IP"), None);
    }

    #[test]
    fn find_line_skips_what_was_consumed() {
        let log = b"VINE-COUNTER 1\nVINE-COUNTER 2\n";
        let (_, next) = find_line(log, 0, b"VINE-COUNTER").expect("first");
        assert_eq!(find_line(log, next, b"VINE-COUNTER"), Some(("VINE-COUNTER 2".to_owned(), log.len())));
        assert_eq!(find_line(log, log.len(), b"VINE-COUNTER"), None);
    }

    #[test]
    fn wait_for_times_out_quoting_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("serial.log");
        std::fs::write(&path, "VINE-BOOT-OK\n").expect("write log");
        let mut log = SerialLog::new(&path);
        assert_eq!(log.wait_for("VINE-BOOT-OK", Duration::ZERO).expect("present"), "VINE-BOOT-OK");
        let err = log.wait_for("VINE-BOOT-OK", Duration::from_millis(100)).unwrap_err();
        assert!(matches!(&err, SerialError::Timeout { tail, .. } if tail == "VINE-BOOT-OK\n"), "{err:?}");
    }

    #[test]
    fn a_missing_log_reads_as_empty() {
        let log = SerialLog::new("/nonexistent/serial.log");
        assert_eq!(log.contents().expect("missing is empty"), "");
    }
}
