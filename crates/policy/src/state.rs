//! The planning copy of the pool: which VMs a host would hold if the plan so far were carried out,
//! and what its CPU scheduler would have left. Stages read and change this, never the snapshot.

use crate::constraints::Constraints;
use crate::model::{HostId, HostSpec, Snapshot, VmId, VmView, HISTORY_LENGTH};

/// One host during planning.
#[derive(Debug, Clone)]
pub struct PlanHost {
    /// VMs in arrival order.
    pub vms: Vec<VmId>,
    /// MIPS the scheduler has not handed out.
    pub available_mips: f64,
    /// MIPS the scheduler has granted.
    pub allocated_mips: f64,
    /// Memory it must hold while the plan is carried out, MB ([`VmView::requested_ram_mb`]): that of
    /// the VMs it had when planning began, including those the plan moves away (their memory is
    /// freed only when their migration completes, so it is not lent to arrivals in the same plan),
    /// plus that of the VMs the plan brings in.
    pub ram_mb: u64,
    cache: Option<Cache>,
}

#[derive(Debug, Clone, Copy)]
struct Cache {
    requested_mips: f64,
    history: [f64; HISTORY_LENGTH],
    max_ram_mb: u32,
}

/// The pool while a plan is being made.
#[derive(Debug, Clone)]
pub struct PlanState<'s> {
    /// What the plan starts from.
    pub snap: &'s Snapshot,
    /// Hosts, indexed like `snap.hosts`.
    pub hosts: Vec<PlanHost>,
    /// The operator's rules on a live pool (none in the simulator).
    pub rules: Option<&'s Constraints>,
}

/// A host's load with one VM possibly added on trial.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Sum of the VMs' requested MIPS.
    pub requested_mips: f64,
    /// Utilisation history (fractions, newest first), untrimmed.
    pub history: [f64; HISTORY_LENGTH],
    /// Largest VM memory, MB (0 when empty).
    pub max_ram_mb: u32,
    /// Number of VMs.
    pub vm_count: usize,
}

impl Load {
    /// The history with the oldest zero entries removed (CloudSim's `trimZeroTail`).
    pub fn trimmed_history(&self) -> &[f64] {
        let len = self.history.iter().rposition(|&v| v != 0.0).map_or(0, |i| i + 1);
        &self.history[..len]
    }
}

impl<'s> PlanState<'s> {
    /// Starts from the snapshot.
    pub fn new(snap: &'s Snapshot) -> Self {
        let hosts = snap
            .hosts
            .iter()
            .map(|h| PlanHost {
                vms: h.vms.clone(),
                available_mips: h.available_mips,
                allocated_mips: h.allocated_mips,
                ram_mb: h.vms.iter().map(|v| snap.vm(*v).requested_ram_mb as u64).sum(),
                cache: None,
            })
            .collect();
        PlanState { snap, hosts, rules: None }
    }

    /// Starts from the snapshot, keeping `rules`: VMs that may not move are never picked, and
    /// no VM is placed where a rule forbids.
    pub fn with_rules(snap: &'s Snapshot, rules: &'s Constraints) -> Self {
        PlanState { rules: Some(rules), ..PlanState::new(snap) }
    }

    /// Whether the rules let `vm` move on its own: not fixed, not pinned, and not of an
    /// affinity group with other members (a group moves only whole, which this planner does not
    /// plan: it stays together where it is).
    pub fn movable(&self, vm: VmId) -> bool {
        self.rules.is_none_or(|r| {
            !r.fixed.contains_key(&vm)
                && !r.pins.contains_key(&vm)
                && !r.together.values().any(|g| g.len() > 1 && g.contains(&vm))
        })
    }

    /// Whether the rules let `vm` go to `h`: the host takes VMs, the VM is not pinned elsewhere,
    /// and no other VM of its anti-affinity groups is there (as planned so far).
    pub fn allowed(&self, h: usize, vm: &VmView) -> bool {
        let Some(r) = self.rules else { return true };
        let host = HostId(h as u32);
        if r.closed.contains_key(&host) || r.pins.get(&vm.id).is_some_and(|p| *p != host) {
            return false;
        }
        !r.apart.values().any(|members| {
            members.contains(&vm.id) && self.hosts[h].vms.iter().any(|o| *o != vm.id && members.contains(o))
        })
    }

    /// Hardware of host `h`.
    pub fn spec(&self, h: usize) -> &HostSpec {
        &self.snap.hosts[h].spec
    }

