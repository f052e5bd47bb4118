//! The host's CPU and memory as VMs hold them. A VM holds its reservation and memory from the
//! moment it starts until its process is gone; a start (or a change to a running VM) that would
//! overcommit either is refused with the numbers ([`cgroups::admit`]). Whenever the set of
//! running VMs or their controls change, the effective weights of all of them are recomputed
//! ([`cgroups::shares::effective_weights`]) and the cgroup files of the VMs whose effective
//! controls changed are rewritten (a start among fifty running VMs writes one VM's files, unless
//! its reservation moves the others' weights).

use std::collections::BTreeMap;
use std::sync::Mutex;

use cgroups::fs::{Cgroup, CgroupError};
use cgroups::{Admission, Controls, Effective};
use host::CgroupLayout;

/// Host memory kept back from VMs: 1 GiB or 10 % of the host, whichever is more.
pub fn host_reserve(total: u64) -> u64 {
    (total / 10).max(1 << 30)
}

/// The running VMs' controls and their cgroups.
#[derive(Debug)]
pub struct Resources {
    cpus: u32,
    memory_for_vms: u64,
    layout: CgroupLayout,
    parent: String,
    running: Mutex<BTreeMap<String, Controls>>,
    /// What was last written to each running VM's cgroup files.
    applied: Mutex<BTreeMap<String, Effective>>,
    /// Caps the pool's resizer gave running VMs (% of one host CPU), under their own.
    allocated: Mutex<BTreeMap<String, u32>>,
}

