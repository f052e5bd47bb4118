//! The requests that set how far the policy engine acts (`vine policy mode|use|set|vm|status`)
//! and put hosts in standby or wake them (`vine host standby|wake`). Settings live in etcd
//! (`cluster::automation`), so any host answers them; the coordinator's loop (`crate::pilot`)
//! reads them every round.

use cluster::{Cluster, HostState, Mode};
use serde_json::{json, Value};

use crate::protocol::{Failure, PolicyChange, VmRulesChange};
use crate::Daemon;

fn in_a_pool(d: &Daemon) -> Result<std::sync::Arc<Cluster>, Failure> {
    d.cluster().ok_or_else(|| {
        Failure::Invalid(
            "this host is in no pool of hosts: the policy engine acts on a pool (vine policy dry-run works alone)"
                .into(),
        )
    })
}

impl Daemon {
    /// `vine policy status`: the settings, every VM's rules, the coordinator, the last round.
    pub(crate) fn policy_show(&self) -> Result<Value, Failure> {
        let c = in_a_pool(self)?;
        let auto = c.automation()?;
        Ok(json!({
            "mode": auto.mode,
            "policy": auto.policy.name,
            "definition": auto.policy,
            "interval_s": auto.interval_s,
            "parallel": auto.parallel,
            "threshold": auto.threshold,
            "power_program": auto.power_program,
            "vms": c.vm_rules()?,
            "coordinator": c.coordinator()?,
            "last_round": c.last_round()?,
        }))
    }

    /// `vine policy mode|use|set`: changes the pool's automation.
    pub(crate) fn policy_set(&self, change: PolicyChange) -> Result<Value, Failure> {
        let c = in_a_pool(self)?;
        if let Some(p) = &change.policy {
            p.validate().map_err(|e| Failure::Invalid(format!("policy: {e}")))?;
        }
        let auto = c.update_automation(|a| {
            if let Some(m) = change.mode {
                a.mode = m;
            }
            if let Some(p) = &change.policy {
                a.policy = (**p).clone();
            }
            if let Some(i) = change.interval_s {
                a.interval_s = i;
            }
            if let Some(p) = change.parallel {
                a.parallel = p;
            }
            if let Some(t) = change.threshold {
                a.threshold = t;
            }
            if let Some(p) = &change.power_program {
                a.power_program = (!p.is_empty()).then(|| p.clone());
            }
            Ok(())
        })?;
        let m = format!(
            "the pool runs policy '{}' in mode {}, every {} s, threshold {} of 5, {} migration(s) at once{}",
            auto.policy.name,
            auto.mode.as_str(),
            auto.interval_s,
            auto.threshold,
            auto.parallel,
            auto.power_program.as_deref().map(|p| format!(", power program {p}")).unwrap_or_default()
        );
        self.ctx().event(None, "info", "policy.set", &m);
        Ok(json!({ "message": m }))
    }

    /// `vine policy vm NAME` / `vine policy mode M --vm NAME`: one VM's rules.
    pub(crate) fn policy_vm(&self, name: &str, change: VmRulesChange) -> Result<Value, Failure> {
        let c = in_a_pool(self)?;
        if c.owner_of(name)?.is_none() {
            return Err(Failure::NotFound(format!("no VM named '{name}' in the pool")));
        }
        let mode = match change.mode.as_deref() {
            None => None,
            Some("") | Some("default") => Some(None),
            Some(m) => Some(Some(m.parse::<Mode>().map_err(|e| Failure::Invalid(format!("mode: {e}")))?)),
        };
        if let Some(pin) = change.pin.as_deref().filter(|p| !p.is_empty()) {
            if c.host(pin)?.is_none() {
                return Err(Failure::Invalid(format!("pin: no host named '{pin}' in the pool")));
            }
        }
        if let Some(g) = change.together.as_deref().filter(|g| !g.is_empty()) {
            vmconfig::validate_name(g).map_err(|e| Failure::Invalid(format!("together: {e}")))?;
        }
        let rules = c.update_vm_rules(name, |r| {
            if let Some(m) = mode {
                r.mode = m;
            }
            if let Some(p) = &change.pin {
                r.pin = (!p.is_empty()).then(|| p.clone());
            }
            if let Some(g) = &change.together {
                r.together = (!g.is_empty()).then(|| g.clone());
            }
            if let Some(on) = change.resize {
                r.resize = on;
            }
        })?;
        let mut said = vec![match rules.mode {
            Some(m) => format!("mode {}", m.as_str()),
            None => "the pool's mode".to_string(),
        }];
        if let Some(p) = &rules.pin {
            said.push(format!("pinned to host '{p}'"));
        }
        if let Some(g) = &rules.together {
            said.push(format!("kept with affinity group '{g}'"));
        }
        if rules.resize {
            said.push("resized while it runs (CPU cap and balloon)".into());
        }
        let m = format!("VM '{name}' for the policy engine: {}", said.join(", "));
        self.ctx().event(Some(name), "info", "policy.vm", &m);
        Ok(json!({ "message": m, "rules": rules }))
    }

    /// `vine host standby|wake HOST`.
    pub(crate) fn host_standby(&self, name: &str, on: bool) -> Result<Value, Failure> {
        let c = in_a_pool(self)?;
        let status = c
            .hosts()?
            .into_iter()
            .find(|h| h.record.name == name)
            .ok_or_else(|| Failure::NotFound(format!("no host named '{name}' in the pool")))?;
        let auto = c.automation()?;
        match (on, status.state) {
            (true, HostState::Standby) | (false, HostState::Online | HostState::Maintenance) => {
                Ok(json!({ "message": format!("host '{name}' is already {}", status.state.as_str()) }))
            }
            (true, HostState::Offline) => {
                Err(Failure::Unavailable(format!("host '{name}' is offline: its VMs cannot be checked")))
            }
            (true, _) => {
                self.standby_host(&c, name, &auto, "an operator asked")?;
                Ok(json!({ "message": format!("host '{name}' is in standby") }))
            }
            (false, _) => {
                self.wake_host(&c, name, &auto, "an operator asked")?;
                Ok(json!({ "message": format!("host '{name}' is woken") }))
            }
        }
    }
}
