//! The simulated data centre: hosts, VMs, the CPU scheduler on each host, live migrations and the
//! accounting of energy and SLA, modelled on CloudSim 3.0.3's `PowerDatacenter`,
//! `HostDynamicWorkload`, `PowerVm` and `VmSchedulerTimeSharedOverSubscription` (see
//! docs/policy-reproduction.md for each behaviour and why it matters).

use policy::allocator::{allocate, Request, Role, MIGRATION_SOURCE_SHARE};
use policy::receiver::{Receiver, Sample};
use policy::spec::{PlacementRule, PowerMode};
use policy::state::scheduler_grants;
use policy::{HostId, HostSpec, HostView, Snapshot, VmId, VmView};

use serde::Serialize;

use crate::trace::TraceVm;

/// Network bandwidth of a host, in CloudSim's units (kbit/s).
pub const HOST_BW: f64 = 1_000_000.0;
/// Bandwidth a VM reserves at creation (CloudSim units).
pub const VM_BW: f64 = 100_000.0;
/// MB/s one migration gets: half of 1 Gbit/s (CloudSim: `bw / (2 * 8000)`).
pub const MIGRATION_MB_PER_S: f64 = HOST_BW / (2.0 * 8000.0);
/// CloudSim's offset of every scheduling tick (VM creation is acknowledged after 0.1 s).
pub const TICK_OFFSET_S: f64 = 0.1;

#[derive(Debug, Clone, Copy)]
struct VmEntry {
    time: f64,
    allocated: f64,
    requested: f64,
    in_migration: bool,
}

/// How much memory a VM occupies on its host once created (what a target host must have free).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryModel {
    /// The reference experiment's (CloudSim 3.0.3): a VM asks for its whole memory while being
    /// created and afterwards for what its trace says, which for PlanetLab is nothing, so hosts may
    /// hold more VMs than their memory.
    #[default]
    Trace,
    /// A live host's: a VM occupies all of its memory all the time (vine gives a guest its memory
    /// and does not balloon), so no host ever holds more VM memory than it has.
    Allocated,
}

impl MemoryModel {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            MemoryModel::Trace => "trace",
            MemoryModel::Allocated => "allocated",
        }
    }
}

impl std::str::FromStr for MemoryModel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "trace" => Ok(MemoryModel::Trace),
            "allocated" => Ok(MemoryModel::Allocated),
            other => Err(format!("unknown memory model '{other}' (expected 'trace' or 'allocated')")),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct HostEntry {
    time: f64,
    allocated: f64,
    requested: f64,
    active: bool,
}

#[derive(Debug, Clone)]
struct Vm {
    mips: f64,
    ram_mb: u32,
    host: Option<usize>,
    in_migration: bool,
    instantiating: bool,
    /// The cloudlet scheduler's last processing time: demand is read there.
    processed_at: f64,
    /// Last time a history sample was taken.
    sampled_at: f64,
    last: Option<VmEntry>,
    requested_total: f64,
    migration_loss: f64,
}

#[derive(Debug, Clone)]
struct Host {
    spec: HostSpec,
    vms: Vec<usize>,
    migrating_in: Vec<usize>,
    ram_used: u64,
    bw_used: f64,
    available: f64,
    utilization_mips: f64,
    previous_utilization_mips: f64,
    last: Option<HostEntry>,
    last_final_active: bool,
    active_time: f64,
    violation_time: f64,
    shutdowns: u64,
}

/// Totals at one instant, for time series.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Totals {
    /// Seconds.
    pub time: f64,
    /// Energy so far, W·s.
    pub energy_ws: f64,
    /// Host-seconds active so far.
    pub active_s: f64,
    /// Host-seconds at 100 % (allocated < requested) so far.
    pub violation_s: f64,
    /// Migrations started so far.
    pub migrations: u64,
    /// Hosts on at this instant.
    pub hosts_on: usize,
}

/// The simulated data centre.
#[derive(Debug, Clone)]
pub struct DataCentre<'t> {
    traces: &'t [TraceVm],
    hosts: Vec<Host>,
    vms: Vec<Vm>,
    power: PowerMode,
    last_process: f64,
    energy_ws: f64,
    migrations: u64,
    /// Receiver holding each VM's utilisation history.
    pub receiver: Receiver,
    pending: Vec<(f64, u64, usize, usize)>,
    seq: u64,
    unplaced: usize,
    memory: MemoryModel,
}