impl Resources {
    /// A host of `cpus` CPUs and `memory` bytes, VM cgroups under `parent` in `layout`.
    pub fn new(cpus: u32, memory: u64, layout: CgroupLayout, parent: &str) -> Resources {
        Resources {
            cpus,
            memory_for_vms: memory.saturating_sub(host_reserve(memory)),
            layout,
            parent: parent.to_string(),
            running: Mutex::new(BTreeMap::new()),
            applied: Mutex::new(BTreeMap::new()),
            allocated: Mutex::new(BTreeMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Controls>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Memory VMs may use in total.
    pub fn memory_for_vms(&self) -> u64 {
        self.memory_for_vms
    }

    /// The cgroup (relative to each hierarchy's root) VMs' cgroups are made under.
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// Whether the cgroups are v2 (one unified hierarchy).
    pub fn is_v2(&self) -> bool {
        matches!(self.layout, CgroupLayout::V2 { .. })
    }

    /// The cgroup of VM `name`.
    pub fn cgroup(&self, name: &str) -> Result<Cgroup, CgroupError> {
        Cgroup::new(&self.layout, &self.parent, name)
    }

    /// Admits `name` with `c` (replacing what it held, if it runs), or says why not.
    pub fn admit(&self, name: &str, c: Controls) -> Result<(), Admission> {
        let mut running = self.lock();
        let others: Vec<Controls> =
            running.iter().filter(|(n, _)| n.as_str() != name).map(|(_, c)| *c).collect();
        cgroups::controls::admit(name, &c, &others, self.cpus, self.memory_for_vms)?;
        running.insert(name.to_string(), c);
        Ok(())
    }

    /// Holds `name`'s controls without checking (a VM found running after a restart).
    pub fn hold(&self, name: &str, c: Controls) {
        self.lock().insert(name.to_string(), c);
    }

    /// `name` no longer runs (its cgroup is removed by the caller; a new one is written in full).
    pub fn release(&self, name: &str) {
        self.lock().remove(name);
        self.applied.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        self.allocated_caps().remove(name);
    }

    fn allocated_caps(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u32>> {
        self.allocated.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives running VM `name` the resizer's cap `pct` (% of one host CPU; `None` takes it
    /// away), never under its reservation; its own cap still holds. Written by `apply_all`.
    pub fn allocate(&self, name: &str, pct: Option<u32>) -> Result<(), String> {
        let reserve =
            self.lock().get(name).map(|c| c.reserve_pct).ok_or_else(|| format!("'{name}' is not running"))?;
        let mut caps = self.allocated_caps();
        match pct {
            Some(p) => caps.insert(name.to_string(), p.max(reserve).max(1)),
            None => caps.remove(name),
        };
        Ok(())
    }

    /// The resizer's cap of `name`, if it has one.
    pub fn allocated(&self, name: &str) -> Option<u32> {
        self.allocated_caps().get(name).copied()
    }

    /// `name`'s controls while it runs.
    pub fn controls(&self, name: &str) -> Option<Controls> {
        self.lock().get(name).copied()
    }

    /// Sum of reservations and memory held, for `vine host info`.
    pub fn held(&self) -> (u32, u64, usize) {
        let r = self.lock();
        (r.values().map(|c| c.reserve_pct).sum(), r.values().map(|c| c.memory).sum(), r.len())
    }

    /// Effective controls of every running VM.
    pub fn effective(&self) -> Vec<(String, Effective)> {
        let running = self.lock();
        let list: Vec<(u32, u32)> = running.values().map(|c| (c.weight, c.reserve_pct)).collect();
        let weights = cgroups::shares::effective_weights(self.cpus, &list);
        let allocated = self.allocated_caps();
        running
            .iter()
            .zip(weights)
            .map(|((n, c), weight)| {
                let max_pct = match (c.max_pct, allocated.get(n)) {
                    (Some(m), Some(a)) => Some(m.min(*a)),
                    (m, a) => m.or(a.copied()),
                };
                (n.clone(), Effective { weight, max_pct, memory: c.memory, overhead: c.overhead })
            })
            .collect()
    }

    /// Creates `name`'s cgroup and writes every running VM's files.
    pub fn apply(&self, name: &str) -> Result<(), CgroupError> {
        self.cgroup(name)?.create()?;
        self.apply_all()
    }

    /// Writes the cgroup files of every running VM whose effective controls differ from what
    /// was last written (all of them after a daemon start).
    pub fn apply_all(&self) -> Result<(), CgroupError> {
        let mut applied = self.applied.lock().unwrap_or_else(|p| p.into_inner());
        for (n, e) in self.effective() {
            if applied.get(&n) == Some(&e) {
                continue;
            }
            let cg = self.cgroup(&n)?;
            cg.create()?;
            cg.apply(&e)?;
            applied.insert(n, e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(reserve: u32, memory: u64) -> Controls {
        Controls { weight: 100, reserve_pct: reserve, max_pct: None, memory, vcpus: 1, overhead: 0 }
    }

    fn host() -> Resources {
        let layout = CgroupLayout::V2 { mount: "/nonexistent".into(), controllers: vec![] };
        Resources::new(2, 11 << 30, layout, "vine")
    }

    #[test]
    fn admission_counts_what_running_vms_hold_and_states_the_numbers() {
        let r = host();
        assert_eq!(r.memory_for_vms(), (11 << 30) - (11 << 30) / 10);
        r.admit("a", c(150, 4 << 30)).unwrap();
        let e = r.admit("b", c(60, 1 << 30)).unwrap_err().to_string();
        assert_eq!(e, "cannot reserve 60% CPU for 'b': 150% of the host's 200% is already reserved by running VMs, 50% is free");
        r.admit("b", c(50, 1 << 30)).unwrap();
        let e = r.admit("c", c(0, 5 << 30)).unwrap_err().to_string();
        assert!(e.contains("running VMs hold 5368709120 of the"), "{e}");
        // A running VM changing its own controls is measured against the others only.
        r.admit("a", c(150, 4 << 30)).unwrap();
        r.release("a");
        r.admit("c", c(0, 5 << 30)).unwrap();
        assert_eq!(r.held(), (50, 6 << 30, 2));
    }

    #[test]
    fn the_resizer_s_cap_stays_under_the_vm_s_own_and_over_its_reservation() {
        let dir = tempfile::tempdir().unwrap();
        let layout = CgroupLayout::V2 { mount: dir.path().display().to_string(), controllers: vec![] };
        let r = Resources::new(4, 64 << 30, layout, "vine");
        assert!(r.allocate("a", Some(20)).is_err(), "not running");
        r.admit("a", Controls { max_pct: Some(50), ..c(30, 1 << 30) }).unwrap();
        let max = |r: &Resources| r.effective()[0].1.max_pct;
        r.allocate("a", Some(20)).unwrap();
        assert_eq!(r.allocated("a"), Some(30), "never under the reservation");
        assert_eq!(max(&r), Some(30));
        r.allocate("a", Some(80)).unwrap();
        assert_eq!(max(&r), Some(50), "its own cap holds");
        r.allocate("a", None).unwrap();
        assert_eq!(max(&r), Some(50));
        r.allocate("a", Some(40)).unwrap();
        r.release("a");
        assert_eq!(r.allocated("a"), None, "a stopped VM forgets it");
    }

    #[test]
    fn only_changed_cgroups_are_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().to_path_buf();
        let controllers = vec!["cpu".into(), "memory".into()];
        let layout = CgroupLayout::V2 { mount: mount.display().to_string(), controllers };
        let r = Resources::new(4, 64 << 30, layout, "vine");
        let weight =
            |vm: &str| std::fs::read_to_string(mount.join("vine").join(vm).join("cpu.weight")).unwrap();
        r.admit("a", c(0, 1 << 30)).unwrap();
        r.apply("a").unwrap();
        let first = weight("a");
        // A file vine wrote is changed behind its back; a start of another VM that leaves a's
        // effective controls alone does not write a's files again.
        std::fs::write(mount.join("vine/a/cpu.weight"), "untouched").unwrap();
        r.admit("b", c(0, 1 << 30)).unwrap();
        r.apply("b").unwrap();
        assert_eq!(weight("a"), "untouched");
        assert_eq!(weight("b"), first);
        // A change to a's controls (a `vine vm set` on the running VM) rewrites them.
        r.admit("a", Controls { weight: 300, ..c(0, 1 << 30) }).unwrap();
        r.apply_all().unwrap();
        assert_ne!(weight("a"), "untouched");
        assert_ne!(weight("a"), first);
        // A released VM's files are written in full when it runs again.
        r.release("b");
        std::fs::write(mount.join("vine/b/cpu.weight"), "stale").unwrap();
        r.admit("b", c(0, 1 << 30)).unwrap();
        r.apply("b").unwrap();
        assert_ne!(weight("b"), "stale");
    }

    #[test]
    fn effective_weights_honour_reservations() {
        let r = host();
        r.admit(
            "busy",
            Controls { weight: 100, reserve_pct: 0, max_pct: Some(25), memory: 1, vcpus: 1, overhead: 0 },
        )
        .unwrap();
        r.admit(
            "gold",
            Controls { weight: 1, reserve_pct: 100, max_pct: None, memory: 1, vcpus: 1, overhead: 0 },
        )
        .unwrap();
        let e = r.effective();
        assert_eq!(e[0].0, "busy");
        assert_eq!(e[0].1.max_pct, Some(25));
        // gold's reservation is half the host: its weight must match everybody else's together.
        assert!(e[1].1.weight >= e[0].1.weight, "{e:?}");
    }
}
