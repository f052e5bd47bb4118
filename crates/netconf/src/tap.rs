//! Persistent tap devices (`/dev/net/tun`, `TUNSETIFF` + `TUNSETPERSIST`, linux/if_tun.h): vine
//! creates a VM's tap before QEMU starts and QEMU opens it by name (`-netdev tap,ifname=…`), so
//! the tap — and the guest's link — outlive both QEMU restarts and the daemon.

use std::os::fd::AsRawFd;

use crate::netlink::check_name;
use crate::NetError;

/// `TUNSETIFF` = `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `TUNSETPERSIST` = `_IOW('T', 203, int)`.
const TUNSETPERSIST: libc::c_ulong = 0x4004_54cb;
/// `TUNSETOWNER` = `_IOW('T', 204, int)`: the uid that may attach to the tap unprivileged.
const TUNSETOWNER: libc::c_ulong = 0x4004_54cc;
/// A layer-2 device.
const IFF_TAP: libc::c_short = 0x0002;
/// No packet-information header.
const IFF_NO_PI: libc::c_short = 0x1000;
/// `struct ifreq` size on Linux.
const IFREQ_LEN: usize = 40;

/// Creates (or re-opens) the persistent tap `name`, owned by `owner` when given.
pub fn create_tap(name: &str, owner: Option<u32>) -> Result<(), NetError> {
    check_name(name)?;
    let f = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| NetError::io("open /dev/net/tun", e))?;
    let mut ifr = [0u8; IFREQ_LEN];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    ifr[16..18].copy_from_slice(&(IFF_TAP | IFF_NO_PI).to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes a `struct ifreq`; `ifr` is one, live for the call.
    if unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF, ifr.as_mut_ptr()) } < 0 {
        return Err(NetError::io(&format!("create tap {name}"), std::io::Error::last_os_error()));
    }
    // SAFETY: TUNSETPERSIST takes an integer argument by value.
    if unsafe { libc::ioctl(f.as_raw_fd(), TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
        return Err(NetError::io(&format!("make tap {name} persistent"), std::io::Error::last_os_error()));
    }
    if let Some(uid) = owner {
        // SAFETY: TUNSETOWNER takes the owner's uid by value.
        if unsafe { libc::ioctl(f.as_raw_fd(), TUNSETOWNER, uid as libc::c_ulong) } < 0 {
            return Err(NetError::io(
                &format!("give tap {name} to uid {uid}"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}
