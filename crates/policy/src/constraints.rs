//! The operator's rules, which every plan on a live pool keeps whatever the policy planned: VMs
//! that stay where they are (automation off for them), pins (a VM runs on one host only), hosts
//! that take no VMs (offline, in maintenance), anti-affinity groups (never two members on one
//! host), affinity groups (members stay on one host), memory that is never overcommitted, and the
//! migration threshold, DRS's five levels of how much saving justifies emptying a host.
//!
//! [`Constraints::apply`] takes a plan and keeps only what breaks no rule: a migration that
//! would break one is dropped with the rule it breaks, a host is emptied either wholly or not
//! at all, and a host is switched off only when no VM is left on it. What is kept is checked
//! against the placement it produces, again and again until nothing more is dropped, so the
//! order the plan gives (a VM leaving a host before another arrives) is respected. Pure and
//! deterministic, like the rest of the crate: replaying recorded snapshots with their
//! constraints gives the very commands a live pool was sent.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{HostId, Migration, Plan, Reason, Snapshot, VmId};

/// The most conservative migration threshold: only moves that relieve an overloaded host.
pub const THRESHOLD_MIN: u8 = 1;
/// The most aggressive: every move the policy plans.
pub const THRESHOLD_MAX: u8 = 5;
/// The default, DRS's too.
pub const THRESHOLD_DEFAULT: u8 = 3;

/// The highest utilisation at which a host may be emptied to save power, per threshold level
/// (index = level − 1; level 1 empties none).
const EMPTY_BELOW: [f64; 5] = [0.0, 0.10, 0.20, 0.30, 1.0];

/// The rules of a live pool, in the snapshot's ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constraints {
    /// VMs that stay where they are, each with why (in operators' words).
    #[serde(default)]
    pub fixed: BTreeMap<VmId, String>,
    /// VMs pinned to a host: they run there and nowhere else.
    #[serde(default)]
    pub pins: BTreeMap<VmId, HostId>,
    /// Hosts that take no VMs, each with why.
    #[serde(default)]
    pub closed: BTreeMap<HostId, String>,
    /// Anti-affinity groups by name: no two members on one host.
    #[serde(default)]
    pub apart: BTreeMap<String, BTreeSet<VmId>>,
    /// Affinity groups by name: members stay on one host (they move only all together).
    #[serde(default)]
    pub together: BTreeMap<String, BTreeSet<VmId>>,
    /// Migration threshold, [`THRESHOLD_MIN`] (only relieve overloads) to [`THRESHOLD_MAX`]
    /// (every move the policy plans).
    pub threshold: u8,
}

impl Default for Constraints {
    fn default() -> Self {
        Constraints {
            fixed: BTreeMap::new(),
            pins: BTreeMap::new(),
            closed: BTreeMap::new(),
            apart: BTreeMap::new(),
            together: BTreeMap::new(),
            threshold: THRESHOLD_DEFAULT,
        }
    }
}

/// A migration the rules took out of a plan, and the rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    /// The migration the policy planned.
    pub migration: Migration,
    /// Why it is not done, in a sentence.
    pub why: String,
}

impl Constraints {
    /// `plan` without anything that breaks a rule, and what was taken out.
    pub fn apply(&self, snap: &Snapshot, plan: &Plan) -> (Plan, Vec<Dropped>) {
        let mut dropped: BTreeMap<usize, String> = BTreeMap::new();
        // Each pass replays the kept migrations in order; a drop changes the placement later
        // migrations see, so passes repeat until one drops nothing (at most one per migration).
        loop {
            let before = dropped.len();
            self.pass(snap, plan, &mut dropped);
            self.whole_hosts(plan, &mut dropped);
            self.groups_together(snap, plan, &mut dropped);
            if dropped.len() == before {
                break;
            }
        }
        let kept: Vec<Migration> = plan
            .migrations
            .iter()
            .enumerate()
            .filter(|(i, _)| !dropped.contains_key(i))
            .map(|(_, m)| m.clone())
            .collect();
        let mut place = placement(snap);
        for m in &kept {
            place.insert(m.vm, m.to);
        }
        let hosts_to_switch_off =
            plan.hosts_to_switch_off.iter().copied().filter(|h| !place.values().any(|p| p == h)).collect();
        let out = dropped
            .into_iter()
            .map(|(i, why)| Dropped { migration: plan.migrations[i].clone(), why })
            .collect();
        (Plan { migrations: kept, hosts_to_switch_off }, out)
    }

