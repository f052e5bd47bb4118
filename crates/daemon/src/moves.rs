//! Storage a pool of hosts shares, and cold moves between its hosts.
//!
//! **Shared storage pools** are directories every host mounts at the same path: one host makes
//! one (`vine pool create NAME DIR --shared`), etcd records it, and every other host registers
//! it as its own pool within a sync round ([`crate::membership::SYNC`]). A volume of a shared
//! pool is written by one VM of the whole pool at a time: a start or restore takes the write
//! role of each volume it writes (`/vine/writers/POOL/VOLUME`, a compare-and-swap) and is
//! refused, naming the writer, while another VM anywhere holds it; the sync round gives back
//! the roles of VMs that no longer run.
//!
//! **A cold move** (`vine vm move NAME --to HOST`, a VM that is off or saved) is carried out by
//! the host that owns the VM, in an order that leaves the VM in one place whatever fails:
//! 1. the VM is marked moving (controls are refused meanwhile, saying so);
//! 2. each volume it attaches from a host-local pool is copied to the pool of the same name on
//!    the destination (read-only volumes the destination has already are used as they are);
//!    volumes of shared pools stay; a saved state is sent too;
//! 3. ownership passes to the destination in one etcd transaction (only while this host owns it);
//! 4. the destination registers the VM from its definition, saved if it came saved;
//! 5. this host unregisters it and deletes its directory and the copies' originals.
//!
//! A failure in 2 deletes what was copied; in 4, ownership comes back and the copies go. The VM
//! is registered on exactly one host before and after, and no copy is left behind.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cluster::{Cluster, SharedPool, Writer};
use serde_json::Value;
use vmm::state::{Control, VmState};

use crate::layout::{self, VmPaths};
use crate::protocol::{Failure, Request};
use crate::server::Daemon;

/// How this host reaches the other hosts of its pool; the API crate, which holds the HTTPS
/// client and the pool's secret, provides it.
pub trait Peers: Send + Sync {
    /// Carries out `req` on host `host` (its answer, or its refusal whole).
    fn call(&self, host: &str, req: &Request) -> Result<Value, Failure>;
    /// Sends `file` as the body of a PUT to `target` on host `host`, streamed.
    fn send(&self, host: &str, target: &str, file: &Path) -> Result<(), Failure>;
    /// A DELETE of `target` on host `host`.
    fn delete(&self, host: &str, target: &str) -> Result<(), Failure>;
    /// A call to host `host` made ready now (the host looked up, the connection open) and sent
    /// later, when the time it takes is downtime: a live migration's "go on" to its destination.
    fn ready(&self, host: &str) -> Box<dyn ReadyCall>;
}

/// A call [`Peers::ready`] prepared: sent once.
pub trait ReadyCall: Send {
    /// Carries out `req` (as [`Peers::call`]; on a new connection if getting ready failed).
    fn call(self: Box<Self>, req: &Request) -> Result<Value, Failure>;
}

/// A volume a move copies.
struct Copy {
    /// `POOL/NAME`.
    volume: String,
    /// Its file here.
    file: PathBuf,
    /// Whether the VM writes it (a read-only one the destination has already is not copied).
    writable: bool,
    /// Whether it was copied (so a failure deletes it there).
    sent: bool,
}

fn target_of(volume: &str) -> Option<(String, String)> {
    vmconfig::volume_ref(volume).map(|(p, v)| (p.to_string(), v.to_string()))
}

impl Daemon {
    /// Sets how this host reaches its peers (once, by the API at start).
    pub fn set_peers(&self, peers: Arc<dyn Peers>) {
        let _ = self.membership.peers.set(peers);
    }

