//! Starting a confined program without forking the daemon. The daemon is a large, busy,
//! multi-threaded process: a child made with fork(2) copies its page tables while the daemon's
//! other threads wait on its memory map and its allocator, for milliseconds. The standard
//! library starts a child with posix_spawn(3) instead (the child borrows the parent's memory
//! until it execs) unless work has to run between fork and exec, as dropping to the emulator
//! user and putting inherited files at fixed numbers do.
//!
//! So that work happens in a small process of its own, the launcher `vine exec-as`: the daemon
//! starts it with posix_spawn, hands it the files to pass on over a socket pair on its standard
//! input (SCM_RIGHTS), and the launcher puts them at the numbers the program expects, makes its
//! standard input /dev/null, drops to the user and execs the program. The exec keeps the pid, so
//! the caller's `Child` is the program.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

use crate::{SandboxError, User};

/// The launcher's subcommand of the vine binary.
pub const SUBCOMMAND: &str = "exec-as";

/// A program ready to start through the launcher: spawn `command` with `stdin` as its standard
/// input, then [`Handover::send`] the files.
#[derive(Debug)]
pub struct Launch {
    /// What to spawn.
    pub command: Command,
    /// Its standard input: the launcher's end of the handover socket, or /dev/null.
    pub stdin: Stdio,
    /// The files still to hand over.
    pub handover: Handover,
}

/// Files on their way to a launcher.
#[derive(Debug)]
pub struct Handover {
    socket: Option<UnixStream>,
    files: Vec<OwnedFd>,
}

impl Handover {
    /// Sends the files to the launcher (once it runs). Dropping a handover unsent makes the
    /// launcher fail instead of starting the program.
    pub fn send(self) -> Result<(), SandboxError> {
        let Some(socket) = self.socket else { return Ok(()) };
        let fds: Vec<_> = self.files.iter().map(|f| f.as_fd()).collect();
        let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
            return Err(SandboxError::Handover("too many files for one message".into()));
        }
        sendmsg(&socket, &[IoSlice::new(b"F")], &mut control, SendFlags::empty())
            .map_err(|e| SandboxError::Handover(format!("cannot send the files to the launcher: {e}")))?;
        Ok(())
    }
}

/// Makes `inner` (program, arguments, environment changes, working directory) start as `user`
/// with `files` open at the given numbers (3 or more, each once). As root with no files, the
/// command starts directly; otherwise through the launcher, the vine binary `exe`.
pub fn launch(
    exe: &Path,
    user: &User,
    inner: Command,
    files: Vec<(OwnedFd, i32)>,
) -> Result<Launch, SandboxError> {
    if user.is_root() && files.is_empty() {
        return Ok(Launch {
            command: inner,
            stdin: Stdio::null(),
            handover: Handover { socket: None, files: vec![] },
        });
    }
    check_numbers(&files.iter().map(|(_, n)| *n).collect::<Vec<_>>())?;
    let mut c = Command::new(exe);
    c.arg(SUBCOMMAND).arg("--uid").arg(user.uid.to_string()).arg("--gid").arg(user.gid.to_string());
    if !user.groups.is_empty() {
        let groups: Vec<String> = user.groups.iter().map(u32::to_string).collect();
        c.arg("--groups").arg(groups.join(","));
    }
    for (_, n) in &files {
        c.arg("--fd").arg(n.to_string());
    }
    c.arg("--").arg(inner.get_program()).args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(d) = inner.get_current_dir() {
        c.current_dir(d);
    }
    if files.is_empty() {
        return Ok(Launch {
            command: c,
            stdin: Stdio::null(),
            handover: Handover { socket: None, files: vec![] },
        });
    }
    let (ours, theirs) =
        UnixStream::pair().map_err(|source| SandboxError::Os { what: "socketpair", source })?;
    Ok(Launch {
        command: c,
        stdin: Stdio::from(OwnedFd::from(theirs)),
        handover: Handover { socket: Some(ours), files: files.into_iter().map(|(f, _)| f).collect() },
    })
}

fn check_numbers(numbers: &[i32]) -> Result<(), SandboxError> {
    for (i, n) in numbers.iter().enumerate() {
        if *n < 3 {
            return Err(SandboxError::Handover(format!("file number {n}: 0–2 are the standard streams")));
        }
        if numbers[..i].contains(n) {
            return Err(SandboxError::Handover(format!("file number {n} is given twice")));
        }
    }
    Ok(())
}

