//! The daemon: opens the store, finds the VMs it knows (reattaching to those still running) and
//! answers requests — reads from the VMs' views, controls through their actors. The `api` crate
//! serves these requests over HTTP (the local socket and HTTPS).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use serde_json::{json, Value};
use store::{SqliteStore, Store, VmRecord};
use vmconfig::VmDefinition;
use vmm::{Control, VmState};

use crate::actor::{self, Actor, Ctx, Msg, View};
use crate::disks::DiskServers;
use crate::layout::{self, VmPaths};
use crate::metrics::{Metrics, VmMetrics};
use crate::networks::Networks;
use crate::pools::PoolInfo;
use crate::protocol::{Failure, NetworkCreate, Request, Response, VmInfo};
use crate::resources::Resources;

mod containers;

/// The console page a reader gets by default.
pub const CONSOLE_PAGE: u64 = 64 << 10;
/// How often the daemon checks that every network's DHCP server still runs, and learns the
/// addresses guests leased (port security).
const NETWORK_WATCH: std::time::Duration = std::time::Duration::from_secs(1);

/// Where the daemon keeps things and what it runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Data directory (store, VM directories, disk sockets).
    pub data_dir: PathBuf,
    /// The local socket.
    pub socket: PathBuf,
    /// QEMU binary.
    pub qemu: PathBuf,
    /// The `vine` binary (runs `vine disk serve`).
    pub vine_exe: PathBuf,
    /// Parent cgroup of the VMs' cgroups.
    pub cgroup_parent: String,
    /// How often running VMs' CPU use is sampled.
    pub sample_interval: std::time::Duration,
    /// The unprivileged user QEMU and the disk servers run as (`root`: unconfined).
    pub emulator_user: String,
}

