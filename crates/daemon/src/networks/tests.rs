//! The network rules against a recording kernel (no root, no DHCP processes: `no_dhcp`).

use std::sync::Arc;

use netconf::Recording;
use store::SqliteStore;
use vmconfig::Nic;

use super::*;

fn setup() -> (tempfile::TempDir, Networks, Arc<Recording>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("vine.db")).unwrap());
    let kernel = Arc::new(Recording::default());
    let n = Networks::open(dir.path(), "/nonexistent/vine".into(), store, kernel.clone()).unwrap();
    (dir, n, kernel)
}

fn req(name: &str, kind: Kind) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        kind,
        subnet: None,
        range: None,
        gateway: None,
        dns: vec![],
        lease_s: None,
        uplink: None,
        no_dhcp: true,
        span: false,
    }
}

#[test]
fn the_prefixes_are_locally_administered_unicast() {
    assert_eq!(NIC_MAC_PREFIX[0] & 0b11, 0b10);
    assert_eq!(BRIDGE_MAC_PREFIX[0] & 0b11, 0b10);
}

#[test]
fn networks_get_free_default_subnets_and_overlaps_are_refused() {
    let (_d, n, k) = setup();
    let a = n.create(&req("a", Kind::Internal)).unwrap();
    let b = n.create(&req("b", Kind::Host)).unwrap();
    assert_eq!(a["address"], json!(["10.77.1.1", 24]));
    assert_eq!(b["address"], json!(["10.77.2.1", 24]));
    let mut c = req("c", Kind::Nat);
    c.subnet = Some("10.77.1.0/25".into());
    let e = n.create(&c).unwrap_err().to_string();
    assert!(e.contains("overlaps network 'a' (10.77.1.1/24)"), "{e}");
    assert!(n.create(&req("a", Kind::Host)).unwrap_err().to_string().contains("already exists"));
    let br = a["bridge"].as_str().unwrap();
    assert!(br.len() <= 15 && br.starts_with("vb"));
    assert_eq!(k.calls(), vec![format!("ensure {br}"), format!("ensure {}", b["bridge"].as_str().unwrap())]);
}

#[test]
fn dhcp_defaults_follow_the_kind_and_the_subnet() {
    let (_d, n, _k) = setup();
    let nets = n.lock();
    let spec = |kind, subnet: Option<&str>| {
        let mut r = req("x", kind);
        r.subnet = subnet.map(String::from);
        r.no_dhcp = false;
        n.spec_for(&r, &nets).unwrap().dhcp.unwrap()
    };
    let nat = spec(Kind::Nat, Some("10.5.6.0/24"));
    assert_eq!((nat.server, nat.router), (Ipv4Addr::new(10, 5, 6, 1), Some(Ipv4Addr::new(10, 5, 6, 1))));
    assert_eq!(
        (nat.range_start, nat.range_end),
        (Ipv4Addr::new(10, 5, 6, 100), Ipv4Addr::new(10, 5, 6, 254))
    );
    assert_eq!(nat.lease_s, dhcp::config::DEFAULT_LEASE_S);
    assert_eq!(spec(Kind::Internal, None).router, None, "internal networks hand out no gateway");
    let small = spec(Kind::Host, Some("10.5.7.0/28"));
    assert_eq!(
        (small.range_start, small.range_end),
        (Ipv4Addr::new(10, 5, 7, 2), Ipv4Addr::new(10, 5, 7, 14))
    );
    let mut r = req("x", Kind::Nat);
    r.subnet = Some("10.5.6.0/24".into());
    r.gateway = Some("10.5.6.120".into());
    assert!(n.spec_for(&r, &nets).unwrap_err().to_string().contains("gateway"));
    r.gateway = None;
    r.range = Some("10.5.6.9".into());
    assert!(n.spec_for(&r, &nets).unwrap_err().to_string().contains("field `range`"));
    r.range = None;
    r.subnet = Some("10.5.6.0".into());
    assert!(n.spec_for(&r, &nets).unwrap_err().to_string().contains("field `subnet`"));
}

