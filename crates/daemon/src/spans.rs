//! Networks that span the pool, as the daemon runs them: creating one (recorded in etcd with a
//! VNI no other network has, this host its home), deleting one (only when no VM of the pool has
//! a NIC on it), and each sync round: joining the spanning networks this host lacks, leaving
//! the ones the pool forgot, pointing every VXLAN link's flooding list at the other hosts, and
//! passing leases from each network's home to the hosts that guard its guests' taps.
//!
//! Which networks a VM may take along when it moves to another host ([`Daemon::check_nics_move`]):
//! those that span the pool, and bridged networks (whose LAN the operator says every host
//! shares by naming the same network on each); a host's own NAT, host-only and internal
//! networks stay behind, so a VM with a NIC on one is refused with the reason.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use cluster::{Cluster, SpanNetwork};
use serde_json::Value;

use crate::protocol::{Failure, NetworkCreate};
use crate::Daemon;

/// What the span sync remembers between rounds.
#[derive(Default)]
pub struct SpanState {
    /// The leases last published for each network this host is home of.
    published: BTreeMap<String, Value>,
    /// Problems already reported (so a round does not repeat them), by network.
    reported: BTreeMap<String, String>,
}

impl Daemon {
    /// This host's IPv4 address between hosts (the tunnels' source).
    fn tunnel_ip(&self) -> Result<Ipv4Addr, Failure> {
        match self.pool_ip()? {
            IpAddr::V4(a) => Ok(a),
            IpAddr::V6(a) => Err(Failure::Refused(format!(
                "this host's address in the pool is {a}: networks span the pool over IPv4 only"
            ))),
        }
    }

    /// `vine network create --span`: the network is recorded in the pool (which gives it a
    /// VNI), then made here, its home; every other host joins it within a sync round.
    pub(crate) fn network_create_span(&self, a: &NetworkCreate) -> Result<Value, Failure> {
        let c = self.cluster().ok_or_else(|| {
            Failure::Refused(
                "field `span`: this host is in no pool; a network spans the hosts of a pool".into(),
            )
        })?;
        if a.kind == netconf::Kind::Bridged {
            return Err(Failure::Invalid(
                "field `span`: a bridged network is the uplink's LAN, which the hosts share already; create it on each host".into(),
            ));
        }
        let local = self.tunnel_ip()?;
        let mut spec = self.ctx().networks.prepare(a).map_err(Failure::from)?;
        let me = c.config().host.clone();
        let wanted = SpanNetwork {
            name: spec.name.clone(),
            vni: 0,
            home: me.clone(),
            settings: serde_json::to_value(&spec).expect("serialises"),
        };
        let rec = c.add_span_network(&wanted, netconf::MAX_VNI)?;
        spec.span = Some(crate::networks::Span { vni: rec.vni, home: me, here: true, local });
        match self.ctx().networks.create_spec(spec) {
            Ok(v) => {
                self.note_spans();
                self.wake_sync();
                Ok(v)
            }
            Err(e) => {
                if let Err(u) = c.remove_span_network(&rec) {
                    tracing::error!(network = rec.name, error = %u, "cannot forget a network that was not made");
                }
                Err(e.into())
            }
        }
    }

