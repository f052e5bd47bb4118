//! Live migration between the hosts of a pool (`vine vm migrate NAME --to HOST`), carried out by
//! the host that owns the VM, in an order that leaves the VM running in exactly one place:
//! 1. the VM is marked moving (other requests about it are refused, saying so) and a [`Job`]
//!    holds its progress and cancel flag;
//! 2. the destination prepares it ([`Daemon::incoming_vm`]): registers it (state `incoming`,
//!    never published), makes a new volume for each disk on a host-local pool and serves it as a
//!    handover target, serves each volume of a shared pool in standby, and starts QEMU waiting
//!    for the state;
//! 3. the source's actor mirrors the local disks there, then migrates memory and devices; at
//!    switchover the mirrors complete and let go of their targets (crate `actor::migration`);
//! 4. **the commit point**: one etcd transaction gives the VM, and the write roles of its shared
//!    volumes, to the destination — only while this host still owns it;
//! 5. the source's QEMU quits and its disk servers close their images (flushed; the lock on a
//!    shared volume is free), then the destination's guest goes on, its servers opening their
//!    images at the first request;
//! 6. the source unregisters the VM and deletes its directory and the originals of mirrored
//!    volumes.
//!
//! Before 4 any failure (or a cancel) ends the attempt: the guest goes on at the source as it
//! was and the destination removes everything it made. After 4 the VM is the destination's.
//!
//! Each side keeps a journal beside the VM (`migration-out.json`, `migration-in.json`) from
//! before it touches the other until the migration has ended on both. Each sync round
//! ([`Daemon::resolve_migrations`]) ends the ones nobody is carrying out any more — a daemon
//! killed mid-migration and started again, a destination that could not be told, a link that
//! was cut — by what etcd says: the owner's side goes on, the other lets go.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vmm::state::{Control, VmState};

use crate::actor::{Job, Msg, Outgoing, Progress, Ready};
use crate::disks::Mode;
use crate::layout::VmPaths;
use crate::protocol::{Failure, MigrateOptions, Request};
use crate::server::Daemon;

/// How one disk reaches the destination of a live migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "how", rename_all = "kebab-case", deny_unknown_fields)]
pub enum IncomingDisk {
    /// A volume of a shared pool: served there from the same file, opened at the first request
    /// after switchover.
    Shared,
    /// A volume of a host-local pool: a new volume of `size` bytes and the same name made there,
    /// which the source mirrors into.
    Mirror {
        /// Its virtual size in bytes.
        size: u64,
    },
}

/// What a host keeps of a live migration that has not ended (written, synced, before the other
/// side is asked anything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Journal {
    /// The other host (the destination, on the source; the source, on the destination).
    peer: String,
    /// Whether the guest was paused before.
    paused: bool,
    /// Volumes of host-local pools: mirrored from here (source), made here (destination).
    volumes: Vec<String>,
    /// When it began (ms since the epoch).
    since_ms: u64,
}

impl Journal {
    fn write(&self, path: &std::path::Path) -> Result<(), Failure> {
        let text = serde_json::to_string(self).expect("serialises");
        crate::actor::write_atomic(path, &text)
            .map_err(|e| Failure::Failed(format!("cannot write {}: {e}", path.display())))
    }

    fn read(path: &std::path::Path) -> Option<Journal> {
        let text = std::fs::read_to_string(path).ok()?;
        match serde_json::from_str(&text) {
            Ok(j) => Some(j),
            Err(e) => {
                tracing::error!("{}: {e}", path.display());
                None
            }
        }
    }

    fn age(&self) -> std::time::Duration {
        let now = crate::since_epoch().as_millis() as u64;
        std::time::Duration::from_millis(now.saturating_sub(self.since_ms))
    }
}

