//! Ledger: what the pool has spent so far on the two sides of ESV (energy × SLA violation), so a
//! planner can weigh a consolidation's share of the one against its share of the other. Pure: fed
//! by the snapshots and plans the planner sees.

use crate::model::Snapshot;

/// Energy used and CPU lost to migrations since the planner started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Ledger {
    /// Energy the pool's hosts that are on drew, W·s (each host's power at its measured
    /// utilisation, held for one interval).
    pub energy_ws: f64,
    /// CPU the planned migrations cost, MIPS·s: each VM's forecast demand times its migration time,
    /// what the SLA's degradation metric charges (up to a constant factor).
    pub migration_loss: f64,
}

impl Ledger {
    /// Adds the energy the hosts of `snap` draw over one interval.
    pub fn add_interval(&mut self, snap: &Snapshot) {
        for h in &snap.hosts {
            if h.measured_mips > 0.0 {
                let watts = h.spec.power.watts_at(h.measured_utilization().min(1.0)).unwrap_or(0.0);
                self.energy_ws += watts * snap.interval_s;
            }
        }
    }

    /// Whether switching a host off is worth its migrations: the share the migrations (`loss`,
    /// MIPS·s) would add to the CPU lost to migrations so far is at most the share of the energy
    /// used so far that the host's `watts` come to over `horizon` intervals of `interval_s`.
    /// ESV is a product, so a change is weighed by its relative size on each side. With no
    /// migration yet there is nothing to weigh against: every consolidation is worth it.
    pub fn worth_emptying(&self, loss: f64, watts: f64, interval_s: f64, horizon: f64) -> bool {
        self.migration_loss == 0.0
            || loss * self.energy_ws <= horizon * watts * interval_s * self.migration_loss
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_no_migration_yet_every_consolidation_is_worth_it() {
        let ledger = Ledger { energy_ws: 1e9, migration_loss: 0.0 };
        assert!(ledger.worth_emptying(1e12, 1.0, 300.0, 1.0));
    }

    #[test]
    fn a_consolidation_is_worth_it_when_its_relative_saving_exceeds_its_relative_cost() {
        // 10 % of the energy so far would be saved over the horizon (100 W × 300 s × 10 = 300 kJ
        // of 3 MJ); the migrations add 5 % (500 of 10,000 MIPS·s), then 20 %.
        let ledger = Ledger { energy_ws: 3e6, migration_loss: 10_000.0 };
        assert!(ledger.worth_emptying(500.0, 100.0, 300.0, 10.0));
        assert!(!ledger.worth_emptying(2_000.0, 100.0, 300.0, 10.0));
    }
}
