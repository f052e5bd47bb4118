//! The pipeline for one planning step: Receiver histories → Profiler → Validator → Predictor →
//! Optimizer → Migrator → Resource Allocator → Prescriber, driven by a [`Policy`]. The Sender is the
//! caller's. Deterministic: the same snapshot and state give the same plan.

use crate::constraints::Constraints;
use crate::ledger::Ledger;
use crate::model::{Plan, Snapshot};
use crate::spec::{Migrations, Policy};
use crate::state::PlanState;
use crate::validator::Validator;
use crate::vine::plan_predictive;

/// Coverage the adaptive margin aims for (share of under-predictions it absorbs).
pub const MARGIN_COVERAGE: f64 = 0.9;

/// A policy with the state it keeps between steps (the Validator's evidence, the Ledger's totals).
#[derive(Debug, Clone)]
pub struct Planner {
    policy: Policy,
    validator: Validator,
    ledger: Ledger,
}

impl Planner {
    /// A planner for `policy` with no history.
    pub fn new(policy: Policy) -> Self {
        Planner { policy, validator: Validator::new(), ledger: Ledger::default() }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Plans one step from `snap`.
    pub fn plan(&mut self, snap: &Snapshot) -> Plan {
        self.plan_with(snap, None)
    }

    /// Plans one step from `snap`, never moving a VM the rules keep in place nor placing one
    /// where they forbid (the rules' other checks, on the whole plan, are [`Constraints::apply`]).
    pub fn plan_with(&mut self, snap: &Snapshot, rules: Option<&Constraints>) -> Plan {
        self.validator.observe(snap);
        let mut st = match rules {
            Some(r) => PlanState::with_rules(snap, r),
            None => PlanState::new(snap),
        };
        match &self.policy.migrations {
            Migrations::None => Plan::default(),
            Migrations::Reactive(r) => crate::migrator::plan_reactive(&mut st, r, self.policy.placement),
            Migrations::Predictive(p) => {
                let margin = if p.adaptive_margin { self.validator.margin(MARGIN_COVERAGE) } else { 0.0 };
                self.ledger.add_interval(snap);
                let (plan, expectations) = plan_predictive(&mut st, p, margin, &mut self.ledger);
                for (vm, mips) in expectations {
                    self.validator.expect(vm, mips);
                }
                plan
            }
        }
    }
}
