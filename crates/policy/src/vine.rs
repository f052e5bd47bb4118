//! vine's own planner: predictive and migration-aware. Every VM's demand over the next interval is
//! forecast (Predictor, widened by the Validator's margin); a host is overloaded when its forecast
//! is over the upper threshold or its VMs already ask for more than it has; the fewest, cheapest
//! moves that bring it back are chosen; under-used hosts (by CPU and by memory) are emptied only
//! when the energy saved outweighs the migrations (Ledger) and every VM fits on hosts that are
//! already on, below the fill target, within a per-interval migration budget. Targets are the
//! hosts with the least memory left, then the least CPU room, so memory is packed where it binds.

use std::collections::BTreeSet;

use crate::ledger::Ledger;
use crate::model::{HostId, Migration, Plan, Reason, TargetChoice, VmId};
use crate::predictor::forecast;
use crate::spec::PredictiveSpec;
use crate::state::PlanState;

/// Forecasts used for one plan.
struct Demand {
    /// Forecast MIPS per VM id.
    per_vm: Vec<f64>,
    /// Forecast MIPS per host (sum over its VMs in the planning state).
    per_host: Vec<f64>,
    method: &'static str,
    /// Hosts that are on, by free memory (MB), then room left under the fill target (milli-MIPS),
    /// for best fit in O(log n) per distinct amount of free memory.
    room: BTreeSet<(u64, i64, usize)>,
    /// Each indexed host's key in `room`.
    key: Vec<Option<(u64, i64)>>,
    fill: f64,
    totals: Vec<f64>,
}

impl Demand {
    fn of(&self, vm: VmId) -> f64 {
        self.per_vm[vm.0 as usize]
    }

    fn room_key(&self, h: usize) -> i64 {
        ((self.fill * self.totals[h] - self.per_host[h]) * 1000.0).round() as i64
    }

    /// Indexes host `h` as on (or re-indexes it after its load changed).
    fn index(&mut self, st: &PlanState<'_>, h: usize) {
        self.unindex(h);
        let free = (st.spec(h).ram_mb as u64).saturating_sub(st.hosts[h].ram_mb);
        let k = self.room_key(h);
        self.room.insert((free, k, h));
        self.key[h] = Some((free, k));
    }

    fn unindex(&mut self, h: usize) {
        if let Some((free, k)) = self.key[h].take() {
            self.room.remove(&(free, k, h));
        }
    }
}

/// The default tuning of the `vine` built-in policy.
impl PredictiveSpec {
    /// Defaults of the built-in `vine` policy (docs/policy.md explains each number).
    pub const VINE_DEFAULT: PredictiveSpec = PredictiveSpec {
        prediction: crate::spec::PredictionRule::LocalRegression { window: 6 },
        upper: 0.98,
        target_fill: 0.95,
        lower: 0.6,
        lower_memory: 0.8,
        consolidation_horizon: 200.0,
        max_migrations_per_interval: 0,
        adaptive_margin: true,
    };
}

