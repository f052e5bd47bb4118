//! Virtual networks: the registry (in the store), their kernel objects (a bridge, rules, one tap
//! per running NIC — through `netconf`), one DHCP server process per network that wants one, and
//! the MAC allocator of VM NICs.
//!
//! Like the disk servers, a DHCP server (`vine network dhcp-serve`) runs in its own process group
//! and outlives the daemon; it is known by pid and start time (`dhcp.pid`) and adopted again by
//! the next daemon. Its lease journal belongs to it alone, so leases survive any restart and are
//! never handed out twice. Bridges, rules and taps are kernel objects that outlive the daemon
//! too; at every daemon start each network is re-created as far as anything is missing (after a
//! host reboot: all of it).
//!
//! A network that spans the pool ([`Span`]) exists on every host with the same name and VNI: a
//! bridge and a VXLAN link on each, so its VMs share one L2 segment wherever they run. Its L3 —
//! the address guests use as gateway, the DHCP server and its lease journal, the NAT — is on
//! one host, its *home*; other hosts' bridges have no address. The home publishes its leases in
//! etcd and every other host holds its guests' taps to them ([`Networks::set_remote_leases`]),
//! so port security is the same wherever a guest runs, before and after it migrates.

mod dhcp_proc;
mod nics;
mod spec;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dhcp::config::{DhcpConfig, Mac, DEFAULT_LEASE_S};
use netconf::{BridgePlan, Kernel, Kind};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use store::{NetworkRecord, NicRecord, Store, StoreError};
use vmconfig::VmDefinition;
use vmm::process::Identity;

use crate::protocol::NetworkCreate;

use spec::ip;
pub use spec::validate_name;

/// First three bytes of every MAC vine allocates to a NIC: locally administered (bit 1 of the
/// first byte set), unicast (bit 0 clear), so they never collide with a vendor's address.
pub const NIC_MAC_PREFIX: [u8; 3] = [0x0a, 0x56, 0x4e];
/// First three bytes of a network bridge's MAC.
pub const BRIDGE_MAC_PREFIX: [u8; 3] = [0x0a, 0x56, 0x42];
/// Longest network name.
pub const MAX_NETWORK_NAME: usize = 32;

/// A guarded tap of a running VM: its network, its NIC's MAC, and the addresses its guest may
/// send from now.
type Guarded = (String, [u8; 6], netconf::portsec::Addresses);

/// A network as the store keeps it and `vine network show --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: Kind,
    /// The bridge.
    pub bridge: String,
    /// The bridge's MAC.
    pub bridge_mac: Mac,
    /// The host's address on the bridge and the prefix length (none for bridged networks).
    pub address: Option<(Ipv4Addr, u8)>,
    /// DHCP settings, when vine serves DHCP on this network.
    pub dhcp: Option<DhcpConfig>,
    /// The host NIC of a bridged network.
    pub uplink: Option<String>,
    /// How the network spans the pool, when it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<Span>,
}

/// How a network spans the pool, as one host holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Span {
    /// Its VXLAN network identifier, the same on every host.
    pub vni: u32,
    /// The host that holds its address, DHCP server and NAT.
    pub home: String,
    /// Whether that is this host.
    pub here: bool,
    /// This host's address between hosts: the tunnel's source.
    pub local: Ipv4Addr,
}

impl NetworkSpec {
    /// Whether this host holds the network's address, DHCP server and NAT: always, unless the
    /// network spans the pool and another host is its home.
    pub fn l3_here(&self) -> bool {
        self.span.as_ref().is_none_or(|s| s.here)
    }

    /// Whether this host runs the network's DHCP server.
    pub fn serves_dhcp(&self) -> bool {
        self.dhcp.is_some() && self.l3_here()
    }
}

/// A network's DHCP server process.
type DhcpProc = crate::helpers::Helper;

struct Net {
    spec: NetworkSpec,
    dhcp: Option<DhcpProc>,
}

