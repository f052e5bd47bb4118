//! Port security on a VM's tap, as libvirt's `clean-traffic` filter and OpenStack's port
//! security: frames from the guest leave its tap only with the NIC's own MAC as their source, as
//! the sender of their ARP packets and as the client (`chaddr`) of their DHCP requests, so a
//! guest cannot pose as other machines or drain a network's DHCP pool by asking from invented
//! MACs. On a network whose addresses vine's DHCP server gives, its IPv4 packets and ARP packets
//! also carry only the address it leased ([`Addresses`]): before a lease, only DHCP from
//! 0.0.0.0 and ARP probes. One nftables table per tap (`bridge vine_ps_<tap>`), hooked at the
//! bridge's prerouting, replaced atomically and deleted with the tap.

use std::net::Ipv4Addr;

use crate::NetError;

/// The IPv4 addresses a guest may send from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addresses {
    /// Any: a network whose addresses vine does not give.
    Any,
    /// None yet: DHCP from 0.0.0.0 and ARP probes (sender 0.0.0.0) only.
    Unleased,
    /// The address it leased (and 0.0.0.0 for DHCP).
    Leased(Ipv4Addr),
}

/// BOOTP's `chaddr` field: byte 28 of the message (RFC 2131 §2), after the 8-byte UDP header.
const CHADDR_BITS: u32 = (8 + 28) * 8;

/// The table of a tap.
pub fn table_name(tap: &str) -> String {
    format!("vine_ps_{}", tap.replace('-', "_"))
}

/// The ruleset script for a tap whose NIC has `mac` and may send from `addrs` (pure).
pub fn ruleset(tap: &str, mac: [u8; 6], addrs: Addresses) -> String {
    let t = table_name(tap);
    let colon = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    let mut rules = vec![
        format!("iifname \"{tap}\" ether saddr != {colon} counter drop"),
        format!("iifname \"{tap}\" ether type arp arp saddr ether != {colon} counter drop"),
        format!("iifname \"{tap}\" ether type ip udp dport 67 @th,{CHADDR_BITS},48 != 0x{hex} counter drop"),
    ];
    let allowed = match addrs {
        Addresses::Any => None,
        Addresses::Unleased => Some("0.0.0.0".to_string()),
        Addresses::Leased(ip) => Some(format!("{{ {ip}, 0.0.0.0 }}")),
    };
    if let Some(a) = allowed {
        rules.push(format!("iifname \"{tap}\" ether type ip ip saddr != {a} counter drop"));
        rules.push(format!("iifname \"{tap}\" ether type arp arp saddr ip != {a} counter drop"));
        // 0.0.0.0 is for DHCP only.
        rules.push(format!(
            "iifname \"{tap}\" ether type ip ip saddr 0.0.0.0 ip protocol != udp counter drop"
        ));
        rules.push(format!("iifname \"{tap}\" ether type ip ip saddr 0.0.0.0 udp dport != 67 counter drop"));
    }
    let body: String = rules.iter().map(|r| format!("    {r}\n")).collect();
    format!(
        "table bridge {t} {{}}\ndelete table bridge {t}\ntable bridge {t} {{\n  chain prerouting {{\n    \
         type filter hook prerouting priority filter; policy accept;\n{body}  }}\n}}\n"
    )
}

/// Installs (replacing) a tap's rules.
pub fn apply(tap: &str, mac: [u8; 6], addrs: Addresses) -> Result<(), NetError> {
    crate::netlink::check_name(tap)?;
    crate::nft::run(&ruleset(tap, mac, addrs))
}

/// The frames a tap's rules have dropped since they were last installed (0 if it has none).
pub fn dropped(tap: &str) -> Result<u64, NetError> {
    crate::netlink::check_name(tap)?;
    let out = crate::nft::list(&format!("table bridge {}", table_name(tap)))?;
    Ok(sum_counters(&out))
}

/// The sum of `counter packets N` in an `nft list` output (pure).
fn sum_counters(listing: &str) -> u64 {
    listing
        .split("counter packets ")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// Deletes a tap's rules (nothing if there are none).
pub fn remove(tap: &str) -> Result<(), NetError> {
    let t = table_name(tap);
    crate::nft::run(&format!("table bridge {t} {{}}\ndelete table bridge {t}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tap_passes_only_its_own_mac_as_source_arp_sender_and_dhcp_client() {
        let s = ruleset("vt1-2", [0x0a, 0x56, 0x4e, 0x00, 0x00, 0x10], Addresses::Any);
        assert!(s.starts_with("table bridge vine_ps_vt1_2 {}\ndelete table bridge vine_ps_vt1_2\n"), "{s}");
        assert!(s.contains("iifname \"vt1-2\" ether saddr != 0a:56:4e:00:00:10 counter drop"), "{s}");
        assert!(s.contains("arp saddr ether != 0a:56:4e:00:00:10 counter drop"), "{s}");
        assert!(s.contains("udp dport 67 @th,288,48 != 0x0a564e000010 counter drop"), "{s}");
        assert!(!s.contains("ip saddr"), "{s}");
    }

    #[test]
    fn before_a_lease_only_dhcp_and_probes_pass_and_after_it_only_the_leased_address() {
        let mac = [0x0a, 0x56, 0x4e, 0x00, 0x00, 0x10];
        let s = ruleset("vt1", mac, Addresses::Unleased);
        assert!(
            s.contains("ip saddr != 0.0.0.0 counter drop")
                && s.contains("arp saddr ip != 0.0.0.0 counter drop"),
            "{s}"
        );
        assert!(s.contains("ip saddr 0.0.0.0 udp dport != 67 counter drop"), "{s}");
        let s = ruleset("vt1", mac, Addresses::Leased(Ipv4Addr::new(10, 1, 2, 3)));
        assert!(s.contains("ip saddr != { 10.1.2.3, 0.0.0.0 } counter drop"), "{s}");
        assert!(s.contains("arp saddr ip != { 10.1.2.3, 0.0.0.0 } counter drop"), "{s}");
    }

    #[test]
    fn dropped_frames_are_the_sum_of_the_counters() {
        let listing = "table bridge vine_ps_t {\n chain prerouting {\n  iifname \"t\" ether saddr != 0a:00:00:00:00:01 counter packets 12 bytes 4000 drop\n  iifname \"t\" ether type arp arp saddr ether != 0a:00:00:00:00:01 counter packets 30 bytes 1260 drop\n }\n}\n";
        assert_eq!(sum_counters(listing), 42);
        assert_eq!(sum_counters("table bridge x {}"), 0);
    }
}
