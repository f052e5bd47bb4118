//! The nftables ruleset of one network: isolation (nothing is routed into or out of a network
//! except what its kind allows; traffic within it always passes, also when `br_netfilter` sends
//! bridged frames through the forward hook), the host's own firewall for internal networks (only DHCP reaches
//! the host) and masquerading for NAT networks. One table per network (`inet vine_<bridge>`),
//! replaced atomically by one `nft -f -` transaction and deleted with the network.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::{Kind, NetError};

/// The table of a network's bridge.
pub fn table_name(bridge: &str) -> String {
    format!("vine_{}", bridge.replace('-', "_"))
}

/// The ruleset script for a network (pure).
pub fn ruleset(kind: Kind, bridge: &str, subnet: Option<(Ipv4Addr, u8)>) -> String {
    let t = table_name(bridge);
    let b = bridge;
    let mut s = format!("table inet {t} {{}}\ndelete table inet {t}\ntable inet {t} {{\n");
    s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    // Within the network: with br_netfilter loaded, bridged frames pass this hook too.
    s.push_str(&format!("    iifname \"{b}\" oifname \"{b}\" accept\n"));
    match (kind, subnet) {
        (Kind::Nat, Some((net, prefix))) => {
            s.push_str(&format!("    iifname \"{b}\" ip saddr {net}/{prefix} accept\n"));
            s.push_str(&format!("    iifname \"{b}\" drop\n"));
            s.push_str(&format!("    oifname \"{b}\" ct state established,related accept\n"));
            s.push_str(&format!("    oifname \"{b}\" drop\n"));
        }
        _ => {
            s.push_str(&format!("    iifname \"{b}\" drop\n    oifname \"{b}\" drop\n"));
        }
    }
    s.push_str("  }\n");
    if kind == Kind::Internal {
        s.push_str("  chain input {\n    type filter hook input priority filter; policy accept;\n");
        s.push_str(&format!("    iifname \"{b}\" udp dport 67 accept\n    iifname \"{b}\" drop\n  }}\n"));
    }
    if let (Kind::Nat, Some((net, prefix))) = (kind, subnet) {
        s.push_str("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
        s.push_str(&format!("    ip saddr {net}/{prefix} oifname != \"{b}\" masquerade\n  }}\n"));
    }
    s.push_str("}\n");
    s
}

/// Runs an nftables script as one transaction.
pub(crate) fn run(script: &str) -> Result<(), NetError> {
    nft(script)
}

fn nft(script: &str) -> Result<(), NetError> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NetError::io("run nft (is the nftables package installed?)", e))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(script.as_bytes())
        .map_err(|e| NetError::io("write to nft", e))?;
    let out = child.wait_with_output().map_err(|e| NetError::io("wait for nft", e))?;
    if !out.status.success() {
        return Err(NetError::Nft(String::from_utf8_lossy(&out.stderr).trim().to_string()));
    }
    Ok(())
}

/// `nft list <what>` (e.g. `table bridge T`): the listing, or `Ok("")` when there is no such object.
pub(crate) fn list(what: &str) -> Result<String, NetError> {
    let out = Command::new("nft")
        .arg("list")
        .args(what.split_whitespace())
        .output()
        .map_err(|e| NetError::io("run nft (is the nftables package installed?)", e))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("No such file or directory") {
        return Ok(String::new());
    }
    Err(NetError::Nft(err.trim().to_string()))
}

/// Installs (replacing) a network's table.
pub fn apply(kind: Kind, bridge: &str, subnet: Option<(Ipv4Addr, u8)>) -> Result<(), NetError> {
    nft(&ruleset(kind, bridge, subnet))
}

/// Deletes a network's table (nothing if there is none).
pub fn remove(bridge: &str) -> Result<(), NetError> {
    let t = table_name(bridge);
    nft(&format!("table inet {t} {{}}\ndelete table inet {t}\n"))
}

/// Whether a network's table exists.
pub fn exists(bridge: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", "inet", &table_name(bridge)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_networks_reach_only_dhcp_on_the_host_and_route_nowhere() {
        let s = ruleset(Kind::Internal, "vb1", Some((Ipv4Addr::new(10, 1, 0, 0), 24)));
        assert!(s.starts_with("table inet vine_vb1 {}\ndelete table inet vine_vb1\n"), "{s}");
        assert!(s.contains("iifname \"vb1\" drop\n    oifname \"vb1\" drop"), "{s}");
        assert!(s.contains("iifname \"vb1\" udp dport 67 accept\n    iifname \"vb1\" drop"), "{s}");
        assert!(!s.contains("masquerade"), "{s}");
        let within = s.find("iifname \"vb1\" oifname \"vb1\" accept").expect("intra-network traffic passes");
        assert!(within < s.find("iifname \"vb1\" drop").unwrap(), "{s}");
    }

    #[test]
    fn nat_networks_masquerade_their_subnet_and_accept_only_replies_inbound() {
        let s = ruleset(Kind::Nat, "vb2", Some((Ipv4Addr::new(10, 2, 0, 0), 24)));
        assert!(s.contains("iifname \"vb2\" ip saddr 10.2.0.0/24 accept"), "{s}");
        assert!(s.contains("oifname \"vb2\" ct state established,related accept\n    oifname \"vb2\" drop"));
        assert!(s.contains("ip saddr 10.2.0.0/24 oifname != \"vb2\" masquerade"), "{s}");
        assert!(!s.contains("chain input"), "the host is reachable from a NAT network: {s}");
    }

    #[test]
    fn host_networks_reach_the_host_but_are_not_routed() {
        let s = ruleset(Kind::Host, "vb3", Some((Ipv4Addr::new(10, 3, 0, 0), 24)));
        assert!(!s.contains("chain input") && !s.contains("masquerade"), "{s}");
        assert!(s.contains("iifname \"vb3\" drop"), "{s}");
    }
}
