//! A VM's actor in a live migration: what its QEMU does on each side. The source mirrors the
//! disks that live on this host into the destination's disk servers (`blockdev-mirror` into NBD
//! over TCP), then migrates memory and devices (`migrate` over TCP, with auto-converge and a pause
//! before switchover, where the mirrors are completed and let go of their targets). The
//! destination's QEMU waits with `-incoming`, its disks served in standby (a shared volume, still
//! the source's) or as a handover target (a mirrored one). Which side goes on is decided outside
//! the actor ([`crate::migrate`]); [`Actor::migrate_end`] carries it out on either side.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use vmm::VmState;

use super::{refused, Actor, Fail, Res};
use crate::disks::Mode;
use crate::protocol::MigrateOptions;

/// Downtime allowed at switchover when the operator names none (Proxmox's choice; QEMU's own
/// default is 300 ms).
pub const DEFAULT_DOWNTIME_MS: u64 = 100;
/// How long a migration may take when the operator names no limit.
pub const DEFAULT_TIMEOUT_S: u64 = 600;
/// QEMU's `max-bandwidth` when no limit is set: far above any link (its own default is 128 MiB/s).
const UNLIMITED: u64 = 1 << 40;
/// How often progress is read while memory or disks are copied.
const POLL: Duration = Duration::from_millis(200);
/// How long the mirrors get to settle once the guest is paused for switchover.
const SETTLE: Duration = Duration::from_secs(60);

/// A migration under way, shared between the source's actor (which writes the progress and
/// reads the cancel flag) and whoever asks.
#[derive(Debug, Default)]
pub struct Job {
    /// The latest figures.
    pub progress: Mutex<Progress>,
    /// Set to cancel it.
    pub cancel: AtomicBool,
}

impl Job {
    /// A job migrating to host `to`.
    pub fn new(to: &str) -> Job {
        let p = Progress {
            to: to.into(),
            phase: "preparing".into(),
            started_ms: crate::since_epoch().as_millis() as u64,
            ..Default::default()
        };
        Job { progress: Mutex::new(p), cancel: AtomicBool::new(false) }
    }

    /// A copy of the figures.
    pub fn snapshot(&self) -> Progress {
        let mut p = self.progress.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if p.total_ms.is_none() {
            p.elapsed_ms = (crate::since_epoch().as_millis() as u64).saturating_sub(p.started_ms);
        }
        p
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.progress.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// What a live migration has done so far (the API's and the terminal's progress).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    /// The destination host.
    pub to: String,
    /// `preparing`, `disks` (mirroring), `memory`, `switchover`, `completed`, `failed` or
    /// `cancelled`.
    pub phase: String,
    /// When it began (ms since the epoch).
    pub started_ms: u64,
    /// How long it has run (or ran).
    pub elapsed_ms: u64,
    /// Disk bytes to mirror (volumes on host-local pools).
    pub disk_total: u64,
    /// Disk bytes mirrored so far.
    pub disk_transferred: u64,
    /// Guest memory.
    pub ram_total: u64,
    /// Memory bytes sent (pages sent again after the guest dirtied them count again).
    pub ram_transferred: u64,
    /// Memory bytes still to send.
    pub ram_remaining: u64,
    /// Bytes per second the guest dirties.
    pub dirty_rate: u64,
    /// The link's throughput QEMU measured, bytes per second.
    pub throughput: u64,
    /// The pause QEMU expects at switchover, in ms.
    pub expected_downtime_ms: Option<u64>,
    /// How much auto-converge slows the guest's CPUs (percent), once it does.
    pub cpu_throttle_pct: Option<u64>,
    /// Whether post-copy has begun.
    pub postcopy: bool,
    /// When it ended: the guest's pause at switchover as QEMU measured it, in ms.
    pub downtime_ms: Option<u64>,
    /// When it ended: its whole duration, in ms.
    pub total_ms: Option<u64>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// A disk the source mirrors: the destination's server of its new volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorTarget {
    /// The disk's place in the definition.
    pub index: usize,
    /// Where the destination serves it.
    pub addr: SocketAddr,
    /// Its export name there.
    pub export: String,
}

/// What the destination answers once its QEMU waits for the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// Where its QEMU listens for the migration stream.
    pub addr: SocketAddr,
    /// The disks to mirror into it.
    pub targets: Vec<MirrorTarget>,
}

