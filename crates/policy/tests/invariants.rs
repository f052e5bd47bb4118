//! Must-show 3, property-tested on random pools: no plan puts a receiving host over its CPU or
//! memory capacity; no VM is lost or placed twice; the same input gives the same plan.
//!
//! VMs occupy all of their memory (a live host), none of it (the reference experiment's model
//! after creation) or any part of it, mixed in one pool.

use policy::state::scheduler_grants;
use policy::{HostId, HostSpec, HostView, Plan, Planner, Policy, PowerCurve, Snapshot, VmId, VmView};
use proptest::prelude::*;

const G4: HostSpec = HostSpec { pes: 2, pe_mips: 1860.0, ram_mb: 4096, power: PowerCurve::HP_ML110_G4 };
const G5: HostSpec = HostSpec { pes: 2, pe_mips: 2660.0, ram_mb: 4096, power: PowerCurve::HP_ML110_G5 };
const TYPES: [(f64, u32); 4] = [(2500.0, 870), (2000.0, 1740), (1000.0, 1740), (500.0, 613)];

#[derive(Debug, Clone)]
struct VmSeed {
    kind: usize,
    host: usize,
    now: f64,
    /// Memory occupied: 0 = none, 1 = all, 2 = `part` of it.
    memory: (u8, f64),
    history: Vec<f64>,
}

fn vm_seed(hosts: usize) -> impl Strategy<Value = VmSeed> {
    (0..4usize, 0..hosts, 0.0..1.0f64, (0..3u8, 0.0..1.0f64), prop::collection::vec(0.0..1.0f64, 0..30))
        .prop_map(|(kind, host, now, memory, history)| VmSeed { kind, host, now, memory, history })
}

fn pool() -> impl Strategy<Value = Snapshot> {
    (2..24usize).prop_flat_map(|hosts| {
        prop::collection::vec(vm_seed(hosts), 1..70).prop_map(move |seeds| build(hosts, &seeds))
    })
}

fn build(hosts: usize, seeds: &[VmSeed]) -> Snapshot {
    let specs: Vec<HostSpec> = (0..hosts).map(|i| if i % 2 == 0 { G4 } else { G5 }).collect();
    let mut vms = Vec::new();
    let mut lists = vec![Vec::new(); hosts];
    for (i, s) in seeds.iter().enumerate() {
        let (mips, ram_mb) = TYPES[s.kind];
        let id = VmId(i as u32);
        lists[s.host].push(id);
        vms.push(VmView {
            id,
            mips,
            ram_mb,
            requested_ram_mb: match s.memory {
                (0, _) => 0,
                (1, _) => ram_mb,
                (_, part) => (part * ram_mb as f64) as u32,
            },
            requested_mips: (s.now * mips).floor(),
            history: s.history.clone(),
            host: HostId(s.host as u32),
        });
    }
    let hosts = specs
        .iter()
        .enumerate()
        .map(|(h, spec)| {
            let req = lists[h].iter().map(|v: &VmId| vms[v.0 as usize].requested_mips);
            let (available_mips, allocated_mips) = scheduler_grants(spec.total_mips(), spec.pe_mips, req);
            HostView {
                id: HostId(h as u32),
                spec: *spec,
                measured_mips: allocated_mips,
                available_mips,
                allocated_mips,
                vms: lists[h].clone(),
            }
        })
        .collect();
    let mut snap = Snapshot {
        time: 300.1,
        interval_s: 300.0,
        migration_mb_per_s: 62.5,
        hosts,
        vms,
        vm_index: Vec::new(),
    };
    snap.reindex();
    snap
}

/// Host lists after carrying out `plan`.
fn apply(snap: &Snapshot, plan: &Plan) -> Vec<Vec<VmId>> {
    let mut lists: Vec<Vec<VmId>> = snap.hosts.iter().map(|h| h.vms.clone()).collect();
    for m in &plan.migrations {
        for l in lists.iter_mut() {
            l.retain(|v| *v != m.vm);
        }
        lists[m.to.0 as usize].push(m.vm);
    }
    lists
}

