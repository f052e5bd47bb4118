//! Profiler: usage profiles of hosts and virtual nodes built from the Receiver's histories, and the
//! statistics the other stages use (median, MAD, IQR, least squares). Pure functions.

use crate::model::{HostSpec, VmView, HISTORY_LENGTH};

/// A host's utilisation history (fractions of its capacity, newest first): the sum of its VMs'
/// histories weighted by their size, with trailing (oldest) zeros removed, as CloudSim's
/// `PowerHostUtilizationHistory.getUtilizationHistory` builds it.
pub fn host_history<'a>(spec: &HostSpec, vms: impl Iterator<Item = &'a VmView>) -> Vec<f64> {
    let mut h = [0.0f64; HISTORY_LENGTH];
    let host_mips = spec.total_mips();
    for vm in vms {
        for (i, u) in vm.history.iter().take(HISTORY_LENGTH).enumerate() {
            h[i] += u * vm.mips / host_mips;
        }
    }
    let len = h.iter().rposition(|&v| v != 0.0).map_or(0, |i| i + 1);
    h[..len].to_vec()
}

/// Median as Apache Commons Math's default percentile estimate computes it.
pub fn median(data: &[f64]) -> f64 {
    percentile(data, 50.0)
}

/// Percentile `p` (0..=100) with Commons Math's legacy estimator (position p·(n+1)/100).
pub fn percentile(data: &[f64], p: f64) -> f64 {
    let n = data.len();
    if n == 0 {
        return f64::NAN;
    }
    let mut s = data.to_vec();
    s.sort_by(f64::total_cmp);
    if n == 1 {
        return s[0];
    }
    let pos = p * (n as f64 + 1.0) / 100.0;
    let fpos = pos.floor();
    let d = pos - fpos;
    if pos < 1.0 {
        return s[0];
    }
    if pos >= n as f64 {
        return s[n - 1];
    }
    let lower = s[fpos as usize - 1];
    let upper = s[fpos as usize];
    lower + d * (upper - lower)
}

/// Median absolute deviation.
pub fn mad(data: &[f64]) -> f64 {
    if data.is_empty() {
        return 0.0;
    }
    let m = median(data);
    let dev: Vec<f64> = data.iter().map(|v| (m - v).abs()).collect();
    median(&dev)
}

/// Inter-quartile range with CloudSim's `MathUtil.iqr` rounding of the quartile positions.
pub fn iqr(data: &[f64]) -> f64 {
    let mut s = data.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    let q1 = ((0.25 * (n + 1.0) + 0.5).floor() as usize).saturating_sub(1);
    let q3 = ((0.75 * (n + 1.0) + 0.5).floor() as usize).saturating_sub(1);
    s[q3.min(s.len() - 1)] - s[q1.min(s.len() - 1)]
}

/// Least-squares line through (1, y0), (2, y1), …: returns (intercept, slope).
pub fn least_squares(y: &[f64]) -> (f64, f64) {
    let n = y.len() as f64;
    let mean_x = (n + 1.0) / 2.0;
    let mean_y = y.iter().sum::<f64>() / n;
    let mut sxy = 0.0;
    let mut sxx = 0.0;
    for (i, v) in y.iter().enumerate() {
        let dx = (i + 1) as f64 - mean_x;
        sxy += dx * (v - mean_y);
        sxx += dx * dx;
    }
    let slope = if sxx == 0.0 { 0.0 } else { sxy / sxx };
    (mean_y - slope * mean_x, slope)
}

/// A VM's usage profile over its history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VmProfile {
    /// Mean utilisation (fraction of its MIPS).
    pub mean: f64,
    /// Highest utilisation seen.
    pub peak: f64,
    /// Samples available.
    pub samples: usize,
}

/// Profile of one VM.
pub fn vm_profile(vm: &VmView) -> VmProfile {
    let n = vm.history.len();
    let mean = if n == 0 { 0.0 } else { vm.history.iter().sum::<f64>() / n as f64 };
    let peak = vm.history.iter().copied().fold(0.0, f64::max);
    VmProfile { mean, peak, samples: n }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_count_is_mean_of_middle_pair() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
    }

    #[test]
    fn mad_of_spread_values() {
        // median 3, deviations 2,1,0,1,2 → median 1
        assert_eq!(mad(&[1.0, 2.0, 3.0, 4.0, 5.0]), 1.0);
    }

    #[test]
    fn iqr_uses_rounded_positions() {
        let d: Vec<f64> = (1..=12).map(f64::from).collect();
        // n = 12: q1 at round(3.25)-1 = 2 → 3, q3 at round(9.75)-1 = 9 → 10
        assert_eq!(iqr(&d), 7.0);
    }

    #[test]
    fn least_squares_recovers_a_line() {
        let y: Vec<f64> = (1..=10).map(|x| 0.5 + 0.1 * x as f64).collect();
        let (a, b) = least_squares(&y);
        assert!((a - 0.5).abs() < 1e-12 && (b - 0.1).abs() < 1e-12, "{a} {b}");
    }

    #[test]
    fn host_history_weights_by_size_and_trims_old_zeros() {
        let spec = HostSpec { pes: 2, pe_mips: 1000.0, ram_mb: 4096, power: crate::PowerCurve::HP_ML110_G4 };
        let vm = |h: Vec<f64>| VmView {
            id: crate::VmId(0),
            mips: 1000.0,
            ram_mb: 512,
            requested_ram_mb: 512,
            requested_mips: 0.0,
            history: h,
            host: crate::HostId(0),
        };
        let a = vm(vec![1.0, 0.5, 0.0]);
        let b = vm(vec![0.5]);
        assert_eq!(host_history(&spec, [&a, &b].into_iter()), vec![0.75, 0.25]);
    }
}
