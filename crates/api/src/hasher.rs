//! Password hashing off the request path. Argon2 is slow on purpose (tens of milliseconds of CPU
//! and 19 MiB per hash), so a burst of logins, run as they come, would take every core and stall
//! every other request. Hashes run instead on a few dedicated threads at a lower CPU priority
//! (nice 10): half the host's cores, at least one, so the API's workers and the VMs always keep
//! CPU. Work beyond a bounded queue is refused with 503 rather than piling up.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;

use crate::routes::{ApiError, ApiResult};

/// Hashes waiting at most (beyond this, 503).
pub const QUEUE: usize = 256;
/// The hashing threads' nice value.
const NICE: libc::c_int = 10;

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads.
#[derive(Clone)]
pub struct Hasher {
    queue: SyncSender<Job>,
}

impl Hasher {
    /// Starts `threads` hashing threads (at least one).
    pub fn start(threads: usize) -> Hasher {
        let (queue, jobs) = sync_channel::<Job>(QUEUE);
        let jobs = Arc::new(Mutex::new(jobs));
        for i in 0..threads.max(1) {
            let jobs = jobs.clone();
            let spawned =
                std::thread::Builder::new().name(format!("vine-hash-{i}")).spawn(move || worker(&jobs));
            if let Err(e) = spawned {
                tracing::error!("cannot start password hashing thread {i}: {e}");
            }
        }
        Hasher { queue }
    }

    /// Half the host's cores, at least one.
    pub fn default_threads() -> usize {
        std::thread::available_parallelism().map(|n| n.get() / 2).unwrap_or(1).max(1)
    }

    /// Runs `f` (a hash or a verification) on a hashing thread and waits for its result.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        match self.queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many password checks waiting; try again in a moment",
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "password hashing is not running",
                ))
            }
        }
        rx.await
            .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "a password hashing thread failed"))
    }
}

fn worker(jobs: &Mutex<Receiver<Job>>) {
    // SAFETY: setpriority takes no pointers; on Linux, PRIO_PROCESS with who 0 is the calling
    // thread, so this lowers only this thread's priority.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, NICE) };
    if r != 0 {
        tracing::warn!(
            "cannot lower the password hashing thread's priority: {}",
            std::io::Error::last_os_error()
        );
    }
    loop {
        let job = match jobs.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        // A panicking hash must not take the thread with it.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("a password hash panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_a_lower_priority_thread_and_return_their_result() {
        let h = Hasher::start(1);
        // SAFETY: getpriority takes no pointers.
        let nice = h.run(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }).await.unwrap();
        assert_eq!(nice, NICE);
        assert_eq!(h.run(|| 6 * 7).await.unwrap(), 42);
        let name = h.run(|| std::thread::current().name().map(String::from)).await.unwrap();
        assert_eq!(name.as_deref(), Some("vine-hash-0"));
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone() {
        let h = Hasher::start(1);
        assert!(h.run(|| -> u8 { panic!("boom") }).await.is_err());
        assert_eq!(h.run(|| 1).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_with_503() {
        use futures_util::FutureExt;
        let h = Hasher::start(1);
        let (started, is_started) = std::sync::mpsc::channel::<()>();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let blocker = {
            let h = h.clone();
            tokio::spawn(async move {
                h.run(move || {
                    started.send(()).unwrap();
                    wait.recv().ok()
                })
                .await
            })
        };
        // The only thread is busy from here on.
        tokio::task::spawn_blocking(move || is_started.recv().unwrap()).await.unwrap();
        // Each run queues its job at once (and is dropped waiting: the job stays queued).
        for _ in 0..QUEUE {
            assert!(h.run(|| ()).now_or_never().is_none());
        }
        let e = h.run(|| ()).now_or_never().expect("refused at once").unwrap_err();
        assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
        release.send(()).unwrap();
        assert!(blocker.await.unwrap().is_ok());
    }
}
