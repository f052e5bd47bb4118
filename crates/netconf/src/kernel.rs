//! The seam between vine's network logic and the kernel: [`Kernel`] is what the daemon calls;
//! [`Live`] does it (netlink, `/dev/net/tun`, nft), [`Recording`] remembers the calls and keeps a
//! model of the links, so the daemon's network rules are unit-tested without root.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::{BridgePlan, NetError};

/// What vine asks of the kernel.
pub trait Kernel: Send + Sync {
    /// Creates (or completes) a network's bridge, address, uplink and rules; whether the bridge
    /// was created.
    fn ensure(&self, plan: &BridgePlan) -> Result<bool, NetError>;
    /// Removes a network's rules, bridge and VXLAN link.
    fn remove(&self, bridge: &str) -> Result<(), NetError>;
    /// Makes `remotes` the hosts a spanning network's broadcasts go to (see
    /// [`crate::flood_to`]); returns what changed.
    fn flood_to(&self, bridge: &str, remotes: &[std::net::Ipv4Addr]) -> Result<Vec<String>, NetError>;
    /// Creates a persistent tap plugged into `bridge`, owned by `owner` (a uid that may then open
    /// it without privileges: the emulator user's).
    fn ensure_tap(&self, tap: &str, bridge: &str, owner: Option<u32>) -> Result<(), NetError>;
    /// Plugs an existing tap (held open by QEMU) into `bridge` and sets it up.
    fn replug(&self, tap: &str, bridge: &str) -> Result<(), NetError>;
    /// Deletes a tap (nothing if there is none).
    fn remove_tap(&self, tap: &str) -> Result<(), NetError>;
    /// Lets frames leave `tap` only with `mac` as source, ARP sender and DHCP client, and from
    /// `addrs` (replacing the tap's rules).
    fn guard_port(&self, tap: &str, mac: [u8; 6], addrs: crate::portsec::Addresses) -> Result<(), NetError>;
    /// Removes a tap's port security rules.
    fn unguard_port(&self, tap: &str) -> Result<(), NetError>;
    /// Whether a link of that name exists.
    fn link_exists(&self, name: &str) -> bool;
    /// The IPv4 addresses a link holds.
    fn ipv4_addresses(&self, name: &str) -> Vec<std::net::Ipv4Addr>;
}

/// The real kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct Live;

impl Kernel for Live {
    fn ensure(&self, plan: &BridgePlan) -> Result<bool, NetError> {
        crate::ensure(plan)
    }
    fn remove(&self, bridge: &str) -> Result<(), NetError> {
        crate::remove(bridge)
    }
    fn flood_to(&self, bridge: &str, remotes: &[std::net::Ipv4Addr]) -> Result<Vec<String>, NetError> {
        crate::flood_to(bridge, remotes)
    }
    fn ensure_tap(&self, tap: &str, bridge: &str, owner: Option<u32>) -> Result<(), NetError> {
        crate::ensure_tap(tap, bridge, owner)
    }
    fn replug(&self, tap: &str, bridge: &str) -> Result<(), NetError> {
        let mut nl = crate::Netlink::open()?;
        nl.set_master(tap, bridge)?;
        nl.set_up(tap, true)
    }
    fn remove_tap(&self, tap: &str) -> Result<(), NetError> {
        crate::remove_tap(tap)
    }
    fn guard_port(&self, tap: &str, mac: [u8; 6], addrs: crate::portsec::Addresses) -> Result<(), NetError> {
        crate::portsec::apply(tap, mac, addrs)
    }
    fn unguard_port(&self, tap: &str) -> Result<(), NetError> {
        crate::portsec::remove(tap)
    }
    fn link_exists(&self, name: &str) -> bool {
        crate::index_of(name).is_some()
    }
    fn ipv4_addresses(&self, name: &str) -> Vec<std::net::Ipv4Addr> {
        crate::netlink::ipv4_addresses(name)
    }
}

/// A fake kernel: records every call (`"ensure vb1"`, `"tap vt1 vb1"`, …) and keeps the links
/// that exist (name → the bridge it is plugged into, empty for bridges and host NICs).
#[derive(Debug, Default)]
pub struct Recording {
    /// Calls, in order.
    pub calls: Mutex<Vec<String>>,
    /// Addresses of links (host NICs).
    pub addresses: Mutex<BTreeMap<String, Vec<std::net::Ipv4Addr>>>,
    /// Links that exist.
    pub links: Mutex<BTreeMap<String, String>>,
}