#[test]
fn a_bridged_network_takes_an_existing_uplink_no_other_network_holds() {
    let (_d, n, k) = setup();
    assert!(n.create(&req("lan", Kind::Bridged)).unwrap_err().to_string().contains("field `uplink`"));
    let mut r = req("lan", Kind::Bridged);
    r.uplink = Some("eth9".into());
    assert!(n.create(&r).unwrap_err().to_string().contains("has no interface"));
    k.add_link("eth9");
    k.addresses.lock().unwrap().insert("eth9".into(), vec![Ipv4Addr::new(192, 0, 2, 7)]);
    let e = n.create(&r).unwrap_err().to_string();
    assert!(e.contains("eth9 has the host's address(es) 192.0.2.7"), "{e}");
    k.addresses.lock().unwrap().clear();
    let v = n.create(&r).unwrap();
    assert_eq!(k.master("eth9").as_deref(), v["bridge"].as_str());
    assert_eq!(v["dhcp"], Value::Null);
    r.name = "lan2".into();
    assert!(n.create(&r).unwrap_err().to_string().contains("already bridged"));
    n.delete("lan").unwrap();
    assert_eq!(k.master("eth9"), None, "the uplink is detached, not removed");
    assert!(k.link_exists("eth9"));
}

fn vm_def(nets: &[&str]) -> VmDefinition {
    let mut d = VmDefinition::new("web1", 1, 64 << 20);
    d.nics = nets.iter().map(|n| Nic { network: n.to_string(), mac: None }).collect();
    d
}

#[test]
fn nics_get_unique_macs_taps_follow_the_vm_and_delete_waits_for_the_nics() {
    let (_d, n, k) = setup();
    let v = n.create(&req("lan", Kind::Internal)).unwrap();
    let br = v["bridge"].as_str().unwrap().to_string();
    let mut def = vm_def(&["lan", "lan", "lan"]);
    assert!(n.claim_nics("web1", &mut def).unwrap(), "MACs were filled in");
    let macs: Vec<String> = def.nics.iter().map(|x| x.mac.clone().unwrap()).collect();
    assert!(macs.iter().all(|m| m.starts_with("0a:56:4e:")));
    assert_eq!(macs.iter().collect::<std::collections::BTreeSet<_>>().len(), 3);
    assert!(!n.claim_nics("web1", &mut def).unwrap(), "claiming again changes nothing");
    // Another VM cannot take one of them; a VM cannot give one MAC to two NICs.
    let mut other = vm_def(&["lan"]);
    other.nics[0].mac = Some(macs[1].clone());
    assert!(n
        .claim_nics("db", &mut other)
        .unwrap_err()
        .to_string()
        .contains("already used by NIC 1 of VM 'web1'"));
    let mut twice = vm_def(&["lan", "lan"]);
    twice.nics[0].mac = Some("0a:00:00:00:00:01".into());
    twice.nics[1].mac = Some("0A:00:00:00:00:01".into());
    assert!(n.claim_nics("db", &mut twice).unwrap_err().to_string().contains("two NICs"));
    assert!(n
        .claim_nics("db", &mut vm_def(&["wan"]))
        .unwrap_err()
        .to_string()
        .contains("no network named 'wan'"));

    let eps = n.plug("web1", &def).unwrap();
    assert_eq!(eps.len(), 3);
    for (e, m) in eps.iter().zip(&macs) {
        assert_eq!((k.master(&e.tap).as_deref(), &e.mac), (Some(br.as_str()), m));
        assert!(e.tap.len() <= 15);
    }
    // Each tap is guarded by its NIC's MAC before it exists, and unguarded when it goes.
    let calls = k.calls();
    for e in &eps {
        let guard = calls.iter().position(|c| *c == format!("guard {} {}", e.tap, e.mac)).expect("guarded");
        let tap = calls.iter().position(|c| c.starts_with(&format!("tap {} ", e.tap))).expect("made");
        assert!(guard < tap, "{calls:?}");
    }
    n.unplug("web1");
    assert!(eps.iter().all(|e| !k.link_exists(&e.tap)));
    assert!(eps.iter().all(|e| k.calls().contains(&format!("unguard {}", e.tap))));

    let e = n.delete("lan").unwrap_err().to_string();
    assert!(e.contains("'web1' (NIC 0), 'web1' (NIC 1), 'web1' (NIC 2)"), "{e}");
    n.release_nics("web1");
    n.delete("lan").unwrap();
    assert!(!k.link_exists(&br));
    assert_eq!(k.calls().last().unwrap(), &format!("remove {br}"));
}

