//! Advisory image locks that vine and QEMU both honour, so that no image ever has two writers,
//! whichever programs open it.
//!
//! vine takes a `flock` (vine against vine, atomically) and, like QEMU's `file-posix` driver,
//! open-file-description byte locks: a process holding permission bit `i` read-locks byte
//! `100 + i`; one that does not let others have bit `i` read-locks byte `200 + i`. Before taking
//! a permission, a process tests the opposite byte with `F_OFD_GETLK` (QEMU's
//! `qemu_lock_fd_test`). Bit 0 is "consistent read", bit 1 is "write".

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// First byte of QEMU's "holds permission" locks (QEMU block/file-posix.c RAW_LOCK_PERM_BASE).
const PERM_BASE: i64 = 100;
/// First byte of QEMU's "does not share permission" locks (RAW_LOCK_SHARED_BASE).
const SHARED_BASE: i64 = 200;
/// Permission bit index of consistent reads (BLK_PERM_CONSISTENT_READ = 1 << 0).
const PERM_READ: i64 = 0;
/// Permission bit index of writes (BLK_PERM_WRITE = 1 << 1).
const PERM_WRITE: i64 = 1;

/// Who holds a conflicting lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Another process writes the image.
    Writer,
    /// Another process reads it and does not allow writers (e.g. a served child over it).
    Reader,
}

fn ofd(file: &File, cmd: libc::c_int, kind: libc::c_short, byte: i64) -> io::Result<libc::flock> {
    // SAFETY: `flock` is a plain C struct for which all-zero bytes are a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = kind;
    fl.l_whence = libc::SEEK_SET as libc::c_short;
    fl.l_start = byte;
    fl.l_len = 1;
    // SAFETY: fcntl with an OFD lock command reads and (for GETLK) writes the `flock` struct we
    // own for the duration of the call, on a descriptor `file` keeps open.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(fl)
}

/// Whether another open file description holds a lock on `byte`.
fn locked_by_other(file: &File, byte: i64) -> io::Result<bool> {
    let fl = ofd(file, libc::F_OFD_GETLK, libc::F_WRLCK as libc::c_short, byte)?;
    Ok(fl.l_type != libc::F_UNLCK as libc::c_short)
}

fn hold(file: &File, byte: i64) -> io::Result<()> {
    ofd(file, libc::F_OFD_SETLK, libc::F_RDLCK as libc::c_short, byte).map(|_| ())
}

/// Locks `file` for a writer (`writable`) or a reader that lets nobody write meanwhile.
/// `Ok(Err(holder))` means someone else has it.
pub fn lock(file: &File, writable: bool) -> io::Result<Result<(), Holder>> {
    if locked_by_other(file, PERM_BASE + PERM_WRITE)? {
        return Ok(Err(Holder::Writer));
    }
    if writable && locked_by_other(file, SHARED_BASE + PERM_WRITE)? {
        return Ok(Err(Holder::Reader));
    }
    let flocked = if writable { file.try_lock() } else { file.try_lock_shared() };
    if flocked.is_err() {
        // A vine process got in between the tests and here, or holds it the other way.
        return Ok(Err(if writable { Holder::Reader } else { Holder::Writer }));
    }
    hold(file, PERM_BASE + PERM_READ)?;
    hold(file, SHARED_BASE + PERM_WRITE)?;
    if writable {
        hold(file, PERM_BASE + PERM_WRITE)?;
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(p: &std::path::Path) -> File {
        std::fs::OpenOptions::new().read(true).write(true).open(p).unwrap()
    }

    #[test]
    fn writer_excludes_writers_and_readers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, [0u8; 1024]).unwrap();
        let a = open(&p);
        assert_eq!(lock(&a, true).unwrap(), Ok(()));
        assert_eq!(lock(&open(&p), true).unwrap(), Err(Holder::Writer));
        assert_eq!(lock(&open(&p), false).unwrap(), Err(Holder::Writer));
        drop(a);
        assert_eq!(lock(&open(&p), true).unwrap(), Ok(()));
    }

    #[test]
    fn readers_share_but_exclude_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, [0u8; 1024]).unwrap();
        let a = open(&p);
        let b = open(&p);
        assert_eq!(lock(&a, false).unwrap(), Ok(()));
        assert_eq!(lock(&b, false).unwrap(), Ok(()));
        assert_eq!(lock(&open(&p), true).unwrap(), Err(Holder::Reader));
    }
}
