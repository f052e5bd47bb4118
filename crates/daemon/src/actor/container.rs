//! A container's controls (kind `container`), through LXC (crate `lxc`). The actor, its states,
//! its events and its resource controls are a VM's; what differs is here: the "process" the
//! actor watches is the container's init (its host pid and start time, as for QEMU), the
//! container's cgroup (`ct`) sits inside the one vine's resource controls write, its NICs are
//! veths LXC makes under the port names vine guards, and save/restore go through CRIU
//! (`lxc-checkpoint`) into `run/checkpoint/`.

use super::*;

/// The container's processes' cgroup, inside the instance's (which vine's controls write).
const CT_CGROUP: &str = "ct";
/// LXC's monitor process's cgroup, inside the instance's too (it counts against its limits, as
/// a VM's console logger does).
const MONITOR_CGROUP: &str = "lxc-monitor";
/// How long a container's init gets to end after LXC says it stopped.
const END_WAIT: Duration = Duration::from_secs(10);
/// How long after a start the console relay starts (not while the container boots: its few
/// processes would take CPU from the boot, and nobody types into a console in its first moment).
const RELAY_DELAY: Duration = Duration::from_millis(700);

impl Actor {
    /// Whether this instance is a container.
    pub(super) fn is_container(&self) -> bool {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).def.is_container()
    }

    fn lxc_log(&self) -> PathBuf {
        self.paths.dir.join("lxc.log")
    }

    /// Where a saved container's CRIU images are.
    pub(super) fn checkpoint_dir(&self) -> PathBuf {
        self.paths.run.join("checkpoint")
    }

    /// Carries out a checked control on the container.
    pub(super) fn ct_control(&mut self, control: Control, timeout_s: Option<u32>) -> Res<()> {
        let log = self.lxc_log();
        let lxc = self.ctx.lxc.clone();
        let failed = |e: lxc::LxcError| Fail::from(e.to_string());
        match control {
            Control::Start => self.ct_start(false),
            Control::Pause => lxc.freeze(&self.name, &log).map_err(failed),
            Control::Resume => lxc.unfreeze(&self.name, &log).map_err(failed),
            Control::Save => self.ct_save(),
            Control::Restore => self.ct_start(true),
            Control::DiscardState => std::fs::remove_dir_all(self.checkpoint_dir())
                .map_err(|e| Fail::from(format!("cannot delete {}: {e}", self.checkpoint_dir().display()))),
            Control::Shutdown => {
                let t = timeout_s
                    .unwrap_or(self.view.lock().unwrap_or_else(|p| p.into_inner()).def.shutdown_timeout);
                lxc.shutdown(&self.name, Duration::from_secs(u64::from(t)), &log).map_err(|e| {
                    Fail::from(format!("its init did not power off within {t} s ({e}); it runs on"))
                })?;
                self.ct_end();
                Ok(())
            }
            Control::Off => {
                self.ct_kill();
                Ok(())
            }
            Control::Reset => {
                self.ct_kill();
                self.ct_start(false)
            }
            Control::Remove | Control::Delete => {
                self.remove(control == Control::Delete)?;
                let _ = std::fs::remove_dir_all(self.ctx.lxc.dir(&self.name));
                Ok(())
            }
        }
    }

    /// Starts the container (or restores it from its checkpoint).
    fn ct_start(&mut self, restore: bool) -> Res<()> {
        let t0 = Instant::now();
        let def = self.load_definition()?;
        let def = self.claim_macs(def)?;
        self.admit(&def)?;
        tracing::debug!(vm = self.name, us = t0.elapsed().as_micros() as u64, "definition read and admitted");
        match self.ct_launch(&def, restore) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.ct_end();
                Err(e)
            }
        }
    }

    fn ct_launch(&mut self, def: &VmDefinition, restore: bool) -> Res<()> {
        let c = def.container.as_ref().ok_or("the definition has no [container] settings")?;
        let rootfs = self.paths.dir.join("rootfs");
        if !rootfs.is_dir() {
            return Err(refused(format!("its root file system {} is gone", rootfs.display())));
        }
        let t0 = Instant::now();
        // Once per daemon: the files are read again only after a failure.
        static REGISTERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !REGISTERED.load(std::sync::atomic::Ordering::Relaxed) {
            lxc::idmap::ensure_registered(Path::new("/etc")).map_err(|e| {
                format!("cannot register vine's id range in /etc/subuid and /etc/subgid: {e}")
            })?;
            REGISTERED.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.ctx.resources.apply(&self.name).map_err(|e| format!("cgroup: {e}"))?;
        let nics = self.ctx.networks.veths(&self.name, def)?;
        self.prepare_run_dir()?;
        let parent = self.ctx.resources.parent().trim_matches('/').to_string();
        let under_parent =
            |leaf: &str| if parent.is_empty() { leaf.to_string() } else { format!("{parent}/{leaf}") };
        let under = |leaf: &str| {
            [parent.as_str(), self.name.as_str(), leaf]
                .iter()
                .filter(|p| !p.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join("/")
        };
        let cfg = lxc::ContainerConfig {
            name: self.name.clone(),
            hostname: self.name.clone(),
            rootfs,
            id_base: c.id_base,
            init: c.init.clone(),
            halt_signal: c.halt_signal.clone(),
            cgroup: under(CT_CGROUP),
            monitor_cgroup: under(MONITOR_CGROUP),
            // Not a name an instance can have (they start with a letter or digit).
            pivot_cgroup: under_parent("_lxc"),
            nics,
            console_log: self.paths.console.clone(),
            console_log_size: conlog::MAX_FILE,
            log: self.lxc_log(),
        };
        let lxc = self.ctx.lxc.clone();
        lxc.write_config(&self.name, &lxc::config::render(&cfg)).map_err(|e| Fail::from(e.to_string()))?;
        tracing::debug!(
            vm = self.name,
            us = t0.elapsed().as_micros() as u64,
            "cgroups, ports and configuration ready"
        );
        let log = self.lxc_log();
        if restore {
            let dir = self.checkpoint_dir();
            lxc.restore(&self.name, &dir, &log)
                .map_err(|e| Fail::from(format!("{e}{}", criu_words(&dir.join("restore.log")))))?;
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            let t0 = Instant::now();
            lxc.start(&self.name, &log).map_err(|e| Fail::from(e.to_string()))?;
            tracing::debug!(vm = self.name, us = t0.elapsed().as_micros() as u64, "lxc-start returned");
        }
        // Its init is the process of its cgroup whose parent (LXC's monitor) is outside it: read
        // there rather than asked of `lxc-info`, a process start while the container boots.
        let pid = match self.ct_init_pid() {
            Some(p) => p,
            None => match lxc.state(&self.name).map_err(|e| Fail::from(e.to_string()))? {
                lxc::RunState::Running(p) | lxc::RunState::Frozen(p) => p,
                other => return Err(format!("LXC says it is {other:?} just after its start").into()),
            },
        };
        let id = process::identify(pid).ok_or("its init ended at once")?;
        self.proc = Some(Proc { id, child: None, qmp: None, disks: Vec::new(), stats_on: false });
        self.monitor = parent_of(pid).and_then(process::identify);
        self.oom_kills = self.ct_oom_kills();
        self.relay_at = Some(Instant::now() + RELAY_DELAY);
        Ok(())
    }

    /// The container's init: the process of its cgroup whose parent is not in it.
    fn ct_init_pid(&self) -> Option<u32> {
        let cg = self.ctx.resources.cgroup(&self.name).ok()?;
        let procs = cg.read("memory", &format!("{CT_CGROUP}/cgroup.procs")).ok()?;
        let pids: Vec<u32> = procs.lines().filter_map(|l| l.trim().parse().ok()).collect();
        pids.iter().copied().find(|p| parent_of(*p).is_some_and(|pp| !pids.contains(&pp)))
    }

    /// Starts the keystroke relay viewers type into (`vine console-log --lxc`), unless one
    /// answers on the console socket already (after a daemon restart); it ends with the
    /// container's init. Without it the console is only shown, so a failure is only logged.
    fn ct_start_relay(&self) {
        let p = &self.paths;
        if std::os::unix::net::UnixStream::connect(&p.console_socket).is_ok() {
            return;
        }
        let Some(init) = self.proc.as_ref().map(|p| p.id) else { return };
        let _ = std::fs::remove_file(&p.console_socket);
        let mut cmd = Command::new(&self.ctx.vine_exe);
        cmd.arg("console-log")
            .arg("--lxc")
            .arg(&self.name)
            .arg("--lxc-path")
            .arg(self.ctx.lxc.path())
            .arg("--socket")
            .arg(&p.console_socket)
            .arg("--init")
            .arg(format!("{}:{}", init.pid, init.start_ticks));
        let mut child = match process::spawn_detached(cmd, std::process::Stdio::null(), &p.qemu_log) {
            Ok((child, _)) => child,
            Err(e) => {
                tracing::warn!(vm = self.name, error = %e, "cannot start the console relay");
                return;
            }
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !p.console_socket.exists() && Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                tracing::warn!(vm = self.name, %status, "the console relay exited at once");
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let _ = std::thread::Builder::new().name("relay-reaper".into()).spawn(move || {
            let _ = child.wait();
        });
    }

    /// Saves the container with CRIU (it stops); refused with CRIU's reason when CRIU cannot.
    fn ct_save(&mut self) -> Res<()> {
        let dir = self.checkpoint_dir();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        if let Err(e) = self.ctx.lxc.checkpoint(&self.name, &dir, &self.lxc_log()) {
            let words = criu_words(&dir.join("dump.log"));
            let _ = std::fs::remove_dir_all(&dir);
            return Err(refused(format!("CRIU cannot checkpoint it: {e}{words}")));
        }
        self.ct_wait_gone();
        self.ct_end();
        Ok(())
    }

    /// Kills the container (if it runs) and ends its session.
    pub(super) fn ct_kill(&mut self) {
        if !self.qemu_exited() {
            if let Err(e) = self.ctx.lxc.kill(&self.name, &self.lxc_log()) {
                tracing::warn!(vm = self.name, error = %e, "lxc-stop -k");
            }
            self.ct_wait_gone();
        }
        self.ct_end();
    }

    fn ct_wait_gone(&mut self) {
        let deadline = Instant::now() + END_WAIT;
        while !self.qemu_exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The container has stopped: its NIC ports, resources and cgroups go.
    pub(super) fn ct_end(&mut self) {
        self.proc = None;
        self.relay_at = None;
        // LXC's monitor logs its cleanup into the instance's directory: wait until it is done.
        if let Some(m) = self.monitor.take() {
            let deadline = Instant::now() + END_WAIT;
            while process::is_alive(m) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        self.ctx.networks.unplug(&self.name);
        // LXC made the instance's cgroup in every hierarchy; vine's controls' are removed by
        // `release_resources`, the rest here (children first).
        let parent = self.ctx.resources.parent().trim_matches('/').to_string();
        let rel = Path::new(&parent).join(&self.name);
        let mut roots = vec![PathBuf::from("/sys/fs/cgroup")];
        if !self.ctx.resources.is_v2() {
            roots = std::fs::read_dir("/sys/fs/cgroup")
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
        }
        for _ in 0..200 {
            let mut left = false;
            for root in &roots {
                let dir = root.join(&rel);
                for d in [dir.join(CT_CGROUP), dir.join(MONITOR_CGROUP), dir.clone()] {
                    if d.exists() && std::fs::remove_dir(&d).is_err() {
                        left = true;
                    }
                }
            }
            if !left {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.release_resources();
    }

    /// Between controls: a container whose init ended powered itself off; an OOM kill inside
    /// is an event.
    pub(super) fn ct_watch(&mut self) {
        if self.proc.is_none() {
            return;
        }
        if self.qemu_exited() {
            self.ct_end();
            let m = format!("container '{}' powered itself off (its init ended)", self.name);
            self.set_state_with_event(VmState::Off, "info", "vm.powered-off", &m);
            return;
        }
        if self.relay_at.is_some_and(|t| Instant::now() >= t) {
            self.relay_at = None;
            self.ct_start_relay();
        }
        if self.last_poll.elapsed() < POLL {
            return;
        }
        self.last_poll = Instant::now();
        let kills = self.ct_oom_kills();
        if kills > self.oom_kills {
            let memory = self.view.lock().unwrap_or_else(|p| p.into_inner()).def.memory;
            self.event(
                "warning",
                "vm.oom-kill",
                &format!(
                    "a process in container '{}' was killed: the container reached its memory limit of {} MiB \
                     ({} such kill(s) since it started)",
                    self.name,
                    memory >> 20,
                    kills
                ),
            );
        }
        self.oom_kills = kills;
    }

    /// How many processes the kernel's OOM killer has killed in the instance's cgroup.
    fn ct_oom_kills(&self) -> u64 {
        let Ok(cg) = self.ctx.resources.cgroup(&self.name) else { return 0 };
        let (file, key) =
            if cg.is_v2() { ("memory.events", "oom_kill") } else { ("memory.oom_control", "oom_kill") };
        // cgroup v1 counts a kill in the victim's own cgroup (`ct`), v2 in its ancestors too.
        let places =
            if cg.is_v2() { vec![String::new()] } else { vec![String::new(), format!("{CT_CGROUP}/")] };
        places
            .iter()
            .filter_map(|p| cg.read("memory", &format!("{p}{file}")).ok())
            .filter_map(|t| {
                t.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse::<u64>().ok()))
            })
            .sum()
    }

    /// After a failed control: the state from LXC.
    pub(super) fn ct_settle(&mut self, before: VmState) {
        let s = match self.ctx.lxc.state(&self.name) {
            Ok(lxc::RunState::Running(_)) => VmState::Running,
            Ok(lxc::RunState::Frozen(_)) => VmState::Paused,
            Ok(lxc::RunState::Busy) | Err(_) if self.proc.is_some() && !self.qemu_exited() => before,
            _ => {
                self.ct_end();
                if self.checkpoint_dir().exists() {
                    VmState::Saved
                } else {
                    VmState::Off
                }
            }
        };
        self.set_state(s);
    }

    /// After a daemon restart: the container found again from its init's pid and start time.
    pub(super) fn ct_reattach(&mut self, recorded: VmState, rec: Option<RuntimeRecord>) {
        let alive = rec.as_ref().map(|r| Identity { pid: r.qemu_pid, start_ticks: r.qemu_start_ticks });
        match alive.filter(|id| process::is_alive(*id)) {
            Some(id) => {
                let def = self.view.lock().unwrap_or_else(|p| p.into_inner()).def.clone();
                self.ctx.resources.hold(&self.name, controls_of(&def));
                self.proc = Some(Proc { id, child: None, qmp: None, disks: Vec::new(), stats_on: false });
                self.monitor = parent_of(id.pid).and_then(process::identify);
                self.relay_at = Some(Instant::now());
                self.ctx.networks.replug(&self.name, &def);
                self.oom_kills = self.ct_oom_kills();
                let s = match self.ctx.lxc.state(&self.name) {
                    Ok(lxc::RunState::Frozen(_)) => VmState::Paused,
                    _ => VmState::Running,
                };
                let m = format!("found container '{}' {} (init pid {})", self.name, s.name(), id.pid);
                self.reattached(s, &m);
            }
            None if recorded.has_process() => {
                self.ct_end();
                let m = format!("container '{}' ended while the daemon was away", self.name);
                self.set_state_with_event(VmState::Off, "warning", "vm.powered-off", &m);
            }
            None => {}
        }
    }
}

/// The parent of process `pid`, from `/proc/PID/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// CRIU's error lines from one of its logs, as "; CRIU says: …" (empty when it has none).
fn criu_words(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("Error")).collect();
    if lines.is_empty() {
        return String::new();
    }
    let n = lines.len();
    format!("; CRIU says: {}", lines[n.saturating_sub(3)..].join(" | "))
}
