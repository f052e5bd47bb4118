//! Must-show 4 in the test suite: one `vine` planning step for 10,000 hosts and 100,000 VMs takes
//! under a second (bench/policy.sh prints the whole curve beside the baselines).

use policy::{Planner, Policy};

#[test]
fn vine_plans_100k_vms_on_10k_hosts_within_a_second() {
    let snap = sim::bench::synthetic(10_000, 100_000, 42);
    let started = std::time::Instant::now();
    let plan = Planner::new(Policy::builtin("vine").unwrap()).plan(&snap);
    let took = started.elapsed();
    assert!(!plan.migrations.is_empty(), "the synthetic pool has overloaded hosts to relieve");
    assert!(took.as_secs_f64() < 1.0, "one planning step took {took:?}");
}