/// The handover at the start of post-copy (the daemon's side of it).
pub type Handover = Box<dyn FnOnce() -> Result<(), String> + Send>;

/// The source's half of a migration.
pub struct Outgoing {
    /// The destination's QEMU.
    pub addr: SocketAddr,
    /// Disks to mirror there.
    pub targets: Vec<MirrorTarget>,
    /// The operator's choices.
    pub options: MigrateOptions,
    /// Progress and cancel.
    pub job: std::sync::Arc<Job>,
    /// Once post-copy has begun (there is no going back), hands the VM to the destination and
    /// lets its guest run there: the daemon's commit point, brought forward.
    pub on_postcopy: Mutex<Option<Handover>>,
}

/// How long the handover at the start of post-copy is tried before giving up.
const POSTCOPY_HANDOVER: Duration = Duration::from_secs(30);

/// QMP's figures for a `query-migrate` answer, as progress.
fn read_ram(p: &mut Progress, v: &Value) {
    let ram = &v["ram"];
    p.ram_total = ram["total"].as_u64().unwrap_or(p.ram_total);
    p.ram_transferred = ram["transferred"].as_u64().unwrap_or(p.ram_transferred);
    p.ram_remaining = ram["remaining"].as_u64().unwrap_or(p.ram_remaining);
    let page = ram["page-size"].as_u64().unwrap_or(4096);
    p.dirty_rate = ram["dirty-pages-rate"].as_u64().unwrap_or(0) * page;
    p.throughput = (ram["mbps"].as_f64().unwrap_or(0.0) * 1e6 / 8.0) as u64;
    p.expected_downtime_ms = v["expected-downtime"].as_u64();
    p.cpu_throttle_pct = v["cpu-throttle-percentage"].as_u64();
    if v["status"] == "postcopy-active" {
        p.postcopy = true;
    }
}

impl Actor {
    /// The destination's side, first half: the VM (registered here, off) gets an emulator
    /// waiting on `ip` for its state, with disks served as `disks` says.
    pub(super) fn incoming(
        &mut self,
        disks: BTreeMap<usize, Mode>,
        ip: IpAddr,
        postcopy: bool,
    ) -> Res<Ready> {
        let state = self.state();
        if state != VmState::Off {
            return Err(refused(format!("'{}' is {} here", self.name, state.name())));
        }
        if self.is_container() {
            return Err(refused(format!("'{}' is a container: containers move cold", self.name)));
        }
        let def = self.load_definition()?;
        let def = self.claim_macs(def)?;
        self.admit(&def)?;
        self.disk_modes = disks;
        self.view.lock().unwrap_or_else(|p| p.into_inner()).state = VmState::Incoming;
        let launched = self.launch(&def, true);
        self.disk_modes.clear();
        if let Err(e) = launched {
            self.release_resources();
            self.set_state(VmState::Off);
            return Err(e);
        }
        let r = self.listen_incoming(ip, postcopy);
        if r.is_err() {
            self.kill_and_end();
            self.set_state(VmState::Off);
        }
        r
    }

