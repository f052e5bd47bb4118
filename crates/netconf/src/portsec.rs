//! Port security on a VM's tap, as libvirt's `clean-traffic` filter and OpenStack's port
//! security: frames from the guest leave its tap only with the NIC's own MAC as their source, as
//! the sender of their ARP packets and as the client (`chaddr`) of their DHCP requests, so a
//! guest cannot pose as other machines or drain a network's DHCP pool by asking from invented
//! MACs. One nftables table per tap (`bridge vine_ps_<tap>`), hooked at the bridge's prerouting,
//! replaced atomically and deleted with the tap.

use crate::NetError;

/// BOOTP's `chaddr` field: byte 28 of the message (RFC 2131 §2), after the 8-byte UDP header.
const CHADDR_BITS: u32 = (8 + 28) * 8;

/// The table of a tap.
pub fn table_name(tap: &str) -> String {
    format!("vine_ps_{}", tap.replace('-', "_"))
}

/// The ruleset script for a tap whose NIC has `mac` (pure).
pub fn ruleset(tap: &str, mac: [u8; 6]) -> String {
    let t = table_name(tap);
    let colon = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "table bridge {t} {{}}\ndelete table bridge {t}\ntable bridge {t} {{\n  chain prerouting {{\n    \
         type filter hook prerouting priority filter; policy accept;\n    \
         iifname \"{tap}\" ether saddr != {colon} drop\n    \
         iifname \"{tap}\" ether type arp arp saddr ether != {colon} drop\n    \
         iifname \"{tap}\" ether type ip udp dport 67 @th,{CHADDR_BITS},48 != 0x{hex} drop\n  }}\n}}\n"
    )
}

/// Installs (replacing) a tap's rules.
pub fn apply(tap: &str, mac: [u8; 6]) -> Result<(), NetError> {
    crate::netlink::check_name(tap)?;
    crate::nft::run(&ruleset(tap, mac))
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
        let s = ruleset("vt1-2", [0x0a, 0x56, 0x4e, 0x00, 0x00, 0x10]);
        assert!(s.starts_with("table bridge vine_ps_vt1_2 {}\ndelete table bridge vine_ps_vt1_2\n"), "{s}");
        assert!(s.contains("iifname \"vt1-2\" ether saddr != 0a:56:4e:00:00:10 drop"), "{s}");
        assert!(s.contains("arp saddr ether != 0a:56:4e:00:00:10 drop"), "{s}");
        assert!(s.contains("udp dport 67 @th,288,48 != 0x0a564e000010 drop"), "{s}");
    }
}
