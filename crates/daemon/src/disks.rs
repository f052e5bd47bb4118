//! The disk servers: one `vine disk serve` process per disk image in use, serving it over NBD on
//! a Unix socket to the QEMU processes that use it. An image is served to one VM, or — when every
//! VM that attaches it marks it shared — to several (guest clustering). Servers are started in
//! their own process group so they outlive the daemon; each is known by pid and start time and
//! recorded in its VMs' runtime records, so a restarted daemon adopts them again.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vmm::process::Identity;

use crate::helpers::Helper;

/// How long a server gets to say it is serving.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server gets to flush and exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors starting or sharing a disk server.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The image is attached to another running VM and is not marked shared in both.
    #[error("disk {path} is in use by VM(s) {users}; mark it shared in every VM that attaches it (guest clustering)")]
    InUse {
        /// The image.
        path: PathBuf,
        /// The VMs using it.
        users: String,
    },
    /// The server could not be started or did not come up.
    #[error("cannot serve disk {path}: {problem}")]
    Start {
        /// The image.
        path: PathBuf,
        /// What went wrong (with the server's own words when it said any).
        problem: String,
    },
}

/// A disk served to a VM, as recorded in the VM's runtime record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The image served (an undo disk when undo disks are on).
    pub path: PathBuf,
    /// The NBD socket.
    pub socket: PathBuf,
    /// The export name.
    pub export: String,
    /// The server process.
    pub pid: u32,
    /// Its start time (clock ticks since boot).
    pub start_ticks: u64,
}

/// How a disk server serves its image beyond the ordinary (a live migration's destination).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Opened at once, one writer connection at a time.
    Normal,
    /// A volume of a shared pool another host's server still holds: opened at the first request
    /// (after the source's server has let it go).
    Standby,
    /// A new volume a mirror fills: served on `listen` too, under `export`, to the source host's
    /// emulator; the first connection to write (the mirror) holds it until it leaves, then the
    /// emulator here takes it.
    Target {
        /// The TCP address to serve on (port 0: any free one).
        listen: std::net::SocketAddr,
        /// The export's name there (unguessable: the only secret of that connection).
        export: String,
    },
}

#[derive(Debug)]
struct Server {
    helper: Helper,
    socket: PathBuf,
    export: String,
    shared: bool,
    users: BTreeSet<String>,
}

/// Every disk server of this host.
#[derive(Debug)]
pub struct DiskServers {
    exe: PathBuf,
    dir: PathBuf,
    /// The user servers become once their image and socket are open.
    run_as: Option<String>,
    servers: Mutex<BTreeMap<PathBuf, Server>>,
}

