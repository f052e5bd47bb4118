//! Against the real kernel (root): a bridge with an address and rules, a tap and a veth plugged
//! into it, then all of it removed. Names are unique per process; a guard removes them even when
//! an assertion fails.

use std::net::Ipv4Addr;

use netconf::{index_of, BridgePlan, Kind, Netlink};

struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for l in &self.0 {
            let _ = netconf::remove(l);
            let _ = netconf::remove_tap(l);
        }
    }
}

fn master_of(link: &str) -> Option<String> {
    std::fs::read_link(format!("/sys/class/net/{link}/master"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

#[test]
fn bridge_tap_veth_and_rules_are_created_and_removed() {
    let id = std::process::id() % 100_000;
    let (br, tap, va, vb) = (format!("vbk{id}"), format!("vtk{id}"), format!("vxa{id}"), format!("vxb{id}"));
    let _guard = Cleanup(vec![br.clone(), tap.clone(), va.clone()]);
    let plan = BridgePlan {
        kind: Kind::Internal,
        bridge: br.clone(),
        mac: [0x0a, 0x56, 0x49, 0, 0, 1],
        address: Some((Ipv4Addr::new(10, 251, (id % 250) as u8, 1), 24)),
        uplink: None,
        vxlan: None,
    };
    assert!(netconf::ensure(&plan).unwrap(), "the bridge is new");
    assert!(!netconf::ensure(&plan).unwrap(), "idempotent: the bridge was there");
    assert!(index_of(&br).is_some());
    let mac = std::fs::read_to_string(format!("/sys/class/net/{br}/address")).unwrap();
    assert_eq!(mac.trim(), "0a:56:49:00:00:01");
    assert!(netconf::nft::exists(&br));
    netconf::ensure_tap(&tap, &br, None).unwrap();
    assert_eq!(master_of(&tap).as_deref(), Some(br.as_str()));
    let mut nl = Netlink::open().unwrap();
    nl.create_veth(&va, &vb).unwrap();
    nl.set_master(&va, &br).unwrap();
    nl.set_up(&va, true).unwrap();
    assert_eq!(master_of(&va).as_deref(), Some(br.as_str()));
    assert!(nl.delete_link(&va).unwrap());
    assert!(index_of(&vb).is_none(), "deleting one end of a veth deletes both");
    netconf::remove_tap(&tap).unwrap();
    assert!(index_of(&tap).is_none());
    netconf::remove(&br).unwrap();
    assert!(index_of(&br).is_none());
    assert!(!netconf::nft::exists(&br));
    assert!(!nl.delete_link(&br).unwrap(), "deleting a missing link is not an error");
}

/// A guarded tap (port security) against frames a guest writes into it, seen on the bridge: its
/// own MAC passes as source, ARP sender and DHCP client, any other is dropped at the tap; where
/// vine gives the addresses, IPv4 and ARP pass only from the leased address (before a lease,
/// only DHCP from 0.0.0.0).
#[test]
fn a_guarded_tap_drops_frames_that_pose_as_another_mac_or_address() {
    use netconf::portsec::Addresses;
    let id = std::process::id() % 100_000;
    let (br, tap) = (format!("vbp{id}"), format!("vtp{id}"));
    let _guard = Cleanup(vec![br.clone(), tap.clone()]);
    let plan = BridgePlan {
        kind: Kind::Internal,
        bridge: br.clone(),
        mac: [0x0a, 0x56, 0x49, 0, 0, 2],
        address: Some((Ipv4Addr::new(10, 252, (id % 250) as u8, 1), 24)),
        uplink: None,
        vxlan: None,
    };
    netconf::ensure(&plan).unwrap();
    let own = [0x0a, 0x56, 0x4e, 0x01, 0x02, 0x03];
    netconf::portsec::apply(&tap, own, Addresses::Any).unwrap();
    netconf::ensure_tap(&tap, &br, None).unwrap();
    let run = |addrs: Addresses| {
        netconf::portsec::apply(&tap, own, addrs).unwrap();
        let out = std::process::Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/portsec_frames.py"))
            .args([&tap, &br, "0a:56:4e:01:02:03", "0a:56:4e:09:09:09"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
        text
    };
    let macs = "own plain passed\nown arp passed\nown dhcp passed\nown ip passed\n\
                spoofed-source plain dropped\nspoofed-source arp dropped\nspoofed-source dhcp dropped\nspoofed-source ip dropped\n\
                spoofed-arp plain passed\nspoofed-arp arp dropped\nspoofed-arp dhcp passed\nspoofed-arp ip passed\n\
                spoofed-dhcp plain passed\nspoofed-dhcp arp passed\nspoofed-dhcp dhcp dropped\nspoofed-dhcp ip passed\n";
    assert_eq!(run(Addresses::Any), format!("{macs}spoofed-ip plain passed\nspoofed-ip arp passed\nspoofed-ip dhcp passed\nspoofed-ip ip passed\n"));
    assert_eq!(
        run(Addresses::Leased(Ipv4Addr::new(10, 9, 9, 9))),
        format!("{macs}spoofed-ip plain passed\nspoofed-ip arp dropped\nspoofed-ip dhcp passed\nspoofed-ip ip dropped\n")
    );
    let unleased = run(Addresses::Unleased);
    assert!(
        unleased.starts_with("own plain passed\nown arp dropped\nown dhcp passed\nown ip dropped\n"),
        "{unleased}"
    );
    netconf::portsec::remove(&tap).unwrap();
    let listed = std::process::Command::new("nft").args(["list", "tables"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).contains(&netconf::portsec::table_name(&tap)));
}

#[test]
fn a_vxlan_link_keeps_the_flooding_list_it_is_given() {
    // Left down and given loopback addresses only: nothing is ever sent.
    let id = std::process::id() % 100_000;
    let vx = format!("vxq{id}");
    let _guard = Cleanup(vec![vx.clone()]);
    let mut nl = Netlink::open().unwrap();
    assert!(nl.create_vxlan(&vx, 4242, Ipv4Addr::LOCALHOST).unwrap(), "the link is new");
    assert!(!nl.create_vxlan(&vx, 4242, Ipv4Addr::LOCALHOST).unwrap(), "idempotent");
    let info = std::fs::read_to_string(format!("/sys/class/net/{vx}/mtu")).unwrap();
    assert_eq!(info.trim(), "1500");
    let (a, b, c) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3), Ipv4Addr::new(127, 0, 0, 4));
    let vbr = format!("vb{}", &vx[2..]);
    assert_eq!(netconf::flood_to(&vbr, &[a, b]).unwrap(), vec![format!("+{a}"), format!("+{b}")]);
    assert_eq!(nl.flood_list(&vx).unwrap(), vec![a, b]);
    assert!(netconf::flood_to(&vbr, &[a, b]).unwrap().is_empty(), "nothing to change");
    assert_eq!(netconf::flood_to(&vbr, &[b, c]).unwrap(), vec![format!("+{c}"), format!("-{a}")]);
    assert_eq!(nl.flood_list(&vx).unwrap(), vec![b, c]);
    nl.set_flood(&vx, a, false).unwrap(); // not on the list: nothing to do, no error
    assert!(nl.delete_link(&vx).unwrap());
    assert!(index_of(&vx).is_none());
}
