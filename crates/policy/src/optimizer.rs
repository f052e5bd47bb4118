//! Optimizer: upper and lower thresholds. Decides which hosts are overloaded (by a static
//! threshold, by statistics of their history, or by a forecast) and which host is the most
//! under-used. Pure functions over the planning state.

use crate::model::VmView;
use crate::profiler::{iqr, least_squares, mad};
use crate::spec::OverloadRule;
use crate::state::PlanState;

/// Samples the local-regression detectors use (CloudSim uses 10).
pub const LR_WINDOW: usize = 10;
/// Samples the IQR and MAD detectors need before they replace the fallback threshold.
pub const STAT_MIN_SAMPLES: usize = 12;

/// The outcome of checking one host.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Assessment {
    /// Whether the host is overloaded.
    pub overloaded: bool,
    /// The value compared (a fraction of capacity).
    pub value: f64,
    /// The threshold it was compared with.
    pub threshold: f64,
    /// How the value was obtained.
    pub basis: Basis,
}

/// How an assessment's value was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Requested CPU against a static threshold.
    Requested,
    /// Requested CPU against the fallback threshold (too little history yet).
    Fallback,
    /// Requested CPU against 1 − s·IQR of the history.
    Iqr,
    /// Requested CPU against 1 − s·MAD of the history.
    Mad,
    /// Local-regression forecast × safety against 1.
    Forecast,
}

impl Basis {
    /// Words for operators.
    pub fn describe(self) -> &'static str {
        match self {
            Basis::Requested => "requested CPU over the static threshold",
            Basis::Fallback => "requested CPU over the fallback threshold (under 10–12 samples of history)",
            Basis::Iqr => "requested CPU over 1 − s·IQR of its recent utilisation",
            Basis::Mad => "requested CPU over 1 − s·MAD of its recent utilisation",
            Basis::Forecast => "local-regression forecast × safety over 100 %",
        }
    }
}

/// Checks host `h` (with `extra` on it on trial) against `rule`, as CloudSim's
/// `isHostOverUtilized` implementations do.
pub fn assess(
    st: &mut PlanState<'_>,
    h: usize,
    extra: Option<&VmView>,
    rule: &OverloadRule,
    fallback: f64,
) -> Assessment {
    let total = st.spec(h).total_mips();
    let load = st.load(h, extra);
    let u = load.requested_mips / total;
    let thr = |threshold: f64, basis| Assessment { overloaded: u > threshold, value: u, threshold, basis };
    match *rule {
        OverloadRule::Thr { threshold } => thr(threshold, Basis::Requested),
        OverloadRule::Iqr { safety } => {
            let hist = load.trimmed_history();
            if hist.len() >= STAT_MIN_SAMPLES {
                thr(1.0 - safety * iqr(hist), Basis::Iqr)
            } else {
                thr(fallback, Basis::Fallback)
            }
        }
        OverloadRule::Mad { safety } => {
            let hist = load.trimmed_history();
            if hist.len() >= STAT_MIN_SAMPLES {
                thr(1.0 - safety * mad(hist), Basis::Mad)
            } else {
                thr(fallback, Basis::Fallback)
            }
        }
        // CloudSim 3.0.3's robust variant weights every point by a positive number, which its
        // weighting code treats as "no zero weights" and so fits plain least squares: LRR = LR.
        OverloadRule::Lr { safety } | OverloadRule::Lrr { safety } => {
            let hist = load.trimmed_history();
            if hist.len() < LR_WINDOW {
                return thr(fallback, Basis::Fallback);
            }
            let oldest_first: Vec<f64> = hist[..LR_WINDOW].iter().rev().copied().collect();
            let (a, b) = least_squares(&oldest_first);
            let migration_s = load.max_ram_mb as f64 / st.snap.migration_mb_per_s;
            let ahead = (migration_s / st.snap.interval_s).ceil();
            let predicted = (a + b * (LR_WINDOW as f64 + ahead)) * safety;
            Assessment {
                overloaded: predicted >= 1.0,
                value: predicted,
                threshold: 1.0,
                basis: Basis::Forecast,
            }
        }
    }
}

/// The least-utilised host that is on, not excluded and holds VMs (CloudSim's
/// `getUnderUtilizedHost`): the first with the lowest measured utilisation below 100 %.
pub fn least_utilized_host(st: &PlanState<'_>, excluded: &[bool]) -> Option<usize> {
    let mut best = None;
    let mut min = 1.0;
    for (h, view) in st.snap.hosts.iter().enumerate() {
        if excluded[h] {
            continue;
        }
        let u = view.measured_utilization();
        if u > 0.0 && u < min && !st.hosts[h].vms.is_empty() {
            min = u;
            best = Some(h);
        }
    }
    best
}