    /// One replay of the plan's migrations in order, dropping those that break a per-move rule.
    fn pass(&self, snap: &Snapshot, plan: &Plan, dropped: &mut BTreeMap<usize, String>) {
        let mut place = placement(snap);
        let mut used = memory_used(snap);
        for (i, m) in plan.migrations.iter().enumerate() {
            if dropped.contains_key(&i) {
                continue;
            }
            if let Some(why) = self.breaks(snap, m, &place, &used) {
                dropped.insert(i, why);
                continue;
            }
            let ram = u64::from(snap.vm(m.vm).ram_mb);
            *used.entry(m.from).or_default() = used.get(&m.from).copied().unwrap_or(0).saturating_sub(ram);
            *used.entry(m.to).or_default() += ram;
            place.insert(m.vm, m.to);
        }
    }

    /// The rule `m` breaks, given where every VM is and each host's memory held.
    fn breaks(
        &self,
        snap: &Snapshot,
        m: &Migration,
        place: &BTreeMap<VmId, HostId>,
        used: &BTreeMap<HostId, u64>,
    ) -> Option<String> {
        if let Some(why) = self.fixed.get(&m.vm) {
            return Some(format!("{} stays where it is: {why}", m.vm));
        }
        if let Some(pin) = self.pins.get(&m.vm) {
            if *pin != m.to {
                return Some(format!("{} is pinned to {pin}", m.vm));
            }
        }
        if let Some(why) = self.closed.get(&m.to) {
            return Some(format!("{} takes no VMs: {why}", m.to));
        }
        if let Reason::Underload { utilization, .. } = m.reason {
            let level = self.threshold.clamp(THRESHOLD_MIN, THRESHOLD_MAX);
            let limit = EMPTY_BELOW[usize::from(level - 1)];
            if level == THRESHOLD_MIN || utilization > limit {
                return Some(format!(
                    "the migration threshold ({level} of 5) empties no host at {:.0} % utilisation{}",
                    utilization * 100.0,
                    if level == THRESHOLD_MIN {
                        String::from(" (only overloads are relieved)")
                    } else {
                        format!(" (only below {:.0} %)", limit * 100.0)
                    }
                ));
            }
        }
        for (group, members) in &self.apart {
            if !members.contains(&m.vm) {
                continue;
            }
            if let Some(other) = members.iter().find(|o| **o != m.vm && place.get(o) == Some(&m.to)) {
                return Some(format!(
                    "{} is on {} and of the same anti-affinity group '{group}' as {}",
                    other, m.to, m.vm
                ));
            }
        }
        let Some(host) = snap.hosts.get(m.to.0 as usize) else {
            return Some(format!("{} is not in the snapshot", m.to));
        };
        let ram = u64::from(snap.vm(m.vm).ram_mb);
        let held = used.get(&m.to).copied().unwrap_or(0);
        if held + ram > u64::from(host.spec.ram_mb) {
            return Some(format!(
                "{} has {} MB of memory, {held} MB held: {} needs {ram} MB and memory is never overcommitted",
                m.to, host.spec.ram_mb, m.vm
            ));
        }
        None
    }