impl<'t> DataCentre<'t> {
    /// A data centre of `hosts`, empty.
    pub fn new(hosts: Vec<HostSpec>, traces: &'t [TraceVm], power: PowerMode, memory: MemoryModel) -> Self {
        let hosts = hosts
            .into_iter()
            .map(|spec| Host {
                available: spec.total_mips(),
                spec,
                vms: Vec::new(),
                migrating_in: Vec::new(),
                ram_used: 0,
                bw_used: 0.0,
                utilization_mips: 0.0,
                previous_utilization_mips: 0.0,
                last: None,
                last_final_active: true,
                active_time: 0.0,
                violation_time: 0.0,
                shutdowns: 0,
            })
            .collect();
        let vms = traces
            .iter()
            .map(|t| Vm {
                mips: t.mips,
                ram_mb: t.ram_mb,
                host: None,
                in_migration: false,
                instantiating: true,
                processed_at: 0.0,
                sampled_at: 0.0,
                last: None,
                requested_total: 0.0,
                migration_loss: 0.0,
            })
            .collect();
        DataCentre {
            traces,
            hosts,
            vms,
            power,
            last_process: 0.0,
            energy_ws: 0.0,
            migrations: 0,
            receiver: Receiver::new(),
            pending: Vec::new(),
            seq: 0,
            unplaced: 0,
            memory,
        }
    }

    fn requested(&self, vm: usize) -> f64 {
        let v = &self.vms[vm];
        if v.instantiating {
            v.mips
        } else {
            self.traces[vm].utilization_at(v.processed_at) * v.mips
        }
    }

    /// Creates every VM at time 0 in order, each on the host `rule` picks with its full size
    /// requested (CloudSim's first allocation; a VM that fits nowhere is not created). With
    /// `threshold`, a host that already holds VMs must stay at or under it (VMs already created ask
    /// for their first sample, the new one for its full size).
    pub fn place_initial(&mut self, rule: PlacementRule, threshold: Option<f64>) {
        // MIPS granted on each host so far (the new VMs ask for their full size until the first tick).
        let mut granted = vec![0.0f64; self.hosts.len()];
        for vm in 0..self.vms.len() {
            let (mips, ram) = (self.vms[vm].mips, self.vms[vm].ram_mb as u64);
            let mut chosen = None;
            let mut min = f64::MAX;
            for (i, h) in self.hosts.iter().enumerate() {
                let fits = h.spec.pe_mips >= mips
                    && h.available >= mips
                    && h.ram_used + ram <= h.spec.ram_mb as u64
                    && h.bw_used + VM_BW <= HOST_BW;
                if !fits {
                    continue;
                }
                let total = h.spec.total_mips();
                if let (Some(limit), true) = (threshold, granted[i] != 0.0) {
                    let requested: f64 = h.vms.iter().map(|&v| self.requested(v)).sum::<f64>() + mips;
                    if requested / total > limit {
                        continue;
                    }
                }
                match rule {
                    PlacementRule::FirstFit => {
                        chosen = Some(i);
                        break;
                    }
                    PlacementRule::PowerAwareBestFit => {
                        let now = h.utilization_mips / total;
                        let (Some(after), Some(before)) =
                            (h.spec.power.watts_at((granted[i] + mips) / total), h.spec.power.watts_at(now))
                        else {
                            continue;
                        };
                        if after - before < min {
                            min = after - before;
                            chosen = Some(i);
                        }
                    }
                }
            }
            let Some(h) = chosen else {
                self.unplaced += 1;
                continue;
            };
            let host = &mut self.hosts[h];
            host.available -= mips.min(host.spec.pe_mips);
            granted[h] += mips.min(host.spec.pe_mips);
            host.ram_used += ram;
            host.bw_used += VM_BW;
            host.vms.push(vm);
            let v = &mut self.vms[vm];
            v.host = Some(h);
            v.instantiating = false;
        }
    }

    /// VMs that fitted nowhere at creation.
    pub fn unplaced(&self) -> usize {
        self.unplaced
    }

    /// CloudSim's `HostDynamicWorkload.updateVmsProcessing` for host `h` at `t`.
    fn update_host(&mut self, h: usize, t: f64) {
        let list = self.hosts[h].vms.clone();
        for &vm in &list {
            let v = &mut self.vms[vm];
            v.processed_at = t;
            if t > v.sampled_at && (t - TICK_OFFSET_S) % crate::trace::SAMPLE_PERIOD_S == 0.0 {
                let u = self.traces[vm].utilization_at(t);
                self.receiver.record(Sample { vm: VmId(vm as u32), utilization: u });
                v.sampled_at = t;
            }
        }
        let requests: Vec<Request> = list
            .iter()
            .map(|&vm| {
                let incoming = self.hosts[h].migrating_in.contains(&vm);
                let role = if incoming {
                    Role::MigratingIn
                } else if self.vms[vm].in_migration {
                    Role::MigratingOut
                } else {
                    Role::Resident
                };
                Request { vm: VmId(vm as u32), mips: self.requested(vm), role }
            })
            .collect();
        let spec = self.hosts[h].spec;
        let grants = allocate(spec.total_mips(), spec.pe_mips, &requests);
        let mut utilization = 0.0;
        let mut requested_total = 0.0;
        for (r, granted) in requests.iter().zip(&grants.granted) {
            let vm = r.vm.0 as usize;
            let mut allocated = *granted;
            if r.role != Role::MigratingIn {
                let v = &mut self.vms[vm];
                let entry = VmEntry { time: t, allocated, requested: r.mips, in_migration: v.in_migration };
                push_vm_entry(v, entry);
                if v.in_migration {
                    allocated /= MIGRATION_SOURCE_SHARE;
                }
            }
            utilization += allocated;
            requested_total += r.mips;
        }
        let host = &mut self.hosts[h];
        host.available = grants.available;
        host.previous_utilization_mips = host.utilization_mips;
        host.utilization_mips = utilization;
        push_host_entry(
            host,
            HostEntry {
                time: t,
                allocated: utilization,
                requested: requested_total,
                active: utilization > 0.0,
            },
        );
    }