    /// The names of the shared storage pools this host has registered.
    pub(crate) fn shared_pool_names(&self) -> BTreeSet<String> {
        self.membership.shared_pools.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// `vine pool create NAME DIR --shared`: the pool here, then recorded for every host.
    pub(crate) fn create_shared_pool(&self, name: &str, path: &str) -> Result<Value, Failure> {
        let c = self.cluster().ok_or_else(|| {
            Failure::Invalid(
                "shared: this host is in no pool of hosts, so there is no one to share with".into(),
            )
        })?;
        let info = self.ctx().pools.create(name, path)?;
        let dir = self.ctx().pools.dir(name)?.display().to_string();
        let rec = SharedPool { name: name.into(), path: dir.clone(), made_by: c.config().host.clone() };
        match c.add_shared_pool(&rec) {
            Ok(true) => {}
            Ok(false) => {
                let _ = self.ctx().pools.delete(name, &[]);
                return Err(Failure::Refused(format!(
                    "the pool of hosts has a shared storage pool named '{name}'"
                )));
            }
            Err(e) => {
                let _ = self.ctx().pools.delete(name, &[]);
                return Err(e.into());
            }
        }
        self.membership.shared_pools.lock().unwrap_or_else(|p| p.into_inner()).insert(name.into());
        self.ctx().event(
            None,
            "info",
            "pool.created",
            &format!("created shared storage pool '{name}' at {dir}: every host of the pool mounts it there"),
        );
        let mut v = serde_json::to_value(info).expect("serialises");
        v["shared"] = Value::Bool(true);
        Ok(v)
    }

    /// A shared pool deleted here is forgotten by the pool (every host unregisters it).
    pub(crate) fn forget_shared_pool(&self, name: &str) -> Result<(), Failure> {
        if !self.shared_pool_names().contains(name) {
            return Ok(());
        }
        if let Some(c) = self.cluster() {
            c.remove_shared_pool(name)?;
        }
        self.membership.shared_pools.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        Ok(())
    }

    /// Registers the pool's shared storage pools here (those whose directory this host has)
    /// and unregisters those the pool forgot (unless a VM here uses them). Each sync round.
    pub(crate) fn sync_shared_pools(&self, c: &Cluster) {
        let Ok(shared) = c.shared_pools() else { return };
        let pools = &self.ctx().pools;
        let mut mine = self.membership.shared_pools.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for p in &shared {
            if mine.contains(&p.name) {
                continue;
            }
            match pools.dir(&p.name) {
                Ok(dir) if dir == Path::new(&p.path) => {
                    mine.insert(p.name.clone());
                }
                Ok(dir) => {
                    tracing::warn!(
                        "shared storage pool '{}' is at {} in the pool, but this host's pool of that name is at {}",
                        p.name,
                        p.path,
                        dir.display()
                    );
                }
                Err(_) if Path::new(&p.path).is_dir() => match pools.create(&p.name, &p.path) {
                    Ok(_) => {
                        self.ctx().event(
                            None,
                            "info",
                            "pool.shared-added",
                            &format!(
                                "registered shared storage pool '{}' at {} (made by host '{}')",
                                p.name, p.path, p.made_by
                            ),
                        );
                        mine.insert(p.name.clone());
                    }
                    Err(e) => tracing::warn!("registering shared storage pool '{}': {e}", p.name),
                },
                Err(_) => tracing::debug!("shared storage pool '{}': {} is not mounted here", p.name, p.path),
            }
        }
        let known: BTreeSet<&str> = shared.iter().map(|p| p.name.as_str()).collect();
        for gone in mine.clone().iter().filter(|n| !known.contains(n.as_str())) {
            let users = self.pool_users(gone);
            if pools.delete(gone, &users).is_ok() {
                mine.remove(gone);
                self.ctx().event(
                    None,
                    "info",
                    "pool.shared-removed",
                    &format!("unregistered shared storage pool '{gone}'"),
                );
            }
        }
        *self.membership.shared_pools.lock().unwrap_or_else(|p| p.into_inner()) = mine;
    }

    /// The VMs here whose definitions name a volume of pool `name`.
    pub(crate) fn pool_users(&self, name: &str) -> Vec<String> {
        let Ok(dir) = self.ctx().pools.dir(name) else { return Vec::new() };
        let users: BTreeSet<String> = self
            .volume_users()
            .into_iter()
            .filter(|(f, _)| f.parent() == Some(dir.as_path()))
            .flat_map(|(_, u)| u.into_iter().map(|a| a.vm))
            .collect();
        users.into_iter().collect()
    }

    /// The volumes of shared pools that VM `name` writes.
    pub(crate) fn shared_writes(&self, name: &str) -> Vec<String> {
        let Ok((_, view)) = self.view_of(name) else { return Vec::new() };
        let def = view.lock().unwrap_or_else(|p| p.into_inner()).def.clone();
        let shared = self.shared_pool_names();
        crate::server::attachments(&def)
            .into_iter()
            .filter(|(path, a)| {
                a.writable && vmconfig::volume_ref(path).is_some_and(|(p, _)| shared.contains(p))
            })
            .map(|(path, _)| path)
            .collect()
    }

    /// Before VM `name` starts or is restored here: the write role of every volume of a shared
    /// pool it writes, or a refusal naming the writer.
    pub(crate) fn claim_writes(&self, name: &str) -> Result<(), Failure> {
        let Some(c) = self.cluster() else { return Ok(()) };
        let holder = format!("{}/{name}", c.config().host);
        for volume in self.shared_writes(name) {
            if let Writer::Held(other) = c.claim_writer(&volume, &holder)? {
                return Err(Failure::Refused(format!(
                    "cannot start '{name}': volume {volume} of a shared pool is written by {other} (HOST/VM); \
                     a shared volume has one writer in the whole pool"
                )));
            }
        }
        Ok(())
    }

    /// Gives back the write roles this host holds for VMs that no longer run here. Each sync
    /// round, so a role outlives its VM's process by at most one round.
    pub(crate) fn release_writes(&self, c: &Cluster) {
        let me = format!("{}/", c.config().host);
        let Ok(writers) = c.writers() else { return };
        for (volume, holder) in writers.iter().filter(|(_, h)| h.starts_with(&me)) {
            let vm = &holder[me.len()..];
            let runs = self.local_info(vm).is_ok_and(|i| i.state.has_process());
            if !runs {
                if let Err(e) = c.release_writer(volume, holder) {
                    tracing::debug!("giving back the write role of {volume}: {e}");
                }
            }
        }
    }

    /// Refuses a destination that is not an online host of the pool outside maintenance.
    pub(crate) fn check_destination(&self, c: &Cluster, to: &str) -> Result<(), Failure> {
        let target = c
            .hosts()?
            .into_iter()
            .find(|h| h.record.name == to)
            .ok_or_else(|| Failure::Invalid(format!("to: no host named '{to}' in the pool")))?;
        match target.state {
            cluster::HostState::Offline => Err(Failure::Unavailable(format!("host '{to}' is offline"))),
            cluster::HostState::Maintenance => {
                Err(Failure::Refused(format!("host '{to}' is in maintenance: it takes no VMs")))
            }
            cluster::HostState::Standby => Err(Failure::Refused(format!(
                "host '{to}' is in standby (emptied to save power): wake it first with `vine host wake {to}`"
            ))),
            cluster::HostState::Online => Ok(()),
        }
    }

    /// How this host reaches its peers.
    pub(crate) fn peers(&self) -> Result<Arc<dyn Peers>, Failure> {
        self.membership
            .peers
            .get()
            .cloned()
            .ok_or_else(|| Failure::Failed("this daemon cannot reach other hosts (no API)".into()))
    }

    /// The VM being moved away, if `name` is one, and where.
    pub(crate) fn moving_to(&self, name: &str) -> Option<String> {
        self.membership.moving.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    /// `vine vm move NAME --to HOST` on the host that owns the VM.
    pub(crate) fn move_vm(&self, name: &str, to: &str) -> Result<Value, Failure> {
        let c = self.cluster().ok_or_else(|| {
            Failure::Invalid("to: this host is in no pool of hosts, so there is no host to move to".into())
        })?;
        let me = c.config().host.clone();
        if to == me {
            return Err(Failure::Invalid(format!("to: '{name}' is on host '{me}' already")));
        }
        self.check_destination(&c, to)?;
        let peers = self
            .membership
            .peers
            .get()
            .cloned()
            .ok_or_else(|| Failure::Failed("this daemon cannot reach other hosts (no API)".into()))?;
        {
            let mut moving = self.membership.moving.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(other) = moving.get(name) {
                return Err(Failure::Refused(format!("'{name}' is being moved to host '{other}' already")));
            }
            moving.insert(name.to_string(), to.to_string());
        }
        let r = self.move_marked(&c, peers.as_ref(), name, to);
        self.membership.moving.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        r
    }

    fn move_marked(&self, c: &Cluster, peers: &dyn Peers, name: &str, to: &str) -> Result<Value, Failure> {
        let info = self.local_info(name)?;
        let (_, view) = self.view_of(name)?;
        let def = view.lock().unwrap_or_else(|p| p.into_inner()).def.clone();
        let saved = match info.state {
            VmState::Off | VmState::Crashed => false,
            VmState::Saved => true,
            s => {
                return Err(Failure::Refused(format!(
                    "cannot move '{name}': it is {}; a cold move needs it off or saved",
                    s.name()
                )))
            }
        };
        if def.group.is_some() {
            crate::placement::check_apart(to, &c.vms()?, &def)?;
        }
        if def.is_container() {
            return self.move_container(c, peers, name, to, &info, &def, saved);
        }
        let shared = self.shared_pool_names();
        let mut copies: Vec<Copy> = Vec::new();
        let mut stays: Vec<String> = Vec::new();
        for (path, a) in crate::server::attachments(&def) {
            let Some((pool, _)) = vmconfig::volume_ref(&path) else {
                if a.writable {
                    return Err(Failure::Refused(format!(
                        "cannot move '{name}': its disk {path} is a host path; a move takes disks in storage pools"
                    )));
                }
                continue; // read-only host files (kernel, ISO): the destination checks it has them
            };
            if shared.contains(pool) {
                stays.push(path);
                continue;
            }
            let file = self.ctx().pools.resolve(&path)?;
            if self.ctx().pools.chain(&file).len() > 1 {
                return Err(Failure::Refused(format!(
                    "cannot move '{name}': {path} is a differencing disk; a cold move copies whole disks \
                     (merge it first, or keep its chain on a shared pool)"
                )));
            }
            if copies.iter().all(|x| x.volume != path) {
                copies.push(Copy { volume: path, file, writable: a.writable, sent: false });
            }
        }
        let undo = |copies: &[Copy]| {
            for x in copies.iter().filter(|x| x.sent) {
                if let Some((p, v)) = target_of(&x.volume) {
                    let t = format!("/api/pools/{p}/volumes/{v}");
                    if let Err(e) = peers.delete(to, &t) {
                        tracing::warn!("moving '{name}': deleting the copy of {} on '{to}': {e}", x.volume);
                    }
                }
            }
        };
        // 2. Copies.
        let mut bytes = 0u64;
        for i in 0..copies.len() {
            let x = &copies[i];
            let (p, v) = target_of(&x.volume).expect("a volume reference");
            match peers.send(to, &format!("/api/pools/{p}/volumes/{v}/content"), &x.file) {
                Ok(()) => {
                    bytes += std::fs::metadata(&x.file).map(|m| m.len()).unwrap_or(0);
                    copies[i].sent = true;
                }
                Err(e) if !x.writable && e.is_already_there() => {}
                Err(e) => {
                    let what = format!("copying {}", x.volume);
                    undo(&copies);
                    return Err(prefix(name, to, &what, e));
                }
            }
        }
        let paths = VmPaths::new(&self.ctx().data, name);
        if saved {
            if let Err(e) = peers.send(to, &format!("/api/pool/incoming/{name}/content"), &paths.state) {
                undo(&copies);
                return Err(prefix(name, to, "sending its saved state", e));
            }
        }
        // 3. Ownership.
        let record = serde_json::to_value(&info).expect("serialises");
        match c.transfer_vm(name, to, &record) {
            Ok(true) => {}
            Ok(false) => {
                undo(&copies);
                return Err(Failure::Refused(format!("cannot move '{name}': this host no longer owns it")));
            }
            Err(e) => {
                undo(&copies);
                return Err(e.into());
            }
        }
        // 4. The destination registers it.
        let text = def.to_toml().map_err(|e| Failure::Failed(format!("definition: {e}")))?;
        if let Err(e) = peers.call(to, &Request::VmAdopt { definition: text, saved, rootfs: false }) {
            if let Err(back) = c.take_back_vm(name, to) {
                tracing::error!(
                    "moving '{name}': taking it back from '{to}' after a failed handover: {back}"
                );
            }
            undo(&copies);
            self.publish_vm(name);
            return Err(prefix(name, to, "registering it there", e));
        }
        // 5. Gone from here.
        self.forget_moved(name, saved, &copies);
        let copied: Vec<String> = copies.iter().filter(|x| x.sent).map(|x| x.volume.clone()).collect();
        let mut m = format!("moved '{name}' ({}) to host '{to}'", if saved { "saved" } else { "off" });
        if !copied.is_empty() {
            m.push_str(&format!("; copied {} ({} MiB)", copied.join(", "), bytes >> 20));
        }
        if !stays.is_empty() {
            m.push_str(&format!("; {} stay on shared pools", stays.join(", ")));
        }
        self.ctx().event(Some(name), "info", "vm.moved", &m);
        Ok(serde_json::json!({ "name": name, "host": to, "message": m, "copied": copied, "shared": stays }))
    }

    /// A running container this host owns moves to `to` the only way a container moves: it
    /// shuts down (cut off if its init does not power off in time), moves cold and starts there
    /// (an evacuation's way for containers).
    pub(crate) fn cold_move_running(&self, name: &str, to: &str) -> Result<Value, Failure> {
        if let Err(e) = self.control_here(name, Control::Shutdown) {
            tracing::warn!("moving '{name}' to '{to}': shutting it down: {e}; cutting it off");
            self.control_here(name, Control::Off)?;
        }
        let v = self.move_vm(name, to)?;
        let start =
            Request::VmControl { name: name.into(), control: Control::Start, options: Default::default() };
        self.peers()?.call(to, &start).map_err(|e| prefix(name, to, "starting it there", e))?;
        Ok(v)
    }

    /// A container's cold move: its root file system goes as a tarball (owned by its ids here;
    /// the destination gives it a slot of its own and shifts them), then the same handover as a
    /// VM's (ownership in one etcd transaction, the destination registers it, this host
    /// forgets it).
    #[allow(clippy::too_many_arguments)]
    fn move_container(
        &self,
        c: &Cluster,
        peers: &dyn Peers,
        name: &str,
        to: &str,
        info: &crate::protocol::VmInfo,
        def: &vmconfig::VmDefinition,
        saved: bool,
    ) -> Result<Value, Failure> {
        if saved {
            return Err(Failure::Refused(format!(
                "cannot move '{name}': it is a saved container; restore it and turn it off, or discard its \
                 checkpoint, first (a container moves off)"
            )));
        }
        let paths = VmPaths::new(&self.ctx().data, name);
        let tarball = paths.dir.join("rootfs-move.tar.gz");
        let out = std::process::Command::new("tar")
            .arg("--numeric-owner")
            .args(lxc::rootfs::XATTR_ARGS)
            .arg("-czf")
            .arg(&tarball)
            .arg("-C")
            .arg(paths.dir.join("rootfs"))
            .arg(".")
            .output()
            .map_err(|e| Failure::Failed(format!("cannot move '{name}': cannot run tar: {e}")))?;
        let sent = if out.status.success() {
            peers.send(to, &format!("/api/pool/incoming/{name}/content"), &tarball)
        } else {
            Err(Failure::Failed(format!(
                "cannot move '{name}': tar could not pack its root file system: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        };
        let bytes = std::fs::metadata(&tarball).map(|m| m.len()).unwrap_or(0);
        let _ = std::fs::remove_file(&tarball);
        sent.map_err(|e| prefix(name, to, "sending its root file system", e))?;
        let record = serde_json::to_value(info).expect("serialises");
        match c.transfer_vm(name, to, &record) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Failure::Refused(format!("cannot move '{name}': this host no longer owns it")))
            }
            Err(e) => return Err(e.into()),
        }
        let text = def.to_toml().map_err(|e| Failure::Failed(format!("definition: {e}")))?;
        if let Err(e) = peers.call(to, &Request::VmAdopt { definition: text, saved: false, rootfs: true }) {
            if let Err(back) = c.take_back_vm(name, to) {
                tracing::error!(
                    "moving '{name}': taking it back from '{to}' after a failed handover: {back}"
                );
            }
            self.publish_vm(name);
            return Err(prefix(name, to, "registering it there", e));
        }
        self.forget_moved(name, false, &[]);
        let m = format!(
            "moved container '{name}' (off) to host '{to}'; its root file system went along ({} MiB packed)",
            bytes >> 20
        );
        self.ctx().event(Some(name), "info", "vm.moved", &m);
        Ok(serde_json::json!({ "name": name, "host": to, "message": m, "copied": [], "shared": [] }))
    }

    /// Unregisters a VM that now lives on another host, with its directory and the originals of
    /// the volumes copied there (a read-only one another VM here still uses stays).
    fn forget_moved(&self, name: &str, saved: bool, copies: &[Copy]) {
        if saved {
            let _ = self.control_here(name, Control::DiscardState);
        }
        if let Err(e) = self.control_here(name, Control::Remove) {
            tracing::error!("moved '{name}' away, but unregistering it here failed: {e}");
            return;
        }
        let paths = VmPaths::new(&self.ctx().data, name);
        if let Err(e) = std::fs::remove_dir_all(&paths.dir) {
            tracing::warn!("moved '{name}' away; removing {}: {e}", paths.dir.display());
        }
        let users = self.volume_users();
        for x in copies.iter().filter(|x| x.sent) {
            let in_use = std::fs::canonicalize(&x.file).ok().is_some_and(|f| users.contains_key(&f));
            if in_use {
                continue;
            }
            if let Err(e) = self.ctx().pools.delete_volume(&x.volume, &[]) {
                tracing::warn!("moved '{name}' away; deleting {} here: {e}", x.volume);
            }
        }
    }

    /// On the destination of a move: registers the VM (saved, with the state received), or the
    /// container (with its root file system's tarball received).
    pub(crate) fn adopt_moved(&self, definition: &str, saved: bool, rootfs: bool) -> Result<Value, Failure> {
        let def = vmconfig::VmDefinition::parse(definition)
            .map_err(|e| Failure::Invalid(format!("definition: {e}")))?;
        let staged = layout::incoming_state(&self.ctx().data, &def.name);
        if (saved || rootfs) && !staged.is_file() {
            let what = if rootfs { "root file system" } else { "saved state" };
            return Err(Failure::Invalid(format!("no {what} of '{}' arrived here", def.name)));
        }
        if rootfs != def.is_container() {
            return Err(Failure::Invalid(format!(
                "'{}': a container moves with its root file system, a VM without",
                def.name
            )));
        }
        let r = self.create_as(definition, (saved || rootfs).then_some(staged.as_path()));
        let _ = std::fs::remove_file(&staged);
        let mut v = r?;
        self.publish_vm(&def.name);
        if let Some(me) = self.pool_host_name() {
            v["host"] = Value::String(me);
        }
        self.ctx().event(
            Some(&def.name),
            "info",
            "vm.arrived",
            &format!("'{}' arrived here by a cold move", def.name),
        );
        Ok(v)
    }
}

fn prefix(name: &str, to: &str, what: &str, e: Failure) -> Failure {
    let m = format!("cannot move '{name}' to '{to}': {what}: {e}");
    match e {
        Failure::Unavailable(_) => Failure::Unavailable(m),
        Failure::Refused(_) => Failure::Refused(m),
        Failure::Invalid(_) => Failure::Refused(m),
        _ => Failure::Failed(m),
    }
}
