//! Saving, restoring and stopping a VM: its saved state, shutdown and power-off, the end of its
//! session (QEMU, disk servers, taps, resources), undo disks, and unregistering it.

use super::*;

impl Actor {
    pub(super) fn save(&mut self, before: VmState) -> Res<()> {
        let state = self.paths.state.clone();
        let _ = std::fs::remove_file(&state);
        if before == VmState::Running {
            self.qmp_do("stop", None)?;
        }
        let uri = format!("file:{}", state.display());
        let r = self.begin_migration("migrate", &uri).and_then(|_| self.wait_migration());
        if let Err(e) = r {
            let _ = std::fs::remove_file(&state);
            if before == VmState::Running {
                let _ = self.qmp_do("cont", None);
            }
            return Err(e);
        }
        if let Err(e) = std::fs::File::open(&state).and_then(|f| f.sync_all()) {
            let _ = std::fs::remove_file(&state);
            if before == VmState::Running {
                let _ = self.qmp_do("cont", None);
            }
            return Err(Fail::from(format!("cannot make {} durable: {e}", state.display())));
        }
        self.quit_and_end();
        Ok(())
    }

    pub(super) fn restore(&mut self) -> Res<()> {
        let state = self.paths.state.clone();
        if !state.exists() {
            return Err(Fail::from(format!("the saved state {} is missing", state.display())));
        }
        let t = Instant::now();
        let def = self.load_definition()?;
        self.admit(&def)?;
        tracing::debug!(
            vm = self.name,
            ms = t.elapsed().as_secs_f64() * 1e3,
            "restore: definition loaded and admitted"
        );
        if let Err(e) = self.launch(&def, true) {
            self.release_resources();
            return Err(e);
        }
        tracing::debug!(vm = self.name, ms = t.elapsed().as_secs_f64() * 1e3, "restore: QEMU launched");
        let uri = format!("file:{}", state.display());
        let r = self
            .begin_migration("migrate-incoming", &uri)
            .and_then(|_| self.wait_migration())
            .and_then(|_| self.qmp_do("cont", None));
        tracing::debug!(
            vm = self.name,
            ms = t.elapsed().as_secs_f64() * 1e3,
            "restore: state loaded, guest continued"
        );
        if let Err(e) = r {
            self.kill_and_end();
            return Err(e);
        }
        // A state is restored once: continuing from it again would not match the disks. The
        // rename takes it out of use at once; the file is deleted after the answer.
        let used = state.with_extension("bin.restored");
        match std::fs::rename(&state, &used) {
            Ok(()) => self.retired.push(used),
            Err(e) => tracing::warn!(error = %e, "cannot retire the restored state"),
        }
        tracing::debug!(vm = self.name, ms = t.elapsed().as_secs_f64() * 1e3, "restore: done");
        Ok(())
    }