fn check(snap: &Snapshot, name: &str) -> Result<(), TestCaseError> {
    let policy = Policy::builtin(name).unwrap();
    let plan = Planner::new(policy.clone()).plan(snap);
    prop_assert_eq!(&plan, &Planner::new(policy.clone()).plan(snap), "same input, different plan");
    let lists = apply(snap, &plan);
    let mut seen = vec![0u32; snap.vms.len()];
    for l in &lists {
        for v in l {
            seen[v.0 as usize] += 1;
        }
    }
    prop_assert!(seen.iter().all(|c| *c == 1), "{name}: a VM lost or placed twice: {seen:?}");
    let targets: std::collections::BTreeSet<u32> = plan.migrations.iter().map(|m| m.to.0).collect();
    for t in targets {
        let h = &snap.hosts[t as usize];
        let spec = h.spec;
        let list = &lists[t as usize];
        let granted: f64 = list.iter().map(|v| snap.vm(*v).requested_mips.min(spec.pe_mips)).sum();
        let before: f64 = h.vms.iter().map(|v| snap.vm(*v).requested_mips.min(spec.pe_mips)).sum();
        // A host already asked for more than it has (it is then overloaded) may receive only VMs
        // that ask for nothing; no other host may be pushed past its capacity.
        prop_assert!(
            granted <= spec.total_mips().max(before) + 1e-6,
            "{name}: host {t} over CPU: {granted} (capacity {}, before the plan {before})",
            spec.total_mips()
        );
        // Memory is harder: a host that receives a VM occupying memory must hold it while the VMs
        // the plan moves away are still there (their memory is free only once they have gone).
        let occupied = |v: &VmId| snap.vm(*v).requested_ram_mb as u64;
        let gained: u64 = list.iter().filter(|v| !h.vms.contains(v)).map(occupied).sum();
        let ram: u64 = h.vms.iter().map(occupied).sum::<u64>() + gained;
        prop_assert!(
            gained == 0 || ram <= spec.ram_mb as u64,
            "{name}: host {t} over memory: {ram} MB of {} after receiving {gained} MB",
            spec.ram_mb
        );
    }
    if name.starts_with("vine") {
        let mut moved: Vec<u32> = plan.migrations.iter().map(|m| m.vm.0).collect();
        moved.sort_unstable();
        let n = moved.len();
        moved.dedup();
        prop_assert_eq!(moved.len(), n, "vine moved a VM twice in one plan");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn vine_plans_respect_capacity_and_keep_every_vm(snap in pool()) {
        check(&snap, "vine")?;
    }

    #[test]
    fn baseline_plans_respect_capacity_and_keep_every_vm(snap in pool()) {
        for name in ["thr-mmt-0.8", "iqr-mmt-1.5", "mad-mmt-2.5", "lr-mmt-1.2"] {
            check(&snap, name)?;
        }
    }
}

#[test]
fn a_policy_file_round_trips_and_bad_fields_are_named() {
    let p = Policy::builtin("vine").unwrap();
    assert_eq!(Policy::from_toml(&p.to_toml()).unwrap(), p);
    let bad = p.to_toml().replace("upper = 0.98", "upper = 1.5");
    let e = Policy::from_toml(&bad).unwrap_err();
    assert!(matches!(e, policy::PolicyError::Invalid { field: "migrations.upper", .. }), "{e}");
    let e = Policy::builtin("nope").unwrap_err();
    assert!(matches!(e, policy::PolicyError::UnknownBuiltin(_)), "{e}");
}

#[test]
fn every_command_carries_its_reason() {
    let seeds: Vec<VmSeed> = (0..12)
        .map(|i| VmSeed { kind: i % 4, host: i % 3, now: 0.95, memory: (1, 1.0), history: vec![0.95; 12] })
        .collect();
    let snap = build(8, &seeds);
    for name in ["thr-mmt-0.8", "vine"] {
        let plan = Planner::new(Policy::builtin(name).unwrap()).plan(&snap);
        assert!(!plan.migrations.is_empty(), "{name} should relieve the overloaded hosts");
        for c in policy::prescribe(&plan) {
            let text = c.to_string();
            assert!(
                text.contains("overloaded") || text.contains("utilisation") || text.contains("switch off"),
                "{text}"
            );
        }
    }
}

#[test]
fn hosts_whose_instances_use_no_cpu_at_all_are_still_emptied() {
    // An idle container can use no CPU over a whole interval: its host does no measured work,
    // yet it is on, and it is the cheapest host to empty.
    let seeds: Vec<VmSeed> = (0..2)
        .map(|i| VmSeed { kind: 3, host: i, now: 0.0, memory: (1, 1.0), history: vec![0.0; 12] })
        .collect();
    let snap = build(2, &seeds);
    assert!(snap.hosts.iter().all(|h| h.measured_mips == 0.0));
    let plan = Planner::new(Policy::builtin("vine").unwrap()).plan(&snap);
    assert_eq!(plan.migrations.len(), 1, "{plan:?}");
    let after = apply(&snap, &plan);
    assert!(after.iter().any(|l| l.is_empty()) && after.iter().any(|l| l.len() == 2), "{after:?}");
}
