//! One actor (thread) per VM. It alone touches the VM's QEMU process, QMP session, disk leases
//! and cgroup, so controls on one VM are carried out one at a time and never disturb another VM.
//! Every control is checked by [`vmm::state::check`] against the state the actor holds; the busy
//! state (`starting`, `saving`, …) is recorded before the work and the end state after it. When
//! a control fails, the state is settled from reality (is there a process? what does QMP say?),
//! so a failed control always leaves a well-defined state. Between controls the actor watches its
//! QEMU: a process that ends without being asked is recorded as `crashed`; a guest that powered
//! itself off (QEMU runs with `-no-shutdown`) is recorded as `off`.
//!
//! This file holds the actor's messages, its loop and its controls; by concern besides:
//! `launch` (disk servers, console logger, QEMU), `power` (save, restore, shutdown, the end of a
//! session, unregistering), `watch` (between controls, and after a daemon restart) and
//! `migration` (live migration, both sides).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cgroups::Controls;
use qmp::UnixTransport;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use store::{Durability, EventRecord, Store};
use vmconfig::VmDefinition;
use vmm::process::{self, Identity};
use vmm::qemu_args::{qemu_args, LaunchPlan, NbdEndpoint};
use vmm::{Control, VmState};

use crate::disks::{DiskServers, Lease, Mode};

mod container;
mod launch;
mod migration;
mod power;
mod watch;
use crate::layout::VmPaths;
use crate::protocol::{Changes, ControlOptions, CpuInfo, Failure, NicInfo, UndoAction, VmInfo};
use crate::resources::Resources;
pub use migration::{Handover, Job, MirrorTarget, Outgoing, Progress, Ready};

/// How often a running VM's QMP status is polled (guest power-off, outside pause/resume).
const POLL: Duration = Duration::from_secs(1);
/// How often a running guest's memory is read from its balloon (and how often the balloon asks
/// the guest, in seconds: [`STATS_S`]).
const MEMORY_POLL: Duration = Duration::from_secs(2);
const STATS_S: u64 = 2;
/// How often the actor checks that its QEMU still lives.
const TICK: Duration = Duration::from_millis(100);
/// How long the actor of a VM with no process waits for a message before it looks again (it
/// has nothing to watch: a host's hundreds of VMs that are off cost it nothing).
const IDLE: Duration = Duration::from_secs(60);
/// How long QEMU gets to open its QMP socket, and to answer one QMP line.
const QMP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long QEMU gets to exit after `quit` before it is killed.
const QUIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Most events waiting for one observer.
pub const OBSERVER_QUEUE: usize = 4096;
/// cgroup name for disk servers shared by several VMs (VM names cannot start with `_`).
pub const SHARED_CGROUP: &str = "_shared-disks";

/// What every actor shares: the host's facilities.
pub struct Ctx {
    /// The data directory.
    pub data: PathBuf,
    /// The state store.
    pub store: Arc<dyn Store>,
    /// Host facts.
    pub host: host::HostInfo,
    /// CPU/memory admission and cgroups.
    pub resources: Resources,
    /// Disk servers.
    pub disks: DiskServers,
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// Who wants to hear about each event as it is logged (bounded queues: a slow observer
    /// misses events rather than growing the daemon).
    pub observers: Mutex<Vec<std::sync::mpsc::SyncSender<EventRecord>>>,
    /// Virtual networks and the MACs of NICs.
    pub networks: crate::networks::Networks,
    /// Deletes restored states in the background.
    pub trash: crate::trash::Trash,
    /// Storage pools and their volumes.
    pub pools: crate::pools::Pools,
    /// The user QEMU runs as.
    pub emulator: sandbox::User,
    /// The `vine` binary (its console logger).
    pub vine_exe: PathBuf,
    /// Per-VM CPU utilisation (the sampler's) and memory (the actors').
    pub metrics: crate::metrics::Metrics,
    /// LXC's commands on this host's containers (their configurations under `<data>/lxc`).
    pub lxc: lxc::Lxc,
}

impl Ctx {
    /// Appends an event (a failure to log is itself only logged).
    pub fn event(&self, vm: Option<&str>, level: &str, kind: &str, message: &str) {
        let e = Self::new_event(vm, level, kind, message);
        let r = self.store.append_event(&e);
        self.publish(e, r);
    }

    /// An event record stamped now, also written to the daemon's log.
    fn new_event(vm: Option<&str>, level: &str, kind: &str, message: &str) -> EventRecord {
        let time_ms = crate::since_epoch().as_millis() as i64;
        match level {
            "error" => tracing::error!(vm, kind, "{message}"),
            "warning" => tracing::warn!(vm, kind, "{message}"),
            _ => tracing::info!(vm, kind, "{message}"),
        }
        EventRecord {
            id: 0,
            time_ms,
            vm: vm.map(String::from),
            host: None,
            level: level.into(),
            kind: kind.into(),
            message: message.into(),
        }
    }