#[test]
fn restore_recreates_lost_bridges_and_running_taps_are_plugged_back() {
    let (d, n, k) = setup();
    let v = n.create(&req("lan", Kind::Host)).unwrap();
    let br = v["bridge"].as_str().unwrap().to_string();
    let mut def = vm_def(&["lan"]);
    n.claim_nics("web1", &mut def).unwrap();
    let tap = n.plug("web1", &def).unwrap()[0].tap.clone();
    drop(n);
    // The bridge is lost while the daemon is down; the tap (held by QEMU) survives, unplugged.
    k.remove(&br).unwrap();
    assert_eq!(k.master(&tap), None);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&d.path().join("vine.db")).unwrap());
    let n = Networks::open(d.path(), "/nonexistent/vine".into(), store, k.clone()).unwrap();
    assert!(n.restore_all().is_empty());
    assert!(k.link_exists(&br));
    n.replug("web1", &def);
    assert_eq!(k.master(&tap).as_deref(), Some(br.as_str()));
}

#[test]
fn leases_whose_time_is_over_are_listed_as_expired() {
    use dhcp::leases::{Lease, LeaseState};
    let l = |state, expires| Lease {
        ip: "10.1.2.3".parse().unwrap(),
        mac: dhcp::config::Mac([0x0a, 0x56, 0x4e, 0, 0, 1]),
        state,
        expires,
    };
    assert_eq!(lease_view(&l(LeaseState::Bound, 200), 100)["state"], "bound");
    assert_eq!(lease_view(&l(LeaseState::Bound, 100), 100)["state"], "expired");
    assert_eq!(lease_view(&l(LeaseState::Declined, 50), 100)["state"], "expired");
    assert_eq!(lease_view(&l(LeaseState::Released, 50), 100)["state"], "released");
}