/// Errors starting the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A file or directory problem.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another daemon already listens on the socket.
    #[error("another vine daemon is already listening on {0}")]
    AlreadyRunning(PathBuf),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// Host facts could not be read.
    #[error(transparent)]
    Host(#[from] host::HostError),
    /// The emulator user cannot be used.
    #[error(transparent)]
    Sandbox(#[from] sandbox::SandboxError),
    /// The emulator user cannot reach the VMs' directories.
    #[error("QEMU runs as '{user}', which cannot reach {data}: {dir} is mode {mode:o}; make it searchable (chmod o+x {dir}) or choose another --data-dir")]
    Unreachable {
        /// The emulator user.
        user: String,
        /// The VMs' directory.
        data: PathBuf,
        /// The directory in the way.
        dir: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// A background thread could not be started.
    #[error("cannot start the daemon's {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

struct Handle {
    tx: Sender<Msg>,
    view: Arc<Mutex<View>>,
    join: Option<JoinHandle<()>>,
}

/// A running daemon.
pub struct Daemon {
    me: std::sync::Weak<Daemon>,
    ctx: Arc<Ctx>,
    cfg: Config,
    /// The registry of VMs: read by every request that names a VM, written when one is added
    /// or removed, so readers never wait on one another.
    vms: RwLock<BTreeMap<String, Handle>>,
    /// Containers' id slots taken by creations under way (`containers`).
    pending_slots: Arc<Mutex<std::collections::BTreeSet<u32>>>,
    stopping: AtomicBool,
    pub(crate) membership: crate::membership::Membership,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DaemonError + 'a {
    move |source| DaemonError::Io { what, path: path.to_path_buf(), source }
}

impl Daemon {
    /// Opens the data directory and store and reattaches to the VMs that still run.
    pub fn open(cfg: Config) -> Result<Arc<Daemon>, DaemonError> {
        std::fs::create_dir_all(cfg.data_dir.join("vms")).map_err(io("cannot create", &cfg.data_dir))?;
        let local: Arc<dyn Store> = Arc::new(SqliteStore::open(&layout::database(&cfg.data_dir))?);
        let slot = Arc::new(crate::shared::ClusterSlot::default());
        let pool_store = crate::shared::PoolStore::new(local, slot.clone());
        let store: Arc<dyn Store> = pool_store.clone();
        let host = host::host_info(&host::LiveHost)?;
        let resources = Resources::new(host.cpus, host.memory_bytes, host.cgroup.clone(), &cfg.cgroup_parent);
        let emulator = sandbox::User::lookup(&cfg.emulator_user)?;
        reachable(&cfg.data_dir.join("vms"), &emulator)?;
        let run_as = (!emulator.is_root()).then(|| emulator.name.clone());
        let disks = DiskServers::new(cfg.vine_exe.clone(), layout::disks_dir(&cfg.data_dir), run_as);
        let store_for_pools = store.clone();
        let networks =
            Networks::open(&cfg.data_dir, cfg.vine_exe.clone(), store.clone(), Arc::new(netconf::Live))?
                .with_tap_owner((!emulator.is_root()).then_some(emulator.uid));
        let ctx = Arc::new(Ctx {
            data: cfg.data_dir.clone(),
            store,
            host,
            resources,
            disks,
            qemu: cfg.qemu.clone(),
            observers: Mutex::new(Vec::new()),
            networks,
            pools: crate::pools::Pools::open(store_for_pools, &cfg.data_dir)?,
            emulator,
            vine_exe: cfg.vine_exe.clone(),
            trash: crate::trash::Trash::start()
                .map_err(|source| DaemonError::Thread { what: "trash", source })?,
            metrics: Metrics::default(),
            lxc: lxc::Lxc::new(cfg.data_dir.join("lxc")),
        });
        // Networks first: a running VM's taps need their bridges.
        for p in ctx.networks.restore_all() {
            ctx.event(None, "error", "network.restore-failed", &p);
        }
        let d = Arc::new_cyclic(|me| Daemon {
            me: me.clone(),
            ctx,
            cfg,
            vms: RwLock::new(BTreeMap::new()),
            pending_slots: Default::default(),
            stopping: AtomicBool::new(false),
            membership: crate::membership::Membership::new(slot, pool_store),
        });
        for rec in d.ctx.store.list_vms()? {
            d.adopt(rec);
        }
        let weak = Arc::downgrade(&d);
        let every = d.cfg.sample_interval;
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || loop {
                std::thread::sleep(every);
                match weak.upgrade() {
                    Some(d) if !d.stopping.load(Ordering::SeqCst) => d.sample(),
                    _ => return,
                }
            })
            .expect("threads can be started");
        let watcher = Arc::downgrade(&d);
        std::thread::Builder::new()
            .name("network-watch".into())
            .spawn(move || loop {
                std::thread::sleep(NETWORK_WATCH);
                let Some(d) = watcher.upgrade() else { return };
                if d.stopping.load(Ordering::SeqCst) {
                    return;
                }
                for m in d.ctx.networks.watch() {
                    d.ctx.event(None, "warning", "network.dhcp-restarted", &m);
                }
                for m in d.ctx.networks.learn_addresses() {
                    tracing::info!("{m}");
                }
                for (_, m) in d.ctx.pools.newly_low() {
                    d.ctx.event(None, "warning", "pool.low-space", &m);
                }
            })
            .expect("threads can be started");
        Ok(d)
    }

    /// Reads every running VM's CPU time into the metrics.
    fn sample(&self) {
        let running = self.running_views();
        let now = std::time::Instant::now();
        for v in &running {
            if let Ok(ns) = self.ctx.resources.cgroup(&v.def.name).and_then(|cg| cg.cpu_time_ns()) {
                self.ctx.metrics.record(&v.def.name, v.def.cpus, ns, now);
            }
        }
        self.ctx.metrics.retain(&running.iter().map(|v| v.def.name.clone()).collect::<Vec<_>>());
    }

    /// What this host uses of itself: its VMs, the running ones' reservations and memory, and
    /// the CPUs they kept busy over the last sample.
    pub(crate) fn host_load(&self) -> cluster::HostLoad {
        let (cpu_reserved_pct, memory_held_bytes, running) = self.ctx.resources.held();
        let cpu_used: f64 = self
            .running_views()
            .iter()
            .map(|v| {
                self.ctx.metrics.history(&v.def.name).first().copied().unwrap_or(0.0) * f64::from(v.def.cpus)
            })
            .sum();
        cluster::HostLoad {
            vms: self.read().len(),
            running,
            memory_held_bytes,
            cpu_reserved_pct,
            // An empty sum is -0.0; a host with nothing running uses 0.0 CPUs.
            cpu_used: ((cpu_used * 10.0).round() / 10.0).max(0.0),
            at_ms: crate::since_epoch().as_millis() as i64,
        }
    }

    fn running_views(&self) -> Vec<View> {
        self.read()
            .values()
            .map(|h| h.view.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .filter(|v| v.state.has_process())
            .collect()
    }

    /// The shared context (host facts, store).
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    /// The registry, to add or remove a VM (or to keep others from doing so meanwhile).
    fn lock(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Handle>> {
        self.vms.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The registry, to read.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Handle>> {
        self.vms.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the actor of a VM found in the store.
    fn adopt(&self, rec: VmRecord) {
        let def = match VmDefinition::parse(&rec.definition) {
            Ok(d) => d,
            Err(e) => {
                self.ctx.event(
                    Some(&rec.name),
                    "error",
                    "vm.unreadable",
                    &format!("the stored definition of '{}' is unreadable ({e}); it is skipped", rec.name),
                );
                return;
            }
        };
        let recorded = serde_json::from_value::<VmState>(json!(rec.state)).unwrap_or(VmState::Off);
        let view = Arc::new(Mutex::new(View {
            state: recorded,
            pid: rec.pid,
            def,
            last_error: None,
            fenced: None,
            ha_restart: false,
        }));
        let mut a = Actor::new(&rec.name, self.ctx.clone(), view.clone());
        a.reattach(recorded, rec.runtime.as_deref());
        self.spawn(&rec.name, a, view);
    }

    /// Runs a VM's actor on its own thread, under the supervisor (which restarts it from the
    /// store if it fails).
    fn spawn(&self, name: &str, a: Actor, view: Arc<Mutex<View>>) {
        let (tx, rx) = mpsc::channel();
        let (ctx, v, n) = (self.ctx.clone(), view.clone(), name.to_string());
        let join = std::thread::Builder::new()
            .name(format!("vm-{name}"))
            .spawn(move || {
                // It answers QEMU while guests keep the cores busy (a migration's switchover
                // waits on it with the guest paused); what it starts gets the default slice.
                host::sched::latency_critical();
                crate::supervisor::supervise(&n, &ctx, &v, a, &rx)
            })
            .expect("threads can be started");
        self.lock().insert(name.to_string(), Handle { tx, view, join: Some(join) });
    }

    /// The host is going down: each running VM gets its `[host] on_stop` action (default: keep
    /// running), all VMs at once. A guest that does not shut down in time is turned off.
    pub fn host_stop(&self) {
        let mut work = Vec::new();
        for name in self.vm_names() {
            let Ok((_, view)) = self.view_of(&name) else { continue };
            let v = view.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if !v.state.has_process() {
                continue;
            }
            let control = match v.def.host.on_stop {
                vmconfig::StopAction::Keep => continue,
                vmconfig::StopAction::Save => Control::Save,
                vmconfig::StopAction::Shutdown => Control::Shutdown,
                vmconfig::StopAction::Off => Control::Off,
            };
            work.push((name, control));
        }
        std::thread::scope(|s| {
            for (name, control) in &work {
                s.spawn(move || {
                    let mut r = self.ask(name, |reply| Msg::Control {
                        control: *control,
                        options: Default::default(),
                        reply,
                    });
                    if r.is_err() && *control == Control::Shutdown {
                        r = self.ask(name, |reply| Msg::Control {
                            control: Control::Off,
                            options: Default::default(),
                            reply,
                        });
                    }
                    let (level, msg) = match &r {
                        Ok(_) => ("info", format!("host stop: {} '{name}'", control.past())),
                        Err(e) => ("error", format!("host stop: {e}")),
                    };
                    self.ctx.event(Some(name), level, "host.stop", &msg);
                });
            }
        });
    }

    /// The daemon has started: VMs whose `[host] on_start` is `start` are restored (saved) or
    /// booted (off, crashed), all at once, in the background.
    pub fn host_start(self: &Arc<Self>) {
        let d = self.clone();
        std::thread::spawn(move || {
            let mut work = Vec::new();
            for name in d.vm_names() {
                let Ok((_, view)) = d.view_of(&name) else { continue };
                let v = view.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if v.def.host.on_start != vmconfig::StartAction::Start {
                    continue;
                }
                let control = match v.state {
                    VmState::Saved => Control::Restore,
                    VmState::Off | VmState::Crashed => Control::Start,
                    _ => continue,
                };
                work.push((name, control));
            }
            std::thread::scope(|s| {
                for (name, control) in &work {
                    let d = &d;
                    s.spawn(move || {
                        let r = d.ask(name, |reply| Msg::Control {
                            control: *control,
                            options: Default::default(),
                            reply,
                        });
                        let (level, msg) = match &r {
                            Ok(_) => ("info", format!("host start: {} '{name}'", control.past())),
                            Err(e) => ("error", format!("host start: {e}")),
                        };
                        d.ctx.event(Some(name), level, "host.start", &msg);
                    });
                }
            });
        });
    }

    /// Stops serving; VMs keep running (their actors end, their processes do not).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let handles: Vec<Handle> = std::mem::take(&mut *self.lock()).into_values().collect();
        for mut h in handles {
            let _ = h.tx.send(Msg::Detach);
            if let Some(j) = h.join.take() {
                let _ = j.join();
            }
        }
    }

    /// Answers one request (the socket's JSON form).
    pub fn handle(&self, req: Request) -> Response {
        match self.call(req) {
            Ok(v) => Response::ok(v),
            Err(e) => Response::failure(&e),
        }
    }

    /// Answers at once, on the caller's thread, a request that needs nothing that can wait on
    /// I/O or another thread: how this host's VMs look while it is in no pool (their views in
    /// memory and a few reads of /sys). `None`: the request takes [`Daemon::call`], which may
    /// block — also when a lock it needs is held at this moment (a VM being registered holds
    /// the registry through its store write), so a caller never waits. The API answers these
    /// on its async workers, sparing a request two thread handoffs.
    pub fn answer_now(&self, req: &Request) -> Option<Result<Value, Failure>> {
        if self.cluster().is_some() {
            return None; // the pool's VMs are read from etcd
        }
        let now = |view: &Arc<Mutex<View>>| view.try_lock().ok().map(|v| v.clone());
        let views: Vec<View> = {
            if !matches!(req, Request::VmList | Request::VmShow { .. }) {
                return None;
            }
            let Ok(vms) = self.vms.try_read() else {
                tracing::debug!(target: "vine_api::slow", "answer_now: the VM registry is being changed; left to the blocking pool");
                return None;
            };
            let views = match req {
                Request::VmShow { name } => vms.get(name).and_then(|h| now(&h.view)).map(|v| vec![v]),
                _ => vms.values().map(|h| now(&h.view)).collect::<Option<_>>(),
            };
            if views.is_none() {
                tracing::debug!(target: "vine_api::slow", "answer_now: a VM's view is held (or no such VM); left to the blocking pool");
            }
            views?
        };
        let infos: Vec<VmInfo> = views.iter().map(|v| actor::info(&self.ctx, v)).collect();
        Some(Ok(match req {
            Request::VmShow { .. } => serde_json::to_value(&infos[0]),
            _ => serde_json::to_value(&infos),
        }
        .expect("serialises")))
    }

    /// Carries out one request.
    pub fn call(&self, req: Request) -> Result<Value, Failure> {
        if let Some(vm) = req.vm_target() {
            if crate::migrate::passes_while_moving(&req) && self.has_vm(vm) && !self.is_incoming(vm) {
                return self.handle_inner(req);
            }
            if let Some(to) = self.moving_to(vm) {
                return Err(Failure::Refused(format!(
                    "'{vm}' is being moved to host '{to}'; try again when it is there"
                )));
            }
            // A VM arriving here by live migration is still its source's.
            if !self.has_vm(vm) || self.is_incoming(vm) {
                if let Some(host) = self.owner_elsewhere(vm)? {
                    return Err(Failure::Elsewhere { vm: vm.to_string(), host });
                }
            }
        }
        self.handle_inner(req)
    }

    /// Whether a VM of this name is registered.
    pub fn has_vm(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// Names of the registered VMs.
    pub fn vm_names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// This daemon, for threads that must not keep it alive.
    pub(crate) fn weak_self(&self) -> std::sync::Weak<Daemon> {
        self.me.clone()
    }

    /// Whether the daemon is stopping.
    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// This host's VMs as shown, by name.
    pub(crate) fn local_infos(&self) -> Vec<VmInfo> {
        let views: Vec<View> =
            self.read().values().map(|h| h.view.lock().unwrap_or_else(|p| p.into_inner()).clone()).collect();
        views.iter().map(|v| actor::info(&self.ctx, v)).collect()
    }

    /// One of this host's VMs as shown.
    pub(crate) fn local_info(&self, name: &str) -> Result<VmInfo, Failure> {
        let (_, view) = self.view_of(name)?;
        let v = view.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(actor::info(&self.ctx, &v))
    }

    /// Every VM's view here, by name.
    pub(crate) fn views(&self) -> Vec<(String, Arc<Mutex<View>>)> {
        self.read().iter().map(|(n, h)| (n.clone(), h.view.clone())).collect()
    }

    pub(crate) fn view_of(&self, name: &str) -> Result<(Sender<Msg>, Arc<Mutex<View>>), Failure> {
        let vms = self.read();
        let h = vms.get(name).ok_or_else(|| Failure::NotFound(format!("no VM named '{name}'")))?;
        Ok((h.tx.clone(), h.view.clone()))
    }

    pub(crate) fn ask(
        &self,
        name: &str,
        make: impl FnOnce(Sender<Result<Value, Failure>>) -> Msg,
    ) -> Result<Value, Failure> {
        let (tx, _) = self.view_of(name)?;
        let (rtx, rrx) = mpsc::channel();
        tx.send(make(rtx)).map_err(|_| Failure::NotFound(format!("no VM named '{name}'")))?;
        rrx.recv().map_err(|_| Failure::Failed(format!("the actor of '{name}' ended while working")))?
    }

    /// A control of a VM of this host, as a request would carry it out.
    pub(crate) fn control_here(&self, name: &str, control: Control) -> Result<Value, Failure> {
        self.handle_inner(Request::VmControl { name: name.into(), control, options: Default::default() })
    }

    fn handle_inner(&self, req: Request) -> Result<Value, Failure> {
        match req {
            Request::Ping => Ok(json!({ "version": env!("CARGO_PKG_VERSION") })),
            Request::HostInfo => {
                let (reserved, memory, running) = self.ctx.resources.held();
                Ok(json!({
                    "host": self.ctx.host,
                    "memory_for_vms": self.ctx.resources.memory_for_vms(),
                    "running_vms": running,
                    "cpu_reserved_pct": reserved,
                    "memory_held": memory,
                }))
            }
            Request::VmCreate { definition, host, template } => {
                self.create_in_pool(&definition, host.as_deref(), template.as_ref())
            }
            Request::TemplateCreate(new) => {
                Ok(serde_json::to_value(self.template_create(&new)?).expect("serialises"))
            }
            Request::TemplateList => Ok(serde_json::to_value(self.template_list()?).expect("serialises")),
            Request::TemplateShow { name } => {
                Ok(serde_json::to_value(self.template_show(&name)?).expect("serialises"))
            }
            Request::TemplateDelete { name } => {
                self.template_delete(&name)?;
                Ok(json!({ "name": name }))
            }
            Request::TemplateShip { name, to } => self.template_ship(&name, &to),
            Request::TemplateLocal { name, bases, drop } => self.template_local(&name, &bases, drop),
            Request::VmMove { name, to } => self.move_vm(&name, &to),
            Request::VmAdopt { definition, saved, rootfs } => self.adopt_moved(&definition, saved, rootfs),
            Request::VmRecover { definition, from } => self.recover_vm(&definition, &from),
            Request::VmMigrate { name, to, options } => self.migrate_vm(&name, &to, options),
            Request::VmMigration { name } => {
                Ok(serde_json::to_value(self.migration(&name)?).expect("serialises"))
            }
            Request::VmMigrateCancel { name } => self.cancel_migration(&name),
            Request::VmIncoming { definition, disks, postcopy } => {
                self.incoming_vm(&definition, disks, postcopy)
            }
            Request::VmIncomingEnd { name, commit, paused } => self.incoming_end(&name, commit, paused),
            Request::VmIncomingRun { name } => self.incoming_run(&name),
            Request::ClusterInit { etcd, name, tls } => self.cluster_init(etcd, name, tls),
            Request::ClusterShow => self.cluster_show(),
            Request::ClusterToken { host } => self.cluster_token(&host),
            Request::ClusterJoin { token, tls } => self.cluster_join(&token, tls),
            Request::ClusterLeave => self.cluster_leave(),
            Request::HostList => Ok(serde_json::to_value(self.host_list()?).expect("serialises")),
            Request::HostShow { name } => {
                Ok(serde_json::to_value(self.host_show(&name)?).expect("serialises"))
            }
            Request::HostMaintenance { name, on } => self.host_maintenance(&name, on),
            Request::HostStandby { name, on } => self.host_standby(&name, on),
            Request::PolicyShow => self.policy_show(),
            Request::PolicySet(change) => self.policy_set(change),
            Request::PolicyVm { name, change } => self.policy_vm(&name, change),
            Request::HostEvacuate { name, parallel } => self.evacuate(&name, parallel),
            Request::VmList => Ok(serde_json::to_value(self.list_vms()?).expect("serialises")),
            Request::VmShow { name } => Ok(serde_json::to_value(self.show_vm(&name)?).expect("serialises")),
            Request::VmControl { name, control, options } => {
                options.validate()?;
                if matches!(control, Control::Start | Control::Restore) {
                    self.check_ha_start(&name)?;
                    self.claim_writes(&name)?;
                }
                let r = self.ask(&name, |reply| Msg::Control { control, options, reply });
                if r.is_ok() && matches!(control, Control::Remove | Control::Delete) {
                    // Taken out first: the registry is not held while the thread ends.
                    let gone = self.lock().remove(&name);
                    if let Some(mut h) = gone {
                        if let Some(j) = h.join.take() {
                            let _ = j.join();
                        }
                    }
                    self.vm_gone(&name);
                } else {
                    self.publish_now(&name);
                }
                r
            }
            Request::VmSet { name, changes } => {
                changes.validate()?;
                if changes.ha == Some(true) {
                    let (_, view) = self.view_of(&name)?;
                    let def = view.lock().unwrap_or_else(|p| p.into_inner()).def.clone();
                    self.check_ha(&def)?;
                }
                let r = self.ask(&name, |reply| Msg::Set { changes, reply });
                self.publish_now(&name);
                r
            }
            Request::VmNicAdd { name, network, mac } => {
                self.ask(&name, |reply| Msg::Nic { change: actor::NicChange::Add { network, mac }, reply })
            }
            Request::VmNicRemove { name, index } => {
                self.ask(&name, |reply| Msg::Nic { change: actor::NicChange::Remove(index), reply })
            }
            Request::NetworkCreate(a) => self.network_create(&a),
            Request::NetworkList => Ok(self.ctx.networks.list()),
            Request::NetworkShow { name } => self.ctx.networks.show(&name).map_err(Failure::from),
            Request::NetworkDelete { name } => {
                let r = if self.ctx.networks.spans_pool(&name) {
                    self.network_delete_span(&name)?
                } else {
                    self.ctx.networks.delete(&name).map_err(Failure::from)?
                };
                self.ctx.event(None, "info", "network.deleted", &format!("deleted network '{name}'"));
                Ok(r)
            }
            Request::NetworkReserve { name, mac, ip } => {
                let r = self.ctx.networks.reserve(&name, &mac, &ip).map_err(Failure::from)?;
                self.ctx.event(
                    None,
                    "info",
                    "network.reserved",
                    &format!("reserved {ip} for {mac} on '{name}'"),
                );
                Ok(r)
            }
            Request::PoolCreate { name, path, shared: true } => self.create_shared_pool(&name, &path),
            Request::PoolCreate { name, path, shared: false } => {
                let p = self.ctx.pools.create(&name, &path)?;
                self.ctx.event(
                    None,
                    "info",
                    "pool.created",
                    &format!("created storage pool '{name}' at {path}"),
                );
                Ok(serde_json::to_value(p).expect("serialises"))
            }
            Request::PoolList => {
                let shared = self.shared_pool_names();
                let all: Vec<PoolInfo> = self
                    .ctx
                    .pools
                    .names()
                    .iter()
                    .filter_map(|n| self.ctx.pools.show(n, true).ok())
                    .map(|p| PoolInfo { shared: shared.contains(&p.name), ..p })
                    .collect();
                Ok(serde_json::to_value(all).expect("serialises"))
            }
            Request::PoolShow { name } => {
                let p = self.ctx.pools.show(&name, true)?;
                let shared = self.shared_pool_names().contains(&name);
                Ok(serde_json::to_value(PoolInfo { shared, ..p }).expect("serialises"))
            }
            Request::PoolDelete { name } => {
                self.ctx.pools.dir(&name)?;
                let users = self.pool_users(&name);
                self.ctx.pools.delete(&name, &users)?;
                self.forget_shared_pool(&name)?;
                self.ctx.event(
                    None,
                    "info",
                    "pool.deleted",
                    &format!("deleted storage pool '{name}' (its files are kept)"),
                );
                Ok(json!({ "name": name }))
            }
            Request::VolumeList { pool } => {
                let users = self.volume_users();
                let mut all = self.ctx.pools.volumes(&pool)?;
                for v in &mut all {
                    v.used_by = self.users_of(&users, &v.volume);
                }
                Ok(serde_json::to_value(all).expect("serialises"))
            }
            Request::VolumeShow { volume } => {
                let mut v = self.ctx.pools.volume(&volume)?;
                v.used_by = self.users_of(&self.volume_users(), &volume);
                Ok(serde_json::to_value(v).expect("serialises"))
            }
            Request::VolumeCreate { volume, size, parent } => {
                let v = self.ctx.pools.create_volume(&volume, size, parent.as_deref())?;
                self.ctx.event(None, "info", "volume.created", &format!("created volume '{volume}'"));
                Ok(serde_json::to_value(v).expect("serialises"))
            }
            Request::VolumeDelete { volume } => {
                if let Some(t) = self.ctx.pools.resolve(&volume).ok().and_then(|f| self.template_of_base(&f))
                {
                    return Err(Failure::Refused(format!(
                        "volume '{volume}' is the base of template '{t}'; delete the template instead"
                    )));
                }
                let users = self.users_of(&self.volume_users(), &volume);
                self.ctx.pools.delete_volume(&volume, &users)?;
                self.ctx.event(None, "info", "volume.deleted", &format!("deleted volume '{volume}'"));
                Ok(json!({ "volume": volume }))
            }
            Request::NetworkLeases { name } => self.ctx.networks.leases(&name).map_err(Failure::from),
            Request::VmConsole { name, offset, limit } => {
                self.view_of(&name)?;
                let p = VmPaths::new(&self.ctx.data, &name).console;
                let page = conlog::page(&p, offset, limit.unwrap_or(CONSOLE_PAGE))
                    .map_err(|e| Failure::Failed(format!("reading {}: {e}", p.display())))?;
                Ok(json!({ "log": String::from_utf8_lossy(&page.bytes), "offset": page.offset,
                           "length": page.bytes.len(), "total": page.total }))
            }
            Request::Metrics => {
                let vms: Vec<VmMetrics> = self
                    .running_views()
                    .into_iter()
                    .map(|v| VmMetrics {
                        cpu_time_ns: actor::info(&self.ctx, &v).cpu_time_ns.unwrap_or(0),
                        history: self.ctx.metrics.history(&v.def.name),
                        cpu_reserve: v.def.cpu.reserve,
                        cpu_max: v.def.cpu.max,
                        allocated_cpu_max: self.ctx.resources.allocated(&v.def.name),
                        balloon: self.ctx.metrics.memory(&v.def.name),
                        name: v.def.name,
                        vcpus: v.def.cpus,
                        memory: v.def.memory,
                    })
                    .collect();
                Ok(json!({
                    "interval_s": self.cfg.sample_interval.as_secs_f64(),
                    "host": { "cpus": self.ctx.host.cpus, "memory_bytes": self.ctx.host.memory_bytes,
                              "hostname": self.ctx.host.hostname },
                    "vms": vms,
                }))
            }
            Request::PolicyDryRun { policy } => {
                Ok(serde_json::to_value(self.policy_dry_run(&policy)?).expect("dry runs serialise"))
            }
            Request::Events { vm, after, limit } => {
                let ev = self
                    .ctx
                    .store
                    .events(vm.as_deref(), after, limit.unwrap_or(1000))
                    .map_err(|e| Failure::Failed(e.to_string()))?;
                Ok(Value::Array(
                    ev.into_iter()
                        .map(|e| {
                            let mut v = json!({ "id": e.id, "time_ms": e.time_ms, "vm": e.vm, "level": e.level,
                                    "kind": e.kind, "message": e.message });
                            if let Some(h) = e.host {
                                v["host"] = Value::String(h);
                            }
                            v
                        })
                        .collect(),
                ))
            }
        }
    }

    /// Every file a VM definition attaches (disks, CD/DVDs, kernels, initrds; canonical paths),
    /// with the VMs that attach it and how.
    pub fn volume_users(&self) -> BTreeMap<PathBuf, Vec<Attachment>> {
        let defs: Vec<VmDefinition> = self
            .lock()
            .values()
            .map(|h| h.view.lock().unwrap_or_else(|p| p.into_inner()).def.clone())
            .collect();
        let mut out: BTreeMap<PathBuf, Vec<Attachment>> = BTreeMap::new();
        for d in &defs {
            for (path, a) in attachments(d) {
                if let Some(f) =
                    self.ctx.pools.file_of(&path).ok().and_then(|f| std::fs::canonicalize(f).ok())
                {
                    out.entry(f).or_default().push(a);
                }
            }
        }
        out
    }

    /// `vm (rw)`, `vm (ro)` for each VM attaching `volume`.
    fn users_of(&self, users: &BTreeMap<PathBuf, Vec<Attachment>>, volume: &str) -> Vec<String> {
        let Some(f) = self.ctx.pools.resolve(volume).ok().and_then(|f| std::fs::canonicalize(f).ok()) else {
            return Vec::new();
        };
        users
            .get(&f)
            .map(|v| {
                v.iter().map(|a| format!("{} ({})", a.vm, if a.writable { "rw" } else { "ro" })).collect()
            })
            .unwrap_or_default()
    }

    fn network_create(&self, a: &NetworkCreate) -> Result<Value, Failure> {
        let v = if a.span {
            self.network_create_span(a)?
        } else {
            self.ctx.networks.create(a).map_err(Failure::from)?
        };
        self.ctx.event(
            None,
            "info",
            "network.created",
            &format!(
                "created {} network '{}' on bridge {}",
                a.kind.name(),
                a.name,
                v["bridge"].as_str().unwrap_or("")
            ),
        );
        Ok(v)
    }

    pub(crate) fn create(&self, text: &str) -> Result<Value, Failure> {
        self.create_as(text, None)
    }

    /// Registers a VM from its definition; made from a template, its clones of the template's
    /// bases are made first (and removed again if the VM cannot be made).
    pub(crate) fn create_from(
        &self,
        text: &str,
        template: Option<&crate::templates::TemplateUse>,
    ) -> Result<Value, Failure> {
        let Some(how) = template else { return self.create(text) };
        let (text, files) = self.clone_disks(text, how)?;
        let made = self.create(&text);
        if made.is_err() {
            for f in &files {
                let _ = std::fs::remove_file(f);
            }
        }
        made
    }

    /// Registers a VM from its definition; with `saved_state`, it arrives saved (a cold move:
    /// for a container, that file is its root file system's tarball, which another host sent;
    /// the file, which another host wrote, becomes its saved state).
    pub(crate) fn create_as(&self, text: &str, saved_state: Option<&Path>) -> Result<Value, Failure> {
        let invalid = Failure::Invalid;
        let mut def = VmDefinition::parse(text).map_err(|e| invalid(format!("definition: {e}")))?;
        def.validate().map_err(|e| invalid(format!("definition: {e}")))?;
        actor::controls_of(&def).validate().map_err(|e| invalid(e.to_string()))?;
        self.check_no_base_written(&def)?;
        // Every file exists: a volume in its pool, a host path as given.
        let file_of = |field: &str, path: &str| -> Result<PathBuf, Failure> {
            if path.starts_with('/') {
                std::fs::canonicalize(path)
                    .map_err(|_| invalid(format!("definition: field `{field}`: {path} does not exist")))
            } else {
                let f = self
                    .ctx
                    .pools
                    .resolve(path)
                    .map_err(|e| invalid(format!("definition: field `{field}`: {e}")))?;
                std::fs::canonicalize(&f).map_err(|e| Failure::Failed(format!("{}: {e}", f.display())))
            }
        };
        if let Some(k) = &def.kernel {
            for (field, path) in [("kernel.kernel", Some(&k.kernel)), ("kernel.initrd", k.initrd.as_ref())] {
                let Some(path) = path else { continue };
                if !file_of(field, path)?.is_file() {
                    return Err(invalid(format!("definition: field `{field}`: {path} is not a file")));
                }
            }
        }
        for (i, d) in def.disks.iter().enumerate() {
            file_of(&format!("disk[{i}].path"), &d.path)?;
            if d.shared && def.undo_disks {
                return Err(invalid(
                    "definition: field `disk[{i}].shared`: a shared disk cannot have an undo disk (turn undo_disks off)"
                        .replace("{i}", &i.to_string()),
                ));
            }
        }
        // A volume written by one VM is attached to no other, and one another VM writes is not
        // attached here (a clustered disk both mark shared aside). Checked before the registry
        // lock (it takes each VM's view); a start's disk server lease checks again.
        let users = self.volume_users();
        // Host paths (the administrator's) are left to the start, as before pools.
        for (path, mine) in attachments(&def).into_iter().filter(|(p, _)| !p.starts_with('/')) {
            let Ok(f) = file_of("disk", &path) else { continue };
            for theirs in users.get(&f).into_iter().flatten() {
                let both_shared = mine.shared && theirs.shared;
                if (mine.writable || theirs.writable) && !both_shared {
                    return Err(Failure::Refused(format!(
                        "{path} is attached {} to VM '{}'; a disk written by one VM is attached to no other \
                         (unless both mark it shared)",
                        if theirs.writable { "read-write" } else { "read-only" },
                        theirs.vm
                    )));
                }
            }
        }
        // A new container's root: unpacked (seconds for a distribution) before the registry is
        // locked, moved into the container's directory once the name is known to be free.
        let staged = match (def.is_container(), saved_state) {
            (true, source) => Some(self.stage_rootfs(&mut def, source)?),
            (false, _) => None,
        };
        let vms = self.lock();
        if vms.contains_key(&def.name) {
            return Err(Failure::Refused(format!("a VM named '{}' already exists", def.name)));
        }
        let vm_name = def.name.clone();
        self.ctx.networks.claim_nics(&vm_name, &mut def).map_err(|e| {
            self.ctx.networks.release_nics(&vm_name);
            Failure::Invalid(format!("definition: {e}"))
        })?;
        let paths = VmPaths::new(&self.ctx.data, &def.name);
        let canonical = def.to_toml().map_err(|e| invalid(format!("definition: {e}")))?;
        let written = std::fs::create_dir_all(&paths.dir)
            .map_err(|e| format!("cannot create {}: {e}", paths.dir.display()))
            .and_then(|_| {
                actor::write_atomic(&paths.definition, &canonical)
                    .map_err(|e| format!("cannot write {}: {e}", paths.definition.display()))
            });
        let written = written.and_then(|_| match saved_state {
            Some(f) if !def.is_container() => crate::layout::take_saved_state(&paths, &self.ctx.emulator, f),
            _ => Ok(()),
        });
        let written = written.and_then(|_| match &staged {
            Some(s) => s.move_into(&paths.dir),
            None => Ok(()),
        });
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&paths.dir);
            self.ctx.networks.release_nics(&vm_name);
            return Err(Failure::Failed(e));
        }
        let state = if saved_state.is_some() && !def.is_container() { VmState::Saved } else { VmState::Off };
        let rec = VmRecord {
            name: def.name.clone(),
            uuid: def.uuid.clone(),
            definition: canonical,
            state: state.name().into(),
            pid: None,
            runtime: None,
        };
        if let Err(e) = self.ctx.store.create_vm(&rec) {
            let _ = std::fs::remove_dir_all(&paths.dir);
            self.ctx.networks.release_nics(&def.name);
            return Err(match e {
                store::StoreError::Exists(_) => Failure::Refused(e.to_string()),
                e => Failure::Failed(e.to_string()),
            });
        }
        let name = def.name.clone();
        let view = Arc::new(Mutex::new(View {
            state,
            pid: None,
            def,
            last_error: None,
            fenced: None,
            ha_restart: false,
        }));
        let a = Actor::new(&name, self.ctx.clone(), view.clone());
        drop(vms);
        self.spawn(&name, a, view.clone());
        self.ctx.event(Some(&name), "info", "vm.created", &format!("created '{name}'"));
        let v = view.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(serde_json::to_value(actor::info(&self.ctx, &v)).expect("serialises"))
    }
}

/// Checks that `user` may cross every directory down to `vms` (QEMU reaches its run directory
/// there), making the data directory and `vms` searchable (mode o+x, not listable) if they are
/// not: they are vine's own.
fn reachable(vms: &Path, user: &sandbox::User) -> Result<(), DaemonError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if user.is_root() {
        return Ok(());
    }
    let ours = [vms, vms.parent().unwrap_or(vms)];
    for dir in vms.ancestors() {
        let m = std::fs::metadata(dir).map_err(io("cannot read", dir))?;
        let mode = m.mode() & 0o7777;
        let can = (m.uid() == user.uid && mode & 0o100 != 0)
            || ((m.gid() == user.gid || user.groups.contains(&m.gid())) && mode & 0o010 != 0)
            || mode & 0o001 != 0;
        if can {
            continue;
        }
        if ours.contains(&dir) {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o111))
                .map_err(io("cannot make searchable", dir))?;
            continue;
        }
        return Err(DaemonError::Unreachable {
            user: user.name.clone(),
            data: vms.to_path_buf(),
            dir: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// How a VM attaches a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The VM.
    pub vm: String,
    /// It may write the file.
    pub writable: bool,
    /// Marked shared (guest clustering).
    pub shared: bool,
}

/// Every file a definition names (as written: a volume or a host path), with how it is attached.
pub fn attachments(d: &VmDefinition) -> Vec<(String, Attachment)> {
    let a = |writable, shared| Attachment { vm: d.name.clone(), writable, shared };
    let mut out: Vec<(String, Attachment)> =
        d.disks.iter().map(|x| (x.path.clone(), a(!x.cdrom && !x.read_only, x.shared))).collect();
    if let Some(k) = &d.kernel {
        out.push((k.kernel.clone(), a(false, false)));
        if let Some(i) = &k.initrd {
            out.push((i.clone(), a(false, false)));
        }
    }
    out
}