    fn listen_incoming(&mut self, ip: IpAddr, postcopy: bool) -> Res<Ready> {
        self.set_state(VmState::Incoming);
        if postcopy {
            let caps = json!({ "capabilities": [{ "capability": "postcopy-ram", "state": true }] });
            self.with_qmp(|q| q.execute("migrate-set-capabilities", Some(caps)))?;
        }
        let uri = format!("tcp:{}", SocketAddr::new(ip, 0));
        self.begin_migration("migrate-incoming", &uri)?;
        // QEMU picked a free port; it says which.
        let v = self.with_qmp(|q| q.execute("query-migrate", None))?;
        let port = v["socket-address"]
            .as_array()
            .and_then(|a| a.iter().find_map(|s| s["port"].as_str().and_then(|p| p.parse::<u16>().ok())))
            .ok_or_else(|| Fail::from(format!("QEMU did not say where it listens for the migration: {v}")))?;
        let targets = self
            .served_tcp
            .drain(..)
            .map(|(index, addr, export)| MirrorTarget {
                index,
                addr: SocketAddr::new(ip, addr.port()),
                export,
            })
            .collect();
        Ok(Ready { addr: SocketAddr::new(ip, port), targets })
    }

    /// The source's side: mirrors, then memory, up to the completed migration (QEMU here is
    /// then paused for good, the destination's has everything). On failure or cancel the guest
    /// goes on here as it was and nothing of the attempt is left in this QEMU.
    pub(super) fn migrate_out(&mut self, out: &Outgoing) -> Res<Value> {
        if self.is_container() {
            return Err(refused(format!(
                "cannot migrate '{}': it is a container, which moves cold (vine vm move, once it is off)",
                self.name
            )));
        }
        let before = self.state();
        if !matches!(before, VmState::Running | VmState::Paused) {
            return Err(refused(format!(
                "cannot migrate '{}': it is {}; a live migration needs it running or paused \
                 (vine vm move takes one that is off or saved)",
                self.name,
                before.name()
            )));
        }
        self.migrating_from = Some(before);
        self.set_state(VmState::Migrating);
        let r = self.copy_out(out);
        if let Err(e) = &r {
            let cancelled = out.job.cancel.load(Ordering::SeqCst);
            out.job.update(|p| {
                p.phase = if cancelled { "cancelled" } else { "failed" }.into();
                p.error = Some(e.msg.clone());
                p.total_ms = Some(p.elapsed_ms);
            });
            self.stay(out);
        }
        r
    }

