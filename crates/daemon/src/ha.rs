//! High availability: HA guests run again on another host when theirs dies, and a host that may
//! be taken for dead stops them first (MISSION C7).
//!
//! - **Marking.** `vine vm set NAME --ha on` needs a pool and a VM whose every disk is a volume
//!   of a shared storage pool (checked again at each start). The owner publishes each HA guest's
//!   definition and whether it should be running (`cluster::ha`) every sync round.
//! - **Fencing** ([`cluster::fence`], whose timing invariant this relies on): each host's fence
//!   fires when no renewal of its liveness lease has been answered for `FENCE_AFTER` (7 s of
//!   the lease's 10): the daemon kills the emulators of its HA guests, and their disk servers,
//!   which watch the same deadline in a file, exit by themselves — so a daemon that is frozen
//!   lets go of the shared volumes on time too. Storage adds its own single-writer rule: a disk
//!   server opens its image under an exclusive lock, so a second writer is refused while the
//!   first still holds it, whatever the clocks did.
//! - **Restart.** Every second the coordinator looks for HA guests that should run on a host
//!   whose liveness key is gone (the lease expired, so that host fenced itself at least 3 s
//!   before). It places each (the same placement as a new VM, anti-affinity kept) and asks that
//!   host to take it over ([`Request::VmRecover`]): the host moves ownership, the write roles and
//!   the HA record to itself in one etcd transaction that holds only while the dead host still
//!   owns the VM and has no liveness key, registers the VM from its definition and starts it,
//!   trying again while the old writer's lock is still held (for up to [`START_TRYING`]).
//! - **Return.** A host that comes back finds the pool owning its HA guests elsewhere: its fence
//!   has already killed their emulators (before its first new lease counts), and its sync round
//!   unregisters its copies without ever resuming them (`vm.taken-over`).
//!
//! Bound: a dead host's HA guests start elsewhere within the lease (10 s) after its last renewal,
//! plus up to one coordinator tick (1 s), plus the time etcd needs to elect a new leader if the
//! dead host's member led it (etcd then extends every lease by its TTL), plus the start itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster::{Cluster, Fence, HaRecord, HostState};
use serde_json::Value;
use vmconfig::VmDefinition;
use vmm::state::{Control, VmState};

use crate::layout::VmPaths;
use crate::protocol::{Failure, Request};
use crate::server::Daemon;

/// How long a host taking over an HA guest keeps trying to start it (the old host's disk
/// servers may still hold the volumes for a moment).
pub const START_TRYING: Duration = Duration::from_secs(120);
/// How long the coordinator waits before asking again about a guest it asked a host to take.
const ASK_AGAIN: Duration = Duration::from_secs(15);

impl Daemon {
    /// This host's fence (made once, with the thread that checks it): kills the HA guests'
    /// emulators when it fires; its deadline file is where their disk servers watch it.
    pub(crate) fn fence(&self) -> Arc<Fence> {
        self.membership
            .fence
            .get_or_init(|| {
                let weak = self.weak_self();
                let file = self.ctx().disks.fence_file();
                if let Some(dir) = file.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                let fence = Arc::new(Fence::new(Some(file), move || {
                    if let Some(d) = weak.upgrade() {
                        d.fence_ha_guests();
                    }
                }));
                let (f, weak) = (fence.clone(), self.weak_self());
                std::thread::Builder::new()
                    .name("fence".into())
                    .spawn(move || loop {
                        std::thread::sleep(cluster::fence::CHECK_EVERY);
                        match weak.upgrade() {
                            Some(d) if !d.is_stopping() => {}
                            _ => return,
                        }
                        f.check();
                    })
                    .expect("threads can be started");
                fence
            })
            .clone()
    }

    /// The fence fired: every HA guest with an emulator here has it killed at once (the actor
    /// then records it off, `vm.fenced`).
    fn fence_ha_guests(&self) {
        for (name, view) in self.views() {
            let mut v = view.lock().unwrap_or_else(|p| p.into_inner());
            if !v.def.ha || !v.state.has_process() {
                continue;
            }
            let Some(pid) = v.pid else { continue };
            v.ha_restart = true;
            v.fenced = Some(format!(
                "this host fenced itself: no renewal of its pool lease was answered for {} s, so the pool may \
                 start '{name}' on another host",
                cluster::fence::FENCE_AFTER.as_secs()
            ));
            kill(pid);
            tracing::error!(vm = name, pid, "fenced: killed the HA guest's emulator");
        }
    }