// Host indices address several parallel tables (state, snapshot, flags, forecasts).
#[allow(clippy::needless_range_loop)]
/// Plans one interval. `margin` (a fraction of a VM's size) widens every forecast; `ledger` holds
/// the energy used so far (this interval's included) and receives the plan's migration cost.
/// Returns the plan and the forecasts made, for the Validator.
pub fn plan_predictive(
    st: &mut PlanState<'_>,
    spec: &PredictiveSpec,
    margin: f64,
    ledger: &mut Ledger,
) -> (Plan, Vec<(VmId, f64)>) {
    let n = st.hosts.len();
    let max_id = st.snap.vm_index.len();
    let mut per_vm = vec![0.0; max_id];
    let mut method = "current demand";
    let mut expectations = Vec::with_capacity(st.snap.vms.len());
    for vm in &st.snap.vms {
        let f = forecast(vm, &spec.prediction);
        method = f.method;
        expectations.push((vm.id, f.mips));
        per_vm[vm.id.0 as usize] = (f.mips + margin * vm.mips).min(vm.mips);
    }
    let per_host =
        (0..n).map(|h| st.hosts[h].vms.iter().map(|v| per_vm[v.0 as usize]).sum::<f64>()).collect();
    let totals: Vec<f64> = (0..n).map(|h| st.spec(h).total_mips()).collect();
    let mut d = Demand {
        per_vm,
        per_host,
        method,
        room: BTreeSet::new(),
        key: vec![None; n],
        fill: spec.target_fill,
        totals,
    };
    let budget = if spec.max_migrations_per_interval == 0 {
        usize::MAX
    } else {
        spec.max_migrations_per_interval as usize
    };

    let mut plan = Plan::default();
    // A host is on when it does work or holds a VM: an idle container can use no CPU at all
    // over an interval, and its host is still on (and worth emptying).
    let on: Vec<bool> =
        (0..n).map(|h| st.snap.hosts[h].measured_mips > 0.0 || !st.hosts[h].vms.is_empty()).collect();
    for h in 0..n {
        if on[h] || !st.hosts[h].vms.is_empty() {
            d.index(st, h);
        }
    }
    // Hosts that may not give VMs away this interval (they receive or already gave).
    let mut frozen = vec![false; n];
    // Hosts being emptied: never targets.
    let mut emptied = vec![false; n];

    // 1. Overloaded hosts, worst first.
    let mut over: Vec<(usize, f64)> = (0..n)
        .filter_map(|h| {
            let total = st.spec(h).total_mips();
            let requested: f64 = st.hosts[h].vms.iter().map(|v| st.vm(*v).requested_mips).sum();
            let ratio = (d.per_host[h] / total).max(requested / total * spec.upper);
            let core_short = st.hosts[h].vms.iter().any(|v| d.of(*v) > st.spec(h).pe_mips);
            (ratio > spec.upper || core_short).then_some((h, ratio))
        })
        .collect();
    over.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (h, ratio) in over {
        frozen[h] = true;
        let total = st.spec(h).total_mips();
        let pe = st.spec(h).pe_mips;
        while plan.migrations.len() < budget {
            let excess = d.per_host[h] - spec.upper * total;
            let too_big: Option<VmId> =
                st.hosts[h].vms.iter().copied().find(|v| d.of(*v) > pe && st.movable(*v));
            if excess <= 0.0 && too_big.is_none() {
                break;
            }
            // The cheapest single VM whose departure removes the excess (the least CPU lost while
            // it migrates: forecast × memory); else the largest.
            let pick = too_big.or_else(|| {
                let vms: Vec<VmId> = st.hosts[h].vms.iter().copied().filter(|v| st.movable(*v)).collect();
                vms.iter()
                    .copied()
                    .filter(|v| d.of(*v) >= excess)
                    .min_by(|a, b| {
                        let loss = |v: VmId| d.of(v) * st.vm(v).ram_mb as f64;
                        loss(*a).total_cmp(&loss(*b))
                    })
                    .or_else(|| vms.iter().copied().max_by(|a, b| d.of(*a).total_cmp(&d.of(*b))))
            });
            let Some(vm) = pick else { break };
            let Some((to, target)) = choose_target(st, &d, spec, vm, &emptied, &on, h, true) else {
                break;
            };
            let v = st.vm(vm);
            let reason = Reason::Overload {
                value: ratio,
                threshold: spec.upper,
                basis: format!("forecast demand ({}, margin {:.0} %)", d.method, margin * 100.0),
                selection: format!(
                    "forecast {:.0} MIPS{}; {} MB of memory, a {:.1} s migration",
                    d.of(vm),
                    if d.of(vm) >= excess {
                        ", enough alone to end the overload, the least CPU lost while migrating of those that are"
                    } else {
                        ", the largest on the host"
                    },
                    v.ram_mb,
                    st.snap.migration_time_s(v)
                ),
            };
            move_vm(st, &mut d, vm, h, to);
            frozen[to] = true;
            plan.migrations.push(Migration {
                vm,
                from: HostId(h as u32),
                to: HostId(to as u32),
                reason,
                target,
            });
        }
    }

    // 2. Under-used hosts, the cheapest to empty first: CPU forecast under the lower threshold and
    // memory under its own (a host whose memory is nearly full is well used however idle its CPU).
    let under: Vec<usize> = (0..n)
        .filter(|&h| on[h] && !frozen[h] && !st.hosts[h].vms.is_empty())
        .filter(|&h| st.hosts[h].vms.iter().all(|v| st.movable(*v)))
        .filter(|&h| d.per_host[h] < spec.lower * st.spec(h).total_mips())
        .filter(|&h| (st.hosts[h].ram_mb as f64) < spec.lower_memory * st.spec(h).ram_mb as f64)
        .collect();
    // The cost of emptying a host: the CPU its VMs lose while they migrate (10 % of their demand
    // for as long as each migration takes), what the SLA's degradation metric charges.
    let cost = |h: usize| -> f64 {
        st.hosts[h].vms.iter().map(|v| d.of(*v).max(1.0) * st.snap.migration_time_s(st.vm(*v))).sum()
    };
    // Only where the energy saved outweighs the migrations (each relative to the day so far).
    let watts = |h: usize| {
        let u = (d.per_host[h] / st.spec(h).total_mips()).min(1.0);
        st.spec(h).power.watts_at(u).unwrap_or(0.0)
    };
    let mut keyed: Vec<(f64, usize)> = under
        .iter()
        .map(|&h| (cost(h), h))
        .filter(|&(c, h)| ledger.worth_emptying(c, watts(h), st.snap.interval_s, spec.consolidation_horizon))
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let under: Vec<usize> = keyed.into_iter().map(|(_, h)| h).collect();
    for h in under {
        if frozen[h] || plan.migrations.len() + st.hosts[h].vms.len() > budget {
            continue;
        }
        emptied[h] = true;
        d.unindex(h);
        let u = d.per_host[h] / st.spec(h).total_mips();
        let mut vms = st.hosts[h].vms.clone();
        vms.sort_by(|a, b| d.of(*b).total_cmp(&d.of(*a)));
        let mut batch = Vec::new();
        for vm in vms {
            match choose_target(st, &d, spec, vm, &emptied, &on, h, false) {
                Some((to, target)) => {
                    move_vm(st, &mut d, vm, h, to);
                    batch.push(Migration {
                        vm,
                        from: HostId(h as u32),
                        to: HostId(to as u32),
                        reason: Reason::Underload {
                            utilization: u,
                            why: format!(
                                "forecast below the {:.0} % lower threshold and all its VMs ({}) fit on hosts already on, \
                                 so it can be switched off",
                                spec.lower * 100.0,
                                st.snap.hosts[h].vms.len()
                            ),
                        },
                        target,
                    });
                }
                None => {
                    for m in batch.drain(..).rev() {
                        move_vm(st, &mut d, m.vm, m.to.0 as usize, h);
                    }
                    emptied[h] = false;
                    d.index(st, h);
                    break;
                }
            }
        }
        if emptied[h] {
            for m in &batch {
                frozen[m.to.0 as usize] = true;
            }
            plan.hosts_to_switch_off.push(HostId(h as u32));
            plan.migrations.extend(batch);
        }
    }
    for m in &plan.migrations {
        ledger.migration_loss += d.of(m.vm).max(1.0) * st.snap.migration_time_s(st.vm(m.vm));
    }
    (plan, expectations)
}