    /// `vine network delete` of a network that spans the pool: refused while a VM anywhere in
    /// the pool has a NIC on it; else forgotten by the pool and removed here (every other host
    /// removes its part within a sync round).
    pub(crate) fn network_delete_span(&self, name: &str) -> Result<Value, Failure> {
        let c = self.cluster().ok_or_else(|| {
            Failure::Refused(format!("network '{name}' spans a pool this host is no longer in"))
        })?;
        let users: Vec<String> = self
            .list_vms()?
            .into_iter()
            .flat_map(|vm| {
                let host = vm.host.clone().unwrap_or_default();
                vm.nics
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.network == name)
                    .map(|(i, _)| format!("'{}' (NIC {i}, on host '{host}')", vm.name))
                    .collect::<Vec<_>>()
            })
            .collect();
        if !users.is_empty() {
            return Err(Failure::Refused(format!(
                "cannot delete network '{name}': VM NICs in the pool are plugged into it: {}; remove them first",
                users.join(", ")
            )));
        }
        if let Some(rec) = c.span_networks()?.into_iter().find(|r| r.name == name) {
            c.remove_span_network(&rec)?;
        }
        let r = self.ctx().networks.delete(name).map_err(Failure::from)?;
        self.note_spans();
        self.wake_sync();
        Ok(r)
    }

    /// Refuses a move of a VM to another host when one of its NICs is on a network of this host
    /// alone.
    pub(crate) fn check_nics_move(&self, def: &vmconfig::VmDefinition, to: &str) -> Result<(), Failure> {
        let nets = &self.ctx().networks;
        for (i, nic) in def.nics.iter().enumerate() {
            let movable =
                nets.spans_pool(&nic.network) || nets.kind_of(&nic.network) == Some(netconf::Kind::Bridged);
            if !movable {
                return Err(Failure::Refused(format!(
                    "NIC {i} is on network '{}', which is this host's own: host '{to}' has no part of it. \
                     Networks made with --span (or bridged networks) move with a VM",
                    nic.network
                )));
            }
        }
        Ok(())
    }

    /// Before this host leaves its pool: refused while it is the home of a spanning network
    /// (the others would lose its DHCP server and NAT) or a VM here has a NIC on one.
    pub(crate) fn may_leave_span_networks(&self) -> Result<(), Failure> {
        let nets = &self.ctx().networks;
        let spans = nets.spans();
        if let Some((name, s, _)) = spans.iter().find(|(_, s, _)| s.here) {
            return Err(Failure::Refused(format!(
                "this host is the home of network '{name}' (VNI {}), which spans the pool: its DHCP \
                 server and NAT are here; delete the network first",
                s.vni
            )));
        }
        for info in self.local_infos() {
            if let Some(n) = info.nics.iter().find(|n| spans.iter().any(|(s, _, _)| *s == n.network)) {
                return Err(Failure::Refused(format!(
                    "VM '{}' has a NIC on network '{}', which spans the pool and goes with it; \
                     remove the NIC or migrate the VM first",
                    info.name, n.network
                )));
            }
        }
        Ok(())
    }

    /// After this host left its pool: its part of the spanning networks goes.
    pub(crate) fn leave_span_networks(&self) {
        let nets = &self.ctx().networks;
        for (name, _, _) in nets.spans() {
            if let Err(e) = nets.delete(&name) {
                self.ctx().event(None, "warning", "network.leave-failed", &e.to_string());
            }
        }
        self.note_spans();
    }

    /// Tells the store which networks here span the pool (their MACs are claimed pool-wide).
    fn note_spans(&self) {
        let names = self.ctx().networks.spans().into_iter().map(|(n, _, _)| n).collect();
        self.membership.store.set_spanning(names);
    }

    /// One sync round of the spanning networks (see the module's documentation).
    pub(crate) fn sync_span_networks(&self, c: &Cluster) {
        let Ok(records) = c.span_networks() else { return };
        let Ok(hosts) = c.hosts() else { return };
        let me = c.config().host.clone();
        let nets = &self.ctx().networks;
        self.note_spans();
        let mut state = self.membership.spans.lock().unwrap_or_else(|p| p.into_inner());
        let here: BTreeMap<String, crate::networks::Span> =
            nets.spans().into_iter().map(|(n, s, _)| (n, s)).collect();
        let local = match self.tunnel_ip() {
            Ok(ip) => Some(ip),
            Err(e) => {
                if !records.is_empty() {
                    report(&mut state, "", &e.to_string());
                }
                None
            }
        };
        // Join the networks this host lacks.
        for rec in &records {
            if here.contains_key(&rec.name) {
                continue;
            }
            let Some(local) = local else { break };
            let made = nets
                .member_spec(&rec.name, &rec.settings, rec.vni, &rec.home, local)
                .and_then(|spec| nets.create_spec(spec));
            match made {
                Ok(_) => {
                    state.reported.remove(&rec.name);
                    self.ctx().event(
                        None,
                        "info",
                        "network.joined",
                        &format!(
                            "joined network '{}' that spans the pool (VNI {}, home host '{}')",
                            rec.name, rec.vni, rec.home
                        ),
                    );
                }
                Err(e) => {
                    let e = e.to_string();
                    if report(&mut state, &rec.name, &e) {
                        self.ctx().event(None, "error", "network.join-failed", &e);
                    }
                }
            }
        }
        // Leave the ones the pool forgot.
        for name in here.keys().filter(|n| !records.iter().any(|r| &r.name == *n)) {
            match nets.delete(name) {
                Ok(_) => {
                    state.reported.remove(name);
                    self.ctx().event(
                        None,
                        "info",
                        "network.left",
                        &format!("removed network '{name}': the pool no longer has it"),
                    );
                }
                Err(e) => {
                    let e = e.to_string();
                    if report(&mut state, name, &e) {
                        self.ctx().event(None, "warning", "network.leave-failed", &e);
                    }
                }
            }
        }
        self.note_spans();
        // Broadcasts go to every other host.
        let remotes: Vec<Ipv4Addr> =
            hosts.iter().filter(|h| h.record.name != me).filter_map(|h| host_ip(&h.record.url)).collect();
        for (name, _, _) in nets.spans() {
            match nets.flood(&name, &remotes) {
                Ok(changes) if !changes.is_empty() => {
                    tracing::info!(network = name, "flooding list: {}", changes.join(" "))
                }
                Ok(_) => {}
                Err(e) => {
                    let e = e.to_string();
                    if report(&mut state, &format!("flood {name}"), &e) {
                        self.ctx().event(None, "error", "network.span-failed", &e);
                    }
                }
            }
        }
        // Leases: the homes publish theirs, the others follow them.
        for (name, leases) in nets.home_leases() {
            if state.published.get(&name) == Some(&leases) {
                continue;
            }
            if c.publish_leases(&name, &leases).is_ok() {
                state.published.insert(name, leases);
            }
        }
        if here.values().any(|s| !s.here) || records.iter().any(|r| r.home != me) {
            if let Ok(published) = c.span_leases() {
                nets.set_remote_leases(published);
            }
        }
    }
}

/// Notes a problem with `key`; whether it is new (and so to be reported).
fn report(state: &mut SpanState, key: &str, problem: &str) -> bool {
    if state.reported.get(key).map(String::as_str) == Some(problem) {
        return false;
    }
    tracing::warn!("{problem}");
    state.reported.insert(key.to_string(), problem.to_string());
    true
}

/// The IPv4 address in a host's API URL (`https://ADDR:PORT`).
fn host_ip(url: &str) -> Option<Ipv4Addr> {
    match crate::migrate::url_ip(url)? {
        IpAddr::V4(a) => Some(a),
        IpAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_address_comes_from_its_url() {
        assert_eq!(host_ip("https://10.9.0.2:8443"), Some(Ipv4Addr::new(10, 9, 0, 2)));
        assert_eq!(host_ip("https://[fd00::1]:8443"), None);
        assert_eq!(host_ip("http://10.9.0.2:80"), None);
    }
}