    pub(super) fn shutdown(&mut self, timeout_s: Option<u32>, undo: UndoAction) -> Res<()> {
        let secs =
            timeout_s.unwrap_or(self.view.lock().unwrap_or_else(|p| p.into_inner()).def.shutdown_timeout);
        self.qmp_do("system_powerdown", None)?;
        let deadline = Instant::now() + Duration::from_secs(u64::from(secs));
        loop {
            if self.qemu_exited() {
                break;
            }
            if let Ok(s) = self.qmp().and_then(|q| q.status().map_err(|e| Fail::from(e.to_string()))) {
                if s == "shutdown" {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err(Fail::from(format!(
                    "the guest did not power off within {secs} s (it may not handle ACPI); use off to cut the power"
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.quit_and_end();
        self.apply_undo(undo)
    }

    pub(super) fn off(&mut self, undo: UndoAction) -> Res<()> {
        self.quit_and_end();
        self.apply_undo(undo)
    }

    pub(super) fn qemu_exited(&mut self) -> bool {
        match self.proc.as_mut() {
            None => true,
            Some(p) => match p.child.as_mut() {
                Some(c) => !matches!(c.try_wait(), Ok(None)),
                None => !process::is_alive(p.id),
            },
        }
    }

    /// Asks QEMU to quit (killing it if it does not), then ends the session.
    pub(super) fn quit_and_end(&mut self) {
        if !self.qemu_exited() {
            let _ = self.qmp_do("quit", None);
            // Checked every millisecond: a save or an off returns as soon as QEMU is gone.
            let deadline = Instant::now() + QUIT_TIMEOUT;
            while !self.qemu_exited() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.kill_and_end();
    }

    pub(super) fn kill_and_end(&mut self) {
        if let Some(p) = self.proc.as_mut() {
            if process::is_alive(p.id) {
                // SAFETY: kill(2) on the QEMU we started, re-identified by its start time just now.
                unsafe {
                    libc::kill(p.id.pid as libc::pid_t, libc::SIGKILL);
                }
            }
            if let Some(c) = p.child.as_mut() {
                let _ = c.wait();
            } else {
                let deadline = Instant::now() + QUIT_TIMEOUT;
                while process::is_alive(p.id) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        self.end_session();
    }

    /// QEMU is gone: release its disks, resources and cgroup.
    pub(super) fn end_session(&mut self) {
        if let Some(p) = self.proc.take() {
            for (l, _) in &p.disks {
                self.ctx.disks.release(&self.name, &l.path);
            }
        }
        let _ = std::fs::remove_file(&self.paths.qmp);
        self.ctx.networks.unplug(&self.name);
        self.release_resources();
    }

    /// Commits or discards the undo disks of the session that just ended.
    pub(super) fn apply_undo(&mut self, undo: UndoAction) -> Res<()> {
        let def = self.view.lock().unwrap_or_else(|p| p.into_inner()).def.clone();
        if !def.undo_disks || undo == UndoAction::Keep {
            return Ok(());
        }
        for (i, _) in def.disks.iter().enumerate().filter(|(_, d)| !d.cdrom && !d.read_only) {
            let u = self.paths.undo_disk(i);
            if !u.exists() {
                continue;
            }
            if undo == UndoAction::Commit {
                vhd::ops::commit(&u, &mut |_, _| {})
                    .map_err(|e| format!("cannot commit undo disk {}: {e}", u.display()))?;
            }
            std::fs::remove_file(&u).map_err(|e| format!("cannot delete undo disk {}: {e}", u.display()))?;
        }
        self.event(
            "info",
            "vm.undo",
            &format!(
                "{} the undo disks of '{}'",
                if undo == UndoAction::Commit { "committed" } else { "discarded" },
                self.name
            ),
        );
        Ok(())
    }

    pub(super) fn remove(&mut self, delete: bool) -> Res<()> {
        let def = self.view.lock().unwrap_or_else(|p| p.into_inner()).def.clone();
        self.ctx.store.remove_vm(&self.name).map_err(|e| Fail::from(e.to_string()))?;
        self.ctx.networks.release_nics(&self.name);
        if !delete {
            return Ok(());
        }
        let others = self.ctx.store.list_vms().map_err(|e| Fail::from(e.to_string()))?;
        let file = |p: &str| self.ctx.pools.file_of(p).ok().and_then(|f| std::fs::canonicalize(f).ok());
        let used_elsewhere = |path: &Option<PathBuf>| {
            others.iter().any(|o| {
                VmDefinition::parse(&o.definition)
                    .is_ok_and(|d| d.disks.iter().any(|x| file(&x.path) == *path))
            })
        };
        // A CD/DVD or a read-only disk is not the VM's own (an ISO, a template's base).
        for d in def.disks.iter().filter(|d| !d.cdrom && !d.read_only) {
            let Some(f) = file(&d.path) else { continue };
            if d.shared || used_elsewhere(&Some(f.clone())) {
                self.event("info", "vm.delete", &format!("kept disk {}: another VM may use it", d.path));
                continue;
            }
            if let Err(e) = std::fs::remove_file(&f) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(Fail::from(format!("unregistered, but cannot delete disk {}: {e}", d.path)));
                }
            }
        }
        std::fs::remove_dir_all(&self.paths.dir)
            .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
            .map_err(|e| {
                Fail::from(format!("unregistered, but cannot delete {}: {e}", self.paths.dir.display()))
            })
    }
}
