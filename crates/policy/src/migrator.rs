//! Migrator: picks which VMs leave which hosts, in what order, and where they go. Holds VM
//! selection (minimum migration time), placement (first fit, power-aware best fit) and CloudSim's
//! reactive consolidation loop, which the baselines use.

use crate::model::{HostId, Migration, Plan, Reason, TargetChoice, VmId, VmView};
use crate::optimizer::{assess, least_utilized_host, Assessment};
use crate::spec::{OverloadRule, PlacementRule, ReactiveSpec, SelectionRule};
use crate::state::PlanState;

/// The VM to move off `h` by `rule`: for MMT the first VM with the least memory.
pub fn select_vm(st: &PlanState<'_>, h: usize, rule: SelectionRule) -> Option<VmId> {
    match rule {
        SelectionRule::Mmt => {
            let mut best: Option<(u32, VmId)> = None;
            for id in st.hosts[h].vms.iter().filter(|v| st.movable(**v)) {
                let ram = st.vm(*id).ram_mb;
                if best.is_none_or(|(r, _)| ram < r) {
                    best = Some((ram, *id));
                }
            }
            best.map(|(_, id)| id)
        }
    }
}

/// What a placement must respect besides capacity.
#[derive(Debug, Clone, Copy)]
pub struct PlacementCheck<'a> {
    /// Placement rule.
    pub rule: PlacementRule,
    /// Overload rule a target must not break (checked on hosts that are on).
    pub overload: Option<&'a OverloadRule>,
    /// Fallback threshold for the overload rule.
    pub fallback: f64,
}

/// Finds a host for `vm` among the hosts not `excluded` (CloudSim's `findHostForVm`).
// Host indices address several parallel tables (state, snapshot, exclusions).
#[allow(clippy::needless_range_loop)]
pub fn find_host(
    st: &mut PlanState<'_>,
    vm: &VmView,
    excluded: &[bool],
    check: &PlacementCheck<'_>,
) -> Option<(usize, TargetChoice)> {
    let mut best: Option<(usize, TargetChoice)> = None;
    let mut min_diff = f64::MAX;
    for h in 0..st.hosts.len() {
        if excluded[h] || !st.fits(h, vm) {
            continue;
        }
        // CloudSim 3.0.3 reads the load a target already has from its scheduler's grants (which
        // include VMs placed earlier in this plan) but its current power from the last measurement.
        let allocated = st.hosts[h].allocated_mips;
        let measured = st.measured_mips(h);
        if let Some(rule) = check.overload {
            if allocated != 0.0 && assess(st, h, Some(vm), rule, check.fallback).overloaded {
                continue;
            }
        }
        let spec = st.spec(h);
        let total = spec.total_mips();
        let after = (allocated + vm.requested_mips) / total;
        match check.rule {
            PlacementRule::FirstFit => {
                let extra = watts_diff(spec, measured, after).unwrap_or(0.0);
                return Some((
                    h,
                    TargetChoice { utilization_after: after, extra_watts: extra, rule: "first fit".into() },
                ));
            }
            PlacementRule::PowerAwareBestFit => {
                let Some(diff) = watts_diff(spec, measured, after) else { continue };
                if diff < min_diff {
                    min_diff = diff;
                    best = Some((
                        h,
                        TargetChoice {
                            utilization_after: after,
                            extra_watts: diff,
                            rule: "least power increase (power-aware best fit)".into(),
                        },
                    ));
                }
            }
        }
    }
    best
}

fn watts_diff(spec: &crate::model::HostSpec, measured: f64, after: f64) -> Option<f64> {
    let total = spec.total_mips();
    let mut now = measured / total;
    if now > 1.0 && now < 1.01 {
        now = 1.0;
    }
    Some(spec.power.watts_at(after)? - spec.power.watts_at(now)?)
}

/// Sorts VMs by requested MIPS, largest first, keeping ties in order (Java's stable sort).
pub fn sort_by_demand(st: &PlanState<'_>, vms: &mut [VmId]) {
    vms.sort_by(|a, b| st.vm(*b).requested_mips.total_cmp(&st.vm(*a).requested_mips));
}