    /// Hands a stored event (or the failure to store it) to the observers.
    fn publish(&self, e: EventRecord, stored: Result<u64, store::StoreError>) {
        match stored {
            Ok(id) => {
                let logged = EventRecord { id, ..e };
                self.observers.lock().unwrap_or_else(|p| p.into_inner()).retain(|tx| {
                    match tx.try_send(logged.clone()) {
                        Ok(()) => true,
                        Err(std::sync::mpsc::TrySendError::Full(_)) => {
                            tracing::warn!(
                                event = logged.id,
                                "an event observer is behind; it misses this event"
                            );
                            true
                        }
                        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => false,
                    }
                });
            }
            Err(err) => tracing::error!(error = %err, "cannot append to the event log"),
        }
    }

    /// Events from now on, as they are logged (at most [`OBSERVER_QUEUE`] waiting).
    pub fn subscribe(&self) -> std::sync::mpsc::Receiver<EventRecord> {
        let (tx, rx) = std::sync::mpsc::sync_channel(OBSERVER_QUEUE);
        self.observers.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
        rx
    }
}

/// What others may read about a VM without waiting for its actor.
#[derive(Debug, Clone)]
pub struct View {
    /// Current state.
    pub state: VmState,
    /// QEMU's pid.
    pub pid: Option<u32>,
    /// The definition as last loaded.
    pub def: VmDefinition,
    /// The last failed control.
    pub last_error: Option<String>,
    /// Why its emulator was killed from outside the actor (this host fenced itself, or the pool
    /// restarted the VM on another host): the actor records it off with this reason instead of
    /// crashed.
    pub fenced: Option<String>,
    /// An HA guest this host stopped because its fence fired (or found with its disks gone after
    /// a fence while the daemon was away): started again here if the pool did not take it over.
    pub ha_restart: bool,
}

/// A message to an actor.
pub enum Msg {
    /// Apply a control; the reply is the result for the client.
    Control {
        /// The control.
        control: Control,
        /// Its options.
        options: ControlOptions,
        /// Where the answer goes.
        reply: Sender<Result<Value, Failure>>,
    },
    /// Change resource controls.
    Set {
        /// The changes.
        changes: Changes,
        /// Where the answer goes.
        reply: Sender<Result<Value, Failure>>,
    },
    /// Add or remove a NIC (the VM must not be running).
    Nic {
        /// What to do.
        change: NicChange,
        /// Where the answer goes.
        reply: Sender<Result<Value, Failure>>,
    },
    /// A live migration's destination: an emulator waiting on `ip` for the state, with disks
    /// served as `disks` says (by their place in the definition).
    Incoming {
        /// How each disk is served.
        disks: std::collections::BTreeMap<usize, Mode>,
        /// The address to listen on.
        ip: std::net::IpAddr,
        /// Whether the source may switch to post-copy.
        postcopy: bool,
        /// Where the answer goes.
        reply: Sender<Result<Ready, Failure>>,
    },
    /// A live migration's source: copy the VM out.
    MigrateOut {
        /// Where to, and how.
        out: Box<Outgoing>,
        /// Where the answer goes.
        reply: Sender<Result<Value, Failure>>,
    },
    /// A live migration's destination at the start of post-copy: the guest runs here now.
    IncomingRun {
        /// Where the answer goes.
        reply: Sender<Result<Value, Failure>>,
    },
    /// The end of a live migration on either side ([`Actor::migrate_end`]).
    MigrateEnd {
        /// Whether it succeeded and the pool gave the VM to the destination.
        commit: bool,
        /// On the destination: whether the guest stays paused.
        paused: bool,
        /// Where the answer goes.
        reply: Sender<Result<Value, Failure>>,
    },
    /// The daemon is stopping: leave the VM as it is and end.
    Detach,
}

/// A change to a VM's NICs.
pub enum NicChange {
    /// A new NIC on `network`, with `mac` or an allocated one.
    Add {
        /// The network.
        network: String,
        /// Its MAC.
        mac: Option<String>,
    },
    /// Remove NIC `index`.
    Remove(usize),
}

/// The processes of a running VM, as the store keeps them (JSON) for reattaching.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeRecord {
    /// QEMU's pid.
    pub qemu_pid: u32,
    /// QEMU's start time (clock ticks since boot).
    pub qemu_start_ticks: u64,
    /// Disk leases with whether the disk is shared.
    pub disks: Vec<(Lease, bool)>,
}

impl RuntimeRecord {
    /// The record of a QEMU with these disk leases, as the store keeps it.
    fn json(id: Identity, disks: &[(Lease, bool)]) -> String {
        let r = RuntimeRecord { qemu_pid: id.pid, qemu_start_ticks: id.start_ticks, disks: disks.to_vec() };
        serde_json::to_string(&r).expect("runtime records serialise")
    }
}

struct Proc {
    id: Identity,
    child: Option<Child>,
    qmp: Option<qmp::Client<UnixTransport>>,
    disks: Vec<(Lease, bool)>,
    /// Whether the balloon was asked to poll the guest's memory statistics.
    stats_on: bool,
}