fn move_vm(st: &mut PlanState<'_>, d: &mut Demand, vm: VmId, from: usize, to: usize) {
    st.destroy(from, vm);
    st.create(to, vm);
    let f = d.of(vm);
    d.per_host[from] -= f;
    d.per_host[to] += f;
    if d.key[from].is_some() {
        d.index(st, from);
    }
    d.index(st, to);
}

/// Best fit by forecast among hosts that are on: the fullest host that stays under the fill
/// target. With `may_wake`, a switched-off host (the largest) is used when none fits.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
fn choose_target(
    st: &PlanState<'_>,
    d: &Demand,
    _spec: &PredictiveSpec,
    vm: VmId,
    emptied: &[bool],
    on: &[bool],
    source: usize,
    may_wake: bool,
) -> Option<(usize, TargetChoice)> {
    let v = st.vm(vm);
    let f = d.of(vm);
    let fits = |h: usize| {
        let spec_h = st.spec(h);
        h != source && !emptied[h] && spec_h.pe_mips >= f && st.has_memory_for(h, v) && st.allowed(h, v)
    };
    // Best fit: the host left with the least free memory, then the least room under the fill
    // target (where memory does not bind, every host has the same free memory and CPU decides).
    let need = (f * 1000.0).round() as i64;
    let mut free_at_least = v.requested_ram_mb as u64;
    let mut best = None;
    while let Some(&(free, _, _)) = d.room.range((free_at_least, need, 0)..).next() {
        let same_free = d.room.range((free, need, 0)..=(free, i64::MAX, usize::MAX));
        if let Some(h) = same_free.map(|&(_, _, h)| h).find(|&h| fits(h)) {
            best = Some((h, 0.0));
            break;
        }
        free_at_least = free + 1;
    }
    let mut wake: Option<usize> = None;
    if best.is_none() && may_wake {
        for h in 0..st.hosts.len() {
            let is_on = on[h] || !st.hosts[h].vms.is_empty();
            if !is_on && fits(h) && wake.is_none_or(|w| d.totals[h] > d.totals[w]) {
                wake = Some(h);
            }
        }
    }
    let (h, rule) = match (best, wake) {
        (Some((h, _)), _) => {
            (h, "best fit among hosts already on (least free memory, then least CPU room left by forecast)")
        }
        (None, Some(w)) => (w, "no host already on had room, so the largest switched-off host is woken"),
        (None, None) => return None,
    };
    let spec_h = st.spec(h);
    let total = spec_h.total_mips();
    let before = (d.per_host[h] / total).min(1.0);
    let after = ((d.per_host[h] + f) / total).min(1.0);
    let base = if on[h] { spec_h.power.watts_at(before).unwrap_or(0.0) } else { 0.0 };
    let extra = spec_h.power.watts_at(after).unwrap_or(0.0) - base;
    Some((h, TargetChoice { utilization_after: after, extra_watts: extra, rule: rule.to_string() }))
}