    /// Refuses HA for `def` unless this host is in a pool and every disk of the VM is a volume
    /// of a shared storage pool (the only disks another host can open).
    pub(crate) fn check_ha(&self, def: &VmDefinition) -> Result<(), Failure> {
        if self.cluster().is_none() {
            return Err(Failure::Refused(format!(
                "ha: this host is in no pool, so there is no other host to restart '{}' on",
                def.name
            )));
        }
        let shared = self.shared_pool_names();
        for (i, d) in def.disks.iter().enumerate() {
            let on_shared = vmconfig::volume_ref(&d.path).is_some_and(|(p, _)| shared.contains(p));
            if !on_shared {
                return Err(Failure::Refused(format!(
                    "ha: disk[{i}] of '{}' ({}) is not a volume of a shared storage pool; another host could not \
                     open it (make its disks volumes of a pool created with --shared)",
                    def.name, d.path
                )));
            }
        }
        Ok(())
    }

    /// The definition of VM `name` here, checked for HA before a start.
    pub(crate) fn check_ha_start(&self, name: &str) -> Result<(), Failure> {
        let Ok((_, view)) = self.view_of(name) else { return Ok(()) };
        let def = view.lock().unwrap_or_else(|p| p.into_inner()).def.clone();
        if def.ha && self.cluster().is_some() {
            self.check_ha(&def).map_err(|e| Failure::Refused(format!("cannot start '{name}': {e}")))?;
        }
        Ok(())
    }

    /// Publishes the HA records of this host's HA guests, and removes the record of a VM here that
    /// is no longer HA. Each sync round.
    pub(crate) fn publish_ha(&self, c: &Cluster) {
        let mut records = Vec::new();
        let mut not_ha = Vec::new();
        for (name, view) in self.views() {
            let v = view.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if !v.def.ha {
                not_ha.push(name);
                continue;
            }
            let Ok(definition) = v.def.to_toml() else { continue };
            let running = v.state.has_process() && v.fenced.is_none();
            records.push(HaRecord { vm: name, host: String::new(), definition, running });
        }
        let mut last = self.membership.ha_published.lock().unwrap_or_else(|p| p.into_inner());
        // A VM that left (moved, taken over, removed) is published by its new owner, if any.
        last.retain(|vm, _| records.iter().any(|r| &r.vm == vm) || not_ha.contains(vm));
        let changed: Vec<HaRecord> =
            records.iter().filter(|r| last.get(&r.vm) != Some(*r)).cloned().collect();
        if !changed.is_empty() {
            match c.publish_ha(&changed) {
                Ok(()) => {
                    for r in changed {
                        last.insert(r.vm.clone(), r);
                    }
                }
                Err(e) => tracing::debug!("publishing HA records: {e}"),
            }
        }
        for name in not_ha {
            if last.remove(&name).is_some() {
                if let Err(e) = c.remove_ha(&name) {
                    tracing::debug!("removing the HA record of '{name}': {e}");
                }
            }
        }
    }

    /// HA guests this host's fence stopped that the pool did not restart elsewhere (this host's
    /// lease was renewed again before it expired, or it came back first): started again here,
    /// once this host is registered again. Each sync round.
    pub(crate) fn restart_fenced(&self, c: &Cluster) {
        if c.last_error().is_some() {
            return;
        }
        let me = c.config().host.clone();
        for (name, view) in self.views() {
            let (flagged, ha, state, pending) = {
                let v = view.lock().unwrap_or_else(|p| p.into_inner());
                (v.ha_restart, v.def.ha, v.state, v.fenced.is_some())
            };
            if !flagged || pending {
                continue; // not fenced, or its actor has not recorded the kill yet
            }
            let forget = || view.lock().unwrap_or_else(|p| p.into_inner()).ha_restart = false;
            let owner = match c.owner_of(&name) {
                Ok(o) => o,
                Err(_) => continue,
            };
            if !ha || state != VmState::Off || owner.as_deref() != Some(me.as_str()) {
                forget();
                continue;
            }
            let r = self.claim_writes(&name).and_then(|()| self.control_here(&name, Control::Start));
            match r {
                Ok(_) => {
                    forget();
                    self.publish_now(&name);
                    self.ctx().event(
                        Some(&name),
                        "warning",
                        "vm.ha-restarted",
                        &format!(
                            "HA guest '{name}' started again here: this host had fenced itself, and the pool had not \
                             restarted it elsewhere before this host's lease was back"
                        ),
                    );
                }
                Err(e) => tracing::warn!(vm = name, "starting the fenced HA guest again: {e}; trying again"),
            }
        }
    }