    /// CloudSim's `updateCloudetProcessingWithoutSchedulingFutureEventsForce`: every host updated,
    /// energy since the last update added, VMs that ask for nothing removed.
    fn update_all(&mut self, t: f64) {
        for h in 0..self.hosts.len() {
            self.update_host(h, t);
        }
        let dt = t - self.last_process;
        if dt > 0.0 {
            for host in &self.hosts {
                self.energy_ws += match self.power {
                    PowerMode::AlwaysMax => host.spec.power.max_watts() * dt,
                    PowerMode::Dynamic => {
                        let total = host.spec.total_mips();
                        energy_between(
                            &host.spec,
                            host.previous_utilization_mips / total,
                            host.utilization_mips / total,
                            dt,
                        )
                    }
                };
            }
        }
        for h in 0..self.hosts.len() {
            let done: Vec<usize> = self.hosts[h]
                .vms
                .iter()
                .copied()
                .filter(|&vm| !self.vms[vm].in_migration && self.requested(vm) == 0.0)
                .collect();
            for vm in done {
                if let Some(at) = self.vms[vm].host.take() {
                    let host = &mut self.hosts[at];
                    host.vms.retain(|v| *v != vm);
                }
            }
        }
        self.last_process = t;
    }

    /// One scheduling tick at `t`: update, then (when `plan` is given) hand the snapshot to the
    /// planner and carry out the migrations it returns as commands through [`Self::start_migration`].
    pub fn tick(&mut self, t: f64) {
        self.update_all(t);
    }

