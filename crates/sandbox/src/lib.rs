//! Confinement of vine's helper processes, as libvirt confines QEMU: a dedicated unprivileged
//! system user (`vine-qemu`, made by `scripts/setup.sh` as Debian's libvirt makes
//! `libvirt-qemu`) that QEMU runs as from its first instruction (started through the launcher of
//! [`launch`], which drops to it before the exec) and that a disk server becomes once it has opened its image and socket
//! ([`become_user`]); and a seccomp filter ([`deny_escape_syscalls`]) for the disk servers that
//! denies what a process serving a file over a socket never needs (exec, namespaces, mounts,
//! privilege changes, tracing, kernel modules, BPF), the counterpart of QEMU's own `-sandbox`.
//!
//! A guest that escaped QEMU is then a sandboxed nobody: it owns no file of the host but its
//! VM's runtime directory, reaches its disks only through the disk servers' sockets, and cannot
//! gain privileges or start programs.
#![warn(missing_docs)]

pub mod launch;

pub use launch::{exec_as, launch, Handover, Launch};

/// The default emulator user.
pub const DEFAULT_USER: &str = "vine-qemu";

/// Why confinement could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The user does not exist.
    #[error("the emulator user '{0}' does not exist: run scripts/setup.sh, or create it with `useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin {0}`")]
    NoUser(String),
    /// A system file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Os {
        /// What was done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The seccomp filter could not be built or installed.
    #[error("seccomp filter: {0}")]
    Seccomp(String),
    /// Files could not be handed to the launcher.
    #[error("handing files over: {0}")]
    Handover(String),
    /// The launcher could not start the program.
    #[error("cannot start {program}: {source}")]
    Exec {
        /// The program.
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A user to run as: ids resolved once, so nothing is looked up in a child after fork.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (e.g. `kvm`, for /dev/kvm).
    pub groups: Vec<u32>,
}

impl User {
    /// Looks `name` up in /etc/passwd and /etc/group.
    pub fn lookup(name: &str) -> Result<User, SandboxError> {
        let read = |path: &'static str| {
            std::fs::read_to_string(path).map_err(|source| SandboxError::Read { path, source })
        };
        Self::lookup_in(&read("/etc/passwd")?, &read("/etc/group")?, name)
    }

    /// Looks `name` up in the texts of a passwd and a group file.
    pub fn lookup_in(passwd: &str, group: &str, name: &str) -> Result<User, SandboxError> {
        let (uid, gid) = passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 4 && f[0] == name)
            .and_then(|f| Some((f[2].parse::<u32>().ok()?, f[3].parse::<u32>().ok()?)))
            .ok_or_else(|| SandboxError::NoUser(name.to_string()))?;
        let mut groups: Vec<u32> = group
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m.trim() == name))
            .filter_map(|f| f[2].parse().ok())
            .filter(|&g| g != gid)
            .collect();
        groups.sort_unstable();
        groups.dedup();
        Ok(User { name: name.to_string(), uid, gid, groups })
    }

    /// Whether this is root (no confinement by user at all).
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

fn os(what: &'static str) -> SandboxError {
    SandboxError::Os { what, source: std::io::Error::last_os_error() }
}

/// Makes this process `user` for good (every thread: glibc applies set*id to all of them).
pub fn become_user(user: &User) -> Result<(), SandboxError> {
    if user.is_root() {
        return Ok(());
    }
    // SAFETY: plain system calls on this process's credentials; `groups` outlives the call.
    unsafe {
        if libc::setgroups(user.groups.len(), user.groups.as_ptr()) != 0 {
            return Err(os("setgroups"));
        }
        if libc::setresgid(user.gid, user.gid, user.gid) != 0 {
            return Err(os("setresgid"));
        }
        if libc::setresuid(user.uid, user.uid, user.uid) != 0 {
            return Err(os("setresuid"));
        }
    }
    Ok(())
}

