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

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dhcp::config::{DhcpConfig, Mac, DEFAULT_LEASE_S};
use netconf::{BridgePlan, Kind};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use store::{NetworkRecord, NicRecord, Store, StoreError};
use vmconfig::VmDefinition;
use vmm::process::{self, Identity};

use crate::protocol::NetworkCreate;

/// First three bytes of every MAC vine allocates to a NIC: locally administered (bit 1 of the
/// first byte set), unicast (bit 0 clear), so they never collide with a vendor's address.
pub const NIC_MAC_PREFIX: [u8; 3] = [0x0a, 0x56, 0x4e];
/// First three bytes of a network bridge's MAC.
pub const BRIDGE_MAC_PREFIX: [u8; 3] = [0x0a, 0x56, 0x42];
/// Longest network name.
pub const MAX_NETWORK_NAME: usize = 32;
/// Default subnets are 10.77.N.0/24, the first N no other network uses.
const DEFAULT_SUBNET: [u8; 2] = [10, 77];
/// Most addresses in a default DHCP range (from .100, or .2 in subnets smaller than a /24).
const MAX_DEFAULT_RANGE: u32 = 4096;
/// How long a new DHCP server gets to bind its socket.
const DHCP_READY: Duration = Duration::from_secs(15);
/// How long a DHCP server gets to exit after SIGTERM.
const DHCP_STOP: Duration = Duration::from_secs(5);

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
}

struct DhcpProc {
    id: Identity,
    child: Option<Child>,
}

struct Net {
    spec: NetworkSpec,
    dhcp: Option<DhcpProc>,
}

/// Every network of this host.
pub struct Networks {
    data: PathBuf,
    exe: PathBuf,
    store: Arc<dyn Store>,
    nets: Mutex<BTreeMap<String, Net>>,
}

type Res<T> = Result<T, String>;

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

fn parse_subnet(s: &str) -> Res<(Ipv4Addr, u8)> {
    let (a, p) = s.split_once('/').ok_or_else(|| format!("field `subnet`: {s:?} is not like 10.1.2.0/24"))?;
    let a: Ipv4Addr = a.parse().map_err(|_| format!("field `subnet`: {a:?} is not an IPv4 address"))?;
    let p: u8 = p.parse().map_err(|_| format!("field `subnet`: {p:?} is not a prefix length"))?;
    Ok((a, p))
}

fn ip(field: &str, s: &str) -> Res<Ipv4Addr> {
    s.trim().parse().map_err(|_| format!("field `{field}`: {s:?} is not an IPv4 address"))
}

fn overlaps(a: (Ipv4Addr, u8), b: (Ipv4Addr, u8)) -> bool {
    let p = a.1.min(b.1);
    let m = dhcp::config::mask(p);
    u32::from(a.0) & m == u32::from(b.0) & m
}

/// Checks a network name.
pub fn validate_name(name: &str) -> Res<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NETWORK_NAME
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "field `name`: {name:?} must be 1 to {MAX_NETWORK_NAME} letters, digits, '-', '_' or '.', starting with a letter or digit"
        ))
    }
}

