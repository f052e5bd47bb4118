//! The data every stage shares: typed ids, host hardware, the snapshot a plan is made from, and the
//! plan itself. Owns no behaviour beyond small accessors.

use serde::{Deserialize, Serialize};

/// Index of a host in the pool (stable for a whole run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HostId(pub u32);

/// Index of a virtual node (VM) (stable for a whole run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct VmId(pub u32);

impl std::fmt::Display for HostId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host {}", self.0)
    }
}

impl std::fmt::Display for VmId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "VM {}", self.0)
    }
}

/// Number of points of a SPECpower curve: 0 %, 10 %, …, 100 % CPU.
pub const POWER_POINTS: usize = 11;

/// A host's power draw measured at 0, 10, …, 100 % CPU (SPECpower style), linear in between.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PowerCurve {
    /// Watts at 0 %, 10 %, …, 100 % utilisation.
    pub watts: [f64; POWER_POINTS],
}

impl PowerCurve {
    /// HP ProLiant ML110 G4 (Xeon 3040), as in CloudSim's `PowerModelSpecPowerHpProLiantMl110G4Xeon3040`.
    pub const HP_ML110_G4: PowerCurve =
        PowerCurve { watts: [86.0, 89.4, 92.6, 96.0, 99.5, 102.0, 106.0, 108.0, 112.0, 114.0, 117.0] };
    /// HP ProLiant ML110 G5 (Xeon 3075), as in CloudSim's `PowerModelSpecPowerHpProLiantMl110G5Xeon3075`.
    pub const HP_ML110_G5: PowerCurve =
        PowerCurve { watts: [93.7, 97.0, 101.0, 105.0, 110.0, 116.0, 121.0, 125.0, 129.0, 133.0, 135.0] };

    /// Watts at `utilization` (a fraction in 0..=1), interpolated the way CloudSim's
    /// `PowerModelSpecPower.getPower` does; `None` outside 0..=1.
    pub fn watts_at(&self, utilization: f64) -> Option<f64> {
        if !(0.0..=1.0).contains(&utilization) {
            return None;
        }
        let lo = (utilization * 10.0).floor();
        let hi = (utilization * 10.0).ceil();
        let p1 = self.watts[lo as usize];
        let p2 = self.watts[hi as usize];
        let delta = (p2 - p1) / 10.0;
        Some(p1 + delta * (utilization - lo / 10.0) * 100.0)
    }

    /// Watts at full load.
    pub fn max_watts(&self) -> f64 {
        self.watts[POWER_POINTS - 1]
    }
}

/// A host's fixed hardware.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HostSpec {
    /// Number of cores (processing elements).
    pub pes: u32,
    /// MIPS of one core.
    pub pe_mips: f64,
    /// Memory in MB.
    pub ram_mb: u32,
    /// Power curve.
    pub power: PowerCurve,
}

impl HostSpec {
    /// Total MIPS (CloudSim sums whole-number MIPS per core).
    pub fn total_mips(&self) -> f64 {
        (self.pe_mips.floor() * self.pes as f64).floor()
    }
}

/// One host as the planner sees it at the start of an interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostView {
    /// Which host.
    pub id: HostId,
    /// Its hardware.
    pub spec: HostSpec,
    /// MIPS the host delivered in the last measurement (0 means switched off).
    pub measured_mips: f64,
    /// MIPS its CPU scheduler has not handed out (0 when oversubscribed).
    pub available_mips: f64,
    /// MIPS its CPU scheduler has granted to the VMs on it now.
    pub allocated_mips: f64,
    /// The VMs on it, in the order they arrived.
    pub vms: Vec<VmId>,
}

impl HostView {
    /// Measured utilisation as a fraction of capacity (clamped to 1 when just above, as CloudSim does).
    pub fn measured_utilization(&self) -> f64 {
        let u = self.measured_mips / self.spec.total_mips();
        if u > 1.0 && u < 1.01 {
            1.0
        } else {
            u
        }
    }
}