    /// A VM's view.
    pub fn vm(&self, id: VmId) -> &'s VmView {
        self.snap.vm(id)
    }

    /// Measured MIPS of host `h` at the start of planning.
    pub fn measured_mips(&self, h: usize) -> f64 {
        self.snap.hosts[h].measured_mips
    }

    /// Whether `vm` fits on `h` now: one core can hold its demand, the scheduler has the MIPS and
    /// the host has the memory the VM occupies.
    pub fn fits(&self, h: usize, vm: &VmView) -> bool {
        let spec = self.spec(h);
        let host = &self.hosts[h];
        spec.pe_mips >= vm.requested_mips
            && host.available_mips >= vm.requested_mips
            && self.has_memory_for(h, vm)
            && self.allowed(h, vm)
    }

    /// Whether `h` has the memory `vm` occupies free (a VM coming back to where it was needs none).
    pub fn has_memory_for(&self, h: usize, vm: &VmView) -> bool {
        vm.host.0 as usize == h
            || self.hosts[h].ram_mb + vm.requested_ram_mb as u64 <= self.spec(h).ram_mb as u64
    }

    fn cache(&mut self, h: usize) -> Cache {
        if let Some(c) = self.hosts[h].cache {
            return c;
        }
        let spec = *self.spec(h);
        let mut c = Cache { requested_mips: 0.0, history: [0.0; HISTORY_LENGTH], max_ram_mb: 0 };
        for id in &self.hosts[h].vms {
            let vm = self.snap.vm(*id);
            add_vm(&mut c, &spec, vm);
        }
        self.hosts[h].cache = Some(c);
        c
    }

    /// Load of host `h`, with `extra` added as if it had just arrived.
    pub fn load(&mut self, h: usize, extra: Option<&VmView>) -> Load {
        let mut c = self.cache(h);
        let spec = *self.spec(h);
        if let Some(vm) = extra {
            add_vm(&mut c, &spec, vm);
        }
        Load {
            requested_mips: c.requested_mips,
            history: c.history,
            max_ram_mb: c.max_ram_mb,
            vm_count: self.hosts[h].vms.len() + usize::from(extra.is_some()),
        }
    }

    /// Puts `vm` on `h` (CloudSim's `vmCreate` during planning).
    pub fn create(&mut self, h: usize, id: VmId) {
        let vm = self.snap.vm(id);
        let host = &mut self.hosts[h];
        host.vms.push(id);
        if vm.host.0 as usize != h {
            host.ram_mb += vm.requested_ram_mb as u64;
        }
        self.regrant(h);
    }

    /// Recomputes what the scheduler grants on `h` after its VM list changed.
    fn regrant(&mut self, h: usize) {
        let spec = *self.spec(h);
        let snap = self.snap;
        let host = &mut self.hosts[h];
        let (available, allocated) = scheduler_grants(
            spec.total_mips(),
            spec.pe_mips,
            host.vms.iter().map(|v| snap.vm(*v).requested_mips),
        );
        host.available_mips = available;
        host.allocated_mips = allocated;
        host.cache = None;
    }

    /// Takes `vm` off `h` (CloudSim's `vmDestroy`): the scheduler re-grants the others in order.
    pub fn destroy(&mut self, h: usize, id: VmId) {
        let snap = self.snap;
        let host = &mut self.hosts[h];
        if let Some(pos) = host.vms.iter().position(|v| *v == id) {
            host.vms.remove(pos);
            let vm = snap.vm(id);
            if vm.host.0 as usize != h {
                host.ram_mb -= vm.requested_ram_mb as u64;
            }
        }
        self.regrant(h);
    }
}

fn add_vm(c: &mut Cache, spec: &HostSpec, vm: &VmView) {
    c.requested_mips += vm.requested_mips;
    let host_mips = spec.total_mips();
    for (i, u) in vm.history.iter().take(HISTORY_LENGTH).enumerate() {
        c.history[i] += u * vm.mips / host_mips;
    }
    c.max_ram_mb = c.max_ram_mb.max(vm.ram_mb);
}

/// (MIPS left, MIPS granted) of a time-shared, oversubscribable scheduler after granting
/// `requests` in order, each capped at one core; when one does not fit, every grant is scaled down
/// (see [`crate::allocator`]) and nothing is left.
pub fn scheduler_grants(total: f64, pe_mips: f64, requests: impl Iterator<Item = f64>) -> (f64, f64) {
    let mut available = total;
    let mut capped = Vec::new();
    let mut over = false;
    for r in requests {
        let need = r.min(pe_mips);
        capped.push(need);
        if !over && available >= need {
            available -= need;
        } else {
            over = true;
        }
    }
    if !over {
        return (available, capped.iter().sum());
    }
    let scaling = total / capped.iter().sum::<f64>();
    (0.0, capped.iter().map(|c| (c * scaling).floor()).sum())
}
