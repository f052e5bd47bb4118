//! Watching a VM between controls: its QEMU's liveness and QMP status (crashes, guest
//! power-offs), and finding a running VM again after a daemon restart.

use super::*;

impl Actor {
    /// Refreshes the state from QEMU before a control is checked.
    pub(super) fn refresh(&mut self) {
        if self.proc.is_some() {
            self.last_poll = Instant::now() - POLL;
            self.watch();
        }
    }

    pub(super) fn watch(&mut self) {
        if self.proc.is_none() {
            return;
        }
        if self.is_container() {
            return self.ct_watch();
        }
        if self.qemu_exited() {
            self.crashed("QEMU ended without being asked to");
            return;
        }
        if self.last_poll.elapsed() < POLL {
            return;
        }
        self.last_poll = Instant::now();
        let status = match self.qmp().and_then(|q| q.status().map_err(|e| Fail::from(e.to_string()))) {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(vm = self.name, error = %e, "QMP status");
                if let Some(p) = self.proc.as_mut() {
                    p.qmp = None;
                }
                return;
            }
        };
        let state = self.state();
        match (status.as_str(), state) {
            ("shutdown", _) => {
                self.quit_and_end();
                self.set_state(VmState::Off);
                self.event(
                    "info",
                    "vm.powered-off",
                    &format!("the guest of '{}' powered itself off", self.name),
                );
            }
            ("running", VmState::Running) => self.sample_memory(),
            ("running", VmState::Paused) => self.set_state(VmState::Running),
            ("paused" | "io-error" | "internal-error" | "guest-panicked", VmState::Running) => {
                self.set_state(VmState::Paused);
                if status != "paused" {
                    self.event(
                        "warning",
                        "vm.stopped",
                        &format!("'{}' stopped: QEMU says {status}", self.name),
                    );
                }
            }
            _ => {}
        }
    }

    /// Every [`MEMORY_POLL`]: what the running guest's balloon says of its memory, into the
    /// metrics (the pool's resizer reads them). The balloon is first asked to poll the guest.
    /// The guest's figures count only once they were taken after the balloon reached its size:
    /// while it inflates or deflates, or before the guest's next report, the guest's total and
    /// the balloon's size disagree (the resizer then leaves it alone).
    fn sample_memory(&mut self) {
        if self.last_memory.elapsed() < MEMORY_POLL {
            return;
        }
        self.last_memory = Instant::now();
        if !self.view.lock().unwrap_or_else(|p| p.into_inner()).def.balloon {
            return;
        }
        let path = format!("/machine/peripheral/{}", vmm::qemu_args::BALLOON);
        if !self.proc.as_ref().is_some_and(|p| p.stats_on) {
            let on = json!({ "path": path, "property": "guest-stats-polling-interval", "value": STATS_S });
            if let Err(e) = self.with_qmp(|q| q.execute("qom-set", Some(on))) {
                tracing::debug!(vm = self.name, error = %e, "balloon statistics");
                return;
            }
            if let Some(p) = self.proc.as_mut() {
                p.stats_on = true;
            }
        }
        let Ok(actual) = self.with_qmp(|q| q.execute("query-balloon", None)) else { return };
        let Some(balloon) = actual["actual"].as_u64() else { return };
        let now_s = crate::since_epoch().as_secs();
        let since = match self.balloon_since {
            Some((b, t)) if b == balloon => t,
            _ => {
                self.balloon_since = Some((balloon, now_s));
                now_s
            }
        };
        let stats = self
            .with_qmp(|q| q.execute("qom-get", Some(json!({ "path": path, "property": "guest-stats" }))))
            .unwrap_or_default();
        // Figures the guest never gave are -1; none at all before its first report
        // (`last-update` is when QEMU got the report, in s since the epoch).
        let reported = stats["last-update"].as_u64().is_some_and(|t| t > since);
        let stat = |k: &str| stats["stats"][k].as_u64().filter(|_| reported);
        let m = crate::metrics::Memory {
            balloon,
            guest_total: stat("stat-total-memory"),
            guest_available: stat("stat-available-memory"),
        };
        self.ctx.metrics.record_memory(&self.name, Some(m));
    }

    pub(super) fn crashed(&mut self, why: &str) {
        let pid = self.proc.as_ref().map(|p| p.id.pid).unwrap_or(0);
        let mut status = String::new();
        if let Some(c) = self.proc.as_mut().and_then(|p| p.child.as_mut()) {
            if let Ok(Some(s)) = c.try_wait() {
                status = format!(" ({s})");
            }
        }
        self.end_session();
        if self.state() == VmState::Incoming {
            // Nothing ran here yet: the guest is still its source's, which carries on.
            self.set_state(VmState::Off);
            self.event(
                "warning",
                "vm.incoming-ended",
                &format!("the emulator waiting for '{}' ended: {why} (pid {pid}{status})", self.name),
            );
            return;
        }
        let fenced = self.view.lock().unwrap_or_else(|p| p.into_inner()).fenced.take();
        if let Some(why) = fenced {
            // Killed on purpose, from outside: not a crash, and nothing to restart here.
            self.set_state(VmState::Off);
            self.event(
                "warning",
                "vm.fenced",
                &format!("'{}' was stopped: {why} (QEMU pid {pid})", self.name),
            );
            return;
        }
        self.set_state(VmState::Crashed);
        let log = tail(&self.paths.qemu_log, 3);
        let msg = format!(
            "'{}' crashed: {why}: QEMU pid {pid}{status}{}",
            self.name,
            if log.is_empty() { String::new() } else { format!("; its last words: {log}") }
        );
        self.view.lock().unwrap_or_else(|p| p.into_inner()).last_error = Some(msg.clone());
        self.event("error", "vm.crashed", &msg);
    }

    /// After a daemon restart: finds the VM's processes from the runtime record.
    pub fn reattach(&mut self, recorded: VmState, runtime: Option<&str>) {
        // A restored state whose deletion the previous daemon did not live to finish.
        let _ = std::fs::remove_file(self.paths.state.with_extension("bin.restored"));
        let rec: Option<RuntimeRecord> = runtime.and_then(|r| serde_json::from_str(r).ok());
        if self.is_container() {
            return self.ct_reattach(recorded, rec);
        }
        let Some(rec) = rec else {
            if recorded == VmState::Saved && !self.paths.state.exists() {
                // The host went down after a restore had taken the state (a restore's record
                // is not synced, see `durability`): the guest ran on, so it cannot continue.
                self.set_state(VmState::Off);
                self.event(
                    "warning",
                    "vm.state-gone",
                    &format!(
                        "'{}' was saved but its saved state {} is gone; it is off",
                        self.name,
                        self.paths.state.display()
                    ),
                );
                return;
            }
            if recorded.has_process() {
                self.set_state(VmState::Crashed);
                self.event(
                    "warning",
                    "vm.crashed",
                    &format!("'{}' was {} but has no process record", self.name, recorded.name()),
                );
            }
            return;
        };
        let id = Identity { pid: rec.qemu_pid, start_ticks: rec.qemu_start_ticks };
        if !process::is_alive(id) {
            for (l, _) in &rec.disks {
                self.ctx.disks.stop_orphan(l);
            }
            self.release_resources();
            self.set_state(VmState::Crashed);
            let msg =
                format!("'{}' crashed while the daemon was away: QEMU pid {} is gone", self.name, id.pid);
            self.view.lock().unwrap_or_else(|p| p.into_inner()).last_error = Some(msg.clone());
            self.event("error", "vm.crashed", &msg);
            return;
        }
        let mut lost = false;
        for (l, shared) in &rec.disks {
            if !self.ctx.disks.adopt(&self.name, l, *shared) {
                lost = true;
                self.event(
                    "error",
                    "vm.disk-lost",
                    &format!("the disk server of {} for '{}' is gone", l.path.display(), self.name),
                );
            }
        }
        let def = self.view.lock().unwrap_or_else(|p| p.into_inner()).def.clone();
        self.ctx.resources.hold(&self.name, controls_of(&def));
        self.proc = Some(Proc { id, child: None, qmp: None, disks: rec.disks, stats_on: false });
        if lost && def.ha && recorded.has_process() {
            // This host's fence fired while the daemon was away: the HA guest's disk servers let
            // go of its volumes, so its emulator is stopped rather than left without disks.
            self.kill_and_end();
            self.set_state(VmState::Off);
            self.view.lock().unwrap_or_else(|p| p.into_inner()).ha_restart = true;
            self.event(
                "warning",
                "vm.fenced",
                &format!(
                    "'{}' was stopped: its disk servers let go of its volumes while the daemon was away (this \
                     host's fence fired); it starts again here once this host is back in its pool, unless the \
                     pool restarted it elsewhere",
                    self.name
                ),
            );
            return;
        }
        // The taps outlived the daemon; a bridge re-created since (by this daemon's start)
        // gets them back.
        self.ctx.networks.replug(&self.name, &def);
        let status = self.qmp().and_then(|q| q.status().map_err(|e| Fail::from(e.to_string())));
        let s = match (status.as_deref(), recorded) {
            // A live migration the previous daemon did not see to its end: the pool decides
            // which side goes on (`crate::migrate`, each sync round).
            (Ok(_), VmState::Migrating | VmState::Incoming) => recorded,
            (Ok("running"), _) => VmState::Running,
            (Ok("shutdown"), _) => {
                self.quit_and_end();
                VmState::Off
            }
            (Ok("inmigrate"), _) | (Ok("prelaunch"), VmState::Restoring) => {
                // A restore was cut short: the saved state is still there.
                self.kill_and_end();
                VmState::Saved
            }
            (Ok("prelaunch"), _) => match self.qmp_do("cont", None) {
                Ok(()) => VmState::Running,
                Err(_) => VmState::Paused,
            },
            (Ok(_), VmState::Saving) => {
                // A save was cut short: the guest is intact in QEMU, the file is not trusted.
                let _ = std::fs::remove_file(&self.paths.state);
                VmState::Paused
            }
            (Ok(_), _) => VmState::Paused,
            (Err(e), _) => {
                tracing::warn!(vm = self.name, error = %e, "reattached without QMP; will retry");
                if recorded.has_process() {
                    recorded
                } else {
                    VmState::Running
                }
            }
        };
        self.reattached(s, &format!("found '{}' {} (QEMU pid {})", self.name, s.name(), id.pid));
    }

    /// The end of a reattach: the state found, the cgroup files rewritten, the event.
    pub(super) fn reattached(&mut self, s: VmState, message: &str) {
        self.set_state(s);
        if let Err(e) = self.ctx.resources.apply_all() {
            tracing::warn!(error = %e, "cannot rewrite cgroup files");
        }
        self.event("info", "vm.reattached", message);
    }
}