#[test]
fn a_member_of_a_spanning_network_has_its_bridge_and_tunnel_but_not_its_l3() {
    let (_d, n, k) = setup();
    // The home's settings, as it recorded them in the pool.
    let mut r = req("lan", Kind::Nat);
    r.subnet = Some("10.5.6.0/24".into());
    r.no_dhcp = false;
    let home = n.prepare(&r).unwrap();
    let settings = serde_json::to_value(&home).unwrap();
    let local = Ipv4Addr::new(10, 9, 0, 3);
    let e = n.member_spec("wan", &settings, 7, "h1", local).unwrap_err().to_string();
    assert!(e.contains("names 'lan'"), "{e}");
    let spec = n.member_spec("lan", &settings, 7, "h1", local).unwrap();
    assert!(!spec.l3_here() && !spec.serves_dhcp());
    // No DHCP server is started here (the executable does not even exist).
    let v = n.create_spec(spec).unwrap();
    let br = v["bridge"].as_str().unwrap().to_string();
    assert_eq!(v["span"], json!({"vni": 7, "home": "h1", "here": false, "local": "10.9.0.3"}));
    assert_eq!(v["dhcp_pid"], Value::Null);
    assert_eq!(k.calls(), vec![format!("ensure {br} vni 7 from 10.9.0.3 no address")]);
    assert!(k.link_exists(&netconf::vxlan_name(&br)), "the VXLAN link is made with the bridge");
    n.flood("lan", &[Ipv4Addr::new(10, 9, 0, 2), Ipv4Addr::new(10, 9, 0, 4)]).unwrap();
    assert_eq!(k.calls().last().unwrap(), &format!("flood {br} 10.9.0.2,10.9.0.4"));
    let e = n.reserve("lan", "0a:56:4e:00:00:01", "10.5.6.9").unwrap_err().to_string();
    assert!(e.contains("on host 'h1'"), "{e}");
    // The home's published leases hold a guest's tap to its address from the start.
    let now = crate::since_epoch().as_secs();
    let lease =
        json!([{"ip": "10.5.6.120", "mac": "0a:56:4e:00:00:01", "state": "bound", "expires": now + 600}]);
    n.set_remote_leases(vec![("lan".into(), lease), ("elsewhere".into(), json!([]))]);
    assert_eq!(n.leases("lan").unwrap()[0]["ip"], "10.5.6.120");
    let mut def = vm_def(&["lan"]);
    def.nics[0].mac = Some("0a:56:4e:00:00:01".into());
    n.claim_nics("web1", &mut def).unwrap();
    let tap = n.plug("web1", &def).unwrap()[0].tap.clone();
    assert!(k.calls().contains(&format!("guard {tap} 0a:56:4e:00:00:01 10.5.6.120")), "{:?}", k.calls());
    // When the lease ends, so does the address.
    n.set_remote_leases(vec![("lan".into(), json!([]))]);
    n.learn_addresses();
    assert_eq!(k.calls().last().unwrap(), &format!("guard {tap} 0a:56:4e:00:00:01 unleased"));
    n.unplug("web1");
    n.release_nics("web1");
    n.delete("lan").unwrap();
    assert!(!k.link_exists(&netconf::vxlan_name(&br)), "the VXLAN link goes with the network");
}

#[test]
fn the_home_of_a_spanning_network_holds_its_address() {
    let (_d, n, k) = setup();
    let mut r = req("lan", Kind::Nat);
    r.subnet = Some("10.5.6.0/24".into());
    let mut spec = n.prepare(&r).unwrap();
    spec.span = Some(Span { vni: 3, home: "h1".into(), here: true, local: Ipv4Addr::new(10, 9, 0, 2) });
    let v = n.create_spec(spec).unwrap();
    let br = v["bridge"].as_str().unwrap();
    assert_eq!(k.calls(), vec![format!("ensure {br} vni 3 from 10.9.0.2 10.5.6.1/24")]);
    assert!(n.spans_pool("lan"));
    assert_eq!(n.spans().len(), 1);
    assert!(n.home_leases().is_empty(), "no DHCP here (no_dhcp), nothing to publish");
}

#[test]
fn a_missing_network_is_not_found_and_anything_else_refused() {
    use crate::protocol::Failure;
    let (_d, n, _k) = setup();
    let e = n.show("nope").unwrap_err();
    assert_eq!(e, NetworkError::NotFound("nope".into()));
    assert!(matches!(Failure::from(e), Failure::NotFound(m) if m == "no network named 'nope'"));
    let e = n.create(&req("-bad", Kind::Host)).unwrap_err();
    assert!(matches!(Failure::from(e), Failure::Refused(m) if m.contains("field `name`")));
}

#[test]
fn every_lookup_of_a_missing_network_is_not_found() {
    let (_d, n, _k) = setup();
    let missing = NetworkError::NotFound("nope".into());
    assert_eq!(n.show("nope").unwrap_err(), missing);
    assert_eq!(n.delete("nope").unwrap_err(), missing);
    assert_eq!(n.leases("nope").unwrap_err(), missing);
    assert_eq!(n.reserve("nope", "0a:56:4e:00:00:01", "10.0.0.9").unwrap_err(), missing);
    assert_eq!(n.bridge_of("nope").unwrap_err(), missing);
    assert_eq!(n.flood("nope", &[]).unwrap_err(), missing);
}
