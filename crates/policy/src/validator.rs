//! Validator: compares what the Predictor expected with what happened and re-fits the margin added
//! to forecasts, so a policy that under-predicts widens its margin and one that over-predicts
//! narrows it.

use crate::model::{Snapshot, VmId};
use crate::profiler::percentile;

/// Errors kept for re-fitting.
pub const ERROR_WINDOW: usize = 2000;

/// Tracks forecast errors.
#[derive(Debug, Clone, Default)]
pub struct Validator {
    pending: Vec<(VmId, f64)>,
    errors: std::collections::VecDeque<f64>,
}

impl Validator {
    /// A validator with no evidence yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Remembers that `vm` was expected to ask for `mips` at the next step.
    pub fn expect(&mut self, vm: VmId, mips: f64) {
        self.pending.push((vm, mips));
    }

    /// Scores the pending expectations against what the VMs ask for in `snap`.
    pub fn observe(&mut self, snap: &Snapshot) {
        for (vm, expected) in self.pending.drain(..) {
            let i = snap.vm_index.get(vm.0 as usize).copied().unwrap_or(u32::MAX);
            if i == u32::MAX {
                continue;
            }
            let v = &snap.vms[i as usize];
            // Under-prediction as a fraction of the VM's size (positive = demand was higher).
            self.errors.push_back((v.requested_mips - expected) / v.mips);
            if self.errors.len() > ERROR_WINDOW {
                self.errors.pop_front();
            }
        }
    }

    /// The margin (fraction of a VM's size) that would have covered `q` of recent under-predictions;
    /// 0 until there is evidence.
    pub fn margin(&self, q: f64) -> f64 {
        if self.errors.len() < 50 {
            return 0.0;
        }
        let e: Vec<f64> = self.errors.iter().copied().collect();
        percentile(&e, q * 100.0).max(0.0)
    }

    /// Number of scored forecasts held.
    pub fn evidence(&self) -> usize {
        self.errors.len()
    }
}