/// Every network of this host.
pub struct Networks {
    data: PathBuf,
    exe: PathBuf,
    store: Arc<dyn Store>,
    kernel: Arc<dyn Kernel>,
    nets: Mutex<BTreeMap<String, Net>>,
    /// Who owns new taps.
    tap_owner: Option<u32>,
    /// The guarded taps of running VMs: network, MAC, and the addresses their guest may send from.
    guarded: Mutex<BTreeMap<String, Guarded>>,
    /// The leases the homes of spanning networks published (for those whose home is elsewhere).
    remote_leases: Mutex<BTreeMap<String, Vec<dhcp::leases::Lease>>>,
}

/// What can go wrong with a network, as the daemon answers it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// No network of that name here.
    #[error("no network named '{0}'")]
    NotFound(String),
    /// Refused or failed; the message names the field or the object and why.
    #[error("{0}")]
    Refused(String),
}

impl From<String> for NetworkError {
    fn from(s: String) -> NetworkError {
        NetworkError::Refused(s)
    }
}

impl From<&str> for NetworkError {
    fn from(s: &str) -> NetworkError {
        NetworkError::Refused(s.to_string())
    }
}

impl From<NetworkError> for crate::protocol::Failure {
    fn from(e: NetworkError) -> crate::protocol::Failure {
        match e {
            NetworkError::NotFound(_) => crate::protocol::Failure::NotFound(e.to_string()),
            NetworkError::Refused(m) => crate::protocol::Failure::Refused(m),
        }
    }
}

type Res<T> = Result<T, NetworkError>;

