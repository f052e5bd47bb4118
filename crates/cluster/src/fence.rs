//! Self-fencing: a host that cannot renew its liveness lease stops its HA guests before the
//! lease can expire, so the pool never restarts a guest elsewhere while this host still runs it.
//!
//! **Timing invariant.** The membership task renews the lease every [`crate::KEEPALIVE`] and
//! tells the [`Fence`] when it *sent* each renewal etcd answered (`t`). etcd counts the lease's
//! [`crate::LEASE_TTL_S`] seconds from when it *received* that renewal, which is later, so the
//! lease cannot expire before `t + LEASE_TTL_S`. The fence fires at `t + FENCE_AFTER`, which is
//! [`FENCE_MARGIN`] sooner. The coordinator restarts a dead host's guests only once the lease has
//! expired (its liveness key is gone), so a host that is cut off, or whose etcd answers too late,
//! has fenced itself at least the margin before. Both sides count a few seconds on monotonic
//! clocks, whose rates agree far better than the margin.
//!
//! Two parties fence, both from the same deadline:
//! - the daemon, through the action it gives [`Fence::new`] (it kills its HA guests' emulators),
//!   checked every [`CHECK_EVERY`] and before any new lease counts (so a daemon that was frozen
//!   fences *before* it registers again);
//! - each disk server of an HA guest, which reads the deadline from the file the fence writes at
//!   every renewal ([`read_deadline`]) and exits, closing its image, once it has passed. That
//!   covers a daemon that cannot act (frozen, stopped): the deadline file stops moving, so the
//!   disk servers let go of the shared volumes on time by themselves.
//!
//! A host whose whole pool loses etcd (no quorum anywhere) fences its HA guests too: it cannot
//! tell that from being cut off, exactly as an HA node without quorum cannot.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// How much sooner than its lease can expire a host fences itself.
pub const FENCE_MARGIN: Duration = Duration::from_secs(3);
/// How long after sending the last renewal etcd answered a host fences itself.
pub const FENCE_AFTER: Duration = Duration::from_secs(crate::LEASE_TTL_S as u64 - FENCE_MARGIN.as_secs());
/// How often the daemon and the disk servers look at the deadline.
pub const CHECK_EVERY: Duration = Duration::from_millis(200);

/// Milliseconds on the system's monotonic clock (`CLOCK_MONOTONIC`), which every process of the
/// host reads alike: the unit of the deadline file.
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux, so
    // the call only writes `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Reads the deadline a fence wrote (monotonic ms). None when there is no file (the host is in
/// no pool, or left it) or it holds no number.
pub fn read_deadline(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

#[derive(Debug, Default)]
struct State {
    /// When this host must be fenced, unless a renewal comes first (monotonic ms).
    deadline: Option<u64>,
    /// Whether the fence fired for this deadline.
    fired: bool,
}

/// One host's fence: the deadline the lease renewals move, and what happens when it passes.
pub struct Fence {
    state: Mutex<State>,
    file: Option<PathBuf>,
    action: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence").field("state", &self.state).field("file", &self.file).finish()
    }
}

