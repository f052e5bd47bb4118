//! Predictor: a virtual node's demand over the next interval, from its history and current request.

use crate::model::VmView;
use crate::profiler::{least_squares, percentile};
use crate::spec::PredictionRule;

/// What the Predictor expects of one VM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Forecast {
    /// Expected demand next interval, MIPS (never below the current request).
    pub mips: f64,
    /// How it was obtained.
    pub method: &'static str,
}

/// Forecasts `vm`'s demand by `rule`. The forecast never goes below what the VM asks for now and
/// never above its size.
pub fn forecast(vm: &VmView, rule: &PredictionRule) -> Forecast {
    let now = vm.requested_mips;
    let (u, method) = match *rule {
        PredictionRule::Last => (now / vm.mips, "current demand"),
        PredictionRule::LocalRegression { window } => {
            let w = window.min(vm.history.len());
            if w < 3 {
                (now / vm.mips, "current demand (too little history)")
            } else {
                let oldest_first: Vec<f64> = vm.history[..w].iter().rev().copied().collect();
                let (a, b) = least_squares(&oldest_first);
                (a + b * (w as f64 + 1.0), "local regression over recent samples")
            }
        }
        PredictionRule::Quantile { window, q } => {
            let w = window.min(vm.history.len());
            if w == 0 {
                (now / vm.mips, "current demand (no history)")
            } else {
                (percentile(&vm.history[..w], q * 100.0), "high quantile of recent samples")
            }
        }
    };
    let mips = (u * vm.mips).clamp(0.0, vm.mips).max(now);
    Forecast { mips, method }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HostId, VmId};

    fn vm(history: Vec<f64>, now: f64) -> VmView {
        VmView {
            id: VmId(1),
            mips: 1000.0,
            ram_mb: 613,
            requested_ram_mb: 613,
            requested_mips: now,
            history,
            host: HostId(0),
        }
    }

    #[test]
    fn rising_trend_is_extrapolated() {
        // newest first: 0.5, 0.4, 0.3, 0.2 → next 0.6
        let f =
            forecast(&vm(vec![0.5, 0.4, 0.3, 0.2], 500.0), &PredictionRule::LocalRegression { window: 4 });
        assert!((f.mips - 600.0).abs() < 1e-9, "{f:?}");
    }

    #[test]
    fn forecast_never_below_current_demand_nor_above_size() {
        let f = forecast(&vm(vec![0.1, 0.5, 0.9], 700.0), &PredictionRule::LocalRegression { window: 3 });
        assert_eq!(f.mips, 700.0);
        let f = forecast(&vm(vec![1.0, 0.5, 0.1], 1000.0), &PredictionRule::LocalRegression { window: 3 });
        assert_eq!(f.mips, 1000.0);
    }

    #[test]
    fn quantile_takes_a_high_sample() {
        let h: Vec<f64> = (0..10).map(|i| i as f64 / 10.0).collect();
        let f = forecast(&vm(h, 0.0), &PredictionRule::Quantile { window: 10, q: 0.9 });
        assert!(f.mips >= 800.0, "{f:?}");
    }
}