impl Networks {
    /// The networks recorded in `store`; kernel objects and DHCP servers are brought up by
    /// [`Networks::restore_all`].
    pub fn open(data: &Path, exe: PathBuf, store: Arc<dyn Store>) -> Result<Networks, StoreError> {
        let mut nets = BTreeMap::new();
        for r in store.list_networks()? {
            match serde_json::from_str::<NetworkSpec>(&r.spec) {
                Ok(spec) => {
                    nets.insert(r.name.clone(), Net { spec, dhcp: None });
                }
                Err(e) => tracing::error!(network = r.name, error = %e, "unreadable network record skipped"),
            }
        }
        Ok(Networks { data: data.to_path_buf(), exe, store, nets: Mutex::new(nets) })
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
            address: spec.address,
            uplink: spec.uplink.clone(),
        }
    }

    /// Re-creates every network's kernel objects and DHCP server (adopting servers still
    /// running). Problems are returned as messages for the event log; other networks go on.
    pub fn restore_all(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut nets = self.lock();
        for (name, net) in nets.iter_mut() {
            if let Err(e) = netconf::ensure(&Self::plan(&net.spec)) {
                problems.push(format!("network '{name}': {e}"));
                continue;
            }
            if net.spec.dhcp.is_some() {
                match self.adopt_dhcp(name) {
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
                None => net.spec.dhcp.is_some(),
                Some(p) => match p.child.as_mut() {
                    Some(c) => !matches!(c.try_wait(), Ok(None)),
                    None => !process::is_alive(p.id),
                },
            };
            if dead && net.spec.dhcp.is_some() && netconf::index_of(&net.spec.bridge).is_some() {
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

    fn adopt_dhcp(&self, name: &str) -> Option<DhcpProc> {
        let text = std::fs::read_to_string(self.dir(name).join("dhcp.pid")).ok()?;
        let mut f = text.split_whitespace();
        let id = Identity { pid: f.next()?.parse().ok()?, start_ticks: f.next()?.parse().ok()? };
        process::is_alive(id).then_some(DhcpProc { id, child: None })
    }

    fn start_dhcp(&self, spec: &NetworkSpec) -> Res<DhcpProc> {
        let cfg = spec.dhcp.as_ref().expect("only networks with DHCP");
        let dir = self.dir(&spec.name);
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let conf = dir.join("dhcp.json");
        let text = serde_json::to_string_pretty(cfg).expect("configs serialise");
        crate::actor::write_atomic(&conf, &text)
            .map_err(|e| format!("cannot write {}: {e}", conf.display()))?;
        let log = dir.join("dhcp.log");
        let from = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        let mut cmd = Command::new(&self.exe);
        cmd.args(["network", "dhcp-serve", "--interface", &spec.bridge, "--config"])
            .arg(&conf)
            .arg("--leases")
            .arg(dir.join("leases"));
        let (mut child, id) =
            process::spawn_detached(cmd, &log).map_err(|e| format!("cannot start the DHCP server: {e}"))?;
        std::fs::write(dir.join("dhcp.pid"), format!("{} {}\n", id.pid, id.start_ticks))
            .map_err(|e| format!("cannot record the DHCP server: {e}"))?;
        let deadline = Instant::now() + DHCP_READY;
        loop {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            let said = said.get(from as usize..).unwrap_or("");
            if said.contains("vine dhcp: ready") {
                return Ok(DhcpProc { id, child: Some(child) });
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Err(format!("the DHCP server exited ({st}): {}", said.trim().replace('\n', " | ")));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the DHCP server did not start within {DHCP_READY:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop_dhcp(p: &mut DhcpProc) {
        if process::is_alive(p.id) {
            // SAFETY: kill(2) on the DHCP server we started, re-identified by start time just now.
            unsafe {
                libc::kill(p.id.pid as libc::pid_t, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + DHCP_STOP;
        loop {
            let gone = match p.child.as_mut() {
                Some(c) => !matches!(c.try_wait(), Ok(None)),
                None => !process::is_alive(p.id),
            };
            if gone {
                return;
            }
            if Instant::now() > deadline {
                if process::is_alive(p.id) {
                    // SAFETY: as above; it ignored SIGTERM.
                    unsafe {
                        libc::kill(p.id.pid as libc::pid_t, libc::SIGKILL);
                    }
                }
                if let Some(c) = p.child.as_mut() {
                    let _ = c.wait();
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn spec_for(&self, a: &NetworkCreate, nets: &BTreeMap<String, Net>) -> Res<NetworkSpec> {
        validate_name(&a.name)?;
        if nets.contains_key(&a.name) {
            return Err(format!("a network named '{}' already exists", a.name));
        }
        let (bridge, bridge_mac) = self.bridge_name(&a.name);
        if a.kind == Kind::Bridged {
            let up =
                a.uplink.clone().ok_or("field `uplink`: a bridged network needs the host NIC to bridge")?;
            netconf::netlink::check_name(&up).map_err(|e| format!("field `uplink`: {e}"))?;
            if netconf::index_of(&up).is_none() {
                return Err(format!("field `uplink`: the host has no interface {up:?}"));
            }
            if nets.values().any(|n| n.spec.uplink.as_deref() == Some(&up)) {
                return Err(format!("field `uplink`: {up} is already bridged by another network"));
            }
            if a.subnet.is_some() || a.range.is_some() || a.gateway.is_some() {
                return Err("field `subnet`: a bridged network takes its addresses from the uplink's LAN; vine serves no DHCP on it".into());
            }
            return Ok(NetworkSpec {
                name: a.name.clone(),
                kind: a.kind,
                bridge,
                bridge_mac,
                address: None,
                dhcp: None,
                uplink: Some(up),
            });
        }
        if a.uplink.is_some() {
            return Err(format!("field `uplink`: only bridged networks have one, not {}", a.kind.name()));
        }
        let taken: Vec<(Ipv4Addr, u8)> = nets.values().filter_map(|n| n.spec.address).collect();
        let (network, prefix) = match &a.subnet {
            Some(s) => parse_subnet(s)?,
            None => (1..=254u8)
                .map(|n| (Ipv4Addr::new(DEFAULT_SUBNET[0], DEFAULT_SUBNET[1], n, 0), 24))
                .find(|s| !taken.iter().any(|t| overlaps(*s, *t)))
                .ok_or("field `subnet`: no free default subnet; give one")?,
        };
        if let Some(t) = taken.iter().find(|t| overlaps((network, prefix), **t)) {
            let other = nets.values().find(|n| n.spec.address == Some(*t)).map(|n| n.spec.name.clone());
            return Err(format!(
                "field `subnet`: {network}/{prefix} overlaps network '{}' ({}/{})",
                other.unwrap_or_default(),
                t.0,
                t.1
            ));
        }
        let m = dhcp::config::mask(prefix.min(32));
        let base = u32::from(network) & m;
        let host = |n: u32| Ipv4Addr::from(base + n);
        let last = (base | !m).saturating_sub(1);
        let server = host(1);
        let (range_start, range_end) = match &a.range {
            Some(r) => {
                let (x, y) =
                    r.split_once('-').ok_or_else(|| format!("field `range`: {r:?} is not like A-B"))?;
                (ip("range", x)?, ip("range", y)?)
            }
            None => {
                let start = if !m >= 255 { 100 } else { 2 };
                (host(start), Ipv4Addr::from(last.min(base + start + MAX_DEFAULT_RANGE - 1)))
            }
        };
        let router = match &a.gateway {
            Some(g) => Some(ip("gateway", g)?),
            None if a.kind == Kind::Internal => None,
            None => Some(server),
        };
        let dns = a.dns.iter().map(|d| ip("dns", d)).collect::<Res<Vec<_>>>()?;
        let cfg = DhcpConfig {
            server,
            network,
            prefix,
            range_start,
            range_end,
            router,
            dns,
            lease_s: a.lease_s.unwrap_or(DEFAULT_LEASE_S),
            reservations: BTreeMap::new(),
        };
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(NetworkSpec {
            name: a.name.clone(),
            kind: a.kind,
            bridge,
            bridge_mac,
            address: Some((server, prefix)),
            dhcp: (!a.no_dhcp).then_some(cfg),
            uplink: None,
        })
    }

    /// Creates a network: record, kernel objects, DHCP server.
    pub fn create(&self, a: &NetworkCreate) -> Res<Value> {
        let mut nets = self.lock();
        let spec = self.spec_for(a, &nets)?;
        let rec = NetworkRecord {
            name: spec.name.clone(),
            spec: serde_json::to_string(&spec).expect("serialises"),
        };
        self.store.create_network(&rec).map_err(|e| e.to_string())?;
        let undo = |why: String| {
            let _ = netconf::remove(&spec.bridge);
            let _ = self.store.remove_network(&spec.name);
            let _ = std::fs::remove_dir_all(self.dir(&spec.name));
            why
        };
        netconf::ensure(&Self::plan(&spec)).map_err(|e| undo(format!("network '{}': {e}", spec.name)))?;
        let dhcp = match &spec.dhcp {
            Some(_) => {
                Some(self.start_dhcp(&spec).map_err(|e| undo(format!("network '{}': {e}", spec.name)))?)
            }
            None => None,
        };
        let v = Self::info(&spec, dhcp.as_ref());
        nets.insert(spec.name.clone(), Net { spec, dhcp });
        Ok(v)
    }

    fn info(spec: &NetworkSpec, dhcp: Option<&DhcpProc>) -> Value {
        let mut v = serde_json::to_value(spec).expect("serialises");
        v["dhcp_pid"] = json!(dhcp.map(|p| p.id.pid));
        v["bridge_present"] = json!(netconf::index_of(&spec.bridge).is_some());
        v
    }

    /// Every network.
    pub fn list(&self) -> Value {
        Value::Array(self.lock().values().map(|n| Self::info(&n.spec, n.dhcp.as_ref())).collect())
    }

    /// One network.
    pub fn show(&self, name: &str) -> Res<Value> {
        let nets = self.lock();
        let n = nets.get(name).ok_or_else(|| format!("no network named '{name}'"))?;
        Ok(Self::info(&n.spec, n.dhcp.as_ref()))
    }

    /// Deletes a network no NIC uses: DHCP server, rules, bridge, files, record.
    pub fn delete(&self, name: &str) -> Res<Value> {
        let mut nets = self.lock();
        let n = nets.get_mut(name).ok_or_else(|| format!("no network named '{name}'"))?;
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
            ));
        }
        if let Some(p) = n.dhcp.as_mut() {
            Self::stop_dhcp(p);
        }
        netconf::remove(&n.spec.bridge).map_err(|e| format!("cannot delete network '{name}': {e}"))?;
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
        let n = nets.get_mut(name).ok_or_else(|| format!("no network named '{name}'"))?;
        let mut cfg = n.spec.dhcp.clone().ok_or_else(|| format!("network '{name}' has no DHCP server"))?;
        cfg.reservations.insert(mac, addr);
        cfg.validate().map_err(|e| e.to_string())?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let leases = dhcp::leases::read_journal(&self.dir(name).join("leases")).map_err(|e| e.to_string())?;
        if let Some(l) = leases.iter().find(|l| l.ip == addr && l.mac != mac && l.holds(now)) {
            return Err(format!(
                "field `ip`: {addr} is leased to {} until {}; pick another address",
                l.mac, l.expires
            ));
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
        if !self.lock().contains_key(name) {
            return Err(format!("no network named '{name}'"));
        }
        let l = dhcp::leases::read_journal(&self.dir(name).join("leases")).map_err(|e| e.to_string())?;
        Ok(serde_json::to_value(l).expect("serialises"))
    }

    /// The bridge of a network.
    pub fn bridge_of(&self, network: &str) -> Res<String> {
        self.lock()
            .get(network)
            .map(|n| n.spec.bridge.clone())
            .ok_or_else(|| format!("no network named '{network}'"))
    }

    /// Gives every NIC of `def` a MAC held by this VM alone: a MAC in the definition is claimed
    /// (refused when another NIC holds it), a missing one is allocated. MACs of NICs the
    /// definition no longer has are freed. Returns whether `def` changed (MACs filled in).
    pub fn claim_nics(&self, vm: &str, def: &mut VmDefinition) -> Res<bool> {
        let mut changed = false;
        let mut seen = std::collections::BTreeSet::new();
        for (i, nic) in def.nics.iter().enumerate() {
            if let Some(m) = &nic.mac {
                let mac: Mac = m.parse().map_err(|e| format!("field `nic[{i}].mac`: {e}"))?;
                if !seen.insert(mac) {
                    return Err(format!("field `nic[{i}].mac`: {mac} is given to two NICs of this VM"));
                }
            }
        }
        for (i, nic) in def.nics.iter_mut().enumerate() {
            if !self.lock().contains_key(&nic.network) {
                return Err(format!("field `nic[{i}].network`: no network named '{}'", nic.network));
            }
            let rec = |mac: String| NicRecord {
                mac,
                vm: vm.to_string(),
                index: i as u32,
                network: nic.network.clone(),
            };
            match &nic.mac {
                Some(m) => {
                    let mac: Mac = m.parse().map_err(|e| format!("field `nic[{i}].mac`: {e}"))?;
                    self.store
                        .claim_mac(&rec(mac.to_string()))
                        .map_err(|e| format!("field `nic[{i}].mac`: {e}"))?;
                    if mac.to_string() != *m {
                        nic.mac = Some(mac.to_string());
                        changed = true;
                    }
                }
                None => {
                    let mut tries = 0;
                    let mac = loop {
                        let mut r = [0u8; 3];
                        getrandom::getrandom(&mut r).map_err(|e| format!("no random source: {e}"))?;
                        let p = NIC_MAC_PREFIX;
                        let mac = Mac([p[0], p[1], p[2], r[0], r[1], r[2]]).to_string();
                        match self.store.claim_mac(&rec(mac.clone())) {
                            Ok(()) => break mac,
                            Err(StoreError::MacInUse { .. }) if tries < 64 => tries += 1,
                            Err(e) => return Err(e.to_string()),
                        }
                    };
                    nic.mac = Some(mac);
                    changed = true;
                }
            }
        }
        self.store.release_macs(vm, def.nics.len() as u32).map_err(|e| e.to_string())?;
        Ok(changed)
    }

    /// Frees every MAC of `vm` (it is unregistered).
    pub fn release_nics(&self, vm: &str) {
        if let Err(e) = self.store.release_macs(vm, 0) {
            tracing::error!(vm, error = %e, "cannot free the VM's MACs");
        }
    }

    /// Creates the taps of `def`'s NICs on their bridges; returns them in NIC order.
    pub fn plug(&self, vm: &str, def: &VmDefinition) -> Res<Vec<vmm::qemu_args::NicEndpoint>> {
        let mut out = Vec::new();
        for (i, nic) in def.nics.iter().enumerate() {
            let bridge =
                self.bridge_of(&nic.network).map_err(|e| format!("field `nic[{i}].network`: {e}"))?;
            let tap = self.tap_name(vm, i);
            let mac = nic.mac.clone().ok_or_else(|| format!("field `nic[{i}].mac`: no MAC allocated"))?;
            if let Err(e) = netconf::ensure_tap(&tap, &bridge) {
                self.unplug(vm);
                return Err(format!("NIC {i} on network '{}': {e}", nic.network));
            }
            out.push(vmm::qemu_args::NicEndpoint { tap, mac });
        }
        Ok(out)
    }

    /// Deletes every tap of `vm` (its QEMU is gone).
    pub fn unplug(&self, vm: &str) {
        for i in 0..vmconfig::MAX_NICS {
            let tap = self.tap_name(vm, i);
            if netconf::index_of(&tap).is_some() {
                if let Err(e) = netconf::remove_tap(&tap) {
                    tracing::warn!(vm, tap, error = %e, "cannot delete a tap");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_overlap_by_the_shorter_prefix() {
        let a = (Ipv4Addr::new(10, 1, 0, 0), 16);
        assert!(overlaps(a, (Ipv4Addr::new(10, 1, 5, 0), 24)));
        assert!(!overlaps(a, (Ipv4Addr::new(10, 2, 0, 0), 24)));
    }

    #[test]
    fn network_names_are_checked() {
        validate_name("lan-1").unwrap();
        assert!(validate_name("-x").unwrap_err().contains("field `name`"));
        assert!(validate_name(&"x".repeat(33)).is_err());
    }

    #[test]
    fn the_nic_prefix_is_locally_administered_unicast() {
        assert_eq!(NIC_MAC_PREFIX[0] & 0b11, 0b10);
        assert_eq!(BRIDGE_MAC_PREFIX[0] & 0b11, 0b10);
    }
}
