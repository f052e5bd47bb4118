//! Where a new VM goes in a pool, and why: the online host (not offline, not in maintenance)
//! with the most memory left after it, among those it fits (memory of the VMs the host already
//! has, and CPU reservations within its CPUs); ties go to the host with fewer VMs, then by name.
//! Memory decides because it is what cannot be overcommitted; spreading by what is left keeps
//! room on every host for VMs that grow. A VM of an anti-affinity group never goes to a host that
//! has another VM of its group (a hard rule: with no such host, the create is refused, naming
//! where the group's VMs are). The reason, with the numbers, is the `vm.placed` event.

use cluster::{HostState, HostStatus};
use serde_json::Value;
use vmconfig::VmDefinition;

use crate::protocol::Failure;

fn gib(b: i128) -> String {
    format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
}

/// The host for `def` among `hosts`, given the pool's published `vms`, and the sentence why.
pub fn place(hosts: &[HostStatus], vms: &[Value], def: &VmDefinition) -> Result<(String, String), Failure> {
    let mut rows = Vec::new();
    let mut apart = Vec::new();
    for h in hosts.iter().filter(|h| h.state == HostState::Online) {
        let mine: Vec<&Value> = vms.iter().filter(|v| v["host"] == h.record.name.as_str()).collect();
        if let Some(member) = group_member(&mine, def) {
            apart.push(format!("{} has '{member}'", h.record.name));
            continue;
        }
        let memory: i128 = mine.iter().map(|v| i128::from(v["memory"].as_u64().unwrap_or(0))).sum();
        let reserve: u64 = mine.iter().map(|v| v["cpu"]["reserve"].as_u64().unwrap_or(0)).sum();
        let free_after = i128::from(h.record.memory_bytes) - memory - i128::from(def.memory);
        let cpu_fits = reserve + u64::from(def.cpu.reserve) <= u64::from(h.record.cpus) * 100;
        rows.push((h.record.name.clone(), free_after, cpu_fits, mine.len()));
    }
    if rows.is_empty() && !apart.is_empty() {
        return Err(Failure::Refused(format!(
            "no online host can take '{}' apart from the other VMs of its anti-affinity group '{}': {}",
            def.name,
            def.group.as_deref().unwrap_or_default(),
            apart.join(", ")
        )));
    }
    if rows.is_empty() {
        return Err(Failure::Unavailable(format!("no host of the pool is online to take '{}'", def.name)));
    }
    let mut fits: Vec<_> = rows.iter().filter(|r| r.1 >= 0 && r.2).collect();
    if fits.is_empty() {
        let why: Vec<String> = rows
            .iter()
            .map(|(n, free, cpu, _)| {
                if *free < 0 {
                    format!("{n} would be {} short of memory", gib(-free))
                } else {
                    debug_assert!(!cpu);
                    format!("{n} has no CPU left to reserve {}%", def.cpu.reserve)
                }
            })
            .collect();
        return Err(Failure::Refused(format!(
            "no online host has room for '{}': {}",
            def.name,
            why.join("; ")
        )));
    }
    fits.sort_by(|a, b| b.1.cmp(&a.1).then(a.3.cmp(&b.3)).then(a.0.cmp(&b.0)));
    let best = fits[0];
    let others: Vec<String> = fits[1..].iter().map(|r| format!("{} {}", r.0, gib(r.1))).collect();
    let mut why = format!(
        "placed '{}' on host '{}': {} of memory free after it, the most of {} online host(s) it fits",
        def.name,
        best.0,
        gib(best.1),
        fits.len()
    );
    if !others.is_empty() {
        why.push_str(&format!(" (then: {})", others.join(", ")));
    }
    let full = rows.len() - fits.len();
    if full > 0 {
        why.push_str(&format!("; {full} online host(s) have no room"));
    }
    if !apart.is_empty() {
        why.push_str(&format!(
            "; kept apart from its anti-affinity group '{}' ({})",
            def.group.as_deref().unwrap_or_default(),
            apart.join(", ")
        ));
    }
    Ok((best.0.clone(), why))
}

/// A VM among `vms` (one host's) of `def`'s anti-affinity group, other than `def` itself.
fn group_member<'a>(vms: &[&'a Value], def: &VmDefinition) -> Option<&'a str> {
    let g = def.group.as_deref()?;
    vms.iter().find(|v| v["group"] == g && v["name"] != def.name.as_str()).and_then(|v| v["name"].as_str())
}

