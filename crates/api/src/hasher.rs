//! Password hashing off the request path. Argon2 is slow on purpose (tens of milliseconds of CPU
//! and 19 MiB per hash), so a burst of logins, run as they come, would take every core and stall
//! every other request. Hashes run instead on a few dedicated threads at a lower CPU priority
//! (nice 10): half the host's cores, at least one. A lower priority alone still lets a steady
//! stream of logins take a core from the VMs and the API whenever both want it, so the threads
//! also keep to a CPU budget ([`Budget`]): over time, password checks use at most a set share of
//! one core, however many come and from however many addresses; a login beyond it waits its
//! turn. Work beyond a bounded queue is refused with 503 rather than piling up.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use crate::routes::{ApiError, ApiResult};

/// Hashes waiting at most (beyond this, 503).
pub const QUEUE: usize = 256;
/// The hashing threads' nice value.
const NICE: libc::c_int = 10;
/// The share of one core password checks may use over time, by default (a login's Argon2 takes
/// 7–20 ms of CPU: 5–14 logins a second).
pub const DEFAULT_CPU_SHARE: f64 = 0.10;
/// CPU time password checks may use at once, beyond their share, after a quiet time: a handful
/// of logins together never wait.
const BURST: Duration = Duration::from_millis(250);

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads.
#[derive(Clone)]
pub struct Hasher {
    queue: SyncSender<Job>,
}

/// A CPU budget shared by the hashing threads: a bucket that fills at `share` seconds of CPU per
/// second, holds at most `burst`, and is charged each job's CPU time once it is done. A thread
/// that leaves it in debt sleeps until it is even before taking the next job.
#[derive(Debug)]
pub struct Budget {
    share: f64,
    burst: Duration,
    /// Seconds of CPU in hand (negative: owed), as of the instant.
    state: Mutex<(f64, Instant)>,
}

impl Budget {
    /// A full budget of `share` of one core (0 < share ≤ 1) and `burst` at once.
    pub fn new(share: f64, burst: Duration) -> Budget {
        let share = if share.is_finite() { share.clamp(1e-3, 1.0) } else { 1.0 };
        Budget { share, burst, state: Mutex::new((burst.as_secs_f64(), Instant::now())) }
    }

    /// Charges `used` CPU at `now`; how long the charging thread must then rest, if at all.
    pub fn charge(&self, used: Duration, now: Instant) -> Option<Duration> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (credit, at) = *st;
        let earned = now.saturating_duration_since(at).as_secs_f64() * self.share;
        let credit = (credit + earned).min(self.burst.as_secs_f64()) - used.as_secs_f64();
        *st = (credit, now.max(at));
        // Under a microsecond owed is the rounding of the sums.
        (credit < -1e-6).then(|| Duration::from_secs_f64(-credit / self.share))
    }
}

impl Hasher {
    /// Starts `threads` hashing threads (at least one) that together use at most `cpu_share` of
    /// one core over time.
    pub fn start(threads: usize, cpu_share: f64) -> Hasher {
        Hasher::with_budget(threads, Budget::new(cpu_share, BURST))
    }

    /// Starts `threads` hashing threads (at least one) that keep to `budget`.
    pub fn with_budget(threads: usize, budget: Budget) -> Hasher {
        let (queue, jobs) = sync_channel::<Job>(QUEUE);
        let jobs = Arc::new(Mutex::new(jobs));
        let budget = Arc::new(budget);
        for i in 0..threads.max(1) {
            let (jobs, budget) = (jobs.clone(), budget.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("vine-hash-{i}"))
                .spawn(move || worker(&jobs, &budget));
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

/// CPU time the calling thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through the pointer, which points at a live
    // local of that type.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec.max(0) as u64, ts.tv_nsec.clamp(0, 999_999_999) as u32)
}

fn worker(jobs: &Mutex<Receiver<Job>>, budget: &Budget) {
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
        let before = thread_cpu();
        // A panicking hash must not take the thread with it.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
            tracing::error!("a password hash panicked");
        }
        if let Some(rest) = budget.charge(thread_cpu().saturating_sub(before), Instant::now()) {
            std::thread::sleep(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_a_lower_priority_thread_and_return_their_result() {
        let h = Hasher::start(1, 1.0);
        // SAFETY: getpriority takes no pointers.
        let nice = h.run(|| unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }).await.unwrap();
        assert_eq!(nice, NICE);
        assert_eq!(h.run(|| 6 * 7).await.unwrap(), 42);
        let name = h.run(|| std::thread::current().name().map(String::from)).await.unwrap();
        assert_eq!(name.as_deref(), Some("vine-hash-0"));
    }

    #[test]
    fn the_budget_lets_a_burst_through_and_paces_what_follows() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let b = Budget::new(0.1, ms(200));
        // A full bucket: two checks of 100 ms go at once.
        assert_eq!(b.charge(ms(100), t0), None);
        assert_eq!(b.charge(ms(100), t0), None);
        // The third leaves it 50 ms in debt: 500 ms of rest at a tenth of a core.
        let rest = b.charge(ms(50), t0).unwrap();
        assert!((rest.as_secs_f64() - 0.5).abs() < 1e-6, "{rest:?}");
        // Half a second later it is even again; a long quiet time refills only up to the burst.
        assert_eq!(b.charge(Duration::ZERO, t0 + ms(500)), None);
        assert_eq!(b.charge(ms(200), t0 + ms(100_000)), None);
        assert!(b.charge(ms(1), t0 + ms(100_000)).is_some());
        // An instant earlier than the last (two threads racing) earns nothing and loses nothing.
        let b = Budget::new(0.5, ms(10));
        assert_eq!(b.charge(ms(10), t0 + ms(10)), None);
        let rest = b.charge(ms(5), t0).unwrap();
        assert!((rest.as_secs_f64() - 0.01).abs() < 1e-6, "{rest:?}");
        // Shares out of range are taken as the nearest allowed.
        assert!(Budget::new(f64::NAN, ms(0)).charge(ms(1), t0).unwrap() <= ms(1));
        assert!(Budget::new(0.0, ms(0)).charge(ms(1), t0).unwrap() >= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn checks_beyond_the_budget_wait_for_it() {
        // A job that burns 20 ms of CPU, on a budget of a fifth of a core with 40 ms at once:
        // six of them take at least (6 × 20 − 40) / 0.2 = 400 ms more than their CPU.
        let burn = || {
            let start = thread_cpu();
            while thread_cpu() - start < Duration::from_millis(20) {
                std::hint::black_box(0u64);
            }
        };
        assert!(thread_cpu() > Duration::ZERO);
        let h = Hasher::with_budget(1, Budget::new(0.2, Duration::from_millis(40)));
        let t = Instant::now();
        for _ in 0..6 {
            h.run(burn).await.unwrap();
        }
        // The last job's rest comes after its answer: five rests of the six were waited for.
        assert!(t.elapsed() >= Duration::from_millis(300), "{:?}", t.elapsed());
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone() {
        let h = Hasher::start(1, 1.0);
        assert!(h.run(|| -> u8 { panic!("boom") }).await.is_err());
        assert_eq!(h.run(|| 1).await.unwrap(), 1);
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_with_503() {
        use futures_util::FutureExt;
        let h = Hasher::start(1, 1.0);
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
