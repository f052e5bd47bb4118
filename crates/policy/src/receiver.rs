//! Receiver: takes the periodic measurements every host reports and keeps each virtual node's
//! recent utilisation (newest first, [`HISTORY_LENGTH`] samples), from which the Profiler works.

use crate::model::{VmId, HISTORY_LENGTH};

/// One measurement of one VM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Which VM.
    pub vm: VmId,
    /// Its CPU utilisation over the last interval, as a fraction of its MIPS.
    pub utilization: f64,
}

/// Histories of all VMs seen so far.
#[derive(Debug, Clone, Default)]
pub struct Receiver {
    histories: Vec<Vec<f64>>,
}

impl Receiver {
    /// An empty receiver.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one sample.
    pub fn record(&mut self, s: Sample) {
        let i = s.vm.0 as usize;
        if self.histories.len() <= i {
            self.histories.resize_with(i + 1, Vec::new);
        }
        let h = &mut self.histories[i];
        h.insert(0, s.utilization);
        h.truncate(HISTORY_LENGTH);
    }

    /// A VM's history, newest first (empty if never seen).
    pub fn history(&self, vm: VmId) -> &[f64] {
        self.histories.get(vm.0 as usize).map_or(&[], |h| h.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_newest_first_and_bounded() {
        let mut r = Receiver::new();
        for i in 0..40 {
            r.record(Sample { vm: VmId(3), utilization: i as f64 });
        }
        let h = r.history(VmId(3));
        assert_eq!(h.len(), HISTORY_LENGTH);
        assert_eq!(h[0], 39.0);
        assert_eq!(h[HISTORY_LENGTH - 1], 10.0);
        assert!(r.history(VmId(0)).is_empty());
    }
}