/// The launcher (`vine exec-as`): takes the files handed over on standard input (when `numbers`
/// is not empty) and puts them at `numbers`, in order; makes standard input /dev/null; drops to
/// `user`; execs `program` with `args`. Returns only why it could not.
pub fn exec_as(user: &User, numbers: &[i32], program: &OsStr, args: &[OsString]) -> SandboxError {
    if let Err(e) = prepare(user, numbers) {
        return e;
    }
    let source = Command::new(program).args(args).exec();
    SandboxError::Exec { program: program.to_string_lossy().into_owned(), source }
}

fn prepare(user: &User, numbers: &[i32]) -> Result<(), SandboxError> {
    check_numbers(numbers)?;
    let null =
        File::open("/dev/null").map_err(|source| SandboxError::Os { what: "opening /dev/null", source })?;
    if !numbers.is_empty() {
        let files = receive(numbers.len())?;
        // Above every target first, so that placing one file never closes another.
        let above = numbers.iter().max().copied().unwrap_or(2) + 1;
        let moved = files
            .iter()
            .map(|f| rustix::io::fcntl_dupfd_cloexec(f, above))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SandboxError::Os { what: "moving a received file", source: e.into() })?;
        drop(files);
        for (f, &n) in moved.iter().zip(numbers) {
            place(f.as_raw_fd(), n)?;
        }
    }
    place(null.as_raw_fd(), 0)?;
    close_others_on_exec(numbers)?;
    crate::become_user(user)
}

/// Marks every descriptor but the standard streams and `keep` close-on-exec, so that nothing the
/// daemon itself inherited (from a shell, a service manager) reaches the program.
fn close_others_on_exec(keep: &[i32]) -> Result<(), SandboxError> {
    let mut keep: Vec<u32> = keep.iter().map(|&n| n as u32).collect();
    keep.sort_unstable();
    let mut first = 3u32;
    for last in keep.iter().map(|&k| k.checked_sub(1)).chain([Some(u32::MAX)]) {
        if let Some(last) = last.filter(|&l| l >= first) {
            // SAFETY: close_range(2) with CLOSE_RANGE_CLOEXEC closes nothing now; it only sets
            // the close-on-exec flag on open descriptors in the range, so every object owning
            // one stays valid until the exec.
            if unsafe { libc::close_range(first, last, libc::CLOSE_RANGE_CLOEXEC as i32) } != 0 {
                return Err(SandboxError::Os {
                    what: "close_range",
                    source: std::io::Error::last_os_error(),
                });
            }
        }
        first = last.map_or(u32::MAX, |l| l.saturating_add(2));
    }
    Ok(())
}

/// Puts a copy of `fd` at `target`, inherited by the program this process execs.
fn place(fd: i32, target: i32) -> Result<(), SandboxError> {
    // SAFETY: `fd` is open (borrowed from a live File or OwnedFd). `target` is standard input or
    // a number no object of this process owns: the launcher opened nothing there (the received
    // copies were moved above every target and closed), and the process execs right after.
    // dup2(2) only replaces the descriptor table entry; the copy has no close-on-exec flag.
    if unsafe { libc::dup2(fd, target) } < 0 {
        return Err(SandboxError::Os { what: "dup2", source: std::io::Error::last_os_error() });
    }
    Ok(())
}

