//! Effective CPU weights that make reservations real. Under full contention the kernel gives
//! sibling cgroups CPU time in proportion to their weights; a VM whose weight alone would give it
//! less than its reservation gets a weight just large enough, and the others keep their relative
//! weights. Admission ([`crate::controls::admit`]) keeps the sum of reservations within the host,
//! so a solution always exists.

use crate::controls::MAX_WEIGHT;

/// Largest share of the host all reservations together may take before the remaining VMs'
/// weights would have to be squeezed to nothing; beyond it reserved VMs split by reservation.
const FULL: f64 = 0.999;

/// Effective weights (1–10000) for VMs given as (weight, reservation in % of one CPU) on a host
/// of `cpus` CPUs. Under full contention VM i receives at least its reservation.
pub fn effective_weights(cpus: u32, vms: &[(u32, u32)]) -> Vec<u32> {
    let capacity = f64::from(cpus.max(1)) * 100.0;
    let w: Vec<f64> = vms.iter().map(|&(w, _)| f64::from(w.max(1))).collect();
    let r: Vec<f64> = vms.iter().map(|&(_, r)| f64::from(r)).collect();
    let mut boosted = vec![false; vms.len()];
    let mut out = w.clone();
    loop {
        let reserved: f64 = (0..vms.len()).filter(|&i| boosted[i]).map(|i| r[i] / capacity).sum();
        let free_weight: f64 = (0..vms.len()).filter(|&i| !boosted[i]).map(|i| w[i]).sum();
        if reserved >= FULL || free_weight == 0.0 {
            // Reservations take (nearly) everything: every VM shares by its reservation, and a
            // VM without one gets a token weight, whatever its own weight was.
            let total: f64 = r.iter().sum::<f64>().max(1.0);
            for i in 0..vms.len() {
                out[i] = (r[i] / total * 1e6).max(1.0);
            }
            break;
        }
        let sum = free_weight / (1.0 - reserved);
        let mut changed = false;
        for i in 0..vms.len() {
            if !boosted[i] && r[i] > 0.0 && w[i] / sum * capacity < r[i] {
                boosted[i] = true;
                changed = true;
            }
        }
        if !changed {
            for i in 0..vms.len() {
                out[i] = if boosted[i] { r[i] * sum / capacity } else { w[i] };
            }
            break;
        }
    }
    scale(&out)
}

/// Scales weights into 1–10000 keeping their ratios (as far as integers allow); weights that
/// already fit are left as they are.
fn scale(ws: &[f64]) -> Vec<u32> {
    let max = ws.iter().cloned().fold(0.0, f64::max);
    let factor = if max > f64::from(MAX_WEIGHT) { f64::from(MAX_WEIGHT) / max } else { 1.0 };
    ws.iter().map(|&x| (x * factor).ceil().clamp(1.0, f64::from(MAX_WEIGHT)) as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CPU % each VM gets when all are busy, from integer weights.
    fn shares(cpus: u32, ws: &[u32]) -> Vec<f64> {
        let s: f64 = ws.iter().map(|&w| f64::from(w)).sum();
        ws.iter().map(|&w| f64::from(w) / s * f64::from(cpus) * 100.0).collect()
    }

    #[test]
    fn without_reservations_weights_are_unchanged() {
        assert_eq!(effective_weights(2, &[(100, 0), (300, 0)]), vec![100, 300]);
    }

    #[test]
    fn a_small_weight_with_a_reservation_is_raised_just_enough() {
        // One CPU; a weight-1 VM reserving 50% beside a weight-1000 VM.
        let w = effective_weights(1, &[(1, 50), (1000, 0)]);
        let s = shares(1, &w);
        assert!(s[0] >= 49.9 && s[0] <= 50.5, "{s:?} from {w:?}");
    }

    #[test]
    fn a_host_fully_reserved_leaves_a_heavy_unreserved_vm_only_a_token() {
        // Found by the property below: all of two CPUs reserved by weight-1 VMs, beside an
        // unreserved VM of weight 5699.
        let vms = [(1, 19), (5699, 0), (1, 87), (1, 37), (1, 10), (1, 47)];
        let w = effective_weights(2, &vms);
        let s = shares(2, &w);
        for (i, &(_, r)) in vms.iter().enumerate() {
            assert!(s[i] + 0.5 >= f64::from(r), "vm {i}: {} < {r} ({w:?})", s[i]);
        }
        assert_eq!(w[1], 1, "{w:?}");
    }

    #[test]
    fn reservations_that_already_hold_change_nothing() {
        assert_eq!(effective_weights(1, &[(300, 50), (100, 0)]), vec![300, 100]);
    }

    proptest::proptest! {
        #[test]
        fn every_reservation_holds_under_full_contention(
            cpus in 1u32..8,
            vms in proptest::collection::vec((1u32..=10_000, 0u32..=100), 1..12),
        ) {
            // Admission keeps reservations within the host: squeeze any excess rather than
            // rejecting the case, which also makes fully reserved hosts common.
            let total: u32 = vms.iter().map(|v| v.1).sum();
            let vms: Vec<(u32, u32)> = if total > cpus * 100 {
                vms.iter().map(|&(w, r)| (w, r * cpus * 100 / total)).collect()
            } else {
                vms
            };
            let w = effective_weights(cpus, &vms);
            let s = shares(cpus, &w);
            for (i, &(_, r)) in vms.iter().enumerate() {
                // Integer rounding may cost a fraction of a percent.
                proptest::prop_assert!(s[i] + 0.5 >= f64::from(r), "vm {i}: {} < {r} ({w:?})", s[i]);
                proptest::prop_assert!((1..=10_000).contains(&w[i]));
            }
        }
    }
}
