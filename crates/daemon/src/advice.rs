//! The policy engine on the live pool, as far as it goes today: a dry run. The daemon gathers
//! the metrics of every host of the pool (its own, and each online peer's over the pool's
//! HTTPS), makes one policy `Snapshot` of them (hosts as they are, each running VM with its CPU
//! utilisation history), has the policy plan a step and prescribe commands, and answers with
//! all of it. Nothing is changed. This is the Receiver → Snapshot → Plan → Command path the
//! simulator drives with recorded traces, fed from live hosts instead.

use policy::model::{HostId, HostSpec, HostView, PowerCurve, Snapshot, VmId, VmView};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::protocol::{Failure, Request};
use crate::Daemon;

/// Nominal MIPS of one host CPU: live hosts are measured in CPU time, so one CPU = 1000 "MIPS".
pub const LIVE_MIPS_PER_CPU: f64 = 1000.0;
/// How long a round waits for a host's metrics.
const METRICS_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// The migration bandwidth a snapshot assumes, MB/s (a gigabit link).
const MIGRATION_MB_PER_S: f64 = 62.5;

/// One command of a dry run, in operators' words.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Advice {
    /// What would be done, with VM and host names.
    pub text: String,
    /// Why, in sentences.
    pub why: String,
}

/// What a dry run found: the snapshot, the plan and the commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DryRun {
    /// The policy's name.
    pub policy: String,
    /// The hosts, in snapshot order (`HostId` n is `hosts[n]`).
    pub hosts: Vec<String>,
    /// Hosts whose metrics could not be read (left out), with why.
    pub unreachable: Vec<(String, String)>,
    /// The VMs, in snapshot order (`VmId` n is `vm_names[n]`).
    pub vm_names: Vec<String>,
    /// The snapshot the plan was made from.
    pub snapshot: Snapshot,
    /// The plan.
    pub plan: policy::Plan,
    /// The commands, as the policy prescribed them.
    pub commands: Vec<policy::Command>,
    /// The commands in operators' words.
    pub advice: Vec<Advice>,
    /// Always false: a dry run changes nothing.
    pub changed: bool,
}

/// Names for the snapshot's ids, kept from round to round so a VM keeps its id (and the
/// planner its history) for a whole run; each host's hardware as last seen.
#[derive(Debug, Clone, Default)]
pub struct Ids {
    /// Host names: `HostId` n is `hosts[n]`.
    pub hosts: Vec<String>,
    /// VM names: `VmId` n is `vms[n]`.
    pub vms: Vec<String>,
    /// Each host's hardware as last seen, by id.
    specs: Vec<HostSpec>,
}

impl Ids {
    fn host(&mut self, name: &str, spec: HostSpec) -> usize {
        match self.hosts.iter().position(|h| h == name) {
            Some(i) => {
                self.specs[i] = spec;
                i
            }
            None => {
                self.hosts.push(name.to_string());
                self.specs.push(spec);
                self.hosts.len() - 1
            }
        }
    }

    fn vm(&mut self, name: &str) -> VmId {
        match self.vms.iter().position(|v| v == name) {
            Some(i) => VmId(i as u32),
            None => {
                self.vms.push(name.to_string());
                VmId(self.vms.len() as u32 - 1)
            }
        }
    }