    fn copy_out(&mut self, out: &Outgoing) -> Res<Value> {
        let t0 = Instant::now();
        let o = &out.options;
        let timeout = Duration::from_secs(o.timeout_s.unwrap_or(DEFAULT_TIMEOUT_S));
        let speed = o.bandwidth.unwrap_or(0);
        // 1. Mirrors into the destination's new volumes.
        if !out.targets.is_empty() {
            out.job.update(|p| p.phase = "disks".into());
        }
        for t in &out.targets {
            let node = format!("mig{}", t.index);
            let target = json!({
                "driver": "nbd", "node-name": node,
                "server": { "type": "inet", "host": t.addr.ip().to_string(), "port": t.addr.port().to_string() },
                "export": t.export,
            });
            self.with_qmp(|q| q.execute("blockdev-add", Some(target)))?;
            let mut mirror = json!({
                "job-id": node, "device": format!("disk{}", t.index), "target": node, "sync": "full",
            });
            if speed > 0 {
                mirror["speed"] = json!(speed);
            }
            self.with_qmp(|q| q.execute("blockdev-mirror", Some(mirror)))?;
        }
        loop {
            if out.job.cancel.load(Ordering::SeqCst) {
                return Err(Fail::from("cancelled by the operator"));
            }
            if t0.elapsed() > timeout {
                return Err(Fail::from(format!("the disks were not mirrored within {timeout:?}")));
            }
            let jobs = self.with_qmp(|q| q.execute("query-block-jobs", None))?;
            let jobs = jobs.as_array().cloned().unwrap_or_default();
            let mine: Vec<&Value> = jobs
                .iter()
                .filter(|j| out.targets.iter().any(|t| j["device"] == format!("mig{}", t.index)))
                .collect();
            if mine.len() < out.targets.len() {
                return Err(Fail::from(format!("a disk mirror ended before it was ready: {jobs:?}")));
            }
            out.job.update(|p| {
                p.disk_total = mine.iter().map(|j| j["len"].as_u64().unwrap_or(0)).sum();
                p.disk_transferred = mine.iter().map(|j| j["offset"].as_u64().unwrap_or(0)).sum();
            });
            if mine.iter().all(|j| j["ready"] == true) {
                break;
            }
            std::thread::sleep(POLL);
        }
        // 2. Memory and devices.
        out.job.update(|p| p.phase = "memory".into());
        let mut caps = vec![
            json!({ "capability": "events", "state": true }),
            json!({ "capability": "auto-converge", "state": true }),
            json!({ "capability": "pause-before-switchover", "state": true }),
        ];
        // Said either way: a QEMU that arrived here by post-copy still has it on.
        caps.push(json!({ "capability": "postcopy-ram", "state": o.postcopy }));
        let params = json!({
            "downtime-limit": o.downtime_ms.unwrap_or(DEFAULT_DOWNTIME_MS),
            "max-bandwidth": if speed > 0 { speed } else { UNLIMITED },
        });
        let uri = format!("tcp:{}", out.addr);
        self.with_qmp(|q| {
            q.discard_events(|e| e.name == "MIGRATION");
            q.execute_all(&[
                ("migrate-set-capabilities", Some(json!({ "capabilities": caps }))),
                ("migrate-set-parameters", Some(params)),
                ("migrate", Some(json!({ "uri": uri }))),
            ])
        })?;
        let mut postcopy = false;
        loop {
            let v = self.with_qmp(|q| q.execute("query-migrate", None))?;
            out.job.update(|p| read_ram(p, &v));
            match v["status"].as_str().unwrap_or("none") {
                "completed" => {
                    let downtime = v["downtime"].as_u64();
                    let total = v["total-time"].as_u64().unwrap_or(t0.elapsed().as_millis() as u64);
                    out.job.update(|p| {
                        p.phase = "completed".into();
                        p.downtime_ms = downtime;
                        p.total_ms = Some(t0.elapsed().as_millis() as u64);
                        p.ram_remaining = 0;
                    });
                    return Ok(json!({ "downtime_ms": downtime, "qemu_total_ms": total }));
                }
                "failed" | "cancelled" => {
                    let why = v["error-desc"].as_str().unwrap_or("no reason given");
                    return Err(Fail::from(format!("QEMU's migration failed: {why}")));
                }
                "pre-switchover" => {
                    out.job.update(|p| p.phase = "switchover".into());
                    self.complete_mirrors(out)?;
                    self.with_qmp(|q| {
                        q.execute("migrate-continue", Some(json!({ "state": "pre-switchover" })))
                    })?;
                }
                "postcopy-active" => {
                    let handover = out.on_postcopy.lock().unwrap_or_else(|p| p.into_inner()).take();
                    if let Some(f) = handover {
                        out.job.update(|p| p.phase = "post-copy".into());
                        // The guest's state is split between the hosts now: it can only go on
                        // there. The handover is retried; a failure is told loudly.
                        if let Err(e) = f() {
                            tracing::error!(vm = self.name, "handing the VM over at post-copy: {e}");
                            self.event(
                                "error",
                                "vm.migration-stuck",
                                &format!(
                                    "'{}' is in post-copy but could not be handed to its destination \
                                     within {POSTCOPY_HANDOVER:?}: {e}",
                                    self.name
                                ),
                            );
                        }
                    }
                }
                _ => {}
            }
            if !postcopy && out.job.cancel.load(Ordering::SeqCst) {
                return Err(Fail::from("cancelled by the operator"));
            }
            if !postcopy && t0.elapsed() > timeout {
                if o.postcopy && v["status"] == "active" {
                    // Past the limit, with the operator's leave: the destination runs the guest
                    // now and fetches what it still lacks; there is no going back from here.
                    self.with_qmp(|q| q.execute("migrate-start-postcopy", None))?;
                    postcopy = true;
                    out.job.update(|p| p.postcopy = true);
                } else {
                    let p = out.job.snapshot();
                    let dirty = if p.dirty_rate > 0 {
                        format!("the guest dirties {} MiB/s", p.dirty_rate >> 20)
                    } else {
                        "the first pass over its memory had not ended".to_string()
                    };
                    return Err(Fail::from(format!(
                        "it did not converge within {timeout:?} ({dirty}; the link carried {} MiB/s{}); \
                         allow post-copy (--postcopy), or give it more time or bandwidth",
                        p.throughput >> 20,
                        p.cpu_throttle_pct.map_or(String::new(), |t| format!("; the guest was slowed {t}%"))
                    )));
                }
            }
            if self.qemu_exited() {
                return Err(Fail::from("QEMU exited during the migration"));
            }
            // Woken at once by QEMU's MIGRATION event (the pause before switchover keeps the guest
            // stopped until vine answers it), else after POLL to read the progress.
            self.with_qmp(|q| q.wait_event_within(POLL, |e| e.name == "MIGRATION"))?;
        }
    }

