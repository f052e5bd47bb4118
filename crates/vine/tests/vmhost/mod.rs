//! A real `vine daemon` for end-to-end VM tests: its own data directory, socket and cgroup
//! parent, guests from the guest kit. Dropping it turns off every VM it ran, stops the daemon,
//! kills any process left in its cgroups (all of them started by this test) and removes them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use test_infra::{Kit, SerialLog};

/// Boot-to-marker limit under TCG on a loaded 2-core CI machine.
pub const BOOT: Duration = Duration::from_secs(120);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A daemon under test.
pub struct VmHost {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
    pub socket: PathBuf,
    pub cgroup_parent: String,
    pub kit: Kit,
    daemon: Option<Child>,
}

fn vine_bin() -> &'static str {
    env!("CARGO_BIN_EXE_vine")
}

impl VmHost {
    /// Starts a daemon.
    pub fn start() -> VmHost {
        let kit = Kit::ensure().expect("guest kit");
        let dir = tempfile::tempdir().unwrap();
        // QEMU runs as the emulator user, who must cross this directory to reach its VM's.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        let data = dir.path().join("data");
        let socket = dir.path().join("vine.sock");
        let cgroup_parent =
            format!("vine-test-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let mut h = VmHost { dir, data, socket, cgroup_parent, kit, daemon: None };
        h.start_daemon();
        h
    }

    /// (Re)starts the daemon process and waits for its socket.
    pub fn start_daemon(&mut self) {
        // The daemon binds its socket a moment before it prints its HTTPS address and certificate
        // fingerprint: ready means both (this start's line, the log being appended to).
        let announced = |h: &VmHost| h.daemon_log().matches("REST API and web UI on").count();
        let before = announced(self);
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .unwrap();
        let child = Command::new(vine_bin())
            .args(["-v", "daemon", "--data-dir"])
            .arg(&self.data)
            .arg("--socket")
            .arg(&self.socket)
            .args([
                "--cgroup-parent",
                &self.cgroup_parent,
                "--sample-interval",
                "2",
                "--listen",
                "127.0.0.1:0",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() && announced(self) > before {
                return;
            }
            if let Some(status) = self.daemon.as_mut().unwrap().try_wait().unwrap() {
                panic!("the daemon exited ({status}): {}", self.daemon_log());
            }
            assert!(Instant::now() < deadline, "the daemon did not open its socket: {}", self.daemon_log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The HTTPS port the daemon printed.
    pub fn https_port(&self) -> u16 {
        let log = self.daemon_log();
        let at = log.rfind("https://127.0.0.1:").expect("the daemon printed its HTTPS address");
        log[at + "https://127.0.0.1:".len()..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The initial admin password.
    pub fn admin_password(&self) -> String {
        std::fs::read_to_string(self.data.join("initial-admin-password")).unwrap().trim().to_string()
    }

    /// `curl -k` against the daemon's HTTPS API: (status, body).
    pub fn https(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, String) {
        let mut c = Command::new("curl");
        c.args(["-sk", "-o", "-", "-w", "\n%{http_code}", "-X", method]);
        c.arg(format!("https://127.0.0.1:{}{path}", self.https_port()));
        if let Some(t) = token {
            c.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        if let Some(b) = body {
            c.args(["-H", "Content-Type: application/json", "--data-binary", b]);
        }
        let out = c.output().expect("curl runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    /// Logs `user` in over HTTPS; returns the token.
    pub fn login(&self, user: &str, password: &str) -> String {
        let (code, body) = self.https(
            "POST",
            "/api/login",
            None,
            Some(&serde_json::json!({"user": user, "password": password}).to_string()),
        );
        assert_eq!(code, 200, "login of {user}: {body}");
        serde_json::from_str::<Value>(&body).unwrap()["token"].as_str().unwrap().to_string()
    }

    /// The daemon's output so far.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// The daemon's pid.
    pub fn daemon_pid(&self) -> u32 {
        self.daemon.as_ref().expect("daemon running").id()
    }

    /// `kill -9` of the daemon.
    pub fn kill_daemon(&mut self) {
        let mut d = self.daemon.take().expect("daemon running");
        d.kill().unwrap();
        d.wait().unwrap();
    }

    /// Stops the daemon as a host shutdown does (SIGTERM) and waits for it to exit.
    pub fn stop_daemon(&mut self) {
        let mut d = self.daemon.take().expect("daemon running");
        // SAFETY: SIGTERM to the daemon this test started (still our unreaped child).
        unsafe {
            libc::kill(d.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(180);
        while d.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the daemon did not stop: {}", self.daemon_log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A `vine` command talking to this daemon.
    pub fn vine(&self) -> Command {
        let mut c = Command::new(vine_bin());
        c.env("VINE_SOCKET", &self.socket);
        c
    }

    /// Runs `vine ARGS`, panicking with the output (and the daemon's log) unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.vine().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "vine {args:?} failed: {}\ndaemon log:\n{}",
            text(&out),
            self.daemon_log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `vine ARGS`, expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.vine().args(args).output().unwrap();
        assert!(!out.status.success(), "vine {args:?} unexpectedly succeeded: {}", text(&out));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Creates a diskless VM booting the guest kit with `options` (e.g. `vine.counter=1`).
    pub fn create_kit_vm(&self, name: &str, options: &[&str], extra: &[&str]) {
        let mut args: Vec<String> =
            vec!["vm".into(), "create".into(), name.into(), "--memory".into(), "256M".into()];
        args.push("--kernel".into());
        args.push(self.kit.vmlinuz.display().to_string());
        args.push("--initrd".into());
        args.push(self.kit.initrd.display().to_string());
        args.push("--append".into());
        args.push(self.kit.cmdline_with(options));
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ok(&refs);
    }

    /// `vine vm show NAME --json`.
    pub fn show(&self, name: &str) -> Value {
        serde_json::from_str(&self.ok(&["vm", "show", name, "--json"])).unwrap()
    }

    /// The VM's state as `vine vm show --json` reports it.
    pub fn state(&self, name: &str) -> String {
        self.show(name)["state"].as_str().unwrap().to_string()
    }

    /// The VM's QEMU pid.
    pub fn pid(&self, name: &str) -> u32 {
        self.show(name)["pid"].as_u64().unwrap_or_else(|| panic!("{name} has no pid")) as u32
    }

    /// The VM's console log reader.
    pub fn console(&self, name: &str) -> SerialLog {
        SerialLog::new(self.data.join("vms").join(name).join("run").join("console.log"))
    }

    /// Waits for the next `VINE-COUNTER n` line and returns n.
    pub fn next_counter(&self, log: &mut SerialLog) -> u64 {
        let line = log.wait_for("VINE-COUNTER ", Duration::from_secs(60)).unwrap();
        line["VINE-COUNTER ".len()..].trim().parse().unwrap()
    }

    /// The highest counter printed so far.
    pub fn last_counter(&self, name: &str) -> u64 {
        let text = self.console(name).contents().unwrap();
        text.lines()
            .filter_map(|l| l.split("VINE-COUNTER ").nth(1))
            .filter_map(|n| n.trim().parse().ok())
            .max()
            .unwrap_or(0)
    }

    /// Every cgroup directory of this daemon (all hierarchies).
    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let root = Path::new("/sys/fs/cgroup");
        let mut tops = vec![root.to_path_buf()];
        if let Ok(rd) = std::fs::read_dir(root) {
            tops.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        for t in tops {
            // Containers' cgroups nest (`NAME/ct`, `NAME/lxc-monitor`): every level.
            let mut todo = vec![t.join(&self.cgroup_parent)];
            while let Some(p) = todo.pop() {
                if !p.is_dir() {
                    continue;
                }
                if let Ok(rd) = std::fs::read_dir(&p) {
                    todo.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
                }
                out.push(p);
            }
        }
        out
    }

    /// Asserts that `pid` runs as the emulator user (every uid and gid) inside a seccomp filter:
    /// the confinement of QEMU and the disk servers.
    pub fn assert_confined(&self, pid: u32, what: &str) {
        let id = |flag: &str| {
            let out = Command::new("id").args([flag, "vine-qemu"]).output().expect("id runs");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            field("Uid:"),
            vec![uid.as_str(); 4],
            "{what} (pid {pid}) runs as another user:\n{status}"
        );
        assert_eq!(
            field("Gid:"),
            vec![gid.as_str(); 4],
            "{what} (pid {pid}) runs in another group:\n{status}"
        );
        assert_eq!(field("Seccomp:"), vec!["2"], "{what} (pid {pid}) has no seccomp filter:\n{status}");
        assert_eq!(field("NoNewPrivs:"), vec!["1"], "{what} (pid {pid}) may gain privileges:\n{status}");
    }

    /// Pids in this daemon's VM cgroups.
    pub fn cgroup_pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .cgroup_dirs()
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect::<Vec<u32>>())
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }
}

impl Drop for VmHost {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            if let Ok(out) = self.vine().args(["vm", "list", "--json"]).output() {
                let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                for vm in list.as_array().into_iter().flatten() {
                    if vm["pid"].is_u64() {
                        let _ = self.vine().args(["vm", "off", vm["name"].as_str().unwrap()]).output();
                    }
                }
            }
            // Networks go with the test: unregister the VMs (freeing their NICs), then delete
            // every network; whatever the daemon could not delete is removed by name below.
            let nets: Value = self
                .vine()
                .args(["network", "list", "--json"])
                .output()
                .ok()
                .and_then(|o| serde_json::from_slice(&o.stdout).ok())
                .unwrap_or(Value::Null);
            if nets.as_array().is_some_and(|a| !a.is_empty()) {
                if let Ok(out) = self.vine().args(["vm", "list", "--json"]).output() {
                    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                    for vm in list.as_array().into_iter().flatten() {
                        let _ = self.vine().args(["vm", "remove", vm["name"].as_str().unwrap()]).output();
                    }
                }
            }
            for n in nets.as_array().into_iter().flatten() {
                let _ = self.vine().args(["network", "delete", n["name"].as_str().unwrap()]).output();
                let br = n["bridge"].as_str().unwrap_or("");
                if !br.is_empty() && Path::new("/sys/class/net").join(br).exists() {
                    let _ = Command::new("ip").args(["link", "del", br]).output();
                    let _ =
                        Command::new("nft").args(["delete", "table", "inet", &format!("vine_{br}")]).output();
                }
            }
            let mut d = self.daemon.take().unwrap();
            // SAFETY: SIGTERM to the daemon this test started (still our unreaped child).
            unsafe {
                libc::kill(d.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while d.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
        // DHCP servers this daemon started and did not stop (their own process groups).
        for f in std::fs::read_dir(self.data.join("networks")).into_iter().flatten().flatten() {
            let Ok(text) = std::fs::read_to_string(f.path().join("dhcp.pid")) else { continue };
            let mut w = text.split_whitespace();
            let (Some(pid), Some(ticks)) = (w.next(), w.next()) else { continue };
            let Ok(pid) = pid.parse::<u32>() else { continue };
            let now = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if vmm::process::start_ticks_from_stat(&now).map(|t| t.to_string()).as_deref() == Some(ticks) {
                // SAFETY: kill(2) on the DHCP server this test's daemon started, identified by
                // pid and start time.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
        // Anything still in our cgroups was started by this test's daemon.
        for pid in self.cgroup_pids() {
            // SAFETY: kill(2) on a process in a cgroup only this test's daemon populates.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        // The daemon's own CPU group (PARENT-daemon): what is left there (DHCP servers) is ours.
        let own: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(format!("{}-daemon", self.cgroup_parent)))
            .chain([Path::new("/sys/fs/cgroup").join(format!("{}-daemon", self.cgroup_parent))])
            .filter(|d| d.is_dir())
            .collect();
        for d in &own {
            for pid in std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default().lines() {
                let Ok(pid) = pid.trim().parse::<i32>() else { continue };
                // SAFETY: kill(2) on a process in a cgroup only this test's daemon populates.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        for d in own {
            let _ = std::fs::remove_dir(d);
        }
        let mut dirs = self.cgroup_dirs();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// stdout + stderr.
pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rfind(')').and_then(|i| s[i + 1..].split_whitespace().next()) != Some("Z"))
        .unwrap_or(false)
}

/// Waits until `f` holds.
pub fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