/// One VM's actor.
pub struct Actor {
    name: String,
    ctx: Arc<Ctx>,
    paths: VmPaths,
    view: Arc<Mutex<View>>,
    proc: Option<Proc>,
    last_poll: Instant,
    last_memory: Instant,
    /// The balloon's size when last read, and since when (s since the epoch) it has been that.
    balloon_since: Option<(u64, u64)>,
    /// Files to delete once the current control has been answered (a restored state: freeing a
    /// large file's blocks would otherwise delay the answer's commit).
    retired: Vec<PathBuf>,
    /// How the next launch serves each disk (a live migration's destination), by its place.
    disk_modes: std::collections::BTreeMap<usize, Mode>,
    /// The TCP addresses and export names of the last launch's handover targets, by place.
    served_tcp: Vec<(usize, std::net::SocketAddr, String)>,
    /// The state before the live migration under way from here.
    migrating_from: Option<VmState>,
    /// The guest runs here in post-copy: its migration has not completed yet.
    postcopy_here: bool,
    /// A container's OOM kills seen so far this session.
    oom_kills: u64,
    /// A container's LXC monitor (its init's parent).
    monitor: Option<Identity>,
    /// When a running container's console relay is due to start.
    relay_at: Option<Instant>,
}

/// Why an operation of the actor failed: refused (the request cannot be carried out as things
/// stand — HTTP 409) or failed (it was tried and went wrong — HTTP 500).
#[derive(Debug)]
struct Fail {
    refused: bool,
    msg: String,
}

impl From<String> for Fail {
    fn from(msg: String) -> Fail {
        Fail { refused: false, msg }
    }
}

impl From<crate::networks::NetworkError> for Fail {
    fn from(e: crate::networks::NetworkError) -> Fail {
        let refused = matches!(e, crate::networks::NetworkError::NotFound(_));
        Fail { refused, msg: e.to_string() }
    }
}

impl From<&str> for Fail {
    fn from(msg: &str) -> Fail {
        Fail { refused: false, msg: msg.to_string() }
    }
}

impl Fail {
    fn into_failure(self) -> Failure {
        if self.refused {
            Failure::Refused(self.msg)
        } else {
            Failure::Failed(self.msg)
        }
    }
}

fn refused(msg: impl Into<String>) -> Fail {
    Fail { refused: true, msg: msg.into() }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

type Res<T> = Result<T, Fail>;

/// The resource controls a definition asks for.
pub fn controls_of(def: &VmDefinition) -> Controls {
    Controls {
        weight: def.cpu.weight,
        reserve_pct: def.cpu.reserve,
        max_pct: def.cpu.max,
        memory: def.memory,
        vcpus: def.cpus,
        overhead: if def.is_container() { 0 } else { cgroups::mapping::QEMU_OVERHEAD },
    }
}

/// Writes `text` to `path` atomically (a reader sees the old file or the new one).
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    v[v.len().saturating_sub(lines)..].join(" | ")
}

impl Actor {
    /// An actor for VM `name` in `state` (as recorded), with its view shared with the daemon.
    pub fn new(name: &str, ctx: Arc<Ctx>, view: Arc<Mutex<View>>) -> Actor {
        let paths = VmPaths::new(&ctx.data, name);
        Actor {
            name: name.to_string(),
            ctx,
            paths,
            view,
            proc: None,
            last_poll: Instant::now(),
            last_memory: Instant::now(),
            balloon_since: None,
            retired: Vec::new(),
            disk_modes: Default::default(),
            served_tcp: Vec::new(),
            migrating_from: None,
            postcopy_here: false,
            oom_kills: 0,
            monitor: None,
            relay_at: None,
        }
    }