/// Refuses to put `def` on host `host` when a VM of its anti-affinity group is there already
/// (a create pinned with `--host`, a move).
pub fn check_apart(host: &str, vms: &[Value], def: &VmDefinition) -> Result<(), Failure> {
    let there: Vec<&Value> = vms.iter().filter(|v| v["host"] == host).collect();
    match group_member(&there, def) {
        Some(member) => Err(Failure::Refused(format!(
            "host '{host}' has '{member}' of anti-affinity group '{}'; '{}' goes on another host",
            def.group.as_deref().unwrap_or_default(),
            def.name
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::HostRecord;
    use serde_json::json;

    fn host(name: &str, gib: u64, state: HostState) -> HostStatus {
        HostStatus {
            load: None,
            record: HostRecord {
                name: name.into(),
                url: String::new(),
                tls_fingerprint: String::new(),
                cpus: 2,
                memory_bytes: gib << 30,
                accelerator: "tcg".into(),
                version: "0".into(),
                joined_ms: 0,
                maintenance: state == HostState::Maintenance,
                standby: state == HostState::Standby,
            },
            state,
        }
    }

    fn vm(host: &str, gib: u64, reserve: u64) -> Value {
        json!({"host": host, "memory": gib << 30, "cpu": {"reserve": reserve}})
    }

    fn def(gib: u64, reserve: u32) -> VmDefinition {
        let mut d = VmDefinition::new("new", 1, gib << 30);
        d.cpu.reserve = reserve;
        d
    }

    #[test]
    fn the_most_memory_left_wins_and_says_so() {
        let hosts = [
            host("h1", 8, HostState::Online),
            host("h2", 8, HostState::Online),
            host("h3", 16, HostState::Offline),
        ];
        let vms = [vm("h1", 4, 0), vm("h2", 1, 0), vm("h3", 0, 0)];
        let (h, why) = place(&hosts, &vms, &def(2, 0)).unwrap();
        assert_eq!(h, "h2");
        assert!(
            why.contains("host 'h2': 5.0 GiB of memory free after it") && why.contains("(then: h1 2.0 GiB)"),
            "{why}"
        );
    }

    #[test]
    fn an_anti_affinity_group_keeps_its_vms_apart_or_says_why_not() {
        let hosts = [host("h1", 64, HostState::Online), host("h2", 8, HostState::Online)];
        let db1 =
            json!({"host": "h1", "name": "db1", "group": "db", "memory": 1u64 << 30, "cpu": {"reserve": 0}});
        let mut d = def(1, 0);
        d.group = Some("db".into());
        let (h, why) = place(&hosts, std::slice::from_ref(&db1), &d).unwrap();
        assert_eq!(h, "h2", "h1 has more room, but db1 of the group");
        assert!(why.contains("kept apart from its anti-affinity group 'db' (h1 has 'db1')"), "{why}");
        assert!(check_apart("h1", std::slice::from_ref(&db1), &d)
            .unwrap_err()
            .to_string()
            .contains("has 'db1'"));
        assert!(check_apart("h2", std::slice::from_ref(&db1), &d).is_ok());
        let db2 = json!({"host": "h2", "name": "db2", "group": "db", "memory": 0, "cpu": {"reserve": 0}});
        let e = place(&hosts, &[db1.clone(), db2], &d).unwrap_err().to_string();
        assert!(e.contains("anti-affinity group 'db'") && e.contains("h2 has 'db2'"), "{e}");
        d.group = None;
        assert_eq!(place(&hosts, &[db1], &d).unwrap().0, "h1", "a VM of no group goes where the room is");
    }

    #[test]
    fn ties_go_to_fewer_vms_then_names_and_maintenance_is_skipped() {
        let hosts = [
            host("h1", 8, HostState::Online),
            host("h2", 8, HostState::Online),
            host("h0", 64, HostState::Maintenance),
        ];
        let vms = [vm("h1", 0, 0), vm("h1", 0, 0)];
        assert_eq!(place(&hosts, &vms, &def(1, 0)).unwrap().0, "h2");
        assert_eq!(place(&hosts[..2], &[], &def(1, 0)).unwrap().0, "h1");
    }

    #[test]
    fn nothing_fits_and_the_refusal_has_the_numbers() {
        let hosts = [host("h1", 4, HostState::Online), host("h2", 8, HostState::Online)];
        let vms = [vm("h2", 1, 150)];
        let e = place(&hosts, &vms, &def(6, 100)).unwrap_err().to_string();
        assert!(e.contains("h1 would be 2.0 GiB short of memory") && e.contains("h2 has no CPU left"), "{e}");
        let e = place(&[host("h1", 4, HostState::Offline)], &[], &def(1, 0)).unwrap_err().to_string();
        assert!(e.contains("no host of the pool is online"), "{e}");
    }
}
