//! The daemon: opens the store, finds the VMs it knows (reattaching to those still running),
//! listens on the local socket (mode 0600: root only) and answers requests — reads from the
//! VMs' views, controls through their actors.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use serde_json::{json, Value};
use store::{SqliteStore, Store, VmRecord};
use vmconfig::VmDefinition;
use vmm::{Control, VmState};

use crate::actor::{self, Actor, Ctx, Msg, View};
use crate::disks::DiskServers;
use crate::layout::{self, VmPaths};
use crate::networks::Networks;
use crate::protocol::NetworkCreate;
use crate::protocol::{Request, Response, MAX_REQUEST};
use crate::resources::Resources;

/// How often the daemon checks that every network's DHCP server still runs.
const NETWORK_WATCH: std::time::Duration = std::time::Duration::from_secs(2);

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
}

struct Handle {
    tx: Sender<Msg>,
    view: Arc<Mutex<View>>,
    join: Option<JoinHandle<()>>,
}

/// A running daemon.
pub struct Daemon {
    ctx: Arc<Ctx>,
    cfg: Config,
    vms: Mutex<BTreeMap<String, Handle>>,
    stopping: AtomicBool,
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> DaemonError + 'a {
    move |source| DaemonError::Io { what, path: path.to_path_buf(), source }
}