    /// The coordinator's HA round (every tick, whatever the policy's mode): each HA guest that
    /// should run on a host whose liveness key is gone is placed and taken over there.
    pub(crate) fn ha_round(&self, c: &Cluster) {
        let Ok(records) = c.ha_records() else { return };
        if !records.iter().any(|r| r.running) {
            return;
        }
        let Ok(hosts) = c.hosts() else { return };
        let offline = |h: &str| hosts.iter().any(|s| s.record.name == h && s.state == HostState::Offline);
        for r in records.iter().filter(|r| r.running && offline(&r.host)) {
            {
                let mut asked = self.membership.ha_asked.lock().unwrap_or_else(|p| p.into_inner());
                asked.retain(|_, at| at.elapsed() < ASK_AGAIN);
                if asked.contains_key(&r.vm) {
                    continue;
                }
                asked.insert(r.vm.clone(), Instant::now());
            }
            if let Err(e) = self.restart_elsewhere(c, &hosts, r) {
                self.ctx().event(
                    Some(&r.vm),
                    "error",
                    "vm.ha-failed",
                    &format!("cannot restart HA guest '{}' of dead host '{}': {e}", r.vm, r.host),
                );
            }
        }
    }

    fn restart_elsewhere(
        &self,
        c: &Cluster,
        hosts: &[cluster::HostStatus],
        r: &HaRecord,
    ) -> Result<(), Failure> {
        let def = VmDefinition::parse(&r.definition)
            .map_err(|e| Failure::Failed(format!("its published definition: {e}")))?;
        let (to, why) = crate::placement::place(hosts, &c.vms()?, &def)?;
        self.ctx().event(
            Some(&r.vm),
            "warning",
            "vm.ha-restart",
            &format!(
                "host '{}' is dead (its lease expired, so it has fenced itself): restarting HA guest '{}' on host \
                 '{to}' ({why})",
                r.host, r.vm
            ),
        );
        let req = Request::VmRecover { definition: r.definition.clone(), from: r.host.clone() };
        if to == c.config().host {
            self.recover_vm(&r.definition, &r.host)?;
        } else {
            self.peers()?.call(&to, &req)?;
        }
        Ok(())
    }

    /// On the host the coordinator chose: takes HA guest `definition` over from dead host `from`
    /// and starts it (in the background, trying again while the old writer still holds its
    /// volumes).
    pub(crate) fn recover_vm(&self, definition: &str, from: &str) -> Result<Value, Failure> {
        let c = self.cluster().ok_or_else(|| Failure::Invalid("this host is in no pool".into()))?;
        let def =
            VmDefinition::parse(definition).map_err(|e| Failure::Invalid(format!("definition: {e}")))?;
        let name = def.name.clone();
        if !def.ha {
            return Err(Failure::Invalid(format!("definition: '{name}' is not marked ha")));
        }
        if self.view_of(&name).is_ok() {
            return Err(Failure::Refused(format!("this host has a VM named '{name}' already")));
        }
        self.check_ha(&def)?;
        let volumes: Vec<String> = crate::server::attachments(&def)
            .into_iter()
            .filter(|(_, a)| a.writable)
            .map(|(path, _)| path)
            .collect();
        let record =
            HaRecord { vm: name.clone(), host: from.into(), definition: definition.into(), running: true };
        if !c.take_over_vm(&record, from, &volumes)? {
            return Err(Failure::Refused(format!(
                "'{name}' is no longer host '{from}''s, or '{from}' is alive again: not taken over"
            )));
        }
        let taken = Instant::now();
        if let Err(e) = self.create_as(definition, None) {
            // Back to the dead host, as it was: the coordinator may try another host.
            if let Err(back) = c.hand_back_vm(&record, from) {
                tracing::error!("giving '{name}' back to '{from}' after a failed takeover: {back}");
            }
            return Err(e);
        }
        self.publish_vm(&name);
        let me = c.config().host.clone();
        let weak = self.weak_self();
        let (n, f) = (name.clone(), from.to_string());
        std::thread::Builder::new()
            .name(format!("ha-start-{name}"))
            .spawn(move || {
                if let Some(d) = weak.upgrade() {
                    d.start_taken_over(&n, &f, taken);
                }
            })
            .map_err(|e| Failure::Failed(format!("starting a thread: {e}")))?;
        Ok(serde_json::json!({
            "name": name,
            "host": me,
            "message": format!("took '{name}' over from dead host '{from}'; starting it"),
        }))
    }

