//! Real guests (guest kit under TCG) on vine's virtual networks: each gets its address from
//! vine's DHCP server through a QEMU tap; two VMs on one internal network ping each other; a VM
//! on another internal network reaches neither them nor the host (even with the host as its
//! gateway); a VM on a host network reaches the host; a VM on a NAT network reaches a listener in
//! a namespace standing for the outside world, which sees the host's address (masquerading).
//! Only namespaces and bridges this test creates are involved. Needs root and QEMU.

mod netns;
mod vmhost;

/// The names of nftables' bridge tables.
fn nft_tables() -> Vec<String> {
    let out = std::process::Command::new("nft").args(["list", "tables", "bridge"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("table bridge "))
        .map(String::from)
        .collect()
}

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netns::{unique_subnet, NetNs};
use serde_json::Value;
use vmhost::{VmHost, BOOT};

fn bridge(h: &VmHost, name: &str, kind: &str, subnet: &str, extra: &[&str]) -> String {
    let mut args = vec!["network", "create", name, "--kind", kind, "--subnet", subnet];
    args.extend_from_slice(extra);
    h.ok(&args);
    let v: Value = serde_json::from_str(&h.ok(&["network", "show", name, "--json"])).unwrap();
    v["bridge"].as_str().unwrap().to_string()
}

fn count(h: &VmHost, vm: &str, line: &str) -> usize {
    // A marker may follow the shell's prompt on the shared console.
    h.console(vm).contents().unwrap_or_default().lines().filter(|l| l.trim_end().ends_with(line)).count()
}

fn wait_line(h: &VmHost, vm: &str, line: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while count(h, vm, line) == 0 {
        assert!(
            Instant::now() < deadline,
            "{vm} never printed {line:?}; console:\n{}\ndaemon:\n{}",
            h.console(vm).contents().unwrap_or_default(),
            h.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn guests_get_addresses_and_networks_connect_exactly_what_their_kind_allows() {
    let mut h = VmHost::start();
    let ip = |p: [u8; 3], n: u8| Ipv4Addr::new(p[0], p[1], p[2], n);
    let (sa, pa) = unique_subnet();
    let (sb, pb) = unique_subnet();
    let (sh, ph) = unique_subnet();
    let (sn, _) = unique_subnet();
    let (_, po) = unique_subnet();
    let br_a = bridge(&h, "lana", "internal", &sa, &[]);
    // lanb hands out the host as gateway: only the rules stop it from routing to lana.
    bridge(&h, "lanb", "internal", &sb, &["--gateway", &ip(pb, 1).to_string()]);
    bridge(&h, "hostnet", "host", &sh, &[]);
    bridge(&h, "natnet", "nat", &sn, &[]);
    let id = std::process::id() % 250;
    let mac = |n: u8| format!("0a:56:4e:{id:02x}:00:{n:02x}");
    h.ok(&["network", "reserve", "lana", "--mac", &mac(1), "--ip", &ip(pa, 10).to_string()]);
    h.ok(&["network", "reserve", "lana", "--mac", &mac(2), "--ip", &ip(pa, 11).to_string()]);

    // The outside world: a namespace linked to the host, with a TCP listener.
    let outside = Arc::new(NetNs::linked(ip(po, 1), ip(po, 2)));
    let peer: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    /// Stops the listener (so its thread lets go of the namespace) even when the test fails.
    struct Listener(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);
    impl Drop for Listener {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
            if let Some(j) = self.1.take() {
                let _ = j.join();
            }
        }
    }
    let _listener = Listener(
        stop.clone(),
        Some({
            let (outside, peer, stop) = (outside.clone(), peer.clone(), stop.clone());
            let addr = SocketAddr::from((ip(po, 2), 8080));
            std::thread::spawn(move || {
                outside.within(|| {
                    let l = TcpListener::bind(addr).unwrap();
                    l.set_nonblocking(true).unwrap();
                    while !stop.load(Ordering::SeqCst) {
                        match l.accept() {
                            Ok((mut s, from)) => {
                                s.set_nonblocking(false).unwrap();
                                let mut b = [0u8; 16];
                                let _ = s.read(&mut b);
                                let _ = s.write_all(b"hello-from-outside\n");
                                *peer.lock().unwrap() = Some(from);
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(50)),
                        }
                    }
                })
            })
        }),
    );

    let vm = |name: &str, nic: String, opts: &[&str]| {
        let mut o = vec!["vine.net=1"];
        o.extend_from_slice(opts);
        h.create_kit_vm(name, &o, &["--nic", &nic]);
    };
    let ping = |targets: String| format!("vine.ping={targets}");
    vm("a1", format!("lana,mac={}", mac(1)), &[&ping(ip(pa, 11).to_string())]);
    vm("a2", format!("lana,mac={}", mac(2)), &[&ping(ip(pa, 10).to_string())]);
    vm("b1", "lanb".into(), &[&ping(format!("{},{}", ip(pa, 10), ip(pb, 1)))]);
    vm("h1", "hostnet".into(), &[&ping(ip(ph, 1).to_string())]);
    vm("n1", "natnet".into(), &[&format!("vine.connect={}:8080", ip(po, 2))]);
    for name in ["a1", "a2", "b1", "h1", "n1"] {
        h.ok(&["vm", "start", name]);
    }

    // Each NIC is a tap on its network's bridge while the VM runs.
    let nic = &h.show("a1")["nics"][0];
    let tap = nic["tap"].as_str().expect("a running VM's NIC has a tap").to_string();
    let master = std::fs::read_link(format!("/sys/class/net/{tap}/master")).unwrap();
    assert_eq!(master.file_name().unwrap().to_string_lossy(), br_a);

    wait_line(&h, "a1", &format!("VINE-IP {}", ip(pa, 10)), BOOT);
    wait_line(&h, "a2", &format!("VINE-IP {}", ip(pa, 11)), BOOT);
    wait_line(&h, "a1", &format!("VINE-PING {} ok", ip(pa, 11)), BOOT);
    wait_line(&h, "a2", &format!("VINE-PING {} ok", ip(pa, 10)), BOOT);
    wait_line(&h, "h1", &format!("VINE-PING {} ok", ip(ph, 1)), BOOT);
    // Port security held each guest to its lease: until the daemon learned it, the guest could
    // send nothing but DHCP, and the pings above passed after it did.
    let log = h.daemon_log();
    assert!(log.contains("may now send from Leased("), "no lease was learned: {log}");
    assert!(nft_tables().iter().filter(|t| t.starts_with("vine_ps_")).count() >= 3, "{:?}", nft_tables());
    wait_line(&h, "n1", "VINE-CONNECT hello-from-outside", BOOT);
    let from = peer.lock().unwrap().expect("the listener saw the connection");
    assert_eq!(from.ip(), std::net::IpAddr::V4(ip(po, 1)), "NAT: the outside sees the host's address");

    // b1 got an address on its own network, but reaches neither lana nor the host.
    let b_line = h.console("b1").wait_for("VINE-IP ", BOOT).unwrap();
    assert!(b_line.contains(&format!("VINE-IP {}.{}.{}.", pb[0], pb[1], pb[2])), "{b_line}");
    let fail_a = format!("VINE-PING {} fail", ip(pa, 10));
    let deadline = Instant::now() + BOOT;
    let fail_host = format!("VINE-PING {} fail", ip(pb, 1));
    while count(&h, "b1", &fail_a) < 3 || count(&h, "b1", &fail_host) < 3 {
        assert!(
            Instant::now() < deadline,
            "b1 did not finish three pings:\n{}",
            h.console("b1").contents().unwrap()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(count(&h, "b1", &format!("VINE-PING {} ok", ip(pa, 10))), 0, "lanb reached lana");
    assert_eq!(
        count(&h, "b1", &format!("VINE-PING {} ok", ip(pb, 1))),
        0,
        "an internal network reached the host"
    );

    // vine's DHCP server bound the guests' own MACs.
    let leases: Value = serde_json::from_str(&h.ok(&["network", "leases", "natnet", "--json"])).unwrap();
    let n1_mac = h.show("n1")["nics"][0]["mac"].as_str().unwrap().to_string();
    assert!(leases.as_array().unwrap().iter().any(|l| l["mac"] == n1_mac.as_str() && l["state"] == "bound"));

    // kill -9 of the daemon: the guests keep their network (taps, bridge, DHCP server live on).
    let ok_a1 = format!("VINE-PING {} ok", ip(pa, 11));
    let dhcp_a = |h: &VmHost| -> u64 {
        let v: Value = serde_json::from_str(&h.ok(&["network", "show", "lana", "--json"])).unwrap();
        v["dhcp_pid"].as_u64().unwrap()
    };
    let dhcp_before = dhcp_a(&h);
    h.kill_daemon();
    let n = count(&h, "a1", &ok_a1);
    let deadline = Instant::now() + BOOT;
    while count(&h, "a1", &ok_a1) < n + 3 {
        assert!(Instant::now() < deadline, "a1 lost its network when the daemon died");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A reboot-like loss of the bridge while the daemon is down: the next daemon re-creates it,
    // plugs the running VMs' taps back in and restarts the DHCP server on the new bridge.
    let st = std::process::Command::new("ip").args(["link", "del", &br_a]).status().unwrap();
    assert!(st.success());
    std::thread::sleep(Duration::from_secs(3));
    h.start_daemon();
    let master = std::fs::read_link(format!("/sys/class/net/{tap}/master")).unwrap();
    assert_eq!(master.file_name().unwrap().to_string_lossy(), br_a, "the tap is plugged in again");
    assert_ne!(dhcp_a(&h), dhcp_before, "a new DHCP server serves the new bridge");
    let n = count(&h, "a1", &ok_a1);
    let deadline = Instant::now() + BOOT;
    while count(&h, "a1", &ok_a1) < n + 3 {
        assert!(Instant::now() < deadline, "a1 and a2 did not reach each other again");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Turning a VM off removes its tap.
    h.ok(&["vm", "off", "a1"]);
    assert!(!std::path::Path::new("/sys/class/net").join(&tap).exists(), "tap {tap} left behind");
}