/// Receives exactly `n` files in one message on standard input.
fn receive(n: usize) -> Result<Vec<OwnedFd>, SandboxError> {
    let stdin = std::io::stdin();
    // Room for one more than expected, so that extra files are seen and refused.
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(n + 1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    let got =
        recvmsg(stdin.as_fd(), &mut [IoSliceMut::new(&mut byte)], &mut control, RecvFlags::CMSG_CLOEXEC)
            .map_err(|e| {
                SandboxError::Handover(format!("cannot receive the files on standard input: {e}"))
            })?;
    let mut files = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = m {
            files.extend(fds);
        }
    }
    if got.bytes == 0 && files.is_empty() {
        return Err(SandboxError::Handover(format!(
            "expected {n} files on standard input, the sender closed it without any"
        )));
    }
    if files.len() != n {
        return Err(SandboxError::Handover(format!(
            "expected {n} files on standard input, got {}",
            files.len()
        )));
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_numbers_must_be_above_the_standard_streams_and_distinct() {
        assert!(check_numbers(&[10, 11, 3]).is_ok());
        let e = check_numbers(&[10, 2]).unwrap_err().to_string();
        assert!(e.contains("file number 2"), "{e}");
        let e = check_numbers(&[10, 11, 10]).unwrap_err().to_string();
        assert!(e.contains("10 is given twice"), "{e}");
    }

    #[test]
    fn as_root_without_files_the_command_starts_directly() {
        let root = User { name: "root".into(), uid: 0, gid: 0, groups: vec![] };
        let mut inner = Command::new("/bin/echo");
        inner.arg("hi");
        let l = launch(Path::new("/usr/bin/vine"), &root, inner, vec![]).unwrap();
        assert_eq!(l.command.get_program(), "/bin/echo");
    }

    #[test]
    fn the_launcher_command_names_user_files_and_program() {
        let u = User { name: "vine-qemu".into(), uid: 998, gid: 997, groups: vec![104, 6] };
        let mut inner = Command::new("/usr/bin/qemu-system-x86_64");
        inner.args(["-S", "--weird"]).env("A", "1").env_remove("B");
        let f = OwnedFd::from(File::open("/dev/null").unwrap());
        let l = launch(Path::new("/usr/bin/vine"), &u, inner, vec![(f, 10)]).unwrap();
        assert_eq!(l.command.get_program(), "/usr/bin/vine");
        let args: Vec<_> = l.command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            [
                "exec-as",
                "--uid",
                "998",
                "--gid",
                "997",
                "--groups",
                "104,6",
                "--fd",
                "10",
                "--",
                "/usr/bin/qemu-system-x86_64",
                "-S",
                "--weird"
            ]
        );
        let envs: Vec<_> = l.command.get_envs().collect();
        assert!(envs.contains(&(OsStr::new("A"), Some(OsStr::new("1")))), "{envs:?}");
        assert!(envs.contains(&(OsStr::new("B"), None)), "{envs:?}");
        let e = launch(
            Path::new("/v"),
            &u,
            Command::new("x"),
            vec![(OwnedFd::from(File::open("/dev/null").unwrap()), 1)],
        )
        .unwrap_err();
        assert!(e.to_string().contains("standard streams"), "{e}");
    }

    /// The environment variable that makes [`launcher_child`] act.
    const CHILD: &str = "SANDBOX_LAUNCHER_CHILD";

    /// This test binary standing in for `vine exec-as` (see `launcher_child`), its output kept.
    fn launcher_process(stdin: Stdio) -> std::process::Child {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "launch::tests::launcher_child", "--nocapture"])
            .env(CHILD, "1")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    #[test]
    fn the_launcher_places_the_files_drops_to_the_user_and_execs_the_program() {
        // SAFETY: getuid(2) only reads this process's credentials.
        if unsafe { libc::getuid() } != 0 {
            return; // Dropping to another user needs root; the suite runs as root.
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kernel");
        std::fs::write(&path, "kernel bytes\n").unwrap();
        let nobody = User { name: "nobody".into(), uid: 65534, gid: 65534, groups: vec![] };
        let file = OwnedFd::from(File::open(&path).unwrap());
        let l = launch(Path::new("/unused"), &nobody, Command::new("sh"), vec![(file, 10)]).unwrap();
        let child = launcher_process(l.stdin);
        l.handover.send().unwrap();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}{err}");
        assert!(text.contains("uid 65534 gid 65534 groups 65534\n"), "{text}{err}");
        assert!(text.contains("kernel bytes\n"), "{text}{err}");
        // Only the standard streams and the passed file reach the program; stdin is /dev/null.
        assert!(text.contains("fds:\n0\n1\n10\n2\nend\n"), "{text}{err}");
        assert!(text.contains("stdin: /dev/null\n"), "{text}{err}");
    }

    #[test]
    fn a_launcher_handed_nothing_fails_naming_why() {
        let nobody = User { name: "nobody".into(), uid: 65534, gid: 65534, groups: vec![] };
        let file = OwnedFd::from(File::open("/dev/null").unwrap());
        let l = launch(Path::new("/unused"), &nobody, Command::new("sh"), vec![(file, 10)]).unwrap();
        let child = launcher_process(l.stdin);
        drop(l.handover);
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("launcher failed: handing files over: expected 1 files"), "{text}");
    }

    #[test]
    fn launcher_child() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let nobody = User { name: "nobody".into(), uid: 65534, gid: 65534, groups: vec![] };
        let script = "echo \"uid $(id -u) gid $(id -g) groups $(id -G)\"; cat /proc/self/fd/10; \
                      echo fds:; ls /proc/$$/fd; echo end; \
                      echo \"stdin: $(readlink /proc/$$/fd/0)\"";
        let e = exec_as(&nobody, &[10], OsStr::new("sh"), &["-c".into(), script.into()]);
        println!("launcher failed: {e}");
    }
}
