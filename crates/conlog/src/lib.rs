//! A VM's serial console log, bounded and rotated, as libvirt's virtlogd keeps QEMU's logs.
//!
//! QEMU's serial port is a socket chardev in client mode connected to the logger ([`serve`]),
//! which writes what the guest prints to `console.log` and rotates it at [`MAX_FILE`] bytes into
//! `console.log.1` … `console.log.N` ([`KEEP`] of them), so the log never holds more than
//! `MAX_FILE × (KEEP + 1)` bytes whatever the guest writes. Viewers send keystrokes through the
//! logger's console socket; they read output from the log. The logger ends when QEMU's last
//! connection closes, so it lives exactly as long as its QEMU, and a daemon restart does not
//! touch it.
//!
//! [`page`] reads the rotated files back as one stream, oldest byte first, a page at a time, so
//! no reader ever holds more than a page in memory.
#![warn(missing_docs)]

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Largest console log file before it is rotated (libvirt's virtlogd: 2 MiB).
pub const MAX_FILE: u64 = 2 << 20;
/// Rotated files kept besides the current one (virtlogd keeps 3 files in all; vine 4).
pub const KEEP: usize = 3;
/// Most viewers sending keystrokes at once.
pub const MAX_VIEWERS: usize = 8;
/// Largest page [`page`] returns.
pub const MAX_PAGE: u64 = 1 << 20;

/// The log's files, oldest first: `console.log.KEEP` … `console.log.1`, `console.log`.
pub fn files(log: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = (1..=KEEP).rev().map(|i| rotated(log, i)).collect();
    v.push(log.to_path_buf());
    v
}

fn rotated(log: &Path, i: usize) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// The console log being written: appends, rotating at `max_file` bytes.
pub struct RotatingLog {
    path: PathBuf,
    file: File,
    size: u64,
    max_file: u64,
}

impl RotatingLog {
    /// Opens (appending to) the log at `path`.
    pub fn open(path: &Path, max_file: u64) -> std::io::Result<RotatingLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingLog { path: path.to_path_buf(), file, size, max_file })
    }

    /// Appends `bytes`, rotating first whenever the current file would pass its bound.
    pub fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            if self.size >= self.max_file {
                self.rotate()?;
            }
            let room = (self.max_file - self.size) as usize;
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.file.write_all(now)?;
            self.size += now.len() as u64;
            bytes = rest;
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        for i in (1..KEEP).rev() {
            let from = rotated(&self.path, i);
            if from.exists() {
                std::fs::rename(&from, rotated(&self.path, i + 1))?;
            }
        }
        std::fs::rename(&self.path, rotated(&self.path, 1))?;
        self.file = OpenOptions::new().create(true).append(true).open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// One page of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Where they start in the log as it is now (0 = its oldest kept byte).
    pub offset: u64,
    /// The log's length now.
    pub total: u64,
}

/// At most `limit` bytes (≤ [`MAX_PAGE`]) of the log from `offset`, or its last `limit` bytes
/// when `offset` is `None`. Offsets count from the oldest byte still kept, across the rotated
/// files.
pub fn page(log: &Path, offset: Option<u64>, limit: u64) -> std::io::Result<Page> {
    // A rotation between listing the files and opening them moves one away: read again.
    let mut tries = 0;
    loop {
        match page_once(log, offset, limit) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 20 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            r => return r,
        }
    }
}

fn page_once(log: &Path, offset: Option<u64>, limit: u64) -> std::io::Result<Page> {
    let limit = limit.min(MAX_PAGE);
    let parts: Vec<(PathBuf, u64)> =
        files(log).into_iter().filter_map(|p| std::fs::metadata(&p).ok().map(|m| (p, m.len()))).collect();
    let total: u64 = parts.iter().map(|(_, l)| l).sum();
    let start = offset.unwrap_or(total.saturating_sub(limit)).min(total);
    let end = start.saturating_add(limit).min(total);
    let mut bytes = Vec::with_capacity((end - start) as usize);
    let mut at = 0u64;
    for (p, len) in parts {
        let (lo, hi) = (at, at + len);
        at = hi;
        if hi <= start || lo >= end {
            continue;
        }
        let from = start.max(lo) - lo;
        let want = end.min(hi) - lo - from;
        let mut f = File::open(&p)?;
        f.seek(SeekFrom::Start(from))?;
        f.take(want).read_to_end(&mut bytes)?;
    }
    Ok(Page { bytes, offset: start, total })
}