impl Daemon {
    /// Opens the data directory and store and reattaches to the VMs that still run.
    pub fn open(cfg: Config) -> Result<Arc<Daemon>, DaemonError> {
        std::fs::create_dir_all(cfg.data_dir.join("vms")).map_err(io("cannot create", &cfg.data_dir))?;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&layout::database(&cfg.data_dir))?);
        let host = host::host_info(&host::LiveHost)?;
        let resources = Resources::new(host.cpus, host.memory_bytes, host.cgroup.clone(), &cfg.cgroup_parent);
        let disks = DiskServers::new(cfg.vine_exe.clone(), layout::disks_dir(&cfg.data_dir));
        let networks =
            Networks::open(&cfg.data_dir, cfg.vine_exe.clone(), store.clone(), Arc::new(netconf::Live))?;
        let ctx = Arc::new(Ctx {
            data: cfg.data_dir.clone(),
            store,
            host,
            resources,
            disks,
            qemu: cfg.qemu.clone(),
            networks,
        });
        // Networks first: a running VM's taps need their bridges.
        for p in ctx.networks.restore_all() {
            ctx.event(None, "error", "network.restore-failed", &p);
        }
        let d =
            Arc::new(Daemon { ctx, cfg, vms: Mutex::new(BTreeMap::new()), stopping: AtomicBool::new(false) });
        for rec in d.ctx.store.list_vms()? {
            d.adopt(rec);
        }
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
            })
            .expect("threads can be started");
        Ok(d)
    }

    /// The shared context (host facts, store).
    pub fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Handle>> {
        self.vms.lock().unwrap_or_else(|p| p.into_inner())
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
        let view = Arc::new(Mutex::new(View { state: recorded, pid: rec.pid, def, last_error: None }));
        let mut a = Actor::new(&rec.name, self.ctx.clone(), view.clone());
        a.reattach(recorded, rec.runtime.as_deref());
        self.spawn(&rec.name, a, view);
    }

    fn spawn(&self, name: &str, a: Actor, view: Arc<Mutex<View>>) {
        let (tx, rx) = mpsc::channel();
        let join = std::thread::Builder::new()
            .name(format!("vm-{name}"))
            .spawn(move || a.run(rx))
            .expect("threads can be started");
        self.lock().insert(name.to_string(), Handle { tx, view, join: Some(join) });
    }

    /// Serves the socket until [`Daemon::stop`] is called.
    pub fn serve(self: &Arc<Self>) -> Result<(), DaemonError> {
        let sock = &self.cfg.socket;
        if let Some(dir) = sock.parent() {
            std::fs::create_dir_all(dir).map_err(io("cannot create", dir))?;
        }
        if sock.exists() {
            if UnixStream::connect(sock).is_ok() {
                return Err(DaemonError::AlreadyRunning(sock.clone()));
            }
            std::fs::remove_file(sock).map_err(io("cannot remove stale socket", sock))?;
        }
        let listener = UnixListener::bind(sock).map_err(io("cannot listen on", sock))?;
        std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o600))
            .map_err(io("cannot restrict", sock))?;
        for conn in listener.incoming() {
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            match conn {
                Ok(s) => {
                    let me = self.clone();
                    std::thread::spawn(move || me.connection(s));
                }
                Err(e) => tracing::warn!(error = %e, "accept failed"),
            }
        }
        let _ = std::fs::remove_file(sock);
        Ok(())
    }

    /// Stops serving; VMs keep running (their actors end, their processes do not).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.cfg.socket);
        let handles: Vec<Handle> = std::mem::take(&mut *self.lock()).into_values().collect();
        for mut h in handles {
            let _ = h.tx.send(Msg::Detach);
            if let Some(j) = h.join.take() {
                let _ = j.join();
            }
        }
    }

    fn connection(&self, s: UnixStream) {
        let Ok(writer) = s.try_clone() else { return };
        let mut writer = writer;
        let mut reader = BufReader::new(s);
        loop {
            // Bytes, not a String: a line that is not UTF-8 is a malformed request, answered
            // like any other, not a reason to drop the connection.
            let mut line = Vec::new();
            match Read::by_ref(&mut reader).take(MAX_REQUEST as u64 + 1).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(n) if n > MAX_REQUEST => {
                    let r = Response::err(format!("request longer than {MAX_REQUEST} bytes"));
                    let _ = writeln!(writer, "{}", serde_json::to_string(&r).expect("serialises"));
                    return;
                }
                Ok(_) => {}
            }
            let resp = match serde_json::from_slice::<Request>(&line) {
                Ok(req) => self.handle(req),
                Err(e) => Response::err(format!("malformed request: {e}")),
            };
            let text = serde_json::to_string(&resp).expect("responses serialise");
            if writeln!(writer, "{text}").is_err() {
                return;
            }
        }
    }

    /// Answers one request.
    pub fn handle(&self, req: Request) -> Response {
        match self.handle_inner(req) {
            Ok(v) => Response::ok(v),
            Err(e) => Response::err(e),
        }
    }

    fn view_of(&self, name: &str) -> Result<(Sender<Msg>, Arc<Mutex<View>>), String> {
        let vms = self.lock();
        let h = vms.get(name).ok_or_else(|| format!("no VM named '{name}'"))?;
        Ok((h.tx.clone(), h.view.clone()))
    }

    fn ask(
        &self,
        name: &str,
        make: impl FnOnce(Sender<Result<Value, String>>) -> Msg,
    ) -> Result<Value, String> {
        let (tx, _) = self.view_of(name)?;
        let (rtx, rrx) = mpsc::channel();
        tx.send(make(rtx)).map_err(|_| format!("no VM named '{name}'"))?;
        rrx.recv().map_err(|_| format!("the actor of '{name}' ended while working"))?
    }

    fn handle_inner(&self, req: Request) -> Result<Value, String> {
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
            Request::VmCreate { definition } => self.create(&definition),
            Request::VmList => {
                let views: Vec<View> = self
                    .lock()
                    .values()
                    .map(|h| h.view.lock().unwrap_or_else(|p| p.into_inner()).clone())
                    .collect();
                Ok(serde_json::to_value(views.iter().map(|v| actor::info(&self.ctx, v)).collect::<Vec<_>>())
                    .expect("serialises"))
            }
            Request::VmShow { name } => {
                let (_, view) = self.view_of(&name)?;
                let v = view.lock().unwrap_or_else(|p| p.into_inner()).clone();
                Ok(serde_json::to_value(actor::info(&self.ctx, &v)).expect("serialises"))
            }
            Request::VmControl { name, control, options } => {
                let r = self.ask(&name, |reply| Msg::Control { control, options, reply });
                if r.is_ok() && matches!(control, Control::Remove | Control::Delete) {
                    if let Some(mut h) = self.lock().remove(&name) {
                        if let Some(j) = h.join.take() {
                            let _ = j.join();
                        }
                    }
                }
                r
            }
            Request::VmSet { name, changes } => self.ask(&name, |reply| Msg::Set { changes, reply }),
            Request::VmNicAdd { name, network, mac } => {
                self.ask(&name, |reply| Msg::Nic { change: actor::NicChange::Add { network, mac }, reply })
            }
            Request::VmNicRemove { name, index } => {
                self.ask(&name, |reply| Msg::Nic { change: actor::NicChange::Remove(index), reply })
            }
            Request::NetworkCreate(a) => self.network_create(&a),
            Request::NetworkList => Ok(self.ctx.networks.list()),
            Request::NetworkShow { name } => self.ctx.networks.show(&name),
            Request::NetworkDelete { name } => {
                let r = self.ctx.networks.delete(&name)?;
                self.ctx.event(None, "info", "network.deleted", &format!("deleted network '{name}'"));
                Ok(r)
            }
            Request::NetworkReserve { name, mac, ip } => {
                let r = self.ctx.networks.reserve(&name, &mac, &ip)?;
                self.ctx.event(
                    None,
                    "info",
                    "network.reserved",
                    &format!("reserved {ip} for {mac} on '{name}'"),
                );
                Ok(r)
            }
            Request::NetworkLeases { name } => self.ctx.networks.leases(&name),
            Request::VmConsole { name } => {
                self.view_of(&name)?;
                let p = VmPaths::new(&self.ctx.data, &name).console;
                let bytes = std::fs::read(&p).unwrap_or_default();
                Ok(json!({ "log": String::from_utf8_lossy(&bytes) }))
            }
            Request::Events { vm, after, limit } => {
                let ev = self
                    .ctx
                    .store
                    .events(vm.as_deref(), after, limit.unwrap_or(1000))
                    .map_err(|e| e.to_string())?;
                Ok(Value::Array(
                    ev.into_iter()
                        .map(|e| {
                            json!({ "id": e.id, "time_ms": e.time_ms, "vm": e.vm, "level": e.level,
                                    "kind": e.kind, "message": e.message })
                        })
                        .collect(),
                ))
            }
        }
    }

    fn network_create(&self, a: &NetworkCreate) -> Result<Value, String> {
        let v = self.ctx.networks.create(a)?;
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

    fn create(&self, text: &str) -> Result<Value, String> {
        let mut def = VmDefinition::parse(text).map_err(|e| format!("definition: {e}"))?;
        def.validate().map_err(|e| format!("definition: {e}"))?;
        actor::controls_of(&def).validate().map_err(|e| e.to_string())?;
        for (i, d) in def.disks.iter().enumerate() {
            if !Path::new(&d.path).is_absolute() {
                return Err(format!(
                    "definition: field `disk[{i}].path`: {:?} must be an absolute path",
                    d.path
                ));
            }
            if !Path::new(&d.path).exists() {
                return Err(format!("definition: field `disk[{i}].path`: {} does not exist", d.path));
            }
            if d.shared && def.undo_disks {
                return Err(format!(
                    "definition: field `disk[{i}].shared`: a shared disk cannot have an undo disk (turn undo_disks off)"
                ));
            }
        }
        let vms = self.lock();
        if vms.contains_key(&def.name) {
            return Err(format!("a VM named '{}' already exists", def.name));
        }
        let vm_name = def.name.clone();
        self.ctx.networks.claim_nics(&vm_name, &mut def).map_err(|e| {
            self.ctx.networks.release_nics(&vm_name);
            format!("definition: {e}")
        })?;
        let paths = VmPaths::new(&self.ctx.data, &def.name);
        let canonical = def.to_toml();
        let written = std::fs::create_dir_all(&paths.dir)
            .map_err(|e| format!("cannot create {}: {e}", paths.dir.display()))
            .and_then(|_| {
                actor::write_atomic(&paths.definition, &canonical)
                    .map_err(|e| format!("cannot write {}: {e}", paths.definition.display()))
            });
        if let Err(e) = written {
            self.ctx.networks.release_nics(&vm_name);
            return Err(e);
        }
        let rec = VmRecord {
            name: def.name.clone(),
            uuid: def.uuid.clone(),
            definition: canonical,
            state: VmState::Off.name().into(),
            pid: None,
            runtime: None,
        };
        if let Err(e) = self.ctx.store.create_vm(&rec) {
            let _ = std::fs::remove_dir_all(&paths.dir);
            self.ctx.networks.release_nics(&def.name);
            return Err(e.to_string());
        }
        let name = def.name.clone();
        let view = Arc::new(Mutex::new(View { state: VmState::Off, pid: None, def, last_error: None }));
        let a = Actor::new(&name, self.ctx.clone(), view.clone());
        drop(vms);
        self.spawn(&name, a, view.clone());
        self.ctx.event(Some(&name), "info", "vm.created", &format!("created '{name}'"));
        let v = view.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Ok(serde_json::to_value(actor::info(&self.ctx, &v)).expect("serialises"))
    }
}
