//! The kernel side of vine's virtual networks: a bridge per network, a persistent tap per VM NIC,
//! veth pairs (tests, benchmarks), the bridge's address, and the network's nftables table
//! (isolation, NAT). Links are made over rtnetlink ([`netlink`]), taps through `/dev/net/tun`
//! ([`tap`]), rules with `nft` ([`nft`]). Nothing here shells out to `ip`. [`kernel::Kernel`] is
//! the seam the daemon uses: [`Live`] for real, [`Recording`] in unit tests.
//!
//! A network that spans a pool of hosts has, on each host, a VXLAN link (`vx…`, one VNI per
//! network) plugged into its bridge; its flooding list names every other host of the pool
//! ([`flood_to`]), and unicast frames go straight to the host where the destination MAC was
//! last seen.
//!
//! **Invariant:** vine touches only links it named (bridges `vb…`, taps `vt…`, VXLAN links
//! `vx…`) and tables it named (`inet vine_…`); a bridged network's uplink is attached to, never
//! reconfigured.
#![warn(missing_docs)]

pub mod kernel;
pub mod netlink;
pub mod nft;
pub mod portsec;
pub mod tap;

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub use kernel::{Kernel, Live, Recording};
pub use netlink::{index_of, Netlink};

/// What a network connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// VMs only: the host answers DHCP and nothing else; nothing is routed.
    Internal,
    /// VMs and the host: the host is reachable; nothing is routed further.
    Host,
    /// VMs and the host, and out through the host with masquerading.
    Nat,
    /// The bridge holds a host NIC: VMs sit on that NIC's LAN.
    Bridged,
}

impl Kind {
    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Internal => "internal",
            Kind::Host => "host",
            Kind::Nat => "nat",
            Kind::Bridged => "bridged",
        }
    }
}

/// Errors of the kernel side.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The kernel refused a netlink request.
    #[error("cannot {what}: {}", std::io::Error::from_raw_os_error(*errno))]
    Kernel {
        /// What was asked.
        what: String,
        /// The errno.
        errno: i32,
    },
    /// A system call or file failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No such interface.
    #[error("no network interface named {0:?}")]
    NoSuchLink(String),
    /// Not a name the kernel takes.
    #[error("{0:?} is not a valid interface name (1 to 15 letters, digits, '-', '_', '.')")]
    BadName(String),
    /// nft refused the ruleset.
    #[error("nft: {0}")]
    Nft(String),
}

impl NetError {
    fn io(what: &str, source: std::io::Error) -> NetError {
        NetError::Io { what: what.to_string(), source }
    }
}

/// What a network needs in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgePlan {
    /// Its kind.
    pub kind: Kind,
    /// The bridge's name.
    pub bridge: String,
    /// The bridge's MAC (fixed, so the gateway's never changes).
    pub mac: [u8; 6],
    /// The host's address on the bridge and the subnet's prefix length.
    pub address: Option<(Ipv4Addr, u8)>,
    /// The host NIC a bridged network holds.
    pub uplink: Option<String>,
    /// The VXLAN link of a network that spans hosts.
    pub vxlan: Option<Vxlan>,
}

/// A network's VXLAN link on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vxlan {
    /// The network's VXLAN network identifier (24 bits, the same on every host).
    pub vni: u32,
    /// This host's address on the network between hosts: the tunnel's source.
    pub local: Ipv4Addr,
}

/// Largest VXLAN network identifier (24 bits).
pub const MAX_VNI: u32 = (1 << 24) - 1;

/// The VXLAN link of the network whose bridge is `bridge` (`vb…` → `vx…`).
pub fn vxlan_name(bridge: &str) -> String {
    match bridge.strip_prefix("vb") {
        Some(rest) => format!("vx{rest}"),
        None => format!("vx{}", &bridge[bridge.len().saturating_sub(13)..]),
    }
}

fn network_of(ip: Ipv4Addr, prefix: u8) -> (Ipv4Addr, Ipv4Addr) {
    let m = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix.min(32))) };
    (Ipv4Addr::from(u32::from(ip) & m), Ipv4Addr::from(u32::from(ip) | !m))
}

/// Creates (or completes) a network's bridge, address, uplink and rules. Idempotent: run at
/// creation and again at every daemon start (after a host reboot nothing is left). Returns
/// whether the bridge itself was created (sockets bound to an earlier one are stale).
pub fn ensure(plan: &BridgePlan) -> Result<bool, NetError> {
    let mut nl = Netlink::open()?;
    let created = nl.create_bridge(&plan.bridge, plan.mac)?;
    if let Some((ip, prefix)) = plan.address {
        let (_, bcast) = network_of(ip, prefix);
        nl.add_address(&plan.bridge, ip, prefix, bcast)?;
    }
    if let Some(up) = &plan.uplink {
        nl.set_master(up, &plan.bridge)?;
        nl.set_up(up, true)?;
    }
    if let Some(v) = plan.vxlan {
        let vx = vxlan_name(&plan.bridge);
        nl.create_vxlan(&vx, v.vni, v.local)?;
        nl.set_master(&vx, &plan.bridge)?;
        nl.set_up(&vx, true)?;
    }
    nl.set_up(&plan.bridge, true)?;
    let subnet = plan.address.map(|(ip, p)| (network_of(ip, p).0, p));
    if plan.kind == Kind::Nat {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(|e| NetError::io("enable IPv4 forwarding", e))?;
    }
    nft::apply(plan.kind, &plan.bridge, subnet)?;
    Ok(created)
}

/// Removes a network's rules and bridge (and detaches its uplink, which stays as it was).
pub fn remove(bridge: &str) -> Result<(), NetError> {
    nft::remove(bridge)?;
    let mut nl = Netlink::open()?;
    nl.delete_link(&vxlan_name(bridge))?;
    nl.delete_link(bridge)?;
    Ok(())
}

/// Makes `remotes` the flooding list of the VXLAN link of `bridge`'s network (adding the new,
/// dropping the gone); returns what changed, as `+ADDR` and `-ADDR`.
pub fn flood_to(bridge: &str, remotes: &[Ipv4Addr]) -> Result<Vec<String>, NetError> {
    let vx = vxlan_name(bridge);
    let mut nl = Netlink::open()?;
    let now = nl.flood_list(&vx)?;
    let mut changes = Vec::new();
    for r in remotes.iter().filter(|r| !now.contains(r)) {
        nl.set_flood(&vx, *r, true)?;
        changes.push(format!("+{r}"));
    }
    for r in now.iter().filter(|r| !remotes.contains(r)) {
        nl.set_flood(&vx, *r, false)?;
        changes.push(format!("-{r}"));
    }
    Ok(changes)
}

/// Creates a VM NIC's persistent tap and plugs it into `bridge`.
pub fn ensure_tap(tap: &str, bridge: &str, owner: Option<u32>) -> Result<(), NetError> {
    tap::create_tap(tap, owner)?;
    let mut nl = Netlink::open()?;
    nl.set_master(tap, bridge)?;
    nl.set_up(tap, true)
}

/// Deletes a tap (nothing if there is none).
pub fn remove_tap(tap: &str) -> Result<(), NetError> {
    Netlink::open()?.delete_link(tap).map(|_| ())
}
