//! Synthetic pools for timing one planning step at scale: `hosts` CloudSim hosts and `vms` VMs with
//! PlanetLab-like demand (deterministic from a seed), placed first-fit by their current demand.

use policy::state::scheduler_grants;
use policy::{HostId, HostView, Snapshot, VmId, VmView};

use crate::datacenter::MIGRATION_MB_PER_S;
use crate::run::cloudsim_hosts;
use crate::trace::{SAMPLE_PERIOD_S, VM_TYPES};

/// A small, fixed pseudo-random generator (SplitMix64), so pools are the same on every machine.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// Seeded generator.
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    /// Next value in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A pool of `hosts` hosts and `vms` VMs, loaded to about 70 % with some hosts overloaded.
pub fn synthetic(hosts: usize, vms: usize, seed: u64) -> Snapshot {
    let specs = cloudsim_hosts(hosts);
    let mut rng = SplitMix::new(seed);
    let mut lists: Vec<Vec<VmId>> = vec![Vec::new(); hosts];
    let mut load = vec![0.0f64; hosts];
    let mut views = Vec::with_capacity(vms);
    let mut h = 0usize;
    for i in 0..vms {
        let (mips, ram_mb) = VM_TYPES[i * VM_TYPES.len() / vms.max(1)];
        let base = rng.next_f64() * 0.4;
        let history: Vec<f64> =
            (0..30).map(|_| (base + (rng.next_f64() - 0.5) * 0.2).clamp(0.0, 1.0)).collect();
        let requested = (history[0] * mips).floor();
        // First fit by current demand, allowing 10 % over so some hosts start overloaded.
        let mut tries = 0;
        while load[h] + requested > 1.1 * specs[h].total_mips() && tries < hosts {
            h = (h + 1) % hosts;
            tries += 1;
        }
        load[h] += requested;
        lists[h].push(VmId(i as u32));
        views.push(VmView {
            id: VmId(i as u32),
            mips,
            ram_mb,
            // As in the reference experiment after creation: ten VMs per 4 GB host would not fit
            // otherwise, and the step's cost is the same either way.
            requested_ram_mb: 0,
            requested_mips: requested,
            history,
            host: HostId(h as u32),
        });
        if rng.next_f64() < 0.3 {
            h = (h + 1) % hosts;
        }
    }
    let hosts = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let (available_mips, allocated_mips) = scheduler_grants(
                spec.total_mips(),
                spec.pe_mips,
                lists[i].iter().map(|v| views[v.0 as usize].requested_mips),
            );
            HostView {
                id: HostId(i as u32),
                spec: *spec,
                measured_mips: allocated_mips,
                available_mips,
                allocated_mips,
                vms: lists[i].clone(),
            }
        })
        .collect();
    let mut snap = Snapshot {
        time: 9000.1,
        interval_s: SAMPLE_PERIOD_S,
        migration_mb_per_s: MIGRATION_MB_PER_S,
        hosts,
        vms: views,
        vm_index: Vec::new(),
    };
    snap.reindex();
    snap
}
