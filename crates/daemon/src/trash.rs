//! Deletion of big files the daemon no longer needs (a restored VM's saved state), in a
//! background thread at idle priority.
//!
//! Unlinking a file whose pages are cached frees them all in the unlinking thread: some 15 ms
//! of kernel time for the 86 MiB state of a 256 MiB guest on a small host. Done right after a
//! restore's answer, it competed for the CPUs with the answer on its way to the client and with
//! the guest that had just continued. [`Trash`] hands the work to one thread scheduled
//! `SCHED_IDLE`, which runs only when nothing else wants the CPU.

use std::path::PathBuf;
use std::sync::mpsc::{self, Sender};
use std::sync::Mutex;

/// The deleting thread's inbox.
#[derive(Debug)]
pub struct Trash {
    tx: Mutex<Sender<PathBuf>>,
}

impl Trash {
    /// Starts the deleting thread.
    pub fn start() -> std::io::Result<Trash> {
        let (tx, rx) = mpsc::channel::<PathBuf>();
        std::thread::Builder::new().name("trash".into()).spawn(move || {
            lower_own_priority();
            for path in rx {
                if let Err(e) = std::fs::remove_file(&path) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        tracing::warn!(path = %path.display(), error = %e, "cannot delete");
                    }
                }
            }
        })?;
        Ok(Trash { tx: Mutex::new(tx) })
    }

    /// Deletes `path` soon. Should the thread be gone, the file is deleted here and now.
    pub fn delete(&self, path: PathBuf) {
        let sent = self.tx.lock().unwrap_or_else(|p| p.into_inner()).send(path);
        if let Err(mpsc::SendError(path)) = sent {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Puts the calling thread in `SCHED_IDLE` (a failure only costs the priority).
fn lower_own_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(2) with pid 0 changes only the calling thread; `param` is a
    // valid sched_param that outlives the call.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "trash: cannot lower the thread's priority");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_deleted_by_an_idle_priority_thread() {
        let dir = tempfile::tempdir().unwrap();
        let t = Trash::start().unwrap();
        let files: Vec<PathBuf> = (0..3).map(|i| dir.path().join(format!("f{i}"))).collect();
        for f in &files {
            std::fs::write(f, b"x").unwrap();
            t.delete(f.clone());
        }
        // A file already gone is no error.
        t.delete(dir.path().join("never-there"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while files.iter().any(|f| f.exists()) {
            assert!(std::time::Instant::now() < deadline, "the trash thread did not delete its files");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // The thread runs SCHED_IDLE (policy 5 in /proc/<tid>/sched).
        let tid = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|e| e.ok())
            .find(|e| std::fs::read_to_string(e.path().join("comm")).unwrap_or_default().trim() == "trash")
            .expect("a thread named trash")
            .file_name();
        let sched =
            std::fs::read_to_string(format!("/proc/self/task/{}/sched", tid.to_string_lossy())).unwrap();
        let policy = sched.lines().find(|l| l.starts_with("policy")).unwrap_or_default().to_string();
        assert!(policy.ends_with(&libc::SCHED_IDLE.to_string()), "{policy}");
    }
}