impl Recording {
    fn note(&self, call: String) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(call);
    }

    fn links(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The calls so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Adds a link made by someone else (a host NIC).
    pub fn add_link(&self, name: &str) {
        self.links().insert(name.to_string(), String::new());
    }

    /// Forgets a link (the kernel lost it: a reboot).
    pub fn lose(&self, name: &str) {
        self.links().remove(name);
    }

    /// The bridge a link is plugged into.
    pub fn master(&self, name: &str) -> Option<String> {
        self.links().get(name).filter(|m| !m.is_empty()).cloned()
    }
}

impl Kernel for Recording {
    fn ensure(&self, plan: &BridgePlan) -> Result<bool, NetError> {
        match plan.vxlan {
            Some(v) => {
                let addr = plan.address.map_or("no address".to_string(), |(a, p)| format!("{a}/{p}"));
                self.note(format!("ensure {} vni {} from {} {addr}", plan.bridge, v.vni, v.local))
            }
            None => self.note(format!("ensure {}", plan.bridge)),
        }
        let mut links = self.links();
        if plan.vxlan.is_some() {
            links.insert(crate::vxlan_name(&plan.bridge), plan.bridge.clone());
        }
        if let Some(up) = &plan.uplink {
            if !links.contains_key(up) {
                return Err(NetError::NoSuchLink(up.clone()));
            }
            links.insert(up.clone(), plan.bridge.clone());
        }
        Ok(links.insert(plan.bridge.clone(), String::new()).is_none())
    }
    fn remove(&self, bridge: &str) -> Result<(), NetError> {
        self.note(format!("remove {bridge}"));
        let mut links = self.links();
        links.remove(bridge);
        links.remove(&crate::vxlan_name(bridge));
        for m in links.values_mut().filter(|m| m.as_str() == bridge) {
            m.clear();
        }
        Ok(())
    }
    fn flood_to(&self, bridge: &str, remotes: &[std::net::Ipv4Addr]) -> Result<Vec<String>, NetError> {
        let list: Vec<String> = remotes.iter().map(|r| r.to_string()).collect();
        self.note(format!("flood {bridge} {}", list.join(",")));
        if !self.links().contains_key(&crate::vxlan_name(bridge)) {
            return Err(NetError::NoSuchLink(crate::vxlan_name(bridge)));
        }
        Ok(Vec::new())
    }
    fn ensure_tap(&self, tap: &str, bridge: &str, owner: Option<u32>) -> Result<(), NetError> {
        match owner {
            Some(uid) => self.note(format!("tap {tap} {bridge} owner {uid}")),
            None => self.note(format!("tap {tap} {bridge}")),
        }
        let mut links = self.links();
        if !links.contains_key(bridge) {
            return Err(NetError::NoSuchLink(bridge.to_string()));
        }
        links.insert(tap.to_string(), bridge.to_string());
        Ok(())
    }
    fn replug(&self, tap: &str, bridge: &str) -> Result<(), NetError> {
        self.note(format!("replug {tap} {bridge}"));
        match self.links().get_mut(tap) {
            Some(m) => {
                *m = bridge.to_string();
                Ok(())
            }
            None => Err(NetError::NoSuchLink(tap.to_string())),
        }
    }
    fn remove_tap(&self, tap: &str) -> Result<(), NetError> {
        self.note(format!("untap {tap}"));
        self.links().remove(tap);
        Ok(())
    }
    fn guard_port(&self, tap: &str, mac: [u8; 6], addrs: crate::portsec::Addresses) -> Result<(), NetError> {
        let m: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
        let a = match addrs {
            crate::portsec::Addresses::Any => String::new(),
            crate::portsec::Addresses::Unleased => " unleased".into(),
            crate::portsec::Addresses::Leased(ip) => format!(" {ip}"),
        };
        self.note(format!("guard {tap} {}{a}", m.join(":")));
        Ok(())
    }
    fn unguard_port(&self, tap: &str) -> Result<(), NetError> {
        self.note(format!("unguard {tap}"));
        Ok(())
    }
    fn link_exists(&self, name: &str) -> bool {
        self.links().contains_key(name)
    }
    fn ipv4_addresses(&self, name: &str) -> Vec<std::net::Ipv4Addr> {
        self.addresses.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned().unwrap_or_default()
    }
}