    /// `text` with the policy's "host 3" and "VM 12" replaced by their names.
    pub fn name_ids(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while !rest.is_empty() {
            let next = [("host ", &self.hosts), ("VM ", &self.vms)]
                .into_iter()
                .filter_map(|(word, names)| rest.find(word).map(|at| (at, word, names)))
                .min_by_key(|(at, _, _)| *at);
            let Some((at, word, names)) = next else {
                out.push_str(rest);
                break;
            };
            out.push_str(&rest[..at + word.len()]);
            rest = &rest[at + word.len()..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let name = rest[..digits].parse::<usize>().ok().and_then(|i| names.get(i));
            if let Some(n) = name {
                out.push_str(&format!("'{n}'"));
                rest = &rest[digits..];
            }
        }
        out
    }
}

/// The policy's view of the hosts whose metrics (`Request::Metrics` answers) are `hosts`, in
/// that order; the VM names, in snapshot order. A VM reported by two hosts (a migration's two
/// ends, for a moment) counts once, on the first.
pub fn snapshot(hosts: &[(String, Value)]) -> (Snapshot, Vec<String>) {
    let mut ids = Ids::default();
    let snap = snapshot_with(hosts, &mut ids);
    (snap, ids.vms)
}

/// The snapshot of `hosts`' metrics with the ids of `ids` (new hosts and VMs get new ones).
/// Every host `ids` knows is in it: one whose metrics are missing now, with no VMs.
pub fn snapshot_with(hosts: &[(String, Value)], ids: &mut Ids) -> Snapshot {
    let mut vms: Vec<VmView> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut on: Vec<(usize, Vec<VmId>)> = Vec::new();
    let mut interval = 10.0f64;
    for (name, m) in hosts {
        let cpus = m["host"]["cpus"].as_u64().unwrap_or(1).max(1) as u32;
        let memory = m["host"]["memory_bytes"].as_u64().unwrap_or(0);
        interval = m["interval_s"].as_f64().unwrap_or(interval);
        let spec = HostSpec {
            pes: cpus,
            pe_mips: LIVE_MIPS_PER_CPU,
            ram_mb: (memory >> 20) as u32,
            // Live hosts report no power figures yet; a nominal curve keeps power-aware rules working.
            power: PowerCurve::HP_ML110_G5,
        };
        let h = ids.host(name, spec);
        let mut mine = Vec::new();
        for v in m["vms"].as_array().into_iter().flatten() {
            let vm_name = v["name"].as_str().unwrap_or("?").to_string();
            if seen.contains(&vm_name) {
                continue;
            }
            let vcpus = v["vcpus"].as_u64().unwrap_or(1) as f64;
            let history: Vec<f64> =
                v["history"].as_array().into_iter().flatten().filter_map(|x| x.as_f64()).collect();
            let mips = vcpus * LIVE_MIPS_PER_CPU;
            let ram = (v["memory"].as_u64().unwrap_or(0) >> 20) as u32;
            let id = ids.vm(&vm_name);
            vms.push(VmView {
                id,
                mips,
                ram_mb: ram,
                // A running guest holds all of its memory.
                requested_ram_mb: ram,
                requested_mips: history.first().copied().unwrap_or(0.0) * mips,
                history,
                host: HostId(h as u32),
            });
            seen.push(vm_name);
            mine.push(id);
        }
        on.push((h, mine));
    }
    let views = (0..ids.hosts.len())
        .map(|h| {
            let spec = ids.specs[h];
            let mine = on.iter().find(|(i, _)| *i == h).map(|(_, v)| v.clone()).unwrap_or_default();
            let demand: f64 =
                mine.iter().filter_map(|id| vms.iter().find(|v| v.id == *id)).map(|v| v.requested_mips).sum();
            let total = spec.total_mips();
            HostView {
                id: HostId(h as u32),
                spec,
                measured_mips: demand.min(total),
                available_mips: (total - demand).max(0.0),
                allocated_mips: demand.min(total),
                vms: mine,
            }
        })
        .collect();
    let mut snap = Snapshot {
        time: 0.0,
        interval_s: interval,
        migration_mb_per_s: MIGRATION_MB_PER_S,
        hosts: views,
        vms,
        vm_index: Vec::new(),
    };
    snap.reindex();
    snap
}

/// Hosts whose metrics could not be read, each with why.
pub type Unreachable = Vec<(String, String)>;

/// A command in operators' words: ids replaced by names.
pub(crate) fn advice(c: &policy::Command, hosts: &[String], vms: &[String]) -> Advice {
    let host = |id: &HostId| hosts.get(id.0 as usize).cloned().unwrap_or_else(|| id.to_string());
    let vm_name = |id: &VmId| vms.get(id.0 as usize).cloned().unwrap_or_else(|| id.to_string());
    let text = match c {
        policy::Command::Migrate { vm, from, to, .. } => {
            format!("migrate VM '{}' from host '{}' to host '{}'", vm_name(vm), host(from), host(to))
        }
        policy::Command::SwitchOff { host: h, .. } => format!("switch host '{}' off (it is empty)", host(h)),
        policy::Command::Cap { vm, pct: Some(p), .. } => {
            format!("cap VM '{}' at {p} % of one CPU", vm_name(vm))
        }
        policy::Command::Cap { vm, pct: None, .. } => {
            format!("lift the resizer's cap of VM '{}'", vm_name(vm))
        }
        policy::Command::Balloon { vm, bytes, .. } => {
            format!("balloon VM '{}' to {} MiB", vm_name(vm), bytes >> 20)
        }
    };
    Advice { text, why: c.why().to_string() }
}

impl Daemon {
    /// The metrics of every host of the pool this host can read now (its own first), and the
    /// hosts it could not, with why (the policy's Receiver).
    pub(crate) fn gather_metrics(&self, c: &cluster::Cluster) -> (Vec<(String, Value)>, Unreachable) {
        let me = c.config().host.clone();
        let mut metrics = Vec::new();
        let mut unreachable = Vec::new();
        match self.call(Request::Metrics) {
            Ok(m) => metrics.push((me.clone(), m)),
            Err(e) => unreachable.push((me.clone(), e.to_string())),
        }
        let hosts = match c.hosts() {
            Ok(h) => h,
            Err(e) => {
                unreachable.push(("the pool".into(), e.to_string()));
                return (metrics, unreachable);
            }
        };
        let Some(peers) = self.membership.peers.get() else { return (metrics, unreachable) };
        // Every host at once, and none waited for past METRICS_WAIT: a host cut off the network
        // is still listed online until its lease runs out, and must not hold a round up.
        let (tx, rx) = std::sync::mpsc::channel();
        let mut asked = Vec::new();
        for h in hosts {
            let name = h.record.name.clone();
            if name == me {
                continue;
            }
            if h.state == cluster::HostState::Offline {
                unreachable.push((name, "offline".to_string()));
                continue;
            }
            let (peers, tx, n) = (peers.clone(), tx.clone(), name.clone());
            std::thread::spawn(move || {
                let _ = tx.send((n.clone(), peers.call(&n, &Request::Metrics)));
            });
            asked.push(name);
        }
        drop(tx);
        let deadline = std::time::Instant::now() + METRICS_WAIT;
        let mut got = std::collections::BTreeMap::new();
        while got.len() < asked.len() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok((n, r)) => {
                    got.insert(n, r);
                }
                Err(_) => break,
            }
        }
        // In the pool's order, so the snapshot does not depend on who answered first.
        for name in asked {
            match got.remove(&name) {
                Some(Ok(m)) => metrics.push((name, m)),
                Some(Err(e)) => unreachable.push((name, e.to_string())),
                None => unreachable.push((name, format!("no answer within {} s", METRICS_WAIT.as_secs()))),
            }
        }
        (metrics, unreachable)
    }

    /// `vine policy dry-run`: what `policy` would do with the pool (or this host alone) now.
    pub(crate) fn policy_dry_run(&self, p: &policy::Policy) -> Result<DryRun, Failure> {
        let (metrics, unreachable) = match self.cluster() {
            Some(c) => self.gather_metrics(&c),
            None => (vec![(self.ctx().host.hostname.clone(), self.call(Request::Metrics)?)], Vec::new()),
        };
        let (snap, names) = snapshot(&metrics);
        let hosts: Vec<String> = metrics.into_iter().map(|(h, _)| h).collect();
        let mut planner = policy::Planner::new(p.clone());
        let plan = planner.plan(&snap);
        let commands = policy::prescribe(&plan);
        let advice = commands.iter().map(|c| advice(c, &hosts, &names)).collect();
        Ok(DryRun {
            policy: p.name.clone(),
            hosts,
            unreachable,
            vm_names: names,
            snapshot: snap,
            plan,
            commands,
            advice,
            changed: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn host(cpus: u64, vms: Value) -> Value {
        json!({"host": {"cpus": cpus, "memory_bytes": 4u64 << 30}, "interval_s": 2.0, "vms": vms})
    }

    #[test]
    fn every_host_and_vm_lands_in_one_snapshot() {
        let h1 = host(2, json!([{"name": "a", "vcpus": 1, "memory": 256u64 << 20, "history": [0.5, 0.4]}]));
        let h2 = host(
            4,
            json!([
                {"name": "b", "vcpus": 2, "memory": 512u64 << 20, "history": [0.25]},
                {"name": "a", "vcpus": 1, "memory": 256u64 << 20, "history": [0.9]}
            ]),
        );
        let (s, names) = snapshot(&[("h1".into(), h1), ("h2".into(), h2)]);
        assert_eq!(names, ["a", "b"], "a migrating VM counts once");
        assert_eq!(s.hosts.len(), 2);
        assert_eq!(s.hosts[1].spec.pes, 4);
        assert_eq!(s.vm(VmId(1)).host, HostId(1));
        assert_eq!(s.vm(VmId(0)).requested_mips, 500.0);
        assert_eq!(s.vm(VmId(1)).requested_mips, 500.0, "25% of 2 vCPUs");
        assert_eq!(s.hosts[0].available_mips, 1500.0);
        assert_eq!(s.interval_s, 2.0);
        assert_eq!(s.vm(VmId(1)).ram_mb, 512);
    }

    #[test]
    fn ids_stay_from_round_to_round_and_name_the_policy_s_sentences() {
        let h1 = host(2, json!([{"name": "a", "vcpus": 1, "memory": 256u64 << 20, "history": [0.5]}]));
        let h2 = host(2, json!([{"name": "b", "vcpus": 1, "memory": 256u64 << 20, "history": [0.1]}]));
        let mut ids = Ids::default();
        let first = snapshot_with(&[("h1".into(), h1.clone()), ("h2".into(), h2.clone())], &mut ids);
        assert_eq!(first.hosts.len(), 2);
        // h1 is missing now and b has moved to it... h2 is listed first: ids do not change.
        let h2_now = host(
            2,
            json!([{"name": "b", "vcpus": 1, "memory": 256u64 << 20, "history": [0.1]},
                   {"name": "c", "vcpus": 1, "memory": 256u64 << 20, "history": [0.2]}]),
        );
        let second = snapshot_with(&[("h2".into(), h2_now)], &mut ids);
        assert_eq!(ids.hosts, ["h1", "h2"]);
        assert_eq!(ids.vms, ["a", "b", "c"]);
        assert_eq!(second.hosts.len(), 2, "a host known before stays, empty");
        assert!(second.hosts[0].vms.is_empty());
        assert_eq!(second.vm(VmId(1)).host, HostId(1));
        assert_eq!(second.vm(VmId(2)).host, HostId(1));
        assert_eq!(second.vm_index[0], u32::MAX, "a VM not reported is gone from the snapshot");
        assert_eq!(
            ids.name_ids("host 1 was at 5 %; VM 2 was chosen; host 9 and VM 77 are unknown; VMs"),
            "host 'h2' was at 5 %; VM 'c' was chosen; host 9 and VM 77 are unknown; VMs"
        );
    }

    #[test]
    fn commands_are_told_with_names() {
        let c =
            policy::Command::Migrate { vm: VmId(1), from: HostId(0), to: HostId(1), why: "because".into() };
        let a = advice(&c, &["h1".into(), "h2".into()], &["a".into(), "b".into()]);
        assert_eq!(a.text, "migrate VM 'b' from host 'h1' to host 'h2'");
        assert_eq!(a.why, "because");
    }
}