    /// A host being emptied is emptied wholly or not at all: when one of its underload moves
    /// is dropped, the others are too.
    fn whole_hosts(&self, plan: &Plan, dropped: &mut BTreeMap<usize, String>) {
        let mut stuck: BTreeSet<HostId> = BTreeSet::new();
        for (i, m) in plan.migrations.iter().enumerate() {
            if dropped.contains_key(&i) && matches!(m.reason, Reason::Underload { .. }) {
                stuck.insert(m.from);
            }
        }
        for (i, m) in plan.migrations.iter().enumerate() {
            if !dropped.contains_key(&i)
                && matches!(m.reason, Reason::Underload { .. })
                && stuck.contains(&m.from)
            {
                dropped
                    .insert(i, format!("{} cannot be emptied wholly, so it is not emptied at all", m.from));
            }
        }
    }

    /// Members of an affinity group end where the others end: a move that would split a group
    /// is dropped.
    fn groups_together(&self, snap: &Snapshot, plan: &Plan, dropped: &mut BTreeMap<usize, String>) {
        if self.together.is_empty() {
            return;
        }
        let mut place = placement(snap);
        for (i, m) in plan.migrations.iter().enumerate() {
            if !dropped.contains_key(&i) {
                place.insert(m.vm, m.to);
            }
        }
        for (i, m) in plan.migrations.iter().enumerate() {
            if dropped.contains_key(&i) {
                continue;
            }
            for (group, members) in &self.together {
                if !members.contains(&m.vm) {
                    continue;
                }
                let split = members.iter().find(|o| **o != m.vm && place.get(o).is_some_and(|h| *h != m.to));
                if let Some(other) = split {
                    dropped
                        .insert(i, format!("{} would leave {other} of its affinity group '{group}'", m.vm));
                    break;
                }
            }
        }
    }
}

/// Where each VM of the snapshot is.
fn placement(snap: &Snapshot) -> BTreeMap<VmId, HostId> {
    snap.vms.iter().map(|v| (v.id, v.host)).collect()
}