impl Fence {
    /// A fence that runs `action` when a deadline passes, and writes each deadline to `file`
    /// (for the disk servers) when given one.
    pub fn new(file: Option<PathBuf>, action: impl Fn() + Send + Sync + 'static) -> Fence {
        Fence { state: Mutex::new(State::default()), file, action: Box::new(action) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// etcd answered a renewal (or a new lease) this host sent at `sent_ms`: the deadline moves
    /// to `sent_ms + FENCE_AFTER`. A deadline that passed unfenced fires first.
    pub fn renewed(&self, sent_ms: u64) {
        let mut s = self.lock();
        self.fire_if_due(&mut s, monotonic_ms());
        let deadline = sent_ms + FENCE_AFTER.as_millis() as u64;
        s.deadline = Some(deadline);
        s.fired = false;
        if let Some(f) = &self.file {
            if let Err(e) = write_atomic(f, deadline) {
                tracing::warn!("fence: cannot write {}: {e}", f.display());
            }
        }
    }

    /// Fires the fence if its deadline has passed (once per deadline). Returns whether it fired now.
    pub fn check(&self) -> bool {
        let mut s = self.lock();
        self.fire_if_due(&mut s, monotonic_ms())
    }

    /// The host left its pool: no deadline any more (disk servers stop watching too).
    pub fn disarm(&self) {
        let mut s = self.lock();
        *s = State::default();
        if let Some(f) = &self.file {
            let _ = std::fs::remove_file(f);
        }
    }

    /// Milliseconds left before the fence fires (None: no deadline; 0: due or fired).
    pub fn left_ms(&self) -> Option<u64> {
        let s = self.lock();
        s.deadline.map(|d| d.saturating_sub(monotonic_ms()))
    }

    fn fire_if_due(&self, s: &mut State, now: u64) -> bool {
        match s.deadline {
            Some(d) if now >= d && !s.fired => {
                s.fired = true;
                tracing::error!(
                    "fence: no lease renewal answered for {} s: stopping this host's HA guests before its lease can expire",
                    FENCE_AFTER.as_secs()
                );
                (self.action)();
                true
            }
            _ => false,
        }
    }
}

fn write_atomic(file: &Path, deadline: u64) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = file.with_extension("new");
    std::fs::write(&tmp, format!("{deadline}\n"))?;
    // Disk servers read it after dropping root.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, file)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use super::*;

    fn counting(file: Option<PathBuf>) -> (Fence, Arc<AtomicU32>) {
        let n = Arc::new(AtomicU32::new(0));
        let m = n.clone();
        (
            Fence::new(file, move || {
                m.fetch_add(1, Ordering::SeqCst);
            }),
            n,
        )
    }

    #[test]
    fn the_deadline_follows_the_last_answered_renewal_and_fires_once() {
        let (f, fired) = counting(None);
        assert!(!f.check(), "no deadline before the first lease");
        let now = monotonic_ms();
        f.renewed(now);
        let left = f.left_ms().unwrap();
        assert!(left > FENCE_AFTER.as_millis() as u64 - 1000, "{left}");
        assert!(!f.check());
        // A renewal sent long ago: the deadline is past, so the fence fires, once.
        f.renewed(now.saturating_sub(FENCE_AFTER.as_millis() as u64 + 1));
        assert!(f.check());
        assert!(!f.check());
        assert_eq!(fired.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_late_renewal_fires_the_passed_deadline_before_it_counts() {
        let (f, fired) = counting(None);
        let now = monotonic_ms();
        f.renewed(now.saturating_sub(FENCE_AFTER.as_millis() as u64 + 5));
        // Nobody checked in time (a frozen daemon); the next lease must not hide that.
        f.renewed(now);
        assert_eq!(fired.load(Ordering::SeqCst), 1);
        assert!(!f.check(), "the new deadline is ahead");
    }

    #[test]
    fn the_deadline_file_is_written_at_each_renewal_and_removed_when_disarmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lease-deadline");
        let (f, _) = counting(Some(file.clone()));
        assert_eq!(read_deadline(&file), None);
        f.renewed(1000);
        assert_eq!(read_deadline(&file), Some(1000 + FENCE_AFTER.as_millis() as u64));
        f.disarm();
        assert_eq!(read_deadline(&file), None);
        assert_eq!(f.left_ms(), None);
    }

    #[test]
    fn the_fence_leaves_its_margin_inside_the_lease() {
        assert!(FENCE_AFTER + FENCE_MARGIN <= Duration::from_secs(crate::LEASE_TTL_S as u64));
        assert!(FENCE_AFTER > crate::KEEPALIVE * 2, "two renewals may be lost before a host fences");
    }
}
