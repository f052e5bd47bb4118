//! Port security against a hostile guest (guest kit under TCG): on a /26 host network, guest
//! `flood` holds a lease of its own and then runs `vine-flood` (scripts/guest-flood.c): DHCP
//! requests from 5,000 invented MACs, answering every offer, as perfdhcp does, and ARP replies
//! claiming the victim's and the host's addresses. Without port security that takes every
//! address of the pool (the tool was checked against vine's DHCP server on a bare veth). Here:
//! the flooder gets no offer, the lease table holds only the guests' own MACs, the bridge learns
//! none of the invented MACs, the host still maps the victim's address to the victim, the victim's
//! pings never fail, a guest started afterwards gets its lease at once, and the flooder's lease,
//! once it is off and the lease time has passed, is listed as expired. Needs root and QEMU.

mod netns;
mod vmhost;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vmhost::{VmHost, BOOT};

/// Invented MACs the flooder asks from.
const FLOOD: usize = 5000;
/// The shortest lease vine allows (dhcp::config::MIN_LEASE_S).
const LEASE_S: u64 = 60;

fn count(h: &VmHost, vm: &str, line: &str) -> usize {
    h.console(vm).contents().unwrap_or_default().lines().filter(|l| l.trim_end().ends_with(line)).count()
}

/// Waits for a console line containing `marker`; returns it (from the marker on).
fn wait_line(h: &VmHost, vm: &str, marker: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = h.console(vm).contents().unwrap_or_default();
        if let Some(l) = text.lines().find_map(|l| l.find(marker).map(|i| l[i..].trim_end().to_string())) {
            return l;
        }
        assert!(
            Instant::now() < deadline,
            "{vm} never printed {marker:?}; console:\n{text}\ndaemon:\n{}",
            h.daemon_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn leases(h: &VmHost) -> Vec<Value> {
    let v: Value = serde_json::from_str(&h.ok(&["network", "leases", "guarded", "--json"])).unwrap();
    v.as_array().unwrap().clone()
}

/// `key=N` out of the flooder's summary line.
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[test]
fn a_guest_flooding_dhcp_and_spoofing_arp_takes_nothing_and_disturbs_no_one() {
    let h = VmHost::start();
    let (_, p) = netns::unique_subnet();
    let ip = |n: u8| Ipv4Addr::new(p[0], p[1], p[2], n);
    // A /26: 61 addresses, which 5,000 invented MACs would take many times over.
    let subnet = format!("{}/26", ip(0));
    h.ok(&["network", "create", "guarded", "--kind", "host", "--subnet", &subnet, "--lease", "60s"]);
    let net: Value = serde_json::from_str(&h.ok(&["network", "show", "guarded", "--json"])).unwrap();
    let bridge = net["bridge"].as_str().unwrap().to_string();
    let id = std::process::id() % 250;
    let mac = |n: u8| format!("0a:56:4f:{id:02x}:00:{n:02x}");
    let (victim_ip, host_ip) = (ip(10), ip(1));
    h.ok(&["network", "reserve", "guarded", "--mac", &mac(1), "--ip", &victim_ip.to_string()]);

    h.create_kit_vm(
        "victim",
        &["vine.net=1", &format!("vine.ping={host_ip}")],
        &["--nic", &format!("guarded,mac={}", mac(1))],
    );
    let flood_opts = [
        "vine.net=1".to_string(),
        format!("vine.flood={FLOOD}"),
        format!("vine.floodarp={victim_ip},{host_ip}"),
    ];
    let flood_refs: Vec<&str> = flood_opts.iter().map(String::as_str).collect();
    h.create_kit_vm("flood", &flood_refs, &["--nic", &format!("guarded,mac={}", mac(2))]);
    h.create_kit_vm("late", &["vine.net=1"], &["--nic", &format!("guarded,mac={}", mac(3))]);
    h.ok(&["vm", "start", "victim"]);
    h.ok(&["vm", "start", "flood"]);
    let flood_tap =
        h.show("flood")["nics"][0]["tap"].as_str().expect("a running VM's NIC has a tap").to_string();

    let ok = format!("VINE-PING {host_ip} ok");
    let fail = format!("VINE-PING {host_ip} fail");
    wait_line(&h, "victim", &format!("VINE-IP {victim_ip}"), BOOT);
    wait_line(&h, "victim", &ok, BOOT);
    // The first ping may race the daemon learning the lease (it looks every second); from the
    // first success on, none may fail.
    let fails_before = count(&h, "victim", &fail);

    wait_line(&h, "flood", "VINE-FLOOD-START", BOOT);
    let summary = wait_line(&h, "flood", "VINE-FLOOD sent=", Duration::from_secs(300));
    assert!(field(&summary, "sent") >= FLOOD as u64, "the flooder did not send its requests: {summary}");
    assert_eq!(field(&summary, "arp"), 80, "the flooder did not send its ARP replies: {summary}");
    assert_eq!(
        (field(&summary, "offers"), field(&summary, "acks")),
        (0, 0),
        "an invented MAC got an answer: {summary}"
    );

    // The frames were dropped at the flooder's tap, and counted there.
    let listing =
        run("nft", &["list", "table", "bridge", &format!("vine_ps_{}", flood_tap.replace('-', "_"))]);
    let dropped: u64 = listing
        .split("counter packets ")
        .skip(1)
        .filter_map(|r| r.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    assert!(dropped >= FLOOD as u64 + 80, "only {dropped} frames dropped at {flood_tap}:\n{listing}");

    // The DHCP server leased to no invented MAC: only the guests' own are in its table.
    let held: Vec<String> = leases(&h).iter().map(|l| l["mac"].as_str().unwrap().to_string()).collect();
    assert!(held.iter().all(|m| *m == mac(1) || *m == mac(2)), "leases beyond the guests' own: {held:?}");
    assert!(held.contains(&mac(1)) && held.contains(&mac(2)), "{held:?}");
    // The bridge learned none of them either.
    let fdb = run("bridge", &["fdb", "show", "br", &bridge]);
    let learned: Vec<&str> = fdb
        .lines()
        .filter(|l| l.contains(&format!("dev {flood_tap} ")) && !l.contains("permanent"))
        .collect();
    assert!(learned.iter().all(|l| l.starts_with(&mac(2))), "the bridge learned invented MACs: {learned:?}");
    // The host still maps the victim's address to the victim.
    let neigh = run("ip", &["neigh", "show", &victim_ip.to_string(), "dev", &bridge]);
    assert!(neigh.contains(&format!("lladdr {}", mac(1))), "the host's ARP entry for the victim: {neigh:?}");
    // And the victim's pings to the host go on, none failing.
    let n = count(&h, "victim", &ok);
    vmhost::eventually("the victim pings the host three more times", BOOT, || {
        count(&h, "victim", &ok) >= n + 3
    });
    assert_eq!(count(&h, "victim", &fail), fails_before, "the victim lost pings during the flood");

    // The flooder goes; a guest started now gets its lease at once.
    h.ok(&["vm", "off", "flood"]);
    let flood_off = Instant::now();
    h.ok(&["vm", "start", "late"]);
    wait_line(&h, "late", "VINE-BOOT-OK", BOOT);
    let booted = Instant::now();
    let got = wait_line(&h, "late", "VINE-IP ", BOOT);
    assert!(
        booted.elapsed() < Duration::from_secs(10),
        "the late guest waited {:?} for its lease",
        booted.elapsed()
    );
    assert!(got.starts_with(&format!("VINE-IP {}.{}.{}.", p[0], p[1], p[2])), "{got}");

    // The flooder's lease runs out and is listed as expired, the others as bound.
    let state =
        |m: &str| leases(&h).iter().find(|l| l["mac"] == m).map(|l| l["state"].as_str().unwrap().to_string());
    let deadline = flood_off + Duration::from_secs(LEASE_S + 30);
    while state(&mac(2)).as_deref() != Some("expired") {
        assert!(
            Instant::now() < deadline,
            "the flooder's lease is still {:?}: {:?}",
            state(&mac(2)),
            leases(&h)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(state(&mac(1)).as_deref(), Some("bound"));
    assert_eq!(state(&mac(3)).as_deref(), Some("bound"));
}