/// The system calls a disk server never makes once it serves: starting programs, new namespaces
/// and mounts, changing credentials, tracing other processes, loading kernel code, BPF, keys.
pub const DENIED: &[(&str, i64)] = &[
    ("execve", libc::SYS_execve),
    ("execveat", libc::SYS_execveat),
    ("fork", libc::SYS_fork),
    ("vfork", libc::SYS_vfork),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("chroot", libc::SYS_chroot),
    ("unshare", libc::SYS_unshare),
    ("setns", libc::SYS_setns),
    ("setuid", libc::SYS_setuid),
    ("setgid", libc::SYS_setgid),
    ("setreuid", libc::SYS_setreuid),
    ("setregid", libc::SYS_setregid),
    ("setresuid", libc::SYS_setresuid),
    ("setresgid", libc::SYS_setresgid),
    ("setgroups", libc::SYS_setgroups),
    ("setfsuid", libc::SYS_setfsuid),
    ("setfsgid", libc::SYS_setfsgid),
    ("capset", libc::SYS_capset),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("reboot", libc::SYS_reboot),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("personality", libc::SYS_personality),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("mknod", libc::SYS_mknod),
    ("mknodat", libc::SYS_mknodat),
];

/// Installs a seccomp filter on every thread of this process that fails [`DENIED`] calls with
/// EPERM (and sets no_new_privs, which a filter needs and which forbids gaining privileges
/// through exec anyway). It cannot be removed.
pub fn deny_escape_syscalls() -> Result<(), SandboxError> {
    use seccompiler::{SeccompAction, SeccompFilter, TargetArch};
    let rules = DENIED.iter().map(|(_, nr)| (*nr, Vec::new())).collect();
    let arch =
        TargetArch::try_from(std::env::consts::ARCH).map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    let filter =
        SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)
            .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    let program: seccompiler::BpfProgram =
        filter.try_into().map_err(|e: seccompiler::BackendError| SandboxError::Seccomp(e.to_string()))?;
    seccompiler::apply_filter_all_threads(&program).map_err(|e| SandboxError::Seccomp(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\nvine-qemu:x:998:997::/nonexistent:/usr/sbin/nologin\n";
    const GROUP: &str = "root:x:0:\nkvm:x:104:vine-qemu,other\nvine-qemu:x:997:\ndisk:x:6:someone\n";

    #[test]
    fn users_are_found_with_their_groups_and_missing_ones_say_how_to_make_them() {
        let u = User::lookup_in(PASSWD, GROUP, "vine-qemu").unwrap();
        assert_eq!(u, User { name: "vine-qemu".into(), uid: 998, gid: 997, groups: vec![104] });
        assert!(!u.is_root());
        assert!(User::lookup_in(PASSWD, GROUP, "root").unwrap().is_root());
        let e = User::lookup_in(PASSWD, GROUP, "nobody-here").unwrap_err();
        assert!(e.to_string().contains("useradd --system"), "{e}");
        let e = User::lookup_in("broken:line\nvine-qemu:x:notanumber:1::/:/bin/false", "", "vine-qemu")
            .unwrap_err();
        assert!(matches!(e, SandboxError::NoUser(_)));
    }

    #[test]
    fn a_filtered_process_cannot_exec() {
        // The filter, in a child process of its own (it cannot be removed).
        let me = std::env::current_exe().unwrap();
        let out = std::process::Command::new(me)
            .args(["--exact", "tests::filtered_child", "--nocapture", "--include-ignored"])
            .env("SANDBOX_FILTER_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("exec refused: Operation not permitted"), "{text}");
        assert!(text.contains("Seccomp:\t2"), "{text}");
    }

    #[test]
    fn filtered_child() {
        if std::env::var_os("SANDBOX_FILTER_CHILD").is_none() {
            return;
        }
        deny_escape_syscalls().unwrap();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        println!("{}", status.lines().find(|l| l.starts_with("Seccomp:")).unwrap());
        let e = std::process::Command::new("/bin/true").status().unwrap_err();
        println!("exec refused: {e}");
        // Reading and writing files still works.
        let f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut &f, b"ok").unwrap();
    }
}