    /// At switchover (the guest paused): each mirror finishes its last writes and lets go of
    /// its target, so the destination's QEMU becomes the volume's only writer.
    fn complete_mirrors(&mut self, out: &Outgoing) -> Res<()> {
        for t in &out.targets {
            let node = format!("mig{}", t.index);
            // A ready mirror that is cancelled completes: the target is a whole copy.
            self.with_qmp(|q| q.execute("block-job-cancel", Some(json!({ "device": node }))))?;
        }
        let deadline = Instant::now() + SETTLE;
        loop {
            let jobs = self.with_qmp(|q| q.execute("query-block-jobs", None))?;
            let left = jobs.as_array().is_some_and(|a| {
                a.iter().any(|j| out.targets.iter().any(|t| j["device"] == format!("mig{}", t.index)))
            });
            if !left {
                break;
            }
            if Instant::now() > deadline {
                return Err(Fail::from(format!("the disk mirrors did not settle within {SETTLE:?}")));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for t in &out.targets {
            let node = format!("mig{}", t.index);
            self.with_qmp(|q| q.execute("blockdev-del", Some(json!({ "node-name": node }))))?;
        }
        Ok(())
    }

    /// After a failed or cancelled attempt on the source: no migration, no mirror, no target
    /// node left in QEMU, and the guest as it was.
    fn stay(&mut self, _out: &Outgoing) {
        if self.proc.is_none() || self.qemu_exited() {
            self.end_session();
            self.migrating_from = None;
            self.set_state(VmState::Crashed);
            return;
        }
        self.clean_out();
        self.resume_as_before();
    }

    /// Stops whatever a migration left in QEMU here: the migration itself, the mirror jobs and
    /// their target nodes (all named `mig…`).
    fn clean_out(&mut self) {
        let _ = self.with_qmp(|q| q.execute("migrate_cancel", None));
        let named = |v: &Value, field: &str| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|j| j[field].as_str())
                        .filter(|d| d.starts_with("mig"))
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default()
        };
        let jobs = self.with_qmp(|q| q.execute("query-block-jobs", None)).unwrap_or_default();
        for node in named(&jobs, "device") {
            let _ = self
                .with_qmp(|q| q.execute("block-job-cancel", Some(json!({ "device": node, "force": true }))));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let busy = self
                .with_qmp(|q| q.execute("query-migrate", None))
                .map(|v| {
                    matches!(
                        v["status"].as_str(),
                        Some("active" | "cancelling" | "pre-switchover" | "device" | "setup")
                    )
                })
                .unwrap_or(false);
            let jobs = self
                .with_qmp(|q| q.execute("query-block-jobs", None))
                .map(|j| !named(&j, "device").is_empty())
                .unwrap_or(false);
            if (!busy && !jobs) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let nodes = self.with_qmp(|q| q.execute("query-named-block-nodes", None)).unwrap_or_default();
        for node in named(&nodes, "node-name") {
            let _ = self.with_qmp(|q| q.execute("blockdev-del", Some(json!({ "node-name": node }))));
        }
    }

    /// The guest here as it was before the migration (running, or paused).
    fn resume_as_before(&mut self) {
        let before = self.migrating_from.take().unwrap_or(VmState::Running);
        self.resume_as(before);
    }

    fn resume_as(&mut self, before: VmState) {
        let status = self.with_qmp(|q| q.status()).unwrap_or_default();
        if before == VmState::Running && status != "running" {
            if let Err(e) = self.qmp_do("cont", None) {
                tracing::error!(vm = self.name, "resuming after a failed migration: {e}");
            }
        }
        let now = match self.with_qmp(|q| q.status()) {
            Ok(s) if s == "running" => VmState::Running,
            Ok(_) => VmState::Paused,
            Err(_) => before,
        };
        self.set_state(now);
    }

    /// Post-copy has begun: the guest runs here, fetching what it lacks from the source.
    pub(super) fn incoming_run(&mut self) -> Res<Value> {
        if self.state() != VmState::Incoming {
            return Err(refused(format!("'{}' is {}, not arriving", self.name, self.state().name())));
        }
        self.qmp_do("cont", None)?;
        self.postcopy_here = true;
        self.set_state(VmState::Running);
        Ok(json!({ "name": self.name, "state": "running" }))
    }

    /// The end of a migration on either side. Source: `commit` (the pool gave the VM to the
    /// destination) stops QEMU here and lets go of its disks; otherwise the guest goes on here
    /// (paused if `paused`, when this actor no longer knows how it was: a daemon restart).
    /// Destination: `commit` lets the guest go on here (`paused`: it stays paused); otherwise
    /// QEMU here goes and the VM is off, ready to be unregistered.
    pub(super) fn migrate_end(&mut self, commit: bool, paused: bool) -> Res<Value> {
        match (self.state(), commit) {
            (VmState::Migrating, true) => {
                self.migrating_from = None;
                self.quit_and_end();
                self.set_state(VmState::Off);
                Ok(json!({ "name": self.name, "state": "off" }))
            }
            (VmState::Migrating, false) => {
                let before = self.migrating_from.take().unwrap_or(if paused {
                    VmState::Paused
                } else {
                    VmState::Running
                });
                if self.proc.is_none() || self.qemu_exited() {
                    self.end_session();
                    self.set_state(VmState::Crashed);
                    return Err(Fail::from(format!("QEMU of '{}' ended during the migration", self.name)));
                }
                self.clean_out();
                self.resume_as(before);
                Ok(json!({ "name": self.name, "state": self.state().name() }))
            }
            (VmState::Incoming, true) => {
                let t = Instant::now();
                self.wait_migration()?;
                let arrived = t.elapsed();
                let after = if paused {
                    VmState::Paused
                } else {
                    self.qmp_do("cont", None)?;
                    VmState::Running
                };
                tracing::info!(
                    vm = self.name,
                    "arrived: QEMU's incoming migration ended {:.1} ms after the end was asked, the guest \
                     went on {:.1} ms after",
                    arrived.as_secs_f64() * 1e3,
                    t.elapsed().as_secs_f64() * 1e3
                );
                self.set_state(after);
                Ok(json!({ "name": self.name, "state": after.name() }))
            }
            (VmState::Running, true) if self.postcopy_here => {
                // Post-copy: it ran here already; the rest of its memory has arrived.
                self.wait_migration()?;
                self.postcopy_here = false;
                Ok(json!({ "name": self.name, "state": "running" }))
            }
            (VmState::Incoming, false) => {
                self.kill_and_end();
                self.set_state(VmState::Off);
                Ok(json!({ "name": self.name, "state": "off" }))
            }
            (s, _) => Err(refused(format!("'{}' is {}, not in a migration", self.name, s.name()))),
        }
    }
}
