//! Short scheduler slices for the daemon's latency-critical threads. A request, or an actor
//! answering QEMU (a migration's switchover waits on it with the guest paused), needs a
//! fraction of a millisecond of CPU, but on a host whose cores are busy with guests it waits
//! for one: the guests' QEMU threads run for whole scheduler slices (1.4 ms on a 2-core host
//! with Linux's EEVDF scheduler, ≥ 6.6), and a woken thread with the same slice does not always
//! get to preempt them. Linux ≥ 6.12 lets a thread of the normal policy ask for a shorter slice
//! (`sched_attr.sched_runtime`): it then preempts on waking and runs sooner, while its share of
//! the CPU stays what its nice value gives, so a flood of requests cannot take more than a
//! normal process could. Such threads ask for [`SHORT_SLICE`] with reset-on-fork, so the
//! processes they start (QEMU, disk servers, containers) keep the default slice; older kernels
//! ignore the request.

use std::io;
use std::time::Duration;

/// The slice latency-critical threads ask for: the shortest the kernel takes (100 µs), about
/// one request's CPU.
pub const SHORT_SLICE: Duration = Duration::from_micros(100);

/// `struct sched_attr` as `sched_setattr(2)` and `sched_getattr(2)` take it (its first
/// version, 48 bytes).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
}

const SCHED_ATTR_SIZE_VER0: u32 = 48;
/// `SCHED_FLAG_RESET_ON_FORK`: children (processes and threads) start with the defaults.
const SCHED_FLAG_RESET_ON_FORK: u64 = 0x01;

fn get() -> io::Result<SchedAttr> {
    let mut attr = SchedAttr::default();
    // SAFETY: `attr` is a live, writable sched_attr of SCHED_ATTR_SIZE_VER0 bytes (repr(C),
    // the kernel's layout) and that size is passed; pid 0 is the calling thread; flags must be 0.
    let r = unsafe {
        libc::syscall(libc::SYS_sched_getattr, 0, &mut attr as *mut SchedAttr, SCHED_ATTR_SIZE_VER0, 0)
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(attr)
}

/// The calling thread's slice as the kernel reports it (Linux ≥ 6.12 reports a normal thread's
/// slice; older kernels 0).
pub fn slice() -> io::Result<Duration> {
    Ok(Duration::from_nanos(get()?.sched_runtime))
}

/// Asks for a slice of `slice` for the calling thread, keeping its policy (which must be the
/// normal one) and nice value; what it starts afterwards gets the default slice. Returns whether
/// the kernel took it (false on a kernel that has no custom slices, which accepts and ignores
/// the request).
pub fn set_slice(slice: Duration) -> io::Result<bool> {
    let now = get()?;
    if now.sched_policy != libc::SCHED_OTHER as u32 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "only a thread of the normal policy has a slice",
        ));
    }
    let want = SchedAttr {
        size: SCHED_ATTR_SIZE_VER0,
        sched_policy: now.sched_policy,
        sched_flags: SCHED_FLAG_RESET_ON_FORK,
        sched_nice: now.sched_nice,
        sched_runtime: slice.as_nanos() as u64,
        ..SchedAttr::default()
    };
    // SAFETY: `want` is a live sched_attr of the size its `size` field says (repr(C), the
    // kernel's layout), only read by the kernel; pid 0 is the calling thread; flags must be 0.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &want as *const SchedAttr, 0) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(get()?.sched_runtime == want.sched_runtime)
}

/// For a latency-critical thread (the API runtime's, a VM's actor, the pool client's) as it
/// starts: asks for [`SHORT_SLICE`], logging what went wrong; never fails the thread.
pub fn latency_critical() {
    match set_slice(SHORT_SLICE) {
        Ok(true) => {}
        Ok(false) => tracing::debug!("this kernel has no custom scheduler slices; threads keep the default"),
        Err(e) => tracing::warn!("cannot shorten a thread's scheduler slice: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_gets_its_short_slice_and_keeps_its_nice_value() {
        std::thread::spawn(|| {
            // SAFETY: setpriority and getpriority take no pointers; who 0 is this thread.
            assert_eq!(unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 5) }, 0);
            let before = slice().unwrap();
            let took = set_slice(SHORT_SLICE).unwrap();
            // SAFETY: as above.
            assert_eq!(unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }, 5);
            if before.is_zero() {
                // A kernel without custom slices (< 6.12) reports none and keeps none.
                assert!(!took);
            } else {
                assert!(took, "the kernel reported slice {before:?} but did not take {SHORT_SLICE:?}");
                assert_eq!(slice().unwrap(), SHORT_SLICE);
            }
        })
        .join()
        .unwrap();
        // A process started by a thread with a short slice gets the default.
        std::thread::spawn(|| {
            if set_slice(SHORT_SLICE).unwrap() {
                let mut child = std::process::Command::new("sleep").arg("1").spawn().unwrap();
                let sched = std::fs::read_to_string(format!("/proc/{}/sched", child.id())).unwrap();
                let _ = child.kill();
                let _ = child.wait();
                let line = sched.lines().find(|l| l.starts_with("se.slice")).unwrap();
                let ns: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
                assert_ne!(ns, SHORT_SLICE.as_nanos() as u64, "{line}");
            }
        })
        .join()
        .unwrap();
        // Other threads keep theirs.
        let other = std::thread::spawn(|| slice().unwrap()).join().unwrap();
        assert_ne!(other, SHORT_SLICE);
    }
}
