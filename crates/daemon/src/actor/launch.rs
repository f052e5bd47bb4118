//! Starting a VM's processes: its disk servers, console logger and QEMU (stopped, `-S`), with
//! the files QEMU is given as descriptors, its run directory and its undo disks.

use super::*;

impl Actor {
    /// Starts the disk servers and QEMU (stopped, `-S`); on failure everything started is
    /// stopped again. QEMU is spawned as soon as its command line is known: its cgroup is set up,
    /// and its pid recorded, while it initialises (some 35 ms), and all of that is done before
    /// the guest can run (vine's first QMP command, `cont` or `migrate-incoming`, comes after).
    pub(super) fn launch(&mut self, def: &VmDefinition, incoming: bool) -> Res<()> {
        self.served_tcp.clear();
        std::fs::create_dir_all(&self.paths.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.paths.dir.display()))?;
        let def = &self.with_seed(self.with_files(def)?)?;
        let cg = self.ctx.resources.cgroup(&self.name).map_err(|e| format!("cgroup: {e}"))?;
        let shared_cg = self.ctx.resources.cgroup(SHARED_CGROUP).map_err(|e| format!("cgroup: {e}"))?;
        let mut leases: Vec<(Lease, bool)> = Vec::new();
        let r = (|| -> Res<Proc> {
            for (i, d) in def.disks.iter().enumerate().filter(|(_, d)| !d.cdrom) {
                let mut path = PathBuf::from(&d.path);
                if def.undo_disks && !d.read_only {
                    path = self.undo_disk(i, &path)?;
                }
                let place = |pid: u32| {
                    let target = if d.shared { &shared_cg } else { &cg };
                    let r = target.create().and_then(|_| target.add_process(pid));
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "cannot move a disk server into its cgroup");
                    }
                };
                let mode = self.disk_modes.get(&i).cloned().unwrap_or(Mode::Normal);
                let (l, tcp) = self
                    .ctx
                    .disks
                    .acquire_as(&self.name, &path, d.shared, d.read_only, &mode, def.ha, &place)
                    .map_err(|e| e.to_string())?;
                if let Some(a) = tcp {
                    self.served_tcp.push((i, a, l.export.clone()));
                }
                leases.push((l, d.shared));
            }
            let nics = self.ctx.networks.plug(&self.name, def)?;
            self.prepare_run_dir()?;
            self.start_console_logger(&cg)?;
            let (def, passed, fdsets) = &self.with_descriptors(def)?;
            let eps: Vec<NbdEndpoint> = leases
                .iter()
                .map(|(l, _)| NbdEndpoint { socket: l.socket.clone(), export: l.export.clone() })
                .collect();
            let plan = LaunchPlan {
                def,
                accel: self.ctx.host.accelerator.kind,
                qmp_socket: &self.paths.qmp,
                vnc_socket: &self.paths.vnc,
                console_feed: &self.paths.console_feed,
                disks: &eps,
                nics: &nics,
                fdsets,
                sandbox: true,
            };
            let mut args = qemu_args(&plan).map_err(|e| e.to_string())?;
            args.push("-S".into());
            if incoming {
                args.extend(["-incoming".into(), "defer".into()]);
            }
            let _ = std::fs::remove_file(&self.paths.qmp);
            tracing::debug!(vm = self.name, "launch: disks served, starting QEMU");
            let mut cmd = Command::new(&self.ctx.qemu);
            cmd.args(&args);
            // QEMU inherits the files vine opened for it and runs as the emulator user from its
            // first instruction: the launcher puts them in place and drops to the user, so the
            // daemon never forks itself.
            let files = passed
                .iter()
                .map(|(f, child_fd)| f.try_clone().map(|f| (std::os::fd::OwnedFd::from(f), *child_fd)))
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| format!("cannot pass files to QEMU: {e}"))?;
            let l = sandbox::launch(&self.ctx.vine_exe, &self.ctx.emulator, cmd, files)
                .map_err(|e| format!("cannot pass files to QEMU: {e}"))?;
            let log_from = std::fs::metadata(&self.paths.qemu_log).map(|m| m.len()).unwrap_or(0);
            let (mut child, id) = process::spawn_detached(l.command, l.stdin, &self.paths.qemu_log)
                .map_err(|e| e.to_string())?;
            if let Err(e) = l.handover.send() {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Fail::from(format!("cannot pass files to QEMU: {e}")));
            }
            let placed = self.ctx.resources.apply(&self.name).and_then(|()| cg.add_process(id.pid));
            if let Err(e) = placed {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Fail::from(format!("cgroup: {e}")));
            }
            // Record the new QEMU now, while it initialises (the commit is then off the critical
            // path): a daemon that dies from here on finds this QEMU again and adopts it.
            let json = RuntimeRecord::json(id, &leases);
            let during = self.state();
            let r = self.ctx.store.set_state(
                &self.name,
                during.name(),
                Some(id.pid),
                Some(&json),
                durability(during),
            );
            if let Err(e) = r {
                tracing::error!(vm = self.name, error = %e, "cannot record the VM's state");
            }
            let deadline = Instant::now() + QMP_TIMEOUT;
            let client = loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let text = std::fs::read_to_string(&self.paths.qemu_log).unwrap_or_default();
                    let said = text.get(log_from as usize..).unwrap_or("").trim().replace('\n', " | ");
                    return Err(Fail::from(format!("QEMU exited at once ({status}): {said}")));
                }
                if let Ok(t) = UnixTransport::connect(&self.paths.qmp, QMP_TIMEOUT) {
                    match qmp::Client::negotiate(t) {
                        Ok(c) => break c,
                        Err(e) => tracing::debug!(error = %e, "QMP not ready"),
                    }
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Fail::from(format!(
                        "QEMU did not open its QMP socket within {QMP_TIMEOUT:?}"
                    )));
                }
                std::thread::sleep(Duration::from_millis(1));
            };
            tracing::debug!(vm = self.name, pid = id.pid, "launch: QMP connected");
            Ok(Proc { id, child: Some(child), qmp: Some(client), disks: leases.clone(), stats_on: false })
        })();
        match r {
            Ok(p) => {
                // Already recorded with this pid above; the view learns it now.
                self.view.lock().unwrap_or_else(|p| p.into_inner()).pid = Some(p.id.pid);
                self.proc = Some(p);
                Ok(())
            }
            Err(e) => {
                for (l, _) in &leases {
                    self.ctx.disks.release(&self.name, &l.path);
                }
                self.ctx.networks.unplug(&self.name);
                Err(e)
            }
        }
    }

    /// The definition with every volume (`POOL/NAME`) replaced by its file, as QEMU and the disk
    /// servers need it; a volume that is gone refuses the start with its name.
    pub(super) fn with_files(&self, def: &VmDefinition) -> Res<VmDefinition> {
        let mut d = def.clone();
        let file = |field: String, p: &str| -> Res<String> {
            self.ctx
                .pools
                .file_of(p)
                .map(|f| f.display().to_string())
                .map_err(|e| refused(format!("{field}: {e}")))
        };
        for (i, disk) in d.disks.iter_mut().enumerate() {
            disk.path = file(format!("disk[{i}].path"), &disk.path)?;
        }
        if let Some(k) = d.kernel.as_mut() {
            k.kernel = file("kernel.kernel".into(), &k.kernel)?;
            if let Some(initrd) = k.initrd.as_mut() {
                *initrd = file("kernel.initrd".into(), initrd)?;
            }
        }
        Ok(d)
    }

    /// With cloud-init data, the definition with its NoCloud seed (built now, from the data as
    /// it is) as one more CD/DVD on the IDE bus; else the definition as it is.
    pub(super) fn with_seed(&self, mut def: VmDefinition) -> Res<VmDefinition> {
        let Some(ci) = &def.cloud_init else { return Ok(def) };
        let macs: Vec<String> = def.nics.iter().filter_map(|n| n.mac.clone()).collect();
        let seed = cloudinit::seed(&def.uuid, &def.name, ci, &macs);
        let iso = self.paths.dir.join("cidata.iso");
        cloudinit::write_iso(&seed, &self.paths.dir.join("cidata"), &iso).map_err(|e| e.to_string())?;
        tracing::debug!(vm = self.name, instance = seed.instance_id, "cloud-init seed built");
        def.disks.push(vmconfig::Disk {
            path: iso.display().to_string(),
            bus: vmconfig::Bus::Ide,
            cdrom: true,
            shared: false,
            read_only: true,
        });
        Ok(def)
    }

    /// Starts the VM's console logger (crate `conlog`) as the emulator user in the VM's cgroup,
    /// and waits until QEMU's serial ports can connect to it. It ends with its QEMU.
    pub(super) fn start_console_logger(&self, cg: &cgroups::fs::Cgroup) -> Res<()> {
        let p = &self.paths;
        // A socket left by an earlier session would look ready before this logger is.
        let _ = std::fs::remove_file(&p.console_feed);
        let mut cmd = Command::new(&self.ctx.vine_exe);
        cmd.arg("console-log")
            .arg("--feed")
            .arg(&p.console_feed)
            .arg("--socket")
            .arg(&p.console_socket)
            .arg("--log")
            .arg(&p.console);
        let l = sandbox::launch(&self.ctx.vine_exe, &self.ctx.emulator, cmd, Vec::new())
            .map_err(|e| format!("console logger: {e}"))?;
        let (mut child, id) = process::spawn_detached(l.command, l.stdin, &p.qemu_log)
            .map_err(|e| format!("console logger: {e}"))?;
        let placed = self.ctx.resources.apply(&self.name).and_then(|()| cg.add_process(id.pid));
        if let Err(e) = placed {
            tracing::warn!(vm = self.name, error = %e, "cannot move the console logger into the VM's cgroup");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !p.console_feed.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Fail::from(format!(
                    "the console logger exited at once ({status}); see {}",
                    p.qemu_log.display()
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Fail::from("the console logger did not start within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        // Reaped when it ends (with its QEMU); after a daemon restart, init reaps it.
        let _ = std::thread::Builder::new().name("logger-reaper".into()).spawn(move || {
            let _ = child.wait();
        });
        Ok(())
    }

    /// Makes QEMU's own directory, the emulator user's alone (sockets, console log, saved state),
    /// inside the VM's directory, which it may cross but not list.
    pub(super) fn prepare_run_dir(&self) -> Res<()> {
        crate::layout::run_dir(&self.paths, &self.ctx.emulator).map_err(Fail::from)
    }

    /// Opens the files QEMU reads itself — kernel, initrd, CD/DVD images — so that QEMU, which
    /// may reach no image by its path, gets them as inherited descriptors: the kernel and
    /// initrd as `/proc/self/fd/N`, each CD/DVD as an fd set (`/dev/fdset/S`). Returns the
    /// definition naming them so, the open files with their numbers in QEMU, and the fd sets.
    #[allow(clippy::type_complexity)]
    pub(super) fn with_descriptors(
        &self,
        def: &VmDefinition,
    ) -> Res<(VmDefinition, Vec<(std::fs::File, i32)>, Vec<(i32, u32)>)> {
        /// QEMU's first inherited descriptor (0–2 are its standard streams).
        const FIRST_FD: i32 = 10;
        let mut d = def.clone();
        let mut passed: Vec<(std::fs::File, i32)> = Vec::new();
        let mut fdsets = Vec::new();
        let mut open = |field: String, path: &str| -> Res<i32> {
            let f = std::fs::File::open(path)
                .map_err(|e| refused(format!("{field}: cannot open {path}: {e}")))?;
            let n = FIRST_FD + passed.len() as i32;
            passed.push((f, n));
            Ok(n)
        };
        if let Some(k) = d.kernel.as_mut() {
            k.kernel = format!("/proc/self/fd/{}", open("kernel.kernel".into(), &k.kernel)?);
            if let Some(initrd) = k.initrd.as_mut() {
                *initrd = format!("/proc/self/fd/{}", open("kernel.initrd".into(), initrd)?);
            }
        }
        for (i, disk) in d.disks.iter_mut().enumerate().filter(|(_, x)| x.cdrom) {
            let n = open(format!("disk[{i}].path"), &disk.path)?;
            let set = fdsets.len() as u32 + 1;
            fdsets.push((n, set));
            disk.path = format!("/dev/fdset/{set}");
        }
        Ok((d, passed, fdsets))
    }

    /// The undo disk over disk `index` (created if this is a new session).
    pub(super) fn undo_disk(&self, index: usize, base: &Path) -> Res<PathBuf> {
        let u = self.paths.undo_disk(index);
        if !u.exists() {
            std::fs::create_dir_all(&self.paths.undo)
                .map_err(|e| format!("cannot create {}: {e}", self.paths.undo.display()))?;
            vhd::create::create_differencing(&u, base).map_err(|e| {
                format!("cannot create undo disk {} over {}: {e}", u.display(), base.display())
            })?;
        }
        Ok(u)
    }
}