    /// The planner's view now.
    pub fn snapshot(&self, t: f64, interval_s: f64) -> Snapshot {
        let hosts = self
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let (available_mips, allocated_mips) = scheduler_grants(
                    h.spec.total_mips(),
                    h.spec.pe_mips,
                    h.vms.iter().map(|&v| self.requested(v)),
                );
                HostView {
                    id: HostId(i as u32),
                    spec: h.spec,
                    measured_mips: h.utilization_mips,
                    available_mips,
                    allocated_mips,
                    vms: h.vms.iter().map(|&v| VmId(v as u32)).collect(),
                }
            })
            .collect();
        let mut vms = Vec::new();
        for (i, v) in self.vms.iter().enumerate() {
            if let Some(h) = v.host {
                vms.push(VmView {
                    id: VmId(i as u32),
                    mips: v.mips,
                    ram_mb: v.ram_mb,
                    requested_ram_mb: if v.instantiating || self.memory == MemoryModel::Allocated {
                        v.ram_mb
                    } else {
                        0
                    },
                    requested_mips: self.requested(i),
                    history: self.receiver.history(VmId(i as u32)).to_vec(),
                    host: HostId(h as u32),
                });
            }
        }
        let mut snap = Snapshot {
            time: t,
            interval_s,
            migration_mb_per_s: MIGRATION_MB_PER_S,
            hosts,
            vms,
            vm_index: vec![u32::MAX; self.vms.len()],
        };
        snap.reindex();
        snap
    }

    /// The fullest host's VM memory as a fraction of its own memory: the sizes of the VMs on it,
    /// counting those migrating in (whose memory is being copied there). Above 1 means the host
    /// holds more VM memory than it has, which only the `trace` memory model allows.
    pub fn memory_use(&self) -> f64 {
        self.hosts
            .iter()
            .map(|h| h.vms.iter().map(|&v| self.vms[v].ram_mb as f64).sum::<f64>() / h.spec.ram_mb as f64)
            .fold(0.0, f64::max)
    }

    /// Starts migrating `vm` to `to` at `t` (CloudSim's `addMigratingInVm`); it completes after
    /// memory / bandwidth seconds.
    pub fn start_migration(&mut self, vm: usize, to: usize, t: f64) {
        self.vms[vm].in_migration = true;
        if !self.hosts[to].migrating_in.contains(&vm) {
            self.hosts[to].migrating_in.push(vm);
            self.hosts[to].vms.push(vm);
            self.update_host(to, t);
            if let Some(from) = self.vms[vm].host {
                self.update_host(from, t);
            }
        }
        self.migrations += 1;
        let done = t + self.vms[vm].ram_mb as f64 / MIGRATION_MB_PER_S;
        self.pending.push((done, self.seq, vm, to));
        self.seq += 1;
    }

    /// Completes every migration due by `until`, in time order (CloudSim's `processVmMigrate`).
    pub fn finish_migrations(&mut self, until: f64) {
        self.pending.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let due = self.pending.iter().take_while(|p| p.0 <= until).count();
        let events: Vec<_> = self.pending.drain(..due).collect();
        for (i, &(t, _, vm, to)) in events.iter().enumerate() {
            if t > self.last_process {
                self.update_all(t);
            }
            if let Some(from) = self.vms[vm].host.take() {
                self.hosts[from].vms.retain(|v| *v != vm);
            }
            let target = &mut self.hosts[to];
            target.migrating_in.retain(|v| *v != vm);
            target.vms.retain(|v| *v != vm);
            target.vms.push(vm);
            self.vms[vm].host = Some(to);
            self.vms[vm].in_migration = false;
            if events.get(i + 1).is_none_or(|next| next.0 > t) {
                self.update_all(t);
            }
        }
    }

    /// Totals now.
    pub fn totals(&self) -> Totals {
        Totals {
            time: self.last_process,
            energy_ws: self.energy_ws,
            active_s: self.hosts.iter().map(|h| h.active_time).sum(),
            violation_s: self.hosts.iter().map(|h| h.violation_time).sum(),
            migrations: self.migrations,
            hosts_on: self.hosts.iter().filter(|h| h.utilization_mips > 0.0).count(),
        }
    }

    /// Final metrics (closes the histories).
    pub fn finish(mut self) -> crate::metrics::Metrics {
        for h in &mut self.hosts {
            if let Some(last) = h.last {
                if h.last_final_active && !last.active {
                    h.shutdowns += 1;
                }
            }
        }
        let requested: f64 = self.vms.iter().map(|v| v.requested_total).sum();
        let loss: f64 = self.vms.iter().map(|v| v.migration_loss).sum();
        let active: f64 = self.hosts.iter().map(|h| h.active_time).sum();
        let violation: f64 = self.hosts.iter().map(|h| h.violation_time).sum();
        crate::metrics::Metrics::new(
            self.energy_ws,
            if active > 0.0 { violation / active } else { 0.0 },
            if requested > 0.0 { loss / requested } else { 0.0 },
            self.migrations,
            self.hosts.iter().map(|h| h.shutdowns).sum(),
        )
    }

    /// Where each VM is (for invariant checks).
    pub fn placement(&self) -> Vec<Option<usize>> {
        self.vms.iter().map(|v| v.host).collect()
    }

    /// Per host, its VMs in order.
    pub fn host_vms(&self) -> Vec<Vec<usize>> {
        self.hosts.iter().map(|h| h.vms.clone()).collect()
    }
}

/// Energy of a host over `dt` seconds while its utilisation went from `from` to `to` (CloudSim's
/// `getEnergyLinearInterpolation`: a host that was idle at the start counts as off).
pub fn energy_between(spec: &HostSpec, from: f64, to: f64, dt: f64) -> f64 {
    let clamp = |u: f64| if u > 1.0 && u < 1.01 { 1.0 } else { u };
    let (from, to) = (clamp(from), clamp(to));
    if from == 0.0 {
        return 0.0;
    }
    let p1 = spec.power.watts_at(from).unwrap_or(spec.power.max_watts());
    let p2 = spec.power.watts_at(to).unwrap_or(spec.power.max_watts());
    (p1 + (p2 - p1) / 2.0) * dt
}

fn push_vm_entry(v: &mut Vm, e: VmEntry) {
    if let Some(last) = v.last {
        if last.time == e.time {
            v.last = Some(e);
            return;
        }
        let dt = e.time - last.time;
        v.requested_total += last.requested * dt;
        if last.allocated < last.requested && last.in_migration {
            v.migration_loss += (last.requested - last.allocated) * dt;
        }
    }
    v.last = Some(e);
}

fn push_host_entry(h: &mut Host, e: HostEntry) {
    if let Some(last) = h.last {
        if last.time == e.time {
            h.last = Some(e);
            return;
        }
        let dt = e.time - last.time;
        if last.active {
            h.active_time += dt;
            if last.allocated < last.requested {
                h.violation_time += dt;
            }
        }
        if h.last_final_active && !last.active {
            h.shutdowns += 1;
        }
        h.last_final_active = last.active;
    }
    h.last = Some(e);
}