/// How long a destination waits, once etcd says the VM is its, for the source to say so before
/// it lets the guest go on by itself.
const SELF_COMMIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a destination keeps a VM arriving from a source that never ends the migration.
const GIVE_UP: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Whether an answer of the other side means the migration has ended there (done now, or
/// before).
fn ended_there(r: &Result<Value, Failure>) -> bool {
    matches!(r, Ok(_) | Err(Failure::NotFound(_)))
}

/// An unguessable export name for a mirror target (the only secret of that NBD connection).
fn secret_export() -> String {
    format!("migrate-{}", uuid::Uuid::new_v4().simple())
}

impl Daemon {
    /// `vine vm migrate NAME --to HOST` on the host that owns the VM.
    pub(crate) fn migrate_vm(&self, name: &str, to: &str, options: MigrateOptions) -> Result<Value, Failure> {
        options.validate()?;
        let c = self.cluster().ok_or_else(|| {
            Failure::Invalid("to: this host is in no pool of hosts, so there is no host to migrate to".into())
        })?;
        let me = c.config().host.clone();
        if to == me {
            return Err(Failure::Invalid(format!("to: '{name}' runs on host '{me}' already")));
        }
        self.check_destination(&c, to)?;
        let peers = self.peers()?;
        let job = Arc::new(Job::new(to));
        {
            let mut moving = self.membership.moving.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(other) = moving.get(name) {
                return Err(Failure::Refused(format!("'{name}' is being moved to host '{other}' already")));
            }
            moving.insert(name.to_string(), to.to_string());
        }
        self.membership.migrations.lock().unwrap_or_else(|p| p.into_inner()).insert(name.into(), job.clone());
        let r = self.migrate_marked(&c, peers.as_ref(), name, to, options, &job);
        if let Err(e) = &r {
            job.progress.lock().unwrap_or_else(|p| p.into_inner()).error.get_or_insert_with(|| e.to_string());
            let p = job.snapshot();
            if p.phase != "cancelled" && p.phase != "failed" {
                job.progress.lock().unwrap_or_else(|p| p.into_inner()).phase = "failed".into();
            }
            self.ctx().event(
                Some(name),
                "error",
                "vm.migration-failed",
                &format!("live migration of '{name}' to '{to}' ended: {e}; it runs on host '{me}' as before"),
            );
        }
        self.membership.moving.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        self.publish_vm(name);
        r
    }

    fn migrate_marked(
        &self,
        c: &cluster::Cluster,
        peers: &dyn crate::moves::Peers,
        name: &str,
        to: &str,
        options: MigrateOptions,
        job: &Arc<Job>,
    ) -> Result<Value, Failure> {
        let info = self.local_info(name)?;
        let (_, view) = self.view_of(name)?;
        let def = view.lock().unwrap_or_else(|p| p.into_inner()).def.clone();
        if !matches!(info.state, VmState::Running | VmState::Paused) {
            return Err(Failure::Refused(format!(
                "cannot migrate '{name}': it is {}; a live migration needs it running or paused \
                 (vine vm move takes one that is off or saved)",
                info.state.name()
            )));
        }
        if def.undo_disks {
            return Err(Failure::Refused(format!(
                "cannot migrate '{name}': it has undo disks, which live in its directory on this host; \
                 commit or discard them first (turn it off with --undo commit or discard)"
            )));
        }
        if def.group.is_some() {
            crate::placement::check_apart(to, &c.vms()?, &def)?;
        }
        // A running guest keeps its addresses and connections only on a network both hosts share.
        self.check_nics_move(&def, to)?;
        // How each disk goes.
        let shared = self.shared_pool_names();
        let mut disks = BTreeMap::new();
        let mut mirrored = Vec::new();
        for (i, d) in def.disks.iter().enumerate() {
            if d.cdrom || d.read_only {
                continue; // read-only: the destination must have it (its registration checks)
            }
            let Some((pool, _)) = vmconfig::volume_ref(&d.path) else {
                return Err(Failure::Refused(format!(
                    "cannot migrate '{name}': its disk {} is a host path; a migration takes disks in storage pools",
                    d.path
                )));
            };
            if d.shared {
                return Err(Failure::Refused(format!(
                    "cannot migrate '{name}': its disk {} is shared with other VMs (guest clustering)",
                    d.path
                )));
            }
            if shared.contains(pool) {
                disks.insert(i, IncomingDisk::Shared);
                continue;
            }
            let file = self.ctx().pools.resolve(&d.path)?;
            if self.ctx().pools.chain(&file).len() > 1 {
                return Err(Failure::Refused(format!(
                    "cannot migrate '{name}': {} is a differencing disk on a host-local pool; a migration \
                     mirrors whole disks (merge it first, or keep its chain on a shared pool)",
                    d.path
                )));
            }
            let size = vhd::Disk::open(&file, vhd::OpenOptions { lock: false, ..Default::default() })
                .map_err(|e| Failure::Failed(format!("reading {}: {e}", file.display())))?
                .size();
            disks.insert(i, IncomingDisk::Mirror { size });
            mirrored.push(d.path.clone());
        }
        let paths = VmPaths::new(&self.ctx().data, name);
        if paths.outgoing.exists() {
            return Err(Failure::Refused(format!(
                "cannot migrate '{name}': an earlier migration of it has not ended on its destination yet \
                 (it is being tidied up; try again in a moment)"
            )));
        }
        // 2. The destination gets ready.
        let paused = info.state == VmState::Paused;
        let journal = Journal {
            peer: to.into(),
            paused,
            volumes: mirrored.clone(),
            since_ms: crate::since_epoch().as_millis() as u64,
        };
        journal.write(&paths.outgoing)?;
        let text = def.to_toml().map_err(|e| Failure::Failed(format!("definition: {e}")))?;
        let disks = disks.into_iter().collect();
        let postcopy = options.postcopy;
        let abort = |why: &str| {
            let end = Request::VmIncomingEnd { name: name.into(), commit: false, paused: false };
            let r = peers.call(to, &end);
            if ended_there(&r) {
                let _ = std::fs::remove_file(&paths.outgoing);
            } else if let Err(e) = r {
                tracing::warn!(
                    "migrating '{name}': {why}; the destination '{to}' could not be told to let go yet \
                     ({e}); the sync round tries again"
                );
            }
        };
        let ready = match peers.call(to, &Request::VmIncoming { definition: text, disks, postcopy }) {
            Ok(v) => v,
            Err(e) => {
                abort("the destination could not prepare it");
                return Err(e);
            }
        };
        let ready: Ready = match serde_json::from_value(ready) {
            Ok(r) => r,
            Err(e) => {
                abort("the destination answered oddly");
                return Err(Failure::Failed(format!("host '{to}' answered the migration oddly: {e}")));
            }
        };
        // 3. Disks, memory, devices.
        let paused_before = paused;
        let committed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let on_postcopy = {
            let weak = self.weak_self();
            let (name, to, committed) = (name.to_string(), to.to_string(), committed.clone());
            Box::new(move || -> Result<(), String> {
                let d = weak.upgrade().ok_or("the daemon is stopping")?;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                loop {
                    let r = d.postcopy_handover(&name, &to, paused_before);
                    match r {
                        Ok(()) => {
                            committed.store(true, Ordering::SeqCst);
                            return Ok(());
                        }
                        Err(e) if std::time::Instant::now() > deadline => return Err(e.to_string()),
                        Err(_) => std::thread::sleep(std::time::Duration::from_millis(500)),
                    }
                }
            }) as crate::actor::Handover
        };
        let out = Outgoing {
            addr: ready.addr,
            targets: ready.targets,
            options,
            job: job.clone(),
            on_postcopy: std::sync::Mutex::new(Some(on_postcopy)),
        };
        // The destination's "go on" is sent while the guest is paused: its connection is opened now.
        let go_on = peers.ready(to);
        let r = self.ask(name, |reply| Msg::MigrateOut { out: Box::new(out), reply });
        let figures = match r {
            Ok(v) => v,
            Err(e) => {
                abort("the copy failed");
                return Err(e);
            }
        };
        // 4. The commit point. From here the guest is paused on the source until the destination
        // is told to go on: every step below is downtime the guest sees beyond QEMU's figure.
        let handover_began = std::time::Instant::now();
        let mut record = serde_json::to_value(&info).expect("serialises");
        record["state"] = json!(info.state.name());
        let writes = self.shared_writes(name);
        let end_here = |commit: bool| self.ask(name, |reply| Msg::MigrateEnd { commit, paused, reply });
        // Handed over already when post-copy began (etcd says so: the VM is the destination's).
        let handed = if committed.load(Ordering::SeqCst) {
            Ok(true)
        } else {
            match c.hand_over_vm(name, to, &record, &writes) {
                // Not this host's any more: handed over already if it is the destination's.
                Ok(false) => Ok(c.owner_of(name).ok().flatten().as_deref() == Some(to)),
                r => r,
            }
        };
        let etcd_ms = handover_began.elapsed().as_secs_f64() * 1e3;
        match handed {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                let _ = end_here(false);
                abort("the pool did not hand the VM over");
                return Err(Failure::Unavailable(format!(
                    "cannot migrate '{name}': the pool's etcd did not hand it to '{to}'; it goes on here"
                )));
            }
        }
        // 5. The destination goes on, then the source lets go. The source's QEMU is paused for
        // good (its disks inactive since the migration completed), so the guest still runs in one
        // place; a shared volume reaches the destination's guest once the source's disk server
        // has closed it (its standby server waits for the lock at its first request).
        let end = Request::VmIncomingEnd { name: name.into(), commit: true, paused };
        let confirmed = std::thread::scope(|s| {
            let there = s.spawn(|| {
                let r = go_on.call(&end);
                (r, handover_began.elapsed().as_secs_f64() * 1e3)
            });
            if let Err(e) = end_here(true) {
                tracing::error!("migrated '{name}' to '{to}', but stopping it here failed: {e}");
            }
            there.join().unwrap_or_else(|_| {
                (Err(Failure::Failed("the call to the destination panicked".into())), f64::NAN)
            })
        });
        let (confirmed, going_on_ms) = confirmed;
        tracing::info!(
            vm = name,
            "handed over to '{to}': the pool's record after {etcd_ms:.1} ms, the guest going on there \
             after {going_on_ms:.1} ms, the source let go after {:.1} ms; the destination's end: {confirmed:?}",
            handover_began.elapsed().as_secs_f64() * 1e3
        );
        if let Err(e) = confirmed {
            self.ctx().event(
                Some(name),
                "error",
                "vm.migration-unconfirmed",
                &format!("migrated '{name}' to '{to}', which did not confirm that its guest goes on: {e}"),
            );
        }
        // 6. Gone from here.
        self.forget_migrated(name, &mirrored);
        let p = job.snapshot();
        let mut m = format!(
            "migrated '{name}' live to host '{to}' in {:.1} s (downtime {} ms as QEMU measured it; {} MiB of memory",
            p.total_ms.unwrap_or(p.elapsed_ms) as f64 / 1e3,
            p.downtime_ms.map_or("unknown".to_string(), |d| d.to_string()),
            p.ram_transferred >> 20
        );
        if p.disk_total > 0 {
            m.push_str(&format!(", {} MiB of disk mirrored", p.disk_transferred >> 20));
        }
        m.push(')');
        if p.postcopy {
            m.push_str("; finished by post-copy");
        }
        self.ctx().event(Some(name), "info", "vm.migrated", &m);
        Ok(json!({
            "name": name, "host": to, "message": m, "progress": p, "qemu": figures, "mirrored": mirrored,
        }))
    }

    /// Unregisters a VM that now runs on another host, with its directory and the originals of
    /// its mirrored volumes.
    fn forget_migrated(&self, name: &str, mirrored: &[String]) {
        if let Err(e) = self.remove_here(name) {
            tracing::error!("migrated '{name}' away, but unregistering it here failed: {e}");
            return;
        }
        let paths = VmPaths::new(&self.ctx().data, name);
        if let Err(e) = std::fs::remove_dir_all(&paths.dir) {
            tracing::warn!("migrated '{name}' away; removing {}: {e}", paths.dir.display());
        }
        for v in mirrored {
            if let Err(e) = self.ctx().pools.delete_volume(v, &[]) {
                tracing::warn!("migrated '{name}' away; deleting {v} here: {e}");
            }
        }
    }

    /// Unregisters a VM of this host that is off (its name in the pool is released only while
    /// this host owns it: a migrated VM's stays with its new host).
    fn remove_here(&self, name: &str) -> Result<(), Failure> {
        self.control_here(name, Control::Remove).map(|_| ())
    }

    /// The progress of the live migration of `name` from here.
    pub(crate) fn migration(&self, name: &str) -> Result<Progress, Failure> {
        let job = self.membership.migrations.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned();
        match job {
            Some(j) => Ok(j.snapshot()),
            None => Err(Failure::NotFound(format!("no live migration of '{name}' from this host"))),
        }
    }

    /// Cancels the live migration of `name` under way from here.
    pub(crate) fn cancel_migration(&self, name: &str) -> Result<Value, Failure> {
        let job = self.membership.migrations.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned();
        let running = self.moving_to(name).is_some();
        match job {
            Some(j) if running => {
                let p = j.snapshot();
                if matches!(p.phase.as_str(), "switchover" | "completed") || p.postcopy {
                    return Err(Failure::Refused(format!(
                        "cannot cancel the migration of '{name}': it is past the point of no return ({})",
                        if p.postcopy { "post-copy" } else { p.phase.as_str() }
                    )));
                }
                j.cancel.store(true, Ordering::SeqCst);
                Ok(json!({ "name": name, "message": format!("cancelling the live migration of '{name}'") }))
            }
            _ => Err(Failure::Refused(format!("'{name}' is not migrating"))),
        }
    }

    /// On the destination: the VM registered here, its disks and QEMU ready for the state.
    pub(crate) fn incoming_vm(
        &self,
        definition: &str,
        disks: Vec<(usize, IncomingDisk)>,
        postcopy: bool,
    ) -> Result<Value, Failure> {
        let source = self
            .cluster()
            .and_then(|c| c.owner_of(&self.name_of(definition)?).ok().flatten())
            .unwrap_or_default();
        let def = vmconfig::VmDefinition::parse(definition)
            .map_err(|e| Failure::Invalid(format!("definition: {e}")))?;
        let name = def.name.clone();
        if self.has_vm(&name) {
            return Err(Failure::Refused(format!("a VM named '{name}' is registered here already")));
        }
        let ip = self.pool_ip()?;
        if postcopy {
            self.allow_userfaultfd()?;
        }
        // New volumes for the mirrors (made before the VM is registered: its checks need them).
        let mut made: Vec<String> = Vec::new();
        let mut modes = BTreeMap::new();
        let undo = |made: &[String]| {
            for v in made {
                let _ = self.ctx().pools.delete_volume(v, &[]);
            }
        };
        for (i, how) in &disks {
            let Some(d) = def.disks.get(*i) else {
                undo(&made);
                return Err(Failure::Invalid(format!("disks: the definition has no disk {i}")));
            };
            match how {
                IncomingDisk::Shared => {
                    modes.insert(*i, Mode::Standby);
                }
                IncomingDisk::Mirror { size } => {
                    if let Err(e) = self.ctx().pools.create_volume(&d.path, Some(*size), None) {
                        undo(&made);
                        return Err(e);
                    }
                    made.push(d.path.clone());
                    let listen = std::net::SocketAddr::new(ip, 0);
                    modes.insert(*i, Mode::Target { listen, export: secret_export() });
                }
            }
        }
        if let Err(e) = self.create_as(definition, None) {
            undo(&made);
            return Err(e);
        }
        self.membership.incoming.lock().unwrap_or_else(|p| p.into_inner()).insert(name.clone(), made.clone());
        let journal = Journal {
            peer: source.to_string(),
            paused: false,
            volumes: made.clone(),
            since_ms: crate::since_epoch().as_millis() as u64,
        };
        if let Err(e) = journal.write(&VmPaths::new(&self.ctx().data, &name).incoming) {
            self.drop_incoming(&name);
            return Err(e);
        }
        let (tx, _) = self.view_of(&name)?;
        let (rtx, rrx) = std::sync::mpsc::channel();
        let r = tx
            .send(Msg::Incoming { disks: modes, ip, postcopy, reply: rtx })
            .map_err(|_| Failure::NotFound(format!("no VM named '{name}'")))
            .and_then(|()| rrx.recv().map_err(|_| Failure::Failed(format!("the actor of '{name}' ended"))))
            .and_then(|r| r);
        match r {
            Ok(ready) => Ok(serde_json::to_value(ready).expect("serialises")),
            Err(e) => {
                self.drop_incoming(&name);
                Err(e)
            }
        }
    }

    /// On the destination: the migration's end (see [`Request::VmIncomingEnd`]).
    pub(crate) fn incoming_end(&self, name: &str, commit: bool, paused: bool) -> Result<Value, Failure> {
        if !self.membership.incoming.lock().unwrap_or_else(|p| p.into_inner()).contains_key(name) {
            return Err(Failure::NotFound(format!("no VM named '{name}' is arriving here")));
        }
        if !commit {
            self.drop_incoming(name);
            return Ok(json!({ "name": name, "message": format!("dropped the incoming '{name}'") }));
        }
        let r = self.ask(name, |reply| Msg::MigrateEnd { commit: true, paused, reply });
        self.membership.incoming.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        let _ = std::fs::remove_file(VmPaths::new(&self.ctx().data, name).incoming);
        self.publish_vm(name);
        if r.is_ok() {
            self.ctx().event(
                Some(name),
                "info",
                "vm.arrived",
                &format!("'{name}' arrived here by live migration"),
            );
        }
        r
    }

    /// Removes everything an incoming VM had here: QEMU, disk servers, the registration, its
    /// directory, the volumes made for it.
    fn drop_incoming(&self, name: &str) {
        let made = self.membership.incoming.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        if self.has_vm(name) {
            let _ = self.ask(name, |reply| Msg::MigrateEnd { commit: false, paused: false, reply });
            if let Err(e) = self.remove_here(name) {
                tracing::error!("dropping the incoming '{name}': {e}");
            }
            let paths = VmPaths::new(&self.ctx().data, name);
            let _ = std::fs::remove_dir_all(&paths.dir);
        }
        for v in made.unwrap_or_default() {
            if let Err(e) = self.ctx().pools.delete_volume(&v, &[]) {
                tracing::warn!("dropping the incoming '{name}': deleting {v}: {e}");
            }
        }
    }

    fn name_of(&self, definition: &str) -> Option<String> {
        vmconfig::VmDefinition::parse(definition).ok().map(|d| d.name)
    }

    /// Ends the live migrations nobody is carrying out any more (each sync round): on a source,
    /// those whose journal outlived the request (a daemon restart, a destination that could not
    /// be told); on a destination, those whose source went quiet. etcd's owner decides: the VM
    /// goes on at its owner, the other side lets go.
    pub(crate) fn resolve_migrations(&self, c: &cluster::Cluster) {
        let me = c.config().host.clone();
        for name in self.vm_names() {
            if self.moving_to(&name).is_some() {
                continue; // the request is still at it
            }
            let paths = VmPaths::new(&self.ctx().data, &name);
            if let Some(j) = Journal::read(&paths.outgoing) {
                let Ok(owner) = c.owner_of(&name) else { continue };
                self.resolve_outgoing(&name, &j, owner.as_deref() == Some(j.peer.as_str()));
            } else if let Some(j) = Journal::read(&paths.incoming) {
                self.membership
                    .incoming
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(name.clone())
                    .or_insert_with(|| j.volumes.clone());
                let Ok(owner) = c.owner_of(&name) else { continue };
                if owner.as_deref() == Some(me.as_str()) && j.age() > SELF_COMMIT {
                    // The pool gave it here and the source never said so: go on.
                    match self.incoming_end(&name, true, j.paused) {
                        Ok(_) => self.ctx().event(
                            Some(&name),
                            "warning",
                            "vm.migration-finished",
                            &format!("'{name}' is this host's (etcd says so) but its source '{}' never ended the migration; it goes on here", j.peer),
                        ),
                        Err(e) => tracing::error!("finishing the arrival of '{name}': {e}"),
                    }
                } else if owner.as_deref() != Some(me.as_str()) && j.age() > GIVE_UP {
                    self.drop_incoming(&name);
                    self.ctx().event(
                        Some(&name),
                        "warning",
                        "vm.migration-abandoned",
                        &format!("dropped '{name}', which its source '{}' began migrating here {} minutes ago and never ended", j.peer, j.age().as_secs() / 60),
                    );
                }
            }
        }
    }

    /// A source's migration that outlived its request: `committed` (etcd gave the VM to the
    /// destination) lets go here; otherwise the guest goes on here and the destination is told
    /// to let go.
    fn resolve_outgoing(&self, name: &str, j: &Journal, committed: bool) {
        let Ok(peers) = self.peers() else { return };
        let state = self.local_info(name).map(|i| i.state).unwrap_or(VmState::Off);
        if committed {
            if state == VmState::Migrating {
                let _ = self.ask(name, |reply| Msg::MigrateEnd { commit: true, paused: j.paused, reply });
            }
            let end = Request::VmIncomingEnd { name: name.into(), commit: true, paused: j.paused };
            if let Err(e) = peers.call(&j.peer, &end) {
                tracing::warn!(
                    "'{name}' is '{}''s now; telling it so failed ({e}); it goes on by itself",
                    j.peer
                );
            }
            self.forget_migrated(name, &j.volumes);
            self.ctx().event(
                Some(name),
                "warning",
                "vm.migrated",
                &format!("the migration of '{name}' to '{}' ended after a disruption: the pool gave it there, so it runs there", j.peer),
            );
            return;
        }
        if state == VmState::Migrating {
            match self.ask(name, |reply| Msg::MigrateEnd { commit: false, paused: j.paused, reply }) {
                Ok(_) => self.ctx().event(
                    Some(name),
                    "warning",
                    "vm.migration-failed",
                    &format!("the migration of '{name}' to '{}' was cut short; it goes on here", j.peer),
                ),
                Err(e) => tracing::error!("ending the migration of '{name}' here: {e}"),
            }
            self.publish_vm(name);
        }
        let end = Request::VmIncomingEnd { name: name.into(), commit: false, paused: false };
        if ended_there(&peers.call(&j.peer, &end)) {
            let _ = std::fs::remove_file(VmPaths::new(&self.ctx().data, name).outgoing);
        }
    }

    /// `vine host evacuate HOST`: HOST goes in maintenance (it gets no new VMs), then every VM
    /// running or paused on it is live-migrated to where placement puts it, `parallel` at a
    /// time. Carried out by HOST itself (another host forwards the request there).
    pub(crate) fn evacuate(&self, host: &str, parallel: Option<u32>) -> Result<Value, Failure> {
        let c = self.cluster().ok_or_else(|| {
            Failure::Invalid(
                "name: this host is in no pool of hosts, so there is nowhere to evacuate to".into(),
            )
        })?;
        let parallel = parallel.unwrap_or(2);
        if !(1..=16).contains(&parallel) {
            return Err(Failure::Invalid(format!("parallel: must be 1 to 16, got {parallel}")));
        }
        let me = c.config().host.clone();
        if host != me {
            if c.host(host)?.is_none() {
                return Err(Failure::NotFound(format!("no host named '{host}' in the pool")));
            }
            if !c.is_alive(host)? {
                return Err(Failure::Unavailable(format!(
                    "host '{host}' is offline: it cannot migrate its VMs"
                )));
            }
            let req = Request::HostEvacuate { name: host.into(), parallel: Some(parallel) };
            return self.peers()?.call(host, &req);
        }
        self.host_maintenance(&me, true)?;
        let mut todo: Vec<(String, vmconfig::VmDefinition)> = Vec::new();
        for name in self.vm_names() {
            let Ok((_, view)) = self.view_of(&name) else { continue };
            let v = view.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if matches!(v.state, VmState::Running | VmState::Paused) {
                todo.push((name, v.def));
            }
        }
        // Where each goes, decided up front: each VM placed counts on its new host for the next.
        let hosts = c.hosts()?;
        let mut vms = c.vms()?;
        let mut plan = Vec::new();
        let mut failed: Vec<String> = Vec::new();
        for (name, def) in &todo {
            match crate::placement::place(&hosts, &vms, def) {
                Ok((to, _)) => {
                    let mut v =
                        json!({ "name": format!("{name} (arriving)"), "host": to, "memory": def.memory });
                    if let Some(g) = &def.group {
                        v["group"] = json!(g);
                    }
                    vms.retain(|x| x["name"] != name.as_str());
                    vms.push(v);
                    plan.push((name.clone(), to));
                }
                Err(e) => failed.push(format!("{name}: {e}")),
            }
        }
        let queue = std::sync::Mutex::new(plan.clone());
        let done = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..parallel.min(plan.len().max(1) as u32) {
                s.spawn(|| loop {
                    let Some((name, to)) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else {
                        return;
                    };
                    let container = self
                        .view_of(&name)
                        .is_ok_and(|(_, v)| v.lock().unwrap_or_else(|p| p.into_inner()).def.is_container());
                    let r = if container {
                        self.cold_move_running(&name, &to)
                    } else {
                        self.migrate_vm(&name, &to, MigrateOptions::default())
                    };
                    done.lock().unwrap_or_else(|p| p.into_inner()).push((name, to, r, container));
                });
            }
        });
        let mut moved = Vec::new();
        let mut cold = 0;
        for (name, to, r, container) in done.into_inner().unwrap_or_else(|p| p.into_inner()) {
            match r {
                Ok(_) => {
                    cold += usize::from(container);
                    moved.push(json!({ "name": name, "host": to }))
                }
                Err(e) => failed.push(format!("{name} to {to}: {e}")),
            }
        }
        if !failed.is_empty() {
            let m = format!(
                "evacuating host '{me}': {} VM(s) moved, {} did not ({}); the host stays in maintenance",
                moved.len(),
                failed.len(),
                failed.join("; ")
            );
            self.ctx().event(None, "error", "host.evacuate-failed", &m);
            return Err(Failure::Failed(m));
        }
        let containers = if cold > 0 {
            format!(", {cold} container(s) moved cold (shut down, moved, started there)")
        } else {
            String::new()
        };
        let m = format!(
            "evacuated host '{me}': {} VM(s) migrated live{containers}; it is in maintenance",
            moved.len() - cold
        );
        self.ctx().event(None, "info", "host.evacuated", &m);
        Ok(json!({ "message": m, "moved": moved }))
    }

    /// At the start of post-copy: the VM and its write roles go to `to` in etcd, and its guest
    /// runs there at once (it fetches the memory it still lacks from here).
    fn postcopy_handover(&self, name: &str, to: &str, paused: bool) -> Result<(), Failure> {
        let c = self.cluster().ok_or_else(|| Failure::Failed("this host left its pool".into()))?;
        let info = self.local_info(name)?;
        let mut record = serde_json::to_value(&info).expect("serialises");
        record["state"] = json!(if paused { "paused" } else { "running" });
        let owner = c.owner_of(name)?;
        if owner.as_deref() != Some(to) && !c.hand_over_vm(name, to, &record, &self.shared_writes(name))? {
            return Err(Failure::Refused(format!("this host no longer owns '{name}'")));
        }
        if paused {
            return Ok(());
        }
        self.peers()?.call(to, &Request::VmIncomingRun { name: name.into() }).map(|_| ())
    }

    /// Post-copy needs the destination's QEMU, which runs as the emulator user, to open
    /// `/dev/userfaultfd` (unprivileged userfaultfd(2) is usually off): the device is given to
    /// the emulator's group, read-write, as libvirt does for its QEMU. Only when an operator
    /// allows post-copy.
    fn allow_userfaultfd(&self) -> Result<(), Failure> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let user = &self.ctx().emulator;
        if user.is_root() {
            return Ok(());
        }
        let dev = std::path::Path::new("/dev/userfaultfd");
        let m = std::fs::metadata(dev).map_err(|e| {
            Failure::Refused(format!(
                "post-copy: this host has no usable /dev/userfaultfd ({e}); it needs Linux 6.1 or later"
            ))
        })?;
        if m.gid() == user.gid && m.mode() & 0o060 == 0o060 {
            return Ok(());
        }
        std::os::unix::fs::chown(dev, None, Some(user.gid))
            .and_then(|()| std::fs::set_permissions(dev, std::fs::Permissions::from_mode(0o660)))
            .map_err(|e| {
                Failure::Failed(format!("post-copy: cannot give /dev/userfaultfd to {}: {e}", user.name))
            })?;
        self.ctx().event(
            None,
            "info",
            "host.userfaultfd",
            &format!("/dev/userfaultfd is now read-write for group {} (post-copy migrations)", user.name),
        );
        Ok(())
    }

    /// On the destination, at the start of post-copy: the guest runs here now.
    pub(crate) fn incoming_run(&self, name: &str) -> Result<Value, Failure> {
        if !self.is_incoming(name) {
            return Err(Failure::NotFound(format!("no VM named '{name}' is arriving here")));
        }
        self.ask(name, |reply| Msg::IncomingRun { reply })
    }

    /// Whether `name` is arriving here by live migration (registered, but its source's still).
    pub fn is_incoming(&self, name: &str) -> bool {
        self.membership.incoming.lock().unwrap_or_else(|p| p.into_inner()).contains_key(name)
    }

    /// This host's address in the pool (where its HTTPS API answers).
    pub(crate) fn pool_ip(&self) -> Result<IpAddr, Failure> {
        let url = self.membership.url.lock().unwrap_or_else(|p| p.into_inner()).clone();
        url_ip(&url).ok_or_else(|| {
            Failure::Failed(format!("this host's address in the pool ({url:?}) is not an IP address"))
        })
    }
}

/// The IP address in a host's API URL (`https://ADDR:PORT`, `https://[ADDR]:PORT`).
pub(crate) fn url_ip(url: &str) -> Option<IpAddr> {
    let host = url.strip_prefix("https://")?.rsplit_once(':')?.0;
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// What a migration request is answered with on the source while the VM is marked moving: these
/// requests pass, every other one about the VM is refused.
pub fn passes_while_moving(req: &Request) -> bool {
    matches!(req, Request::VmMigration { .. } | Request::VmMigrateCancel { .. })
}