fn overload_reason(st: &PlanState<'_>, a: &Assessment, h: usize, vm: VmId) -> Reason {
    let v = st.vm(vm);
    Reason::Overload {
        value: a.value,
        threshold: a.threshold,
        basis: a.basis.describe().to_string(),
        selection: format!(
            "least memory on host {h} ({} MB): shortest migration, {:.1} s",
            v.ram_mb,
            st.snap.migration_time_s(v)
        ),
    }
}

/// CloudSim 3.0.3's `PowerVmAllocationPolicyMigrationAbstract.optimizeAllocation`: move VMs off
/// overloaded hosts until they are not, place them by `placement`, then repeatedly try to empty
/// the least-utilised host.
pub fn plan_reactive(st: &mut PlanState<'_>, spec: &ReactiveSpec, placement: PlacementRule) -> Plan {
    let n = st.hosts.len();
    let rule = &spec.overload;
    let mut over = vec![false; n];
    let mut over_list = Vec::new();
    for (h, flag) in over.iter_mut().enumerate() {
        let a = assess(st, h, None, rule, spec.fallback_threshold);
        if a.overloaded {
            *flag = true;
            over_list.push((h, a));
        }
    }

    let mut leaving: Vec<(VmId, usize, Reason)> = Vec::new();
    for (h, first) in &over_list {
        let mut a = *first;
        while let Some(vm) = select_vm(st, *h, spec.selection) {
            leaving.push((vm, *h, overload_reason(st, &a, *h, vm)));
            st.destroy(*h, vm);
            a = assess(st, *h, None, rule, spec.fallback_threshold);
            if !a.overloaded {
                break;
            }
        }
    }
    let mut order: Vec<VmId> = leaving.iter().map(|l| l.0).collect();
    sort_by_demand(st, &mut order);
    let check = PlacementCheck { rule: placement, overload: Some(rule), fallback: spec.fallback_threshold };
    let mut plan = Plan::default();
    for id in order {
        let (_, from, reason) = leaving.iter().find(|l| l.0 == id).expect("selected above").clone();
        let vm = st.vm(id);
        if let Some((to, target)) = find_host(st, vm, &over, &check) {
            st.create(to, id);
            plan.migrations.push(Migration {
                vm: id,
                from: HostId(from as u32),
                to: HostId(to as u32),
                reason,
                target,
            });
        }
    }

    // Under-used hosts. CloudSim excludes only over-loaded and switched-off hosts here: the
    // targets chosen above stay candidates (its exclusion list reads an empty map).
    let off: Vec<bool> = st.snap.hosts.iter().map(|h| h.measured_utilization() == 0.0).collect();
    let mut excluded_source: Vec<bool> = (0..n).map(|h| over[h] || off[h]).collect();
    let mut excluded_target = excluded_source.clone();
    loop {
        if excluded_source.iter().all(|e| *e) {
            break;
        }
        let Some(h) = least_utilized_host(st, &excluded_source) else { break };
        excluded_source[h] = true;
        excluded_target[h] = true;
        let mut vms = st.hosts[h].vms.clone();
        if vms.is_empty() || !vms.iter().all(|v| st.movable(*v)) {
            continue;
        }
        sort_by_demand(st, &mut vms);
        let u = st.snap.hosts[h].measured_utilization();
        let mut batch: Vec<Migration> = Vec::new();
        let mut complete = true;
        for id in vms {
            let vm = st.vm(id);
            match find_host(st, vm, &excluded_target, &check) {
                Some((to, target)) => {
                    st.create(to, id);
                    batch.push(Migration {
                        vm: id,
                        from: HostId(h as u32),
                        to: HostId(to as u32),
                        reason: Reason::Underload {
                            utilization: u,
                            why: "least-utilised active host; all its VMs fit elsewhere, so it can be switched off"
                                .into(),
                        },
                        target,
                    });
                }
                None => {
                    complete = false;
                    break;
                }
            }
        }
        if !complete {
            for m in &batch {
                st.destroy(m.to.0 as usize, m.vm);
            }
            continue;
        }
        for m in &batch {
            excluded_source[m.to.0 as usize] = true;
        }
        plan.hosts_to_switch_off.push(HostId(h as u32));
        plan.migrations.extend(batch);
    }
    plan
}