    fn state(&self) -> VmState {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).state
    }

    fn runtime_json(&self) -> Option<String> {
        self.proc.as_ref().map(|p| RuntimeRecord::json(p.id, &p.disks))
    }

    fn set_state(&mut self, s: VmState) {
        let pid = self.show_state(s);
        let runtime = self.runtime_json();
        if let Err(e) = self.ctx.store.set_state(&self.name, s.name(), pid, runtime.as_deref(), durability(s))
        {
            tracing::error!(vm = self.name, error = %e, "cannot record the VM's state");
        }
    }

    /// Like [`Actor::set_state`] followed by an event, in one write to the store.
    fn set_state_with_event(&mut self, s: VmState, level: &str, kind: &str, message: &str) {
        let pid = self.show_state(s);
        let e = Ctx::new_event(Some(&self.name), level, kind, message);
        let runtime = self.runtime_json();
        let r = self.ctx.store.set_state_with_event(
            &self.name,
            s.name(),
            pid,
            runtime.as_deref(),
            &e,
            durability(s),
        );
        if let Err(err) = &r {
            tracing::error!(vm = self.name, error = %err, "cannot record the VM's state and event");
        }
        self.ctx.publish(e, r);
    }

    /// The view shows state `s` and the current QEMU; returns its pid.
    fn show_state(&mut self, s: VmState) -> Option<u32> {
        let pid = self.proc.as_ref().map(|p| p.id.pid);
        let mut v = self.view.lock().unwrap_or_else(|p| p.into_inner());
        v.state = s;
        v.pid = pid;
        pid
    }

    fn event(&self, level: &str, kind: &str, message: &str) {
        self.ctx.event(Some(&self.name), level, kind, message);
    }

    /// The actor's loop: controls from the channel, watching in between. Returns when the VM is
    /// gone or the daemon detaches; a panic unwinds to the supervisor ([`crate::supervisor`]).
    pub fn run(mut self, rx: &Receiver<Msg>) {
        loop {
            let wait = if self.proc.is_some() { TICK } else { IDLE };
            match rx.recv_timeout(wait) {
                Ok(Msg::Control { control, options, reply }) => {
                    let r = self.control(control, options);
                    let gone = r.is_ok() && matches!(control, Control::Remove | Control::Delete);
                    let _ = reply.send(r);
                    for f in self.retired.drain(..) {
                        self.ctx.trash.delete(f);
                    }
                    if gone {
                        return;
                    }
                }
                Ok(Msg::Set { changes, reply }) => {
                    let r = self.set(changes);
                    let _ = reply.send(r);
                }
                Ok(Msg::Nic { change, reply }) => {
                    let r = self.nic(change).map_err(Fail::into_failure);
                    let _ = reply.send(r);
                }
                Ok(Msg::Incoming { disks, ip, postcopy, reply }) => {
                    let r = self.incoming(disks, ip, postcopy).map_err(Fail::into_failure);
                    let _ = reply.send(r);
                }
                Ok(Msg::MigrateOut { out, reply }) => {
                    let r = self.migrate_out(&out).map_err(Fail::into_failure);
                    let _ = reply.send(r);
                }
                Ok(Msg::IncomingRun { reply }) => {
                    let r = self.incoming_run().map_err(Fail::into_failure);
                    let _ = reply.send(r);
                }
                Ok(Msg::MigrateEnd { commit, paused, reply }) => {
                    let r = self.migrate_end(commit, paused).map_err(Fail::into_failure);
                    let _ = reply.send(r);
                }
                Ok(Msg::Detach) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {
                    #[cfg(feature = "fault-injection")]
                    self.injected_fault();
                    self.watch()
                }
            }
        }
    }

    /// Tests make an actor fail by creating `inject-panic` in the VM's directory (compiled only
    /// with the `fault-injection` feature, which only the test builds turn on).
    #[cfg(feature = "fault-injection")]
    fn injected_fault(&self) {
        let trigger = self.paths.dir.join("inject-panic");
        if std::fs::remove_file(&trigger).is_ok() {
            panic!("fault injected into the actor of '{}' ({})", self.name, trigger.display());
        }
    }

    // ----- reading the definition -----

    /// Reads and validates the definition file (it may have been edited by hand or by a tool).
    fn load_definition(&mut self) -> Res<VmDefinition> {
        let path = &self.paths.definition;
        let text = std::fs::read_to_string(path)
            .map_err(|e| refused(format!("cannot read the definition {}: {e}", path.display())))?;
        let def = VmDefinition::parse(&text)
            .and_then(|d| d.validate().map(|_| d))
            .map_err(|e| refused(format!("definition {}: {e}", path.display())))?;
        if def.name != self.name {
            return Err(refused(format!(
                "definition {}: field `name`: {:?} does not match the VM's name '{}'",
                path.display(),
                def.name,
                self.name
            )));
        }
        // Written only when it changed: an unchanged file costs no commit (and no fsync).
        let stored = self.ctx.store.get_vm(&self.name).ok().flatten().map(|r| r.definition);
        if stored.as_deref() != Some(text.as_str()) {
            if let Err(e) = self.ctx.store.update_definition(&self.name, &text) {
                tracing::warn!(vm = self.name, error = %e, "cannot store the definition");
            }
        }
        self.view.lock().unwrap_or_else(|p| p.into_inner()).def = def.clone();
        Ok(def)
    }

    // ----- controls -----

    fn control(&mut self, control: Control, options: ControlOptions) -> Result<Value, Failure> {
        let t0 = Instant::now();
        self.refresh();
        let state = self.state();
        let t = vmm::state::check(&self.name, state, control).map_err(|r| Failure::Refused(r.to_string()))?;
        if t.during != state {
            if matches!(control, Control::Start | Control::Restore) {
                // Shown at once, recorded by `launch` together with QEMU's pid.
                self.view.lock().unwrap_or_else(|p| p.into_inner()).state = t.during;
            } else {
                self.set_state(t.during);
            }
        }
        let r = if self.is_container() {
            self.ct_control(control, options.timeout_s)
        } else {
            self.vm_control(control, state, &options)
        };
        self.end_control(control, state, t, t0, r)
    }

    fn vm_control(&mut self, control: Control, state: VmState, options: &ControlOptions) -> Res<()> {
        let undo = options.undo.unwrap_or(UndoAction::Keep);
        match control {
            Control::Start => self.start(),
            Control::Pause => self.qmp_do("stop", None),
            Control::Resume => self.qmp_do("cont", None),
            Control::Save => self.save(state),
            Control::Restore => self.restore(),
            Control::DiscardState => std::fs::remove_file(&self.paths.state)
                .map_err(|e| Fail::from(format!("cannot delete {}: {e}", self.paths.state.display()))),
            Control::Shutdown => self.shutdown(options.timeout_s, undo),
            Control::Off => self.off(undo),
            Control::Reset => self.reset(state),
            Control::Remove => self.remove(false),
            Control::Delete => self.remove(true),
        }
    }

    fn end_control(
        &mut self,
        control: Control,
        state: VmState,
        t: vmm::state::Transition,
        t0: Instant,
        r: Res<()>,
    ) -> Result<Value, Failure> {
        match r {
            Ok(()) => {
                self.view.lock().unwrap_or_else(|p| p.into_inner()).last_error = None;
                let msg = format!("{} '{}'", control.past(), self.name);
                let kind = serde_json::to_value(control).ok().and_then(|v| v.as_str().map(String::from));
                let kind = format!("vm.{}", kind.unwrap_or_default());
                match t.after {
                    Some(after) => self.set_state_with_event(after, "info", &kind, &msg),
                    None => self.event("info", &kind, &msg),
                }
                tracing::debug!(vm = self.name, ms = t0.elapsed().as_secs_f64() * 1e3, "{msg}");
                Ok(json!({ "name": self.name, "state": t.after.map(|s| s.name()), "message": msg }))
            }
            Err(e) => {
                let msg = format!("cannot {} '{}': {e}", control.verb(), self.name);
                self.settle(state);
                self.view.lock().unwrap_or_else(|p| p.into_inner()).last_error = Some(msg.clone());
                self.event(
                    "error",
                    "vm.control-failed",
                    &format!("{msg}; it is now {}", self.state().name()),
                );
                let msg = format!("{msg} (it is now {})", self.state().name());
                Err(if e.refused { Failure::Refused(msg) } else { Failure::Failed(msg) })
            }
        }
    }

    /// After a failed control: the state from reality.
    fn settle(&mut self, before: VmState) {
        if self.is_container() {
            return self.ct_settle(before);
        }
        if let Some(p) = self.proc.as_mut() {
            let alive = match p.child.as_mut() {
                Some(c) => matches!(c.try_wait(), Ok(None)),
                None => process::is_alive(p.id),
            };
            if alive {
                let s = match self.qmp().and_then(|q| q.status().map_err(|e| Fail::from(e.to_string()))) {
                    Ok(s) if s == "running" => VmState::Running,
                    Ok(_) => VmState::Paused,
                    Err(_) => before,
                };
                self.set_state(s);
                return;
            }
            self.end_session();
            self.set_state(VmState::Crashed);
            return;
        }
        let s = if self.paths.state.exists() {
            VmState::Saved
        } else if before == VmState::Crashed {
            VmState::Crashed
        } else {
            VmState::Off
        };
        self.set_state(s);
    }

    fn qmp(&mut self) -> Res<&mut qmp::Client<UnixTransport>> {
        let qmp_path = self.paths.qmp.clone();
        let p = self.proc.as_mut().ok_or("it has no QEMU process")?;
        if p.qmp.is_none() {
            let t = UnixTransport::connect(&qmp_path, QMP_TIMEOUT).map_err(|e| e.to_string())?;
            p.qmp = Some(qmp::Client::negotiate(t).map_err(|e| e.to_string())?);
        }
        Ok(p.qmp.as_mut().expect("just set"))
    }

    fn qmp_do(&mut self, cmd: &str, args: Option<Value>) -> Res<()> {
        let r = self.qmp()?.execute(cmd, args).map(|_| ()).map_err(|e| Fail::from(e.to_string()));
        if r.is_err() {
            // A broken session is opened again next time.
            if let Some(p) = self.proc.as_mut() {
                p.qmp = None;
            }
        }
        r
    }

    /// Gives every NIC of the definition a MAC of its own, writing allocated ones back to the
    /// definition file (it may have been edited by hand).
    fn claim_macs(&mut self, mut def: VmDefinition) -> Res<VmDefinition> {
        if self.ctx.networks.claim_nics(&self.name, &mut def)? {
            let text = def.to_toml().map_err(|e| refused(format!("definition: {e}")))?;
            write_atomic(&self.paths.definition, &text)
                .map_err(|e| format!("cannot write {}: {e}", self.paths.definition.display()))?;
            if let Err(e) = self.ctx.store.update_definition(&self.name, &text) {
                tracing::warn!(vm = self.name, error = %e, "cannot store the definition");
            }
            self.view.lock().unwrap_or_else(|p| p.into_inner()).def = def.clone();
        }
        Ok(def)
    }

    fn nic(&mut self, change: NicChange) -> Res<Value> {
        self.refresh();
        let state = self.state();
        if state.has_process() || state == VmState::Saved {
            return Err(refused(format!(
                "cannot change the NICs of '{}': it is {} (turn it off first)",
                self.name,
                state.name()
            )));
        }
        let mut def = self.load_definition()?;
        let msg = match change {
            NicChange::Add { network, mac } => {
                if def.nics.len() >= vmconfig::MAX_NICS {
                    return Err(refused(format!(
                        "'{}' already has {} NICs, the most a VM can have",
                        self.name,
                        def.nics.len()
                    )));
                }
                def.nics.push(vmconfig::Nic { network: network.clone(), mac });
                format!("added NIC {} on network '{network}' to '{}'", def.nics.len() - 1, self.name)
            }
            NicChange::Remove(i) => {
                if i >= def.nics.len() {
                    return Err(refused(format!(
                        "'{}' has no NIC {i} (it has {})",
                        self.name,
                        def.nics.len()
                    )));
                }
                let n = def.nics.remove(i);
                format!("removed NIC {i} (network '{}') from '{}'", n.network, self.name)
            }
        };
        def.validate().map_err(|e| refused(format!("definition: {e}")))?;
        if let Err(e) = self.ctx.networks.claim_nics(&self.name, &mut def) {
            // Put back what this VM held before.
            let mut old = self.view.lock().unwrap_or_else(|p| p.into_inner()).def.clone();
            let _ = self.ctx.networks.claim_nics(&self.name, &mut old);
            return Err(refused(e.to_string()));
        }
        let text = def.to_toml().map_err(|e| refused(format!("definition: {e}")))?;
        write_atomic(&self.paths.definition, &text)
            .map_err(|e| format!("cannot write {}: {e}", self.paths.definition.display()))?;
        self.ctx.store.update_definition(&self.name, &text).map_err(|e| Fail::from(e.to_string()))?;
        self.view.lock().unwrap_or_else(|p| p.into_inner()).def = def.clone();
        self.event("info", "vm.nic", &msg);
        Ok(json!({ "name": self.name, "nics": def.nics, "message": msg }))
    }

    fn start(&mut self) -> Res<()> {
        let def = self.load_definition()?;
        let def = self.claim_macs(def)?;
        self.admit(&def)?;
        if let Err(e) = self.launch(&def, false) {
            self.release_resources();
            return Err(e);
        }
        self.qmp_do("cont", None)
    }

    fn admit(&mut self, def: &VmDefinition) -> Res<()> {
        let c = controls_of(def);
        c.validate().map_err(|e| refused(e.to_string()))?;
        self.ctx.resources.admit(&self.name, c).map_err(|e| refused(e.to_string()))
    }

    fn release_resources(&self) {
        self.ctx.resources.release(&self.name);
        if let Err(e) = self.ctx.resources.apply_all() {
            tracing::warn!(error = %e, "cannot rewrite cgroup files");
        }
        if let Ok(cg) = self.ctx.resources.cgroup(&self.name) {
            // The kernel may need a moment after the last process left (up to a second).
            for _ in 0..500 {
                if cg.remove().is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    fn reset(&mut self, before: VmState) -> Res<()> {
        self.qmp_do("system_reset", None)?;
        if before == VmState::Paused {
            self.qmp_do("cont", None)?;
        }
        Ok(())
    }

    fn migration_status(&mut self) -> Res<(String, Value)> {
        let v = self.with_qmp(|q| q.execute("query-migrate", None))?;
        Ok((v["status"].as_str().unwrap_or("none").to_string(), v))
    }

    /// Starts a migration (`migrate` out to a file, or `migrate-incoming` from one) with QEMU's
    /// MIGRATION events turned on, both commands sent together (one round trip).
    ///
    /// Earlier migrations' events are forgotten first: every event QEMU sent before it took these
    /// commands has been read by the time they are answered, so none of them can be mistaken for
    /// this migration's end (a session's earlier restore, or a save that failed). An incoming
    /// migration that fails leaves QEMU running to say why (QEMU 9.1 and later; earlier ones
    /// exit, and vine reports that QEMU ended).
    fn begin_migration(&mut self, command: &str, uri: &str) -> Res<()> {
        let events = json!({ "capabilities": [{ "capability": "events", "state": true }] });
        self.with_qmp(|q| {
            let mut args = json!({ "uri": uri });
            if command == "migrate-incoming" && q.version >= (9, 1, 0) {
                args["exit-on-error"] = json!(false);
            }
            q.discard_events(|e| e.name == "MIGRATION");
            q.execute_all(&[("migrate-set-capabilities", Some(events)), (command, Some(args))])
        })
        .map(|_| ())
    }

    /// Runs `f` on the QMP session; a session that broke (rather than a command QEMU refused) is
    /// opened again next time.
    fn with_qmp<R>(
        &mut self,
        f: impl FnOnce(&mut qmp::Client<UnixTransport>) -> Result<R, qmp::QmpError>,
    ) -> Res<R> {
        let r = f(self.qmp()?);
        if r.as_ref().is_err_and(|e| !matches!(e, qmp::QmpError::Command { .. })) {
            if let Some(p) = self.proc.as_mut() {
                p.qmp = None;
            }
        }
        r.map_err(|e| Fail::from(e.to_string()))
    }

    /// Waits until the migration has completed. QEMU's MIGRATION event says so the moment it
    /// happens (polling `query-migrate` learns it up to a poll interval later, and each poll is a
    /// round trip through QEMU's main loop); after a quiet while, or when the event says it
    /// failed, `query-migrate` is asked (for the reason, and in case an event was missed).
    fn wait_migration(&mut self) -> Res<()> {
        loop {
            let done = self.with_qmp(|q| {
                q.wait_event_within(Duration::from_millis(250), |e| {
                    e.name == "MIGRATION"
                        && matches!(e.data["status"].as_str(), Some("completed" | "failed" | "cancelled"))
                })
            })?;
            if done.is_some_and(|e| e.data["status"] == "completed") {
                return Ok(());
            }
            let (status, v) = self.migration_status()?;
            match status.as_str() {
                "completed" => {
                    // Its event, if QEMU sent one, came before this answer: not left for later.
                    if let Some(q) = self.proc.as_mut().and_then(|p| p.qmp.as_mut()) {
                        q.discard_events(|e| e.name == "MIGRATION");
                    }
                    return Ok(());
                }
                "failed" | "cancelled" => {
                    let why = v["error-desc"].as_str().unwrap_or("no reason given");
                    return Err(Fail::from(format!("QEMU's migration {status}: {why}")));
                }
                _ => {}
            }
            if self
                .proc
                .as_mut()
                .is_some_and(|p| p.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_)))))
            {
                return Err(Fail::from("QEMU exited during the migration".to_string()));
            }
        }
    }

    // ----- resource controls -----

    fn set(&mut self, c: Changes) -> Result<Value, Failure> {
        self.set_inner(c)
            .map_err(|e| if e.refused { Failure::Refused(e.msg) } else { Failure::Failed(e.msg) })
    }

    fn set_inner(&mut self, c: Changes) -> Res<Value> {
        let mut def = self.load_definition()?;
        let old = def.clone();
        if let Some(w) = c.cpu_weight {
            def.cpu.weight = w;
        }
        if let Some(r) = c.cpu_reserve {
            def.cpu.reserve = r;
        }
        if c.no_cpu_max {
            def.cpu.max = None;
        }
        if let Some(m) = c.cpu_max {
            def.cpu.max = Some(m);
        }
        if let Some(m) = c.memory {
            def.memory = m;
        }
        if let Some(a) = &c.on_host_stop {
            def.host.on_stop = serde_json::from_value(json!(a))
                .map_err(|_| refused(format!("on_host_stop: {a:?} is not keep, save, shutdown or off")))?;
        }
        if let Some(a) = &c.on_host_start {
            def.host.on_start = serde_json::from_value(json!(a))
                .map_err(|_| refused(format!("on_host_start: {a:?} is not nothing or start")))?;
        }
        if let Some(h) = c.ha {
            def.ha = h;
        }
        if c.no_cloud_init {
            def.cloud_init = None;
        }
        if let Some(ci) = &c.cloud_init {
            def.cloud_init = Some(ci.clone());
        }
        def.validate().map_err(|e| refused(e.to_string()))?;
        controls_of(&def).validate().map_err(|e| refused(e.to_string()))?;
        let running = self.state().has_process();
        if let Some(b) = c.balloon {
            self.balloon(&old, b)?;
        }
        let allocated = c.allocated_cpu_max.map(Some).or(c.no_allocated_cpu_max.then_some(None));
        if let Some(a) = allocated {
            if !running {
                return Err(refused(format!(
                    "allocated_cpu_max: '{}' is {}; it caps a running guest",
                    self.name,
                    self.state().name()
                )));
            }
            self.ctx.resources.allocate(&self.name, a).map_err(refused)?;
        }
        if running {
            // A guest keeps its memory size until the next start (a container's limit changes
            // now); CPU controls apply now.
            let mut now = controls_of(&def);
            if !def.is_container() {
                now.memory = old.memory;
            }
            self.ctx.resources.admit(&self.name, now).map_err(|e| refused(e.to_string()))?;
            if let Err(e) = self.ctx.resources.apply_all() {
                self.ctx.resources.admit(&self.name, controls_of(&old)).ok();
                let _ = self.ctx.resources.apply_all();
                return Err(Fail::from(format!("cgroup: {e}")));
            }
        }
        let text = def.to_toml().map_err(|e| refused(format!("definition: {e}")))?;
        write_atomic(&self.paths.definition, &text)
            .map_err(|e| format!("cannot write {}: {e}", self.paths.definition.display()))?;
        let _ = self.ctx.store.update_definition(&self.name, &text);
        self.view.lock().unwrap_or_else(|p| p.into_inner()).def = def.clone();
        let memory_later = running && def.memory != old.memory && !def.is_container();
        let msg = format!(
            "set '{}': cpu weight {}, reserve {}%, max {}, memory {} bytes{}",
            self.name,
            def.cpu.weight,
            def.cpu.reserve,
            def.cpu.max.map(|m| format!("{m}%")).unwrap_or_else(|| "none".into()),
            def.memory,
            if memory_later { " (memory from the next start)" } else { "" }
        );
        let msg = if def.ha != old.ha {
            let ha = if def.ha {
                "; HA on: if its host dies, the pool starts it on another host"
            } else {
                "; HA off"
            };
            format!("{msg}{ha}")
        } else {
            msg
        };
        let msg = if def.cloud_init != old.cloud_init {
            let when = if running { "from the next start" } else { "at its next start" };
            format!("{msg}; new cloud-init data, which the guest gets {when}")
        } else {
            msg
        };
        let msg = match self.ctx.resources.allocated(&self.name).filter(|_| running) {
            Some(a) => format!("{msg}; the resizer caps it at {a}%"),
            None => msg,
        };
        self.event("info", "vm.set", &msg);
        Ok(json!({ "message": msg, "applied_now": running, "memory_next_start": memory_later }))
    }

    /// Sets the running guest's balloon so it keeps `bytes` of its memory (`old`: the
    /// definition it runs with). The guest's driver gives pages back or takes them, at its pace.
    fn balloon(&mut self, old: &VmDefinition, bytes: u64) -> Res<()> {
        use crate::protocol::BALLOON_MIN;
        if old.is_container() {
            return Err(refused(format!(
                "'{}' is a container: it has no balloon; its memory limit changes at once (--memory)",
                self.name
            )));
        }
        if !self.state().has_process() {
            return Err(refused(format!(
                "balloon: '{}' is {}; a balloon sizes a running guest (memory sets the next start's)",
                self.name,
                self.state().name()
            )));
        }
        if !old.balloon {
            return Err(refused(format!("balloon: '{}' has no balloon device (balloon = false)", self.name)));
        }
        if !(BALLOON_MIN..=old.memory).contains(&bytes) {
            return Err(refused(format!(
                "balloon: must be {} MiB to its memory ({} MiB), got {bytes} bytes",
                BALLOON_MIN >> 20,
                old.memory >> 20
            )));
        }
        self.with_qmp(|q| q.execute("balloon", Some(json!({ "value": bytes }))))?;
        let actual = self
            .with_qmp(|q| q.execute("query-balloon", None))
            .ok()
            .and_then(|v| v["actual"].as_u64())
            .map(|a| format!(" (it holds {} MiB now)", a >> 20))
            .unwrap_or_default();
        self.event(
            "info",
            "vm.balloon",
            &format!(
                "'{}' is to keep {} MiB of its {} MiB{actual}",
                self.name,
                bytes >> 20,
                old.memory >> 20
            ),
        );
        Ok(())
    }

    // ----- watching -----
}

