//! Virtual networks and vine's DHCP server against real clients: busybox `udhcpc` and ISC
//! `dhclient` in network namespaces plugged into vine's bridges; leases across `kill -9` of the
//! daemon and of the DHCP server; a flood of hostile packets; kernel objects removed on delete and
//! re-created after a simulated reboot; unique NIC MACs. Needs root.

mod netns;
mod vmhost;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use netns::{unique_subnet, NetNs};
use serde_json::Value;
use vmhost::{eventually, VmHost};

/// Creates a network; returns its `show --json`.
fn network(h: &VmHost, name: &str, kind: &str, extra: &[&str]) -> Value {
    let mut args = vec!["network", "create", name, "--kind", kind];
    args.extend_from_slice(extra);
    h.ok(&args);
    serde_json::from_str(&h.ok(&["network", "show", name, "--json"])).unwrap()
}

fn leases(h: &VmHost, name: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(&h.ok(&["network", "leases", name, "--json"]))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn dhcp_pid(h: &VmHost, name: &str) -> Option<u32> {
    let v: Value = serde_json::from_str(&h.ok(&["network", "show", name, "--json"])).unwrap();
    v["dhcp_pid"].as_u64().map(|p| p as u32)
}

/// A udhcpc event script that appends its variables to `out` and configures the address.
fn udhcpc_script(dir: &Path, out: &Path) -> String {
    let p = dir.join(format!("udhcpc-{}.sh", out.file_name().unwrap().to_string_lossy()));
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\necho \"$1 ip=$ip subnet=$subnet router=$router dns=$dns lease=$lease serverid=$serverid\" >> {}\n\
             case $1 in bound) ip addr add $ip/24 dev $interface ;; esac\n",
            out.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    p.display().to_string()
}

fn vars(line: &str) -> HashMap<String, String> {
    let mut m = HashMap::new();
    let mut key = String::new();
    for word in line.split(' ') {
        match word.split_once('=') {
            Some((k, v)) => {
                key = k.to_string();
                m.insert(key.clone(), v.to_string());
            }
            None if !key.is_empty() => {
                let e = m.get_mut(&key).unwrap();
                e.push(' ');
                e.push_str(word);
            }
            None => {}
        }
    }
    m
}

/// One lease with `udhcpc -q` (DISCOVER, OFFER, REQUEST, ACK); the script's variables.
fn udhcpc_once(ns: &NetNs, dir: &Path) -> HashMap<String, String> {
    let out = dir.join(format!("{}.out", ns.name));
    let _ = std::fs::remove_file(&out);
    let script = udhcpc_script(dir, &out);
    let o = ns
        .cmd("busybox")
        .args(["udhcpc", "-i", &ns.ns_if, "-f", "-q", "-n", "-t", "10", "-T", "1", "-s", &script])
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let bound = text.lines().rev().find(|l| l.starts_with("bound")).unwrap_or_else(|| {
        panic!(
            "udhcpc got no lease: {}{}\nscript: {text}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    });
    vars(bound)
}

fn ip(v: &HashMap<String, String>) -> Ipv4Addr {
    v["ip"].parse().unwrap()
}

#[test]
fn udhcpc_and_dhclient_get_leases_renew_release_and_reservations() {
    let h = VmHost::start();
    let (subnet, p) = unique_subnet();
    let a = |n: u8| Ipv4Addr::new(p[0], p[1], p[2], n);
    let range = format!("{}-{}", a(50), a(60));
    let dns = format!("{},{}", a(53), a(54));
    let net = network(
        &h,
        "lan",
        "host",
        &["--subnet", &subnet, "--range", &range, "--dns", &dns, "--lease", "10m"],
    );
    let br = net["bridge"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();

    // busybox udhcpc: the whole exchange and every option a client needs.
    let ns1 = NetNs::on_bridge(&br, None);
    let v1 = udhcpc_once(&ns1, dir.path());
    let ip1 = ip(&v1);
    assert!((50..=60).contains(&ip1.octets()[3]), "{ip1} outside the range");
    assert_eq!(v1["subnet"], "255.255.255.0");
    assert_eq!(v1["router"], a(1).to_string());
    assert_eq!(v1["dns"], format!("{} {}", a(53), a(54)));
    assert_eq!(v1["lease"], "600");
    assert_eq!(v1["serverid"], a(1).to_string());

    // ISC dhclient: its own lease, the same options.
    let ns2 = NetNs::on_bridge(&br, None);
    let out2 = dir.path().join("dhclient.out");
    let script = dir.path().join("dhclient.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$reason ip=$new_ip_address mask=$new_subnet_mask routers=$new_routers dns=$new_domain_name_servers lease=$new_dhcp_lease_time sid=$new_dhcp_server_identifier\" >> {}\n\
             case $reason in BOUND|REBOOT) ip addr replace $new_ip_address/24 dev $interface ;; esac\n",
            out2.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let lf = dir.path().join("dhclient.leases");
    let pf = dir.path().join("dhclient.pid");
    let dhclient = |extra: &[&str]| {
        let mut c = ns2.cmd("dhclient");
        c.args(extra).arg("-sf").arg(&script).arg("-lf").arg(&lf).arg("-pf").arg(&pf).arg(&ns2.ns_if);
        let o = c.output().unwrap();
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    let said = dhclient(&["-1", "-v"]);
    let text = std::fs::read_to_string(&out2).unwrap_or_default();
    let line =
        text.lines().find(|l| l.starts_with("BOUND")).unwrap_or_else(|| panic!("dhclient: {said}\n{text}"));
    let v2 = vars(line);
    let ip2: Ipv4Addr = v2["ip"].parse().unwrap();
    assert_ne!(ip1, ip2);
    assert!((50..=60).contains(&ip2.octets()[3]));
    assert_eq!((v2["mask"].as_str(), v2["lease"].as_str()), ("255.255.255.0", "600"));
    assert_eq!(v2["routers"], a(1).to_string());
    assert_eq!(v2["dns"], format!("{} {}", a(53), a(54)));
    assert_eq!(v2["sid"], a(1).to_string());
    let l = leases(&h, "lan");
    let bound: Vec<&Value> = l.iter().filter(|x| x["state"] == "bound").collect();
    assert_eq!(bound.len(), 2, "{l:?}");
    // The text forms say the same.
    let list = h.ok(&["network", "list"]);
    assert!(list.contains("lan") && list.contains("host") && list.contains(&br), "{list}");
    let text = h.ok(&["network", "leases", "lan"]);
    assert!(text.contains(&format!("{ip1} ")) && text.contains(&format!("{ip2} ")), "{text}");
    assert!(text.contains(&ns2.mac()) && text.contains("bound"), "{text}");

    // dhclient again with its lease file: INIT-REBOOT (REQUEST of the remembered address).
    let _ = dhclient(&["-x"]); // stop the first one without releasing
    let said = dhclient(&["-1", "-v"]);
    let text = std::fs::read_to_string(&out2).unwrap_or_default();
    let last = text.lines().last().unwrap_or("");
    assert!(last.starts_with("REBOOT") || last.starts_with("BOUND"), "{said}\n{text}");
    assert_eq!(vars(last)["ip"], ip2.to_string(), "{text}");

    // Renewing (udhcpc SIGUSR1 → unicast REQUEST from the bound address).
    let out1 = dir.path().join("renew.out");
    let script1 = udhcpc_script(dir.path(), &out1);
    let mut u = ns1
        .cmd("busybox")
        .args(["udhcpc", "-i", &ns1.ns_if, "-f", "-t", "10", "-T", "1", "-s", &script1])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let bound_line = || std::fs::read_to_string(&out1).unwrap_or_default();
    eventually("udhcpc is bound", Duration::from_secs(20), || bound_line().contains("bound"));
    let before =
        leases(&h, "lan").iter().find(|x| x["ip"] == ip1.to_string()).unwrap()["expires"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    let pid = u.id();
    // udhcpc runs inside `ip netns exec` which execs it: the pid is udhcpc's.
    // SAFETY: SIGUSR1 to the udhcpc this test started.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGUSR1);
    }
    eventually("udhcpc renewed", Duration::from_secs(20), || bound_line().contains("renew"));
    let renew = bound_line().lines().find(|l| l.starts_with("renew")).unwrap().to_string();
    assert_eq!(ip(&vars(&renew)), ip1);
    let after =
        leases(&h, "lan").iter().find(|x| x["ip"] == ip1.to_string()).unwrap()["expires"].as_u64().unwrap();
    assert!(after > before, "the renewal extended the lease ({before} → {after})");
    let _ = u.kill();
    let _ = u.wait();

    // RELEASE: dhclient -r gives the address back.
    dhclient(&["-r", "-v"]);
    eventually("the release is recorded", Duration::from_secs(10), || {
        leases(&h, "lan").iter().any(|x| x["ip"] == ip2.to_string() && x["state"] == "released")
    });

    // A reservation: this MAC always gets this address (outside the dynamic range).
    let ns3 = NetNs::on_bridge(&br, Some("0a:56:4e:aa:bb:01"));
    h.ok(&["network", "reserve", "lan", "--mac", "0a:56:4e:aa:bb:01", "--ip", &a(77).to_string()]);
    assert_eq!(ip(&udhcpc_once(&ns3, dir.path())), a(77));
    // An address leased to someone else cannot be reserved.
    let e = h.fails(&["network", "reserve", "lan", "--mac", "0a:56:4e:aa:bb:02", "--ip", &ip1.to_string()]);
    assert!(e.contains("is leased to"), "{e}");
}

#[test]
fn leases_survive_kill_9_of_the_daemon_and_of_the_dhcp_server() {
    let mut h = VmHost::start();
    let (subnet, _) = unique_subnet();
    let net = network(&h, "lan", "internal", &["--subnet", &subnet]);
    let br = net["bridge"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let ns1 = NetNs::on_bridge(&br, None);
    let a = ip(&udhcpc_once(&ns1, dir.path()));
    let p = dhcp_pid(&h, "lan").unwrap();

    h.kill_daemon();
    assert!(vmhost::alive(p), "the DHCP server must outlive the daemon");
    let ns2 = NetNs::on_bridge(&br, None);
    let b = ip(&udhcpc_once(&ns2, dir.path())); // served while the daemon is down
    assert_ne!(a, b);
    h.start_daemon();
    assert_eq!(dhcp_pid(&h, "lan"), Some(p), "the new daemon adopts the running server");

    // SAFETY: SIGKILL to the DHCP server this test's daemon started (pid from its own report).
    unsafe {
        libc::kill(p as libc::pid_t, libc::SIGKILL);
    }
    eventually("the daemon restarts the DHCP server", Duration::from_secs(20), || {
        dhcp_pid(&h, "lan").is_some_and(|q| q != p && vmhost::alive(q))
    });
    let ns3 = NetNs::on_bridge(&br, None);
    let c = ip(&udhcpc_once(&ns3, dir.path()));
    assert!(c != a && c != b, "{c} was already leased");
    assert_eq!(ip(&udhcpc_once(&ns1, dir.path())), a, "a returning client keeps its address");
    assert_eq!(ip(&udhcpc_once(&ns2, dir.path())), b);
}

#[test]
fn a_flood_and_garbage_from_one_client_leave_the_pool_to_the_others() {
    use dhcp::packet::{opt, MessageType, Packet, RawOption, BOOTREQUEST, HTYPE_ETHERNET};
    let h = VmHost::start();
    let (subnet, p) = unique_subnet();
    let a = |n: u8| Ipv4Addr::new(p[0], p[1], p[2], n);
    let range = format!("{}-{}", a(10), a(17)); // eight addresses
    let net = network(&h, "lan", "internal", &["--subnet", &subnet, "--range", &range]);
    let br = net["bridge"].as_str().unwrap().to_string();
    let pid = dhcp_pid(&h, "lan").unwrap();
    let evil = NetNs::on_bridge(&br, Some("0a:66:66:66:66:66"));
    let mac = [0x0a, 0x66, 0x66, 0x66, 0x66, 0x66];
    let sent = evil.within(|| {
        let sock = dhcp::serve::bound_socket(&evil.ns_if, 68).unwrap();
        let to = std::net::SocketAddrV4::new(Ipv4Addr::BROADCAST, 67);
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&mac);
        let msg = |t: MessageType, xid: u32, extra: Vec<RawOption>| {
            let mut options = vec![RawOption { code: opt::MESSAGE_TYPE, data: vec![t.code()], offset: 0 }];
            options.extend(extra);
            Packet {
                op: BOOTREQUEST,
                htype: HTYPE_ETHERNET,
                hlen: 6,
                hops: 0,
                xid,
                secs: 0,
                flags: 0x8000,
                ciaddr: Ipv4Addr::UNSPECIFIED,
                yiaddr: Ipv4Addr::UNSPECIFIED,
                siaddr: Ipv4Addr::UNSPECIFIED,
                giaddr: Ipv4Addr::UNSPECIFIED,
                chaddr,
                options,
            }
            .encode()
        };
        let mut n = 0;
        let mut seed = 0x1234_5678u32;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for i in 0..3000u32 {
            let b = match i % 6 {
                0 | 1 => msg(MessageType::Discover, i, vec![]),
                2 => {
                    let want = a(10 + (i % 8) as u8).octets().to_vec();
                    msg(
                        MessageType::Request,
                        i,
                        vec![RawOption { code: opt::REQUESTED_IP, data: want, offset: 0 }],
                    )
                }
                3 => {
                    let d = a(10 + (i % 8) as u8).octets().to_vec();
                    msg(
                        MessageType::Decline,
                        i,
                        vec![RawOption { code: opt::REQUESTED_IP, data: d, offset: 0 }],
                    )
                }
                4 => {
                    // Truncated at a random length.
                    let mut b = msg(MessageType::Discover, i, vec![]);
                    b.truncate((rnd() as usize) % b.len());
                    b
                }
                _ => {
                    // Valid header, options garbled.
                    let mut b = msg(MessageType::Discover, i, vec![]);
                    b.truncate(240);
                    b.extend((0..(rnd() % 64)).map(|_| rnd() as u8));
                    b
                }
            };
            if sock.send_to(&b, to).is_ok() {
                n += 1;
            }
        }
        n
    });
    assert!(sent > 2500, "only {sent} packets went out");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(dhcp_pid(&h, "lan"), Some(pid), "the server must not have died");
    assert!(vmhost::alive(pid));
    let held = leases(&h, "lan").into_iter().filter(|l| l["mac"] == "0a:66:66:66:66:66").count();
    assert!(held <= 3, "one client holds {held} addresses (at most 1 bound + 2 declined)");
    // The server's counters show the defences at work.
    eventually("the counters show the flood", Duration::from_secs(10), || {
        let v: Value = serde_json::from_str(&h.ok(&["network", "show", "lan", "--json"])).unwrap();
        let st = &v["dhcp_stats"];
        st["malformed"].as_u64().unwrap_or(0) > 100 && st["rate_limited"].as_u64().unwrap_or(0) > 100
    });
    // The others still get addresses.
    let dir = tempfile::tempdir().unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        let ns = NetNs::on_bridge(&br, None);
        got.push(ip(&udhcpc_once(&ns, dir.path())));
    }
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 4, "four clients, four addresses: {got:?}");
    let log = std::fs::read_to_string(h.data.join("networks/lan/dhcp.log")).unwrap();
    assert!(log.lines().count() < 200, "client-triggered messages must be rate-limited in the log");
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

fn table_exists(bridge: &str) -> bool {
    std::process::Command::new("nft")
        .args(["list", "table", "inet", &format!("vine_{bridge}")])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn kernel_objects_are_removed_on_delete_and_recreated_after_a_reboot() {
    let mut h = VmHost::start();
    // A veth pair this test owns stands for the host NIC of the bridged network.
    let id = std::process::id() % 100_000;
    let (up, peer) = (format!("vup{id}"), format!("vuq{id}"));
    struct Veth(String);
    impl Drop for Veth {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip").args(["link", "del", &self.0]).output();
        }
    }
    assert!(std::process::Command::new("ip")
        .args(["link", "add", &up, "type", "veth", "peer", "name", &peer])
        .status()
        .unwrap()
        .success());
    let _veth = Veth(up.clone());
    let mut bridges = Vec::new();
    for (name, kind) in [("in", "internal"), ("ho", "host"), ("na", "nat")] {
        let (subnet, _) = unique_subnet();
        let v = network(&h, name, kind, &["--subnet", &subnet]);
        bridges.push((name, v["bridge"].as_str().unwrap().to_string()));
    }
    let v = network(&h, "br", "bridged", &["--uplink", &up]);
    let bbr = v["bridge"].as_str().unwrap().to_string();
    let master = || std::fs::read_link(format!("/sys/class/net/{up}/master")).ok();
    assert_eq!(master().unwrap().file_name().unwrap().to_string_lossy(), bbr);
    for (_, b) in &bridges {
        assert!(link_exists(b) && table_exists(b), "{b}");
    }

    // A reboot: the daemon and the DHCP servers die, the kernel forgets everything.
    let pids: Vec<u32> = bridges.iter().map(|(n, _)| dhcp_pid(&h, n).unwrap()).collect();
    h.kill_daemon();
    for p in &pids {
        // SAFETY: SIGKILL to DHCP servers this test's daemon started.
        unsafe {
            libc::kill(*p as libc::pid_t, libc::SIGKILL);
        }
    }
    for b in bridges.iter().map(|(_, b)| b).chain([&bbr]) {
        let _ = std::process::Command::new("ip").args(["link", "del", b]).output();
        let _ = std::process::Command::new("nft")
            .args(["delete", "table", "inet", &format!("vine_{b}")])
            .output();
        assert!(!link_exists(b));
    }
    eventually("the killed servers are gone", Duration::from_secs(10), || {
        pids.iter().all(|p| !vmhost::alive(*p))
    });
    h.start_daemon();
    for (name, b) in &bridges {
        assert!(link_exists(b) && table_exists(b), "{b} re-created");
        let p = dhcp_pid(&h, name).expect("a DHCP server again");
        assert!(vmhost::alive(p) && !pids.contains(&p));
    }
    assert!(link_exists(&bbr));
    assert_eq!(master().unwrap().file_name().unwrap().to_string_lossy(), bbr, "uplink attached again");
    let dir = tempfile::tempdir().unwrap();
    let ns = NetNs::on_bridge(&bridges[0].1, None);
    udhcpc_once(&ns, dir.path());
    drop(ns);

    // Delete: everything vine made goes; the uplink stays.
    let pids: Vec<u32> = bridges.iter().map(|(n, _)| dhcp_pid(&h, n).unwrap()).collect();
    for name in ["in", "ho", "na", "br"] {
        h.ok(&["network", "delete", name]);
    }
    for b in bridges.iter().map(|(_, b)| b).chain([&bbr]) {
        assert!(!link_exists(b) && !table_exists(b), "{b} left behind");
    }
    eventually("the DHCP servers stopped", Duration::from_secs(10), || {
        pids.iter().all(|p| !vmhost::alive(*p))
    });
    assert!(link_exists(&up) && master().is_none(), "the uplink is left as it was, detached");
    assert!(!h.data.join("networks/in").exists());
}

#[test]
fn every_nic_gets_its_own_mac_and_collisions_are_refused() {
    let h = VmHost::start();
    let (subnet, _) = unique_subnet();
    network(&h, "lan", "internal", &["--subnet", &subnet]);
    let nics = ["--nic", "lan", "--nic", "lan", "--nic", "lan", "--nic", "lan", "--nic", "lan"];
    h.create_kit_vm("v1", &[], &nics);
    h.create_kit_vm("v2", &[], &["--nic", "lan", "--nic", "lan"]);
    let macs = |vm: &str| -> Vec<String> {
        h.show(vm)["nics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["mac"].as_str().unwrap().to_string())
            .collect()
    };
    let mut all: Vec<String> = macs("v1").into_iter().chain(macs("v2")).collect();
    assert_eq!(all.len(), 7);
    assert!(all.iter().all(|m| m.starts_with("0a:56:4e:")), "{all:?}");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 7, "MACs must be unique");
    // The definition file holds them (so tools see them).
    let def = std::fs::read_to_string(h.data.join("vms/v1/v1.vm.toml")).unwrap();
    assert!(macs("v1").iter().all(|m| def.contains(m.as_str())), "{def}");

    // A MAC in use is refused, by VM creation and by `nic add`.
    let taken = macs("v1")[0].clone();
    let e = h.fails(&[
        "vm",
        "create",
        "v3",
        "--memory",
        "64M",
        "--kernel",
        "/bin/true",
        "--nic",
        &format!("lan,mac={taken}"),
    ]);
    assert!(e.contains(&format!("MAC address {taken} is already used by NIC 0 of VM 'v1'")), "{e}");
    let e = h.fails(&["vm", "nic", "add", "v2", &format!("lan,mac={}", taken.to_uppercase())]);
    assert!(e.contains("already used"), "{e}");
    let e = h.fails(&["vm", "create", "v4", "--memory", "64M", "--kernel", "/bin/true", "--nic", "nowhere"]);
    assert!(e.contains("no network named 'nowhere'"), "{e}");

    // Removing the NIC frees its MAC; the others keep theirs.
    let before = macs("v1");
    h.ok(&["vm", "nic", "remove", "v1", "0"]);
    assert_eq!(macs("v1"), before[1..].to_vec());
    h.create_kit_vm("v3", &[], &["--nic", &format!("lan,mac={taken}")]);
    assert_eq!(macs("v3"), vec![taken.clone()]);
    h.ok(&["vm", "nic", "add", "v2", "lan"]);
    assert_eq!(macs("v2").len(), 3);

    // A network with NICs plugged in cannot be deleted; once the VMs are gone it can.
    let e = h.fails(&["network", "delete", "lan"]);
    assert!(e.contains("VM NICs are plugged into it"), "{e}");
    for vm in ["v1", "v2", "v3"] {
        h.ok(&["vm", "delete", vm]);
    }
    h.create_kit_vm("v5", &[], &["--nic", &format!("lan,mac={}", before[1])]);
    h.ok(&["vm", "delete", "v5"]);
    h.ok(&["network", "delete", "lan"]);
}

#[test]
fn a_client_that_finds_its_offer_in_use_declines_it_and_inform_gets_configuration() {
    use dhcp::packet::{opt, MessageType, Packet, RawOption, BOOTREQUEST, HTYPE_ETHERNET};
    let h = VmHost::start();
    let (subnet, p) = unique_subnet();
    let a = |n: u8| Ipv4Addr::new(p[0], p[1], p[2], n);
    let range = format!("{}-{}", a(20), a(29));
    let net =
        network(&h, "lan", "host", &["--subnet", &subnet, "--range", &range, "--dns", &a(53).to_string()]);
    let br = net["bridge"].as_str().unwrap().to_string();
    // A machine vine does not know already uses the first address of the range.
    let squatter = NetNs::on_bridge(&br, None);
    let st =
        squatter.cmd("ip").args(["addr", "add", &format!("{}/24", a(20)), "dev", &squatter.ns_if]).status();
    assert!(st.unwrap().success());
    // udhcpc -a checks its offer with ARP, finds it taken, DECLINEs and asks again.
    let dir = tempfile::tempdir().unwrap();
    let ns = NetNs::on_bridge(&br, None);
    let out = dir.path().join("decline.out");
    let script = udhcpc_script(dir.path(), &out);
    let o = ns
        .cmd("busybox")
        .args([
            "udhcpc", "-i", &ns.ns_if, "-f", "-q", "-n", "-a", "-t", "10", "-T", "1", "-A", "1", "-s",
            &script,
        ])
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let bound = text.lines().find(|l| l.starts_with("bound")).unwrap_or_else(|| {
        panic!("no lease: {}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    });
    let got = ip(&vars(bound));
    assert_ne!(got, a(20), "the address in use was handed out");
    let l = leases(&h, "lan");
    let d = l.iter().find(|x| x["ip"] == a(20).to_string()).expect("the declined address is recorded");
    assert_eq!(d["state"], "declined", "{l:?}");
    assert_eq!(d["mac"].as_str().unwrap(), ns.mac());

    // INFORM from a configured client: an ACK with the options and no lease, sent to it.
    let (reply, from) = squatter.within(|| {
        let sock = std::net::UdpSocket::bind((a(20), 68)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&[0x0a, 0x77, 0, 0, 0, 1]);
        let inform = Packet {
            op: BOOTREQUEST,
            htype: HTYPE_ETHERNET,
            hlen: 6,
            hops: 0,
            xid: 0x1f0f,
            secs: 0,
            flags: 0,
            ciaddr: a(20),
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr,
            options: vec![RawOption {
                code: opt::MESSAGE_TYPE,
                data: vec![MessageType::Inform.code()],
                offset: 0,
            }],
        };
        sock.send_to(&inform.encode(), (a(1), 67)).unwrap();
        let mut b = [0u8; 1500];
        let (n, from) = sock.recv_from(&mut b).unwrap();
        (Packet::decode(&b[..n]).unwrap(), from)
    });
    assert_eq!(from.ip(), std::net::IpAddr::V4(a(1)));
    assert_eq!(reply.message_type().unwrap(), Some(MessageType::Ack));
    assert_eq!((reply.xid, reply.yiaddr), (0x1f0f, Ipv4Addr::UNSPECIFIED));
    assert_eq!(reply.option(opt::DNS).unwrap().data, a(53).octets().to_vec());
    assert!(reply.option(opt::LEASE_TIME).is_none());
    assert!(!leases(&h, "lan").iter().any(|x| x["ip"] == a(20).to_string() && x["state"] == "bound"));
}

#[test]
fn killing_the_dhcp_server_under_load_never_binds_one_address_to_two_clients() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;
    let h = VmHost::start();
    let (subnet, p) = unique_subnet();
    let a = |n: u8| Ipv4Addr::new(p[0], p[1], p[2], n);
    let range = format!("{}-{}", a(10), a(250));
    let net = network(&h, "lan", "internal", &["--subnet", &subnet, "--range", &range]);
    let br = net["bridge"].as_str().unwrap().to_string();
    let ns = NetNs::on_bridge(&br, None);
    let clients = 240;
    // The killer: whenever a (new) server runs, kill -9 it a few milliseconds later; the daemon
    // starts another; the clients retry.
    let done = Arc::new(AtomicBool::new(false));
    let kills: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let killer = {
        let (done, kills) = (done.clone(), kills.clone());
        let sock = h.socket.clone();
        let vine = env!("CARGO_BIN_EXE_vine");
        std::thread::spawn(move || {
            let mut last = 0u64;
            let mut seed = std::process::id();
            while !done.load(Ordering::SeqCst) && kills.lock().unwrap().len() < 4 {
                let out = std::process::Command::new(vine)
                    .env("VINE_SOCKET", &sock)
                    .args(["network", "show", "lan", "--json"])
                    .output()
                    .unwrap();
                let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
                let pid = v["dhcp_pid"].as_u64().unwrap_or(0);
                if pid != 0 && pid != last && vmhost::alive(pid as u32) {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    std::thread::sleep(Duration::from_millis(5 + u64::from(seed >> 16) % 30));
                    // SAFETY: SIGKILL to the DHCP server this test's daemon started.
                    unsafe {
                        libc::kill(pid as libc::pid_t, libc::SIGKILL);
                    }
                    kills.lock().unwrap().push(Instant::now());
                    last = pid;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let t0 = Instant::now();
    let r = ns.within(|| dhcp::load::run(&ns.ns_if, clients, 4, Duration::from_secs(90)).unwrap());
    done.store(true, Ordering::SeqCst);
    killer.join().unwrap();
    let kills = kills.lock().unwrap().clone();
    assert_eq!(r.leases, clients, "every client gets a lease in the end ({} retries)", r.retries);
    let last_ack = t0 + r.acks.iter().map(|x| x.2).max().unwrap();
    let mid_run = kills.iter().filter(|k| **k < last_ack).count();
    assert!(
        mid_run >= 2,
        "only {mid_run} of {} kills hit the run; it was too quick to test anything",
        kills.len()
    );
    // No address was ever ACKed to two clients, and every ACK is in the journal.
    let mut by_ip: HashMap<Ipv4Addr, dhcp::Mac> = HashMap::new();
    for (mac, ip, _) in &r.acks {
        if let Some(prev) = by_ip.insert(*ip, *mac) {
            assert_eq!(prev, *mac, "{ip} was ACKed to {prev} and to {mac}");
        }
    }
    eventually("a server runs again", Duration::from_secs(20), || {
        dhcp_pid(&h, "lan").is_some_and(vmhost::alive)
    });
    let recorded = leases(&h, "lan");
    for (mac, ip, _) in &r.acks {
        assert!(
            recorded
                .iter()
                .any(|l| l["ip"] == ip.to_string() && l["mac"] == mac.to_string() && l["state"] == "bound"),
            "{mac} was ACKed {ip} but the journal does not have it"
        );
    }
    eprintln!("{} leases, {} retries, {} kills ({mid_run} during the run)", r.leases, r.retries, kills.len());
}

#[test]
fn a_client_that_cannot_renew_rebinds_by_broadcast_before_its_lease_ends() {
    let h = VmHost::start();
    let (subnet, p) = unique_subnet();
    let server = Ipv4Addr::new(p[0], p[1], p[2], 1);
    // The shortest lease vine hands out: renewal (T1) after 30 s.
    let net = network(&h, "lan", "host", &["--subnet", &subnet, "--lease", "60s"]);
    let br = net["bridge"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let ns = NetNs::on_bridge(&br, None);
    let out = dir.path().join("rebind.out");
    let script = udhcpc_script(dir.path(), &out);
    /// Kills the client this test started, also when the test fails.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _udhcpc = Kill(
        ns.cmd("busybox")
            .args(["udhcpc", "-i", &ns.ns_if, "-f", "-t", "10", "-T", "1", "-s", &script])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let events = || std::fs::read_to_string(&out).unwrap_or_default();
    eventually("udhcpc is bound", Duration::from_secs(20), || events().contains("bound"));
    let got = ip(&vars(events().lines().find(|l| l.starts_with("bound")).unwrap()));
    let expires = |h: &VmHost| -> u64 {
        leases(h, "lan").iter().find(|l| l["ip"] == got.to_string()).unwrap()["expires"].as_u64().unwrap()
    };
    let first = expires(&h);
    // Unicast to the server (RENEWING) is dropped inside the client's namespace; broadcasts
    // (REBINDING goes out on a raw socket) are not.
    let rule = format!(
        "table inet blockrenew {{\n chain out {{\n  type filter hook output priority 0;\n  ip daddr {server} udp dport 67 counter drop\n }}\n}}\n"
    );
    let mut nft = ns.cmd("nft").args(["-f", "-"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut nft.stdin.take().unwrap(), rule.as_bytes()).unwrap();
    assert!(nft.wait().unwrap().success());
    eventually("the lease is extended by rebinding", Duration::from_secs(75), || events().contains("renew"));
    let dropped = ns.cmd("nft").args(["list", "table", "inet", "blockrenew"]).output().unwrap();
    let dropped = String::from_utf8_lossy(&dropped.stdout).to_string();
    assert!(!dropped.contains("packets 0 "), "no renewal was attempted by unicast: {dropped}");
    let line = events().lines().find(|l| l.starts_with("renew")).unwrap().to_string();
    assert_eq!(ip(&vars(&line)), got);
    let second = expires(&h);
    // busybox rebinds after three unanswered unicast renewals (1 s apart with -T 1), so a little
    // after T1 (30 s): the lease now ends about 60 s after that.
    assert!(second >= first + 25, "the lease was extended by rebinding: {first} -> {second}");
}