    fn start_taken_over(&self, name: &str, from: &str, taken: Instant) {
        let mut last = String::new();
        while taken.elapsed() < START_TRYING {
            if self.is_stopping() {
                return;
            }
            let r = self.claim_writes(name).and_then(|()| self.control_here(name, Control::Start));
            match r {
                Ok(_) => {
                    self.publish_now(name);
                    self.ctx().event(
                        Some(name),
                        "warning",
                        "vm.ha-restarted",
                        &format!(
                            "HA guest '{name}' of dead host '{from}' runs here now (started {:.1} s after the takeover)",
                            taken.elapsed().as_secs_f64()
                        ),
                    );
                    return;
                }
                Err(e) => {
                    let text = e.to_string();
                    if text != last {
                        tracing::warn!(vm = name, "starting the HA guest taken over: {text}; trying again");
                        last = text;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        self.ctx().event(
            Some(name),
            "error",
            "vm.ha-failed",
            &format!(
                "took HA guest '{name}' over from dead host '{from}' but could not start it within {} s: {last}",
                START_TRYING.as_secs()
            ),
        );
    }

    /// A VM here whose name the pool says another host owns: if it is an HA guest the pool
    /// restarted there while this host was taken for dead, its copy here goes — its emulator,
    /// if the fence left one, is killed, never resumed. Returns whether it was one.
    pub(crate) fn drop_taken_over(&self, name: &str, owner: &str) -> bool {
        let Ok((_, view)) = self.view_of(name) else { return false };
        let (ha, pid, state, uuid) = {
            let v = view.lock().unwrap_or_else(|p| p.into_inner());
            (v.def.ha, v.pid, v.state, v.def.uuid.clone())
        };
        if !ha || self.moving_to(name).is_some() {
            return false;
        }
        // The same VM (its UUID), not another of the same name.
        let Some(c) = self.cluster() else { return false };
        let theirs = c.vm(name).ok().flatten().and_then(|v| v["uuid"].as_str().map(str::to_string));
        if theirs.as_deref() != Some(uuid.as_str()) {
            return false;
        }
        if state.has_process() {
            // Back from being cut off (or frozen) for longer than its lease: the fence fires
            // first, as it would have there (the thread that checks it may not have run yet), and
            // its reason is the one recorded.
            self.fence().check();
            let mut v = view.lock().unwrap_or_else(|p| p.into_inner());
            if v.fenced.is_none() {
                v.fenced =
                    Some(format!("the pool restarted it on host '{owner}' while this host was cut off"));
            }
            drop(v);
            if let Some(p) = pid {
                kill(p);
            }
            let t = Instant::now();
            while self.local_info(name).is_ok_and(|i| i.state.has_process())
                && t.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Err(e) = self.unregister_here(name) {
            tracing::error!("'{name}' runs on host '{owner}' now, but unregistering it here failed: {e}");
            return true;
        }
        self.ctx().event(
            Some(name),
            "warning",
            "vm.taken-over",
            &format!(
                "HA guest '{name}' was restarted on host '{owner}' while this host was taken for dead; its copy here \
                 is unregistered (never resumed), its disks stay on the shared pool"
            ),
        );
        true
    }

    /// Unregisters VM `name` here without touching its disks, and removes its directory.
    fn unregister_here(&self, name: &str) -> Result<(), Failure> {
        let state = self.local_info(name)?.state;
        if state == VmState::Saved {
            let _ = self.control_here(name, Control::DiscardState);
        }
        self.control_here(name, Control::Remove)?;
        let paths = VmPaths::new(&self.ctx().data, name);
        let _ = std::fs::remove_dir_all(&paths.dir);
        Ok(())
    }
}

fn kill(pid: u32) {
    // SAFETY: kill(2) with a pid vine recorded for its own emulator; SIGKILL needs no handler.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}