/// A short, stable name for an image path (for its socket and log).
fn key(path: &Path) -> String {
    // FNV-1a, 64 bits: stable across runs and releases, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl DiskServers {
    /// Servers started as `exe disk serve …`, sockets and logs in `dir`, each becoming `run_as`
    /// (confined by seccomp) once it has opened its image and socket.
    pub fn new(exe: PathBuf, dir: PathBuf, run_as: Option<String>) -> DiskServers {
        DiskServers { exe, dir, run_as, servers: Mutex::new(BTreeMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<PathBuf, Server>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves `path` to `vm`: starts a server, or joins the running one when both sides mark the
    /// disk shared. `place` moves a new server's process where it belongs (the VM's cgroup).
    pub fn acquire(
        &self,
        vm: &str,
        path: &Path,
        shared: bool,
        read_only: bool,
        place: &dyn Fn(u32),
    ) -> Result<Lease, DiskError> {
        self.acquire_as(vm, path, shared, read_only, &Mode::Normal, false, place).map(|(l, _)| l)
    }

    /// The file in which this host's fence writes its deadline ([`cluster::fence`]); the disk
    /// servers of HA guests exit once it has passed.
    pub fn fence_file(&self) -> PathBuf {
        self.dir.join("lease-deadline")
    }

    /// [`DiskServers::acquire`] in `mode`; a target's server also says the TCP address it serves
    /// on. A `fenced` server (an HA guest's) exits once this host's fence deadline passes.
    #[allow(clippy::too_many_arguments)]
    pub fn acquire_as(
        &self,
        vm: &str,
        path: &Path,
        shared: bool,
        read_only: bool,
        mode: &Mode,
        fenced: bool,
        place: &dyn Fn(u32),
    ) -> Result<(Lease, Option<std::net::SocketAddr>), DiskError> {
        let mut servers = self.lock();
        if let Some(s) = servers.get_mut(path) {
            if !(s.shared && shared) {
                return Err(DiskError::InUse {
                    path: path.to_path_buf(),
                    users: s.users.iter().map(|u| format!("'{u}'")).collect::<Vec<_>>().join(", "),
                });
            }
            if s.helper.running() {
                s.users.insert(vm.to_string());
                return Ok((lease(path, s), None));
            }
            servers.remove(path);
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| DiskError::Start {
            path: path.to_path_buf(),
            problem: format!("cannot create {}: {e}", self.dir.display()),
        })?;
        let k = key(path);
        let socket = self.dir.join(format!("{k}.sock"));
        let log = self.dir.join(format!("{k}.log"));
        let mut cmd = Command::new(&self.exe);
        let export = match mode {
            Mode::Target { export, .. } => export.clone(),
            _ => "disk".to_string(),
        };
        cmd.args(["disk", "serve"]).arg(path).arg("--socket").arg(&socket).args(["--export", &export]);
        if shared {
            cmd.arg("--shared");
        }
        if read_only {
            cmd.arg("--read-only");
        }
        match mode {
            Mode::Normal => {}
            Mode::Standby => {
                cmd.arg("--standby");
            }
            Mode::Target { listen, .. } => {
                cmd.arg("--handover").arg("--listen").arg(listen.to_string());
            }
        }
        if fenced && !read_only {
            cmd.arg("--fence").arg(self.fence_file());
        }
        if let Some(u) = &self.run_as {
            cmd.args(["--run-as", u]);
        }
        let start = |problem: String| DiskError::Start { path: path.to_path_buf(), problem };
        let (helper, said) = Helper::start(cmd, &log, READY_TIMEOUT, place, |said| said.contains("serving "))
            .map_err(|e| start(format!("the server {e}")))?;
        let tcp = said
            .split_whitespace()
            .skip_while(|w| *w != "tcp")
            .nth(1)
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok());
        let s = Server { helper, socket, export, shared, users: BTreeSet::from([vm.to_string()]) };
        let l = lease(path, &s);
        servers.insert(path.to_path_buf(), s);
        Ok((l, tcp))
    }

    /// Adopts a server found in a runtime record after a daemon restart. Returns whether it is
    /// still running.
    pub fn adopt(&self, vm: &str, l: &Lease, shared: bool) -> bool {
        let id = Identity { pid: l.pid, start_ticks: l.start_ticks };
        let Some(helper) = Helper::adopt(id) else { return false };
        let mut servers = self.lock();
        let s = servers.entry(l.path.clone()).or_insert_with(|| Server {
            helper,
            socket: l.socket.clone(),
            export: l.export.clone(),
            shared,
            users: BTreeSet::new(),
        });
        s.users.insert(vm.to_string());
        true
    }

    /// `vm` stops using `path`; the last user's release stops the server (which flushes the
    /// image before it exits).
    pub fn release(&self, vm: &str, path: &Path) {
        let server = {
            let mut servers = self.lock();
            let Some(s) = servers.get_mut(path) else { return };
            s.users.remove(vm);
            if !s.users.is_empty() {
                return;
            }
            servers.remove(path).expect("present")
        };
        stop(server);
    }

    /// Stops the server of a lease that no VM holds any more (found dead-owned after a restart).
    pub fn stop_orphan(&self, l: &Lease) {
        let id = Identity { pid: l.pid, start_ticks: l.start_ticks };
        let in_use = self.lock().get(&l.path).is_some_and(|s| s.helper.id == id && !s.users.is_empty());
        if !in_use {
            stop(Server {
                helper: Helper::known(id),
                socket: l.socket.clone(),
                export: l.export.clone(),
                shared: false,
                users: BTreeSet::new(),
            });
        }
    }

    /// VMs using each served image (for status).
    pub fn users(&self) -> Vec<(PathBuf, Vec<String>)> {
        self.lock().iter().map(|(p, s)| (p.clone(), s.users.iter().cloned().collect())).collect()
    }
}

fn lease(path: &Path, s: &Server) -> Lease {
    Lease {
        path: path.to_path_buf(),
        socket: s.socket.clone(),
        export: s.export.clone(),
        pid: s.helper.id.pid,
        start_ticks: s.helper.id.start_ticks,
    }
}

/// SIGTERM (the server finishes its requests and flushes), then SIGKILL if it hangs.
fn stop(mut s: Server) {
    if s.helper.stop(STOP_TIMEOUT) {
        tracing::warn!(pid = s.helper.id.pid, "disk server did not stop after SIGTERM; it was killed");
    }
    let _ = std::fs::remove_file(&s.socket);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_distinct() {
        assert_eq!(key(Path::new("/a/b.vhd")), key(Path::new("/a/b.vhd")));
        assert_ne!(key(Path::new("/a/b.vhd")), key(Path::new("/a/c.vhd")));
        assert_eq!(key(Path::new("")), "cbf29ce484222325");
    }

    #[test]
    fn an_unshared_disk_is_refused_to_a_second_vm_before_anything_starts() {
        let dir = tempfile::tempdir().unwrap();
        // `/bin/false` stands in for the server: it exits at once, but the refusal comes first.
        let ds = DiskServers::new("/bin/false".into(), dir.path().to_path_buf(), None);
        let path = dir.path().join("x.vhd");
        let id = vmm::process::identify(std::process::id()).unwrap();
        ds.lock().insert(
            path.clone(),
            Server {
                helper: Helper::adopt(id).unwrap(),
                socket: dir.path().join("s"),
                export: "disk".into(),
                shared: false,
                users: BTreeSet::from(["a".to_string()]),
            },
        );
        let e = ds.acquire("b", &path, true, false, &|_| {}).unwrap_err();
        assert!(e.to_string().contains("in use by VM(s) 'a'"), "{e}");
        // A server that fails to start reports its words.
        let other = dir.path().join("y.vhd");
        let e = ds.acquire("b", &other, false, false, &|_| {}).unwrap_err();
        assert!(e.to_string().contains("the server exited"), "{e}");
        // Shared on both sides: joins.
        ds.lock().get_mut(&path).unwrap().shared = true;
        let l = ds.acquire("b", &path, true, false, &|_| {}).unwrap();
        assert_eq!(l.pid, std::process::id());
        assert_eq!(ds.users(), vec![(path.clone(), vec!["a".to_string(), "b".to_string()])]);
        // Forget our own process before the registry is dropped: never signal it.
        ds.lock().clear();
    }
}