/// FNV-1a, 64 bits: stable names for kernel objects.
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter().chain(std::iter::once(&0u8)) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl Networks {
    /// The networks recorded in `store`; kernel objects and DHCP servers are brought up by
    /// [`Networks::restore_all`].
    pub fn open(
        data: &Path,
        exe: PathBuf,
        store: Arc<dyn Store>,
        kernel: Arc<dyn Kernel>,
    ) -> Result<Networks, StoreError> {
        let mut nets = BTreeMap::new();
        for r in store.list_networks()? {
            match serde_json::from_str::<NetworkSpec>(&r.spec) {
                Ok(spec) => {
                    nets.insert(r.name.clone(), Net { spec, dhcp: None });
                }
                Err(e) => tracing::error!(network = r.name, error = %e, "unreadable network record skipped"),
            }
        }
        Ok(Networks {
            data: data.to_path_buf(),
            exe,
            store,
            kernel,
            nets: Mutex::new(nets),
            tap_owner: None,
            guarded: Mutex::new(BTreeMap::new()),
            remote_leases: Mutex::new(BTreeMap::new()),
        })
    }

    /// Taps made from now on belong to `uid` (the emulator user, who opens them unprivileged).
    pub fn with_tap_owner(mut self, uid: Option<u32>) -> Networks {
        self.tap_owner = uid;
        self
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Net>> {
        self.nets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.data.join("networks").join(name)
    }

    /// The tap of `vm`'s NIC `index` (unique per data directory, at most 15 characters).
    pub fn tap_name(&self, vm: &str, index: usize) -> String {
        let h = fnv(&[self.data.as_os_str().as_encoded_bytes(), vm.as_bytes(), &index.to_le_bytes()]);
        format!("vt{:08x}", h as u32)
    }

    fn bridge_name(&self, network: &str) -> (String, Mac) {
        let h = fnv(&[self.data.as_os_str().as_encoded_bytes(), network.as_bytes()]);
        let b = h.to_le_bytes();
        let p = BRIDGE_MAC_PREFIX;
        (format!("vb{:08x}", h as u32), Mac([p[0], p[1], p[2], b[4], b[5], b[6]]))
    }

    fn plan(spec: &NetworkSpec) -> BridgePlan {
        BridgePlan {
            kind: spec.kind,
            bridge: spec.bridge.clone(),
            mac: spec.bridge_mac.0,
            address: if spec.l3_here() { spec.address } else { None },
            uplink: spec.uplink.clone(),
            vxlan: spec.span.as_ref().map(|s| netconf::Vxlan { vni: s.vni, local: s.local }),
        }
    }

    /// Re-creates every network's kernel objects and DHCP server (adopting servers still
    /// running). Problems are returned as messages for the event log; other networks go on.
    pub fn restore_all(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut nets = self.lock();
        for (name, net) in nets.iter_mut() {
            let created = match self.kernel.ensure(&Self::plan(&net.spec)) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(format!("network '{name}': {e}"));
                    continue;
                }
            };
            if net.spec.serves_dhcp() {
                let adopted = self.adopt_dhcp(name).and_then(|mut p| {
                    if created {
                        // Its socket is bound to the bridge that was lost.
                        Self::stop_dhcp(&mut p);
                        None
                    } else {
                        Some(p)
                    }
                });
                match adopted {
                    Some(p) => net.dhcp = Some(p),
                    None => match self.start_dhcp(&net.spec) {
                        Ok(p) => net.dhcp = Some(p),
                        Err(e) => problems.push(format!("network '{name}': {e}")),
                    },
                }
            }
        }
        problems
    }

    /// Restarts DHCP servers that died (called periodically); returns what it did.
    pub fn watch(&self) -> Vec<String> {
        let mut done = Vec::new();
        let mut nets = self.lock();
        for (name, net) in nets.iter_mut() {
            let dead = match net.dhcp.as_mut() {
                None => net.spec.serves_dhcp(),
                Some(p) => !p.running(),
            };
            if dead && net.spec.serves_dhcp() && self.kernel.link_exists(&net.spec.bridge) {
                net.dhcp = None;
                match self.start_dhcp(&net.spec) {
                    Ok(p) => {
                        done.push(format!(
                            "restarted the DHCP server of network '{name}' (pid {})",
                            p.id.pid
                        ));
                        net.dhcp = Some(p);
                    }
                    Err(e) => done.push(format!("network '{name}': {e}")),
                }
            }
        }
        done
    }

    /// Holds each guarded tap on a network vine gives addresses on to the address its guest
    /// leased (none before a lease, none after it expired), as the lease journals say now.
    /// Returns what changed.
    pub fn learn_addresses(&self) -> Vec<String> {
        let now = crate::since_epoch().as_secs();
        let served: std::collections::BTreeSet<String> =
            self.lock().iter().filter(|(_, n)| n.spec.dhcp.is_some()).map(|(k, _)| k.clone()).collect();
        let mut journals: BTreeMap<String, Vec<dhcp::leases::Lease>> = BTreeMap::new();
        // Spanning networks whose DHCP server is on another host: the leases it published.
        for (name, leases) in self.remote_leases.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            journals.insert(name.clone(), leases.clone());
        }
        let mut changed = Vec::new();
        let mut guarded = self.guarded.lock().unwrap_or_else(|p| p.into_inner());
        for (tap, (network, mac, addrs)) in guarded.iter_mut() {
            if !served.contains(network) {
                continue;
            }
            let leases = journals.entry(network.clone()).or_insert_with(|| {
                dhcp::leases::read_journal(&self.dir(network).join("leases")).unwrap_or_default()
            });
            let want = leased_to(leases, *mac, now);
            if want == *addrs {
                continue;
            }
            match self.kernel.guard_port(tap, *mac, want) {
                Ok(()) => {
                    *addrs = want;
                    changed.push(format!("tap {tap} on '{network}' may now send from {want:?}"));
                }
                Err(e) => tracing::warn!(tap, error = %e, "cannot update a tap's port security"),
            }
        }
        changed
    }

    /// Creates a network: record, kernel objects, DHCP server.
    pub fn create(&self, a: &NetworkCreate) -> Res<Value> {
        let spec = self.prepare(a)?;
        self.create_spec(spec)
    }

    /// The settings a new network would have (nothing is made).
    pub fn prepare(&self, a: &NetworkCreate) -> Res<NetworkSpec> {
        self.spec_for(a, &self.lock())
    }

    /// Makes a network of `spec` here (made by [`Networks::prepare`], or by
    /// [`Networks::member_spec`] for a network another host made span the pool).
    pub fn create_spec(&self, spec: NetworkSpec) -> Res<Value> {
        let mut nets = self.lock();
        if nets.contains_key(&spec.name) {
            return Err(format!("a network named '{}' already exists", spec.name).into());
        }
        let rec = NetworkRecord {
            name: spec.name.clone(),
            spec: serde_json::to_string(&spec).expect("serialises"),
        };
        self.store.create_network(&rec).map_err(|e| e.to_string())?;
        let undo = |why: String| {
            let _ = self.kernel.remove(&spec.bridge);
            let _ = self.store.remove_network(&spec.name);
            let _ = std::fs::remove_dir_all(self.dir(&spec.name));
            why
        };
        self.kernel.ensure(&Self::plan(&spec)).map_err(|e| undo(format!("network '{}': {e}", spec.name)))?;
        let dhcp = match spec.serves_dhcp() {
            true => Some(self.start_dhcp(&spec).map_err(|e| undo(format!("network '{}': {e}", spec.name)))?),
            false => None,
        };
        let v = self.info(&spec, dhcp.as_ref());
        nets.insert(spec.name.clone(), Net { spec, dhcp });
        Ok(v)
    }

    fn info(&self, spec: &NetworkSpec, dhcp: Option<&DhcpProc>) -> Value {
        let mut v = serde_json::to_value(spec).expect("serialises");
        v["dhcp_pid"] = json!(dhcp.map(|p| p.id.pid));
        v["bridge_present"] = json!(self.kernel.link_exists(&spec.bridge));
        let stats = std::fs::read_to_string(self.dir(&spec.name).join("dhcp-stats.json")).ok();
        v["dhcp_stats"] = stats.and_then(|t| serde_json::from_str::<Value>(&t).ok()).unwrap_or(Value::Null);
        v
    }

    /// Every network.
    pub fn list(&self) -> Value {
        Value::Array(self.lock().values().map(|n| self.info(&n.spec, n.dhcp.as_ref())).collect())
    }

    /// Whether a network of this name exists.
    pub fn exists(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }

    /// One network.
    pub fn show(&self, name: &str) -> Res<Value> {
        let nets = self.lock();
        let n = nets.get(name).ok_or_else(|| NetworkError::NotFound(name.to_string()))?;
        Ok(self.info(&n.spec, n.dhcp.as_ref()))
    }

    /// Deletes a network no NIC uses: DHCP server, rules, bridge, files, record.
    pub fn delete(&self, name: &str) -> Res<Value> {
        let mut nets = self.lock();
        let n = nets.get_mut(name).ok_or_else(|| NetworkError::NotFound(name.to_string()))?;
        let users: Vec<String> = self
            .store
            .list_nics()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|x| x.network == name)
            .map(|x| format!("'{}' (NIC {})", x.vm, x.index))
            .collect();
        if !users.is_empty() {
            return Err(format!(
                "cannot delete network '{name}': VM NICs are plugged into it: {}; remove them first",
                users.join(", ")
            )
            .into());
        }
        if let Some(p) = n.dhcp.as_mut() {
            Self::stop_dhcp(p);
        }
        self.kernel.remove(&n.spec.bridge).map_err(|e| format!("cannot delete network '{name}': {e}"))?;
        self.store.remove_network(name).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_dir_all(self.dir(name));
        nets.remove(name);
        Ok(json!({ "name": name, "message": format!("deleted network '{name}'") }))
    }

    /// Reserves `ip` for `mac` on a network; its DHCP server restarts with the new settings.
    pub fn reserve(&self, name: &str, mac: &str, ip_text: &str) -> Res<Value> {
        let mac: Mac = mac.parse().map_err(|e| format!("field `mac`: {e}"))?;
        let addr = ip("ip", ip_text)?;
        let mut nets = self.lock();
        let n = nets.get_mut(name).ok_or_else(|| NetworkError::NotFound(name.to_string()))?;
        if let Some(s) = n.spec.span.as_ref().filter(|s| !s.here) {
            return Err(format!(
                "network '{name}' spans the pool and its DHCP server is on host '{}': reserve addresses there",
                s.home
            ).into());
        }
        let mut cfg = n.spec.dhcp.clone().ok_or_else(|| format!("network '{name}' has no DHCP server"))?;
        cfg.reservations.insert(mac, addr);
        cfg.validate().map_err(|e| e.to_string())?;
        let now = crate::since_epoch().as_secs();
        let leases = dhcp::leases::read_journal(&self.dir(name).join("leases")).map_err(|e| e.to_string())?;
        if let Some(l) = leases.iter().find(|l| l.ip == addr && l.mac != mac && l.holds(now)) {
            return Err(format!(
                "field `ip`: {addr} is leased to {} until {}; pick another address",
                l.mac, l.expires
            )
            .into());
        }
        let mut spec = n.spec.clone();
        spec.dhcp = Some(cfg);
        let rec =
            NetworkRecord { name: name.to_string(), spec: serde_json::to_string(&spec).expect("serialises") };
        self.store.update_network(&rec).map_err(|e| e.to_string())?;
        n.spec = spec;
        if let Some(p) = n.dhcp.as_mut() {
            Self::stop_dhcp(p);
        }
        n.dhcp = None;
        n.dhcp = Some(self.start_dhcp(&n.spec)?);
        Ok(json!({ "network": name, "mac": mac, "ip": addr }))
    }

    /// The leases a network's DHCP server recorded.
    pub fn leases(&self, name: &str) -> Res<Value> {
        let here = match self.lock().get(name) {
            None => return Err(NetworkError::NotFound(name.to_string())),
            Some(n) => n.spec.l3_here(),
        };
        let l = if here {
            dhcp::leases::read_journal(&self.dir(name).join("leases")).map_err(|e| e.to_string())?
        } else {
            let remote = self.remote_leases.lock().unwrap_or_else(|p| p.into_inner());
            remote.get(name).cloned().unwrap_or_default()
        };
        let now = crate::since_epoch().as_secs();
        Ok(Value::Array(l.iter().map(|x| lease_view(x, now)).collect()))
    }

    /// Whether a link (a VM's tap) exists.
    pub fn link_exists(&self, name: &str) -> bool {
        self.kernel.link_exists(name)
    }

    /// The bridge of a network.
    pub fn bridge_of(&self, network: &str) -> Res<String> {
        self.lock()
            .get(network)
            .map(|n| n.spec.bridge.clone())
            .ok_or_else(|| NetworkError::NotFound(network.to_string()))
    }
}

/// What a guest with `mac` may send from, as `leases` say at `now`.
fn leased_to(leases: &[dhcp::leases::Lease], mac: [u8; 6], now: u64) -> netconf::portsec::Addresses {
    leases
        .iter()
        .find(|l| l.mac.0 == mac && l.state == dhcp::leases::LeaseState::Bound && l.holds(now))
        .map_or(netconf::portsec::Addresses::Unleased, |l| netconf::portsec::Addresses::Leased(l.ip))
}

/// A lease as listed: one whose time is over is `expired`, whatever the journal last said of it
/// (the server forgets it only when it next hands the address out).
pub fn lease_view(l: &dhcp::leases::Lease, now: u64) -> Value {
    let mut v = serde_json::to_value(l).expect("leases serialise");
    if l.state != dhcp::leases::LeaseState::Released && !l.holds(now) {
        v["state"] = json!("expired");
    }
    v
}

mod span;

#[cfg(test)]
mod tests;