/// Number of past samples kept per VM (CloudSim's `PowerVm.HISTORY_LENGTH`).
pub const HISTORY_LENGTH: usize = 30;

/// One VM as the planner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmView {
    /// Which VM.
    pub id: VmId,
    /// MIPS of its one virtual CPU.
    pub mips: f64,
    /// Memory in MB (its size: what a migration copies).
    pub ram_mb: u32,
    /// Memory it occupies on its host now, MB: what a target must have free to receive it. A live
    /// host reports the VM's whole memory (vine does not balloon); in the reference experiment a
    /// VM asks for its size only while being created and afterwards for what its trace says, which
    /// for PlanetLab is nothing.
    pub requested_ram_mb: u32,
    /// CPU it asks for now, in MIPS.
    pub requested_mips: f64,
    /// Past CPU utilisation as fractions of `mips`, newest first, at most [`HISTORY_LENGTH`].
    pub history: Vec<f64>,
    /// Where it runs.
    pub host: HostId,
}

/// Everything a plan is made from: the pool at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Seconds since the start of the run.
    pub time: f64,
    /// Seconds between two planning steps.
    pub interval_s: f64,
    /// Network bandwidth of a host available to one migration, MB/s.
    pub migration_mb_per_s: f64,
    /// Hosts, indexed by `HostId.0`.
    pub hosts: Vec<HostView>,
    /// VMs currently placed; `vm_index[id]` gives the position of a VM in this list.
    pub vms: Vec<VmView>,
    /// `vm_index[VmId.0]` = position in `vms`, or `u32::MAX` when the VM is gone.
    pub vm_index: Vec<u32>,
}

impl Snapshot {
    /// Builds the id → position index; call after filling `vms`.
    pub fn reindex(&mut self) {
        let max = self.vms.iter().map(|v| v.id.0 as usize + 1).max().unwrap_or(0);
        self.vm_index = vec![u32::MAX; max.max(self.vm_index.len())];
        for (i, vm) in self.vms.iter().enumerate() {
            self.vm_index[vm.id.0 as usize] = i as u32;
        }
    }

    /// The VM with this id. Panics if the snapshot does not hold it (a planner bug).
    pub fn vm(&self, id: VmId) -> &VmView {
        let i = self.vm_index[id.0 as usize];
        assert!(i != u32::MAX, "{id} is not in the snapshot");
        &self.vms[i as usize]
    }

    /// Seconds a VM's live migration takes.
    pub fn migration_time_s(&self, vm: &VmView) -> f64 {
        vm.ram_mb as f64 / self.migration_mb_per_s
    }
}

/// Why a migration is in a plan, in terms an operator can check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// The source host was judged overloaded.
    Overload {
        /// What was measured or predicted, as a fraction of capacity.
        value: f64,
        /// The threshold it crossed.
        threshold: f64,
        /// How the value was obtained ("requested CPU", "local regression forecast", …).
        basis: String,
        /// Why this VM was the one to move.
        selection: String,
    },
    /// The source host is to be emptied and switched off.
    Underload {
        /// Its utilisation, as a fraction.
        utilization: f64,
        /// Why it was chosen.
        why: String,
    },
}

/// Why a target host was chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetChoice {
    /// Expected utilisation of the target after the move, as a fraction.
    pub utilization_after: f64,
    /// Extra watts the move costs on the target.
    pub extra_watts: f64,
    /// The rule that picked it.
    pub rule: String,
}

/// One live migration in a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Migration {
    /// The VM that moves.
    pub vm: VmId,
    /// Where it is.
    pub from: HostId,
    /// Where it goes.
    pub to: HostId,
    /// Why it moves.
    pub reason: Reason,
    /// Why there.
    pub target: TargetChoice,
}

/// What one planning step decided, in the order to execute it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Migrations, in order.
    pub migrations: Vec<Migration>,
    /// Hosts the plan empties (to be switched off once their VMs left).
    pub hosts_to_switch_off: Vec<HostId>,
}