/// The memory each host's VMs hold, MB.
fn memory_used(snap: &Snapshot) -> BTreeMap<HostId, u64> {
    let mut used = BTreeMap::new();
    for v in &snap.vms {
        *used.entry(v.host).or_default() += u64::from(v.requested_ram_mb.max(v.ram_mb));
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HostSpec, HostView, PowerCurve, TargetChoice, VmView};

    /// Three hosts of 2 CPUs and 1 GB; VMs of 256 MB at the given hosts.
    fn snap(vms: &[u32]) -> Snapshot {
        let spec = HostSpec { pes: 2, pe_mips: 1000.0, ram_mb: 1024, power: PowerCurve::HP_ML110_G5 };
        let mut s = Snapshot {
            time: 0.0,
            interval_s: 10.0,
            migration_mb_per_s: 62.5,
            hosts: (0..3)
                .map(|h| HostView {
                    id: HostId(h),
                    spec,
                    measured_mips: 0.0,
                    available_mips: 2000.0,
                    allocated_mips: 0.0,
                    vms: Vec::new(),
                })
                .collect(),
            vms: Vec::new(),
            vm_index: Vec::new(),
        };
        for (i, h) in vms.iter().enumerate() {
            s.vms.push(VmView {
                id: VmId(i as u32),
                mips: 1000.0,
                ram_mb: 256,
                requested_ram_mb: 256,
                requested_mips: 100.0,
                history: vec![0.1],
                host: HostId(*h),
            });
            let host = &mut s.hosts[*h as usize];
            host.vms.push(VmId(i as u32));
            host.measured_mips += 100.0;
            host.allocated_mips += 100.0;
            host.available_mips -= 100.0;
        }
        s.reindex();
        s
    }

    #[test]
    fn the_planner_itself_keeps_the_rules() {
        // Three lightly loaded hosts: a consolidating policy empties two of them.
        let s = snap(&[0, 1, 2]);
        let free = crate::Planner::new(crate::Policy::builtin("thr-mmt-0.8").unwrap()).plan(&s);
        assert_eq!(free.hosts_to_switch_off.len(), 2, "{free:?}");
        // VM 1 stays put; VM 2 is apart from VM 0: the planner finds the plan that keeps both
        // rules (VM 0 joins VM 1, VM 2 stays, one host is emptied) rather than one they break.
        let rules = Constraints {
            fixed: [(VmId(1), "automation is off for it".to_string())].into(),
            apart: [("db".to_string(), [VmId(0), VmId(2)].into())].into(),
            ..Default::default()
        };
        let mut planner = crate::Planner::new(crate::Policy::builtin("thr-mmt-0.8").unwrap());
        let planned = planner.plan_with(&s, Some(&rules));
        let (kept, dropped) = rules.apply(&s, &planned);
        assert!(dropped.is_empty(), "the planner planned what the rules forbid: {dropped:?}");
        assert!(!kept.migrations.is_empty(), "{kept:?}");
        for m in &kept.migrations {
            assert_ne!(m.vm, VmId(1));
            let others: Vec<VmId> =
                s.vms.iter().filter(|v| v.host == m.to && v.id != m.vm).map(|v| v.id).collect();
            let meets = |a: u32, b: u32| m.vm == VmId(a) && others.contains(&VmId(b));
            assert!(!meets(0, 2) && !meets(2, 0), "{m:?} joins its anti-affinity group");
        }
        let mut vine = crate::Planner::new(crate::Policy::builtin("vine").unwrap());
        let planned = vine.plan_with(&s, Some(&rules));
        assert!(rules.apply(&s, &planned).1.is_empty(), "vine's planner: {planned:?}");
    }

    fn mv(vm: u32, from: u32, to: u32, underload: Option<f64>) -> Migration {
        Migration {
            vm: VmId(vm),
            from: HostId(from),
            to: HostId(to),
            reason: match underload {
                Some(u) => Reason::Underload { utilization: u, why: "low".into() },
                None => Reason::Overload {
                    value: 0.9,
                    threshold: 0.8,
                    basis: "forecast".into(),
                    selection: "least memory".into(),
                },
            },
            target: TargetChoice { utilization_after: 0.5, extra_watts: 1.0, rule: "best fit".into() },
        }
    }

    #[test]
    fn nothing_to_keep_changes_nothing() {
        let s = snap(&[0, 0, 1]);
        let plan = Plan {
            migrations: vec![mv(0, 0, 1, Some(0.05)), mv(1, 0, 2, Some(0.05))],
            hosts_to_switch_off: vec![HostId(0)],
        };
        let (kept, dropped) = Constraints::default().apply(&s, &plan);
        assert_eq!(kept, plan);
        assert!(dropped.is_empty());
    }

    #[test]
    fn a_fixed_vm_keeps_its_host_on() {
        let s = snap(&[0, 0, 1]);
        let plan = Plan {
            migrations: vec![mv(0, 0, 1, Some(0.05)), mv(1, 0, 2, Some(0.05))],
            hosts_to_switch_off: vec![HostId(0)],
        };
        let c = Constraints {
            fixed: [(VmId(1), "automation is off for it".to_string())].into(),
            ..Default::default()
        };
        let (kept, dropped) = c.apply(&s, &plan);
        assert!(kept.migrations.is_empty(), "the host is not emptied at all: {kept:?}");
        assert!(kept.hosts_to_switch_off.is_empty());
        assert_eq!(dropped.len(), 2);
        assert!(dropped.iter().any(|d| d.why.contains("automation is off")));
        assert!(dropped.iter().any(|d| d.why.contains("not emptied at all")));
    }

    #[test]
    fn pins_closed_hosts_and_anti_affinity_hold() {
        let s = snap(&[0, 1, 2]);
        let plan = Plan { migrations: vec![mv(0, 0, 1, None)], hosts_to_switch_off: vec![] };
        let pinned = Constraints { pins: [(VmId(0), HostId(2))].into(), ..Default::default() };
        assert!(pinned.apply(&s, &plan).0.migrations.is_empty());
        let closed =
            Constraints { closed: [(HostId(1), "in maintenance".to_string())].into(), ..Default::default() };
        assert!(closed.apply(&s, &plan).1[0].why.contains("in maintenance"));
        let apart = Constraints {
            apart: [("db".to_string(), [VmId(0), VmId(1)].into())].into(),
            ..Default::default()
        };
        assert!(apart.apply(&s, &plan).1[0].why.contains("anti-affinity group 'db'"));
        // Once VM 1 has left host 1 earlier in the plan, VM 0 may go there.
        let plan2 =
            Plan { migrations: vec![mv(1, 1, 2, None), mv(0, 0, 1, None)], hosts_to_switch_off: vec![] };
        assert_eq!(apart.apply(&s, &plan2).0.migrations.len(), 2);
    }

    #[test]
    fn affinity_groups_move_together_or_not_at_all() {
        let s = snap(&[0, 0, 1]);
        let c = Constraints {
            together: [("web".to_string(), [VmId(0), VmId(1)].into())].into(),
            ..Default::default()
        };
        let one = Plan { migrations: vec![mv(0, 0, 2, None)], hosts_to_switch_off: vec![] };
        assert!(c.apply(&s, &one).0.migrations.is_empty());
        let both =
            Plan { migrations: vec![mv(0, 0, 2, None), mv(1, 0, 2, None)], hosts_to_switch_off: vec![] };
        assert_eq!(c.apply(&s, &both).0.migrations.len(), 2);
        // If one of them cannot go (pinned), neither goes.
        let c2 = Constraints { pins: [(VmId(1), HostId(0))].into(), ..c };
        assert!(c2.apply(&s, &both).0.migrations.is_empty());
    }

    #[test]
    fn memory_is_never_overcommitted_when_a_planned_departure_is_dropped() {
        // Host 1 is full (4 × 256 MB); the plan frees room there first, then fills it.
        let s = snap(&[0, 1, 1, 1, 1]);
        let plan =
            Plan { migrations: vec![mv(1, 1, 2, None), mv(0, 0, 1, None)], hosts_to_switch_off: vec![] };
        assert_eq!(Constraints::default().apply(&s, &plan).0.migrations.len(), 2);
        let c = Constraints { fixed: [(VmId(1), "pinned".to_string())].into(), ..Default::default() };
        let (kept, dropped) = c.apply(&s, &plan);
        assert!(kept.migrations.is_empty());
        assert!(dropped.iter().any(|d| d.why.contains("never overcommitted")), "{dropped:?}");
    }

    #[test]
    fn constraints_round_trip_through_json() {
        let c = Constraints {
            fixed: [(VmId(3), "off".to_string())].into(),
            pins: [(VmId(1), HostId(2))].into(),
            apart: [("db".to_string(), [VmId(0), VmId(1)].into())].into(),
            ..Default::default()
        };
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Constraints>(&text).unwrap(), c);
    }

    #[test]
    fn threshold_levels_limit_emptying_hosts() {
        let s = snap(&[0, 1]);
        let plan = Plan { migrations: vec![mv(0, 0, 1, Some(0.15))], hosts_to_switch_off: vec![HostId(0)] };
        let at = |t| Constraints { threshold: t, ..Default::default() }.apply(&s, &plan).0.migrations.len();
        assert_eq!((at(1), at(2), at(3), at(4), at(5)), (0, 0, 1, 1, 1));
        let overload = Plan { migrations: vec![mv(0, 0, 1, None)], hosts_to_switch_off: vec![] };
        let c = Constraints { threshold: 1, ..Default::default() };
        assert_eq!(c.apply(&s, &overload).0.migrations.len(), 1, "overloads are relieved at every level");
    }
}