/// How durably a change to state `s` is recorded. A VM with a process is only in that state while
/// the host is up (a host crash ends its QEMU too, and the next daemon finds it gone), so the
/// record must survive the daemon, not the host: it is not waited for on the disk, which keeps
/// an fsync off every start, restore, pause and resume. Off, saved and crashed outlive the host.
fn durability(s: VmState) -> Durability {
    if s.has_process() {
        Durability::Process
    } else {
        Durability::Host
    }
}

/// A VM as shown by `vine vm show`.
pub fn info(ctx: &Ctx, view: &View) -> VmInfo {
    let d = &view.def;
    let paths = VmPaths::new(&ctx.data, &d.name);
    let cpu_time_ns = if view.state.has_process() {
        ctx.resources.cgroup(&d.name).ok().and_then(|cg| cg.cpu_time_ns().ok())
    } else {
        None
    };
    VmInfo {
        name: d.name.clone(),
        kind: d.kind,
        container: d.container.as_ref().map(|c| crate::protocol::ContainerInfo {
            image: c.image.clone(),
            rootfs: paths.dir.join("rootfs").display().to_string(),
            id_base: c.id_base,
            halt_signal: c.halt_signal.clone(),
            lxc_path: ctx.lxc.path().display().to_string(),
        }),
        host: None,
        uuid: d.uuid.clone(),
        state: view.state,
        group: d.group.clone(),
        pid: view.pid,
        cpus: d.cpus,
        memory: d.memory,
        cpu: CpuInfo {
            weight: d.cpu.weight,
            reserve: d.cpu.reserve,
            max: d.cpu.max,
            allocated_max: ctx.resources.allocated(&d.name).filter(|_| view.state.has_process()),
        },
        disks: d.disks.iter().map(|x| x.path.clone()).collect(),
        kernel: d.kernel.as_ref().map(|k| k.kernel.clone()),
        drives: d
            .disks
            .iter()
            .map(|x| crate::protocol::DriveInfo {
                path: x.path.clone(),
                bus: serde_json::to_value(x.bus)
                    .ok()
                    .and_then(|b| b.as_str().map(str::to_string))
                    .unwrap_or_default(),
                cdrom: x.cdrom,
                read_only: x.read_only,
                shared: x.shared,
            })
            .collect(),
        nics: d
            .nics
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let tap = ctx.networks.tap_name(&d.name, i);
                NicInfo {
                    network: n.network.clone(),
                    mac: n.mac.clone(),
                    tap: (view.state.has_process() && ctx.networks.link_exists(&tap)).then_some(tap),
                }
            })
            .collect(),
        undo_disks: d.undo_disks,
        ha: d.ha,
        cloud_init: d.cloud_init.clone(),
        cloud_init_instance: d.cloud_init.as_ref().map(|c| {
            let macs: Vec<String> = d.nics.iter().filter_map(|n| n.mac.clone()).collect();
            cloudinit::seed(&d.uuid, &d.name, c, &macs).instance_id
        }),
        definition_file: paths.definition.display().to_string(),
        console_log: paths.console.display().to_string(),
        console: d.console,
        saved_state: if d.is_container() {
            paths.run.join("checkpoint").exists()
        } else {
            paths.state.exists()
        },
        cpu_time_ns,
        last_error: view.last_error.clone(),
    }
}