/// Serves one VM's console until its QEMU is gone: QEMU's serial ports connect to `feed`, their
/// output goes to `log`; viewers connect to `console` and what they send goes to the first
/// port. Returns when every QEMU connection has closed (after at least one), or when none came
/// within `first_wait`.
pub fn serve(
    feed: UnixListener,
    console: UnixListener,
    log: RotatingLog,
    first_wait: std::time::Duration,
) -> std::io::Result<()> {
    let log = Arc::new(Mutex::new(log));
    let to_guest: Arc<Mutex<Option<UnixStream>>> = Arc::new(Mutex::new(None));
    let viewers = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let to_guest = to_guest.clone();
        std::thread::Builder::new().name("viewers".into()).spawn(move || {
            for v in console.incoming() {
                let Ok(mut v) = v else { continue };
                if viewers.load(std::sync::atomic::Ordering::SeqCst) >= MAX_VIEWERS {
                    continue; // dropped: the viewer may try again
                }
                viewers.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (to_guest, viewers) = (to_guest.clone(), viewers.clone());
                let _ = std::thread::Builder::new().name("viewer".into()).spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = v.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        if let Some(q) = to_guest.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
                            let _ = q.write_all(&buf[..n]);
                        }
                    }
                    viewers.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        })?;
    }
    // QEMU connects once per console port (at start, and again if the logger came back).
    feed.set_nonblocking(true)?;
    let deadline = std::time::Instant::now() + first_wait;
    let live = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut seen = false;
    loop {
        match feed.accept() {
            Ok((q, _)) => {
                q.set_nonblocking(false)?;
                seen = true;
                live.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut first = to_guest.lock().unwrap_or_else(|p| p.into_inner());
                if first.is_none() {
                    *first = Some(q.try_clone()?);
                }
                drop(first);
                let (log, live, to_guest) = (log.clone(), live.clone(), to_guest.clone());
                std::thread::Builder::new().name("port".into()).spawn(move || {
                    let mut q = q;
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        match q.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if let Err(e) = log.lock().unwrap_or_else(|p| p.into_inner()).write(&buf[..n])
                                {
                                    tracing::warn!(error = %e, "cannot write the console log");
                                }
                            }
                        }
                    }
                    *to_guest.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    live.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                })?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let n = live.load(std::sync::atomic::Ordering::SeqCst);
                if (seen && n == 0) || (!seen && std::time::Instant::now() > deadline) {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_rotates_and_never_holds_more_than_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut log = RotatingLog::open(&path, 1000).unwrap();
        let mut written = Vec::new();
        for i in 0..5000u32 {
            let line = format!("line {i}\n");
            log.write(line.as_bytes()).unwrap();
            written.extend_from_slice(line.as_bytes());
        }
        let sizes: Vec<u64> = files(&path).iter().map(|p| std::fs::metadata(p).unwrap().len()).collect();
        assert!(sizes.iter().all(|&s| s <= 1000), "{sizes:?}");
        let total: u64 = sizes.iter().sum();
        assert!(total <= 1000 * (KEEP as u64 + 1), "{total}");
        // The kept bytes are the last ones written, in order.
        let all = page(&path, Some(0), MAX_PAGE).unwrap();
        assert_eq!(all.total, total);
        assert!(written.ends_with(&all.bytes), "the log is not the tail of what was written");
        // A page from the end is the latest output; pages from offsets line up.
        let last = page(&path, None, 100).unwrap();
        assert_eq!((last.offset, last.bytes.len()), (total - 100, 100));
        assert!(written.ends_with(&last.bytes));
        let mid = page(&path, Some(1500), 700).unwrap();
        assert_eq!(mid.bytes, all.bytes[1500..2200]);
        assert_eq!(page(&path, Some(total + 5), 10).unwrap().bytes, b"");
        assert_eq!(page(&path, Some(0), u64::MAX).unwrap().bytes.len() as u64, total.min(MAX_PAGE));
    }

    #[test]
    fn a_log_reopened_continues_where_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        RotatingLog::open(&path, 10).unwrap().write(b"0123456").unwrap();
        RotatingLog::open(&path, 10).unwrap().write(b"789abc").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
        assert_eq!(std::fs::read(rotated(&path, 1)).unwrap(), b"0123456789");
        assert!(page(dir.path().join("none.log").as_path(), None, 10).unwrap().bytes.is_empty());
    }

    #[test]
    fn output_reaches_the_log_keystrokes_reach_the_guest_and_the_logger_ends_with_qemu() {
        let dir = tempfile::tempdir().unwrap();
        let (feed_path, console_path) = (dir.path().join("feed.sock"), dir.path().join("console.sock"));
        let log_path = dir.path().join("console.log");
        let feed = UnixListener::bind(&feed_path).unwrap();
        let console = UnixListener::bind(&console_path).unwrap();
        let log = RotatingLog::open(&log_path, MAX_FILE).unwrap();
        let server =
            std::thread::spawn(move || serve(feed, console, log, std::time::Duration::from_secs(10)));
        let mut qemu = UnixStream::connect(&feed_path).unwrap();
        qemu.write_all(b"booted\n").unwrap();
        // Once the output is logged, the logger has taken QEMU's connection.
        let t0 = std::time::Instant::now();
        while std::fs::read(&log_path).unwrap_or_default() != b"booted\n" {
            assert!(t0.elapsed() < std::time::Duration::from_secs(10), "the output never reached the log");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut viewer = UnixStream::connect(&console_path).unwrap();
        viewer.write_all(b"ls\n").unwrap();
        let mut got = [0u8; 3];
        qemu.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"ls\n");
        drop(qemu);
        server.join().unwrap().unwrap();
        assert_eq!(std::fs::read(&log_path).unwrap(), b"booted\n");
    }
}
