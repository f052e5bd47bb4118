//! A pool of three simulated hosts under faults, each a phase on one lab (scripts/pool-lab.sh),
//! with a guest running on every host throughout:
//!
//! 1. one etcd member killed (-9): lists, creates, forwarded controls, users and logins all work;
//! 2. two of three killed: the guests keep running, a host's own controls of its running VMs
//!    still work, through the API too with a session made before (each host checks it on its
//!    copy of the users), every request that changes the pool (a new login too) is refused
//!    naming etcd; when etcd is back, the pool converges: the state
//!    changed during the outage is seen by the other hosts and its events are in the pool's log;
//! 3. a host's daemon killed (-9): its guest keeps running, the other hosts list it offline
//!    within 15 s and its VMs as unknown (controls refused, saying why); back, it reattaches
//!    to the same QEMU and is online, the VM running again in every list;
//! 4. a host cut off the LAN: listed offline, and its VM keeps its owner (only HA may move it);
//!    plugged back, it is online with the VM where it was.

mod poollab;

use std::time::Duration;

use poollab::Lab;
use serde_json::Value;
use test_infra::Kit;

fn alive(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn the_pool_rides_out_etcd_host_and_network_faults() {
    let lab = Lab::up(3, "vtfault", "10.242.0");
    lab.pool();
    let kit = Kit::ensure().expect("guest kit");
    for (h, vm) in [("h1", "f1"), ("h2", "f2"), ("h3", "f3")] {
        lab.kit_vm_ok(&kit, "h1", vm, &[], &["--host", h]);
        lab.ok("h1", &["vm", "start", vm]);
    }
    let mut pids = std::collections::BTreeMap::new();
    for (h, vm) in [("h1", "f1"), ("h2", "f2"), ("h3", "f3")] {
        lab.wait(Duration::from_secs(180), &format!("{vm}'s guest booted"), || {
            String::from_utf8_lossy(&lab.vine(h, &["vm", "console", vm, "--log"]).stdout)
                .contains("VINE-BOOT-OK")
        });
        pids.insert(vm, lab.json(h, &["vm", "show", vm])["pid"].as_u64().unwrap());
    }
    let password = lab.admin_password("h1");

    // 1. One etcd member killed: everything works.
    lab.kill_etcd("h3");
    for h in lab.hosts() {
        assert_eq!(lab.json(&h, &["vm", "list"]).as_array().unwrap().len(), 3, "list on {h}");
        assert_eq!(lab.host_state(&h, "h3"), "online");
    }
    lab.kit_vm_ok(&kit, "h2", "g1", &[], &["--host", "h3"]);
    lab.ok("h3", &["vm", "pause", "f2"]);
    assert_eq!(lab.json("h2", &["vm", "show", "f2"])["state"], "paused");
    lab.ok("h1", &["vm", "resume", "f2"]);
    lab.ok("h2", &["user", "add", "una", "--password", "una-password-1"]);
    lab.wait_value(Duration::from_secs(5), "una logs in on h3", || {
        lab.try_login("h1", "h3", "una", "una-password-1")
    });
    lab.ok("h1", &["vm", "delete", "g1"]);
    lab.start_etcd("h3");

    // 2. Two of three killed: no majority.
    let session = lab.login("h2", "h1", "admin", &password);
    lab.kill_etcd("h2");
    lab.kill_etcd("h3");
    // The guests run on; a host's own controls of its running VMs work, and so do logins.
    for (vm, pid) in &pids {
        assert!(alive(*pid), "{vm}'s QEMU runs on");
    }
    lab.ok("h1", &["vm", "pause", "f1"]);
    assert_eq!(lab.json("h1", &["vm", "show", "f1"])["state"], "paused");
    lab.ok("h2", &["vm", "pause", "f2"]);
    lab.ok("h2", &["vm", "resume", "f2"]);
    // Sessions and API tokens made before keep working (each host checks them on its copy);
    // a new login is a change to the pool, refused until etcd is back.
    let (code, body) = lab.https("h2", "h1", "POST", "/api/vms/f1/actions/resume", &session, None);
    assert_eq!(code / 100, 2, "{code} {body}");
    let (code, body) = lab.https("h2", "h1", "POST", "/api/vms/f1/actions/pause", &session, None);
    assert_eq!(code / 100, 2, "{code} {body}");
    assert_eq!(lab.try_login("h1", "h3", "admin", &password), None);
    // Every request that changes the pool is refused, naming etcd.
    let kernel = kit.vmlinuz.display().to_string();
    for (h, args) in [
        ("h1", vec!["vm", "create", "nope", "--memory", "64", "--kernel", &kernel]),
        ("h2", vec!["user", "add", "nobody", "--password", "nobody-password-1"]),
        ("h3", vec!["host", "maintenance", "h2", "on"]),
        ("h1", vec!["cluster", "token", "h9"]),
    ] {
        let e = lab.fails(h, &args);
        assert!(e.contains("etcd"), "vine {args:?} on {h} refused naming etcd: {e}");
    }
    for (vm, pid) in &pids {
        assert!(alive(*pid), "{vm}'s QEMU still runs");
    }
    // etcd back: the pool converges, nothing lost.
    lab.start_etcd("h2");
    lab.start_etcd("h3");
    lab.wait(Duration::from_secs(30), "h3 sees f1 paused, as h1 left it", || {
        lab.vm_state("h3", "f1") == "paused"
    });
    lab.wait(Duration::from_secs(30), "the outage's events in the pool's log on h3", || {
        let log = lab.ok("h3", &["events", "--json"]);
        log.lines().any(|l| {
            let e: Value = serde_json::from_str(l).unwrap_or_default();
            e["host"] == "h1" && e["vm"] == "f1" && e["kind"] == "vm.pause"
        })
    });
    for h in lab.hosts() {
        lab.wait(Duration::from_secs(30), &format!("every host online on {h}"), || {
            lab.hosts().iter().all(|x| lab.host_state(&h, x) == "online")
        });
    }
    lab.ok("h1", &["vm", "resume", "f1"]);
    assert!(lab.try_login("h3", "h2", "una", "una-password-1").is_some(), "una is still a user");

    // 3. A daemon killed: its guest runs on, its host goes offline, its VMs unknown.
    lab.kill_daemon("h2");
    let took =
        lab.wait(Duration::from_secs(15), "h2 listed offline", || lab.host_state("h1", "h2") == "offline");
    eprintln!("h2 offline after {took:?}");
    assert!(alive(pids["f2"]), "f2's QEMU outlives its daemon");
    for h in ["h1", "h3"] {
        assert_eq!(lab.vm_state(h, "f2"), "unknown", "f2 in {h}'s list");
        assert_eq!(lab.json(h, &["vm", "show", "f2"])["state"], "unknown");
    }
    let e = lab.fails("h1", &["vm", "pause", "f2"]);
    assert!(e.contains("offline"), "{e}");
    lab.start_daemon("h2");
    lab.wait(Duration::from_secs(15), "h2 online again", || lab.host_state("h3", "h2") == "online");
    lab.wait(Duration::from_secs(10), "f2 running in h1's list", || lab.vm_state("h1", "f2") == "running");
    assert_eq!(lab.json("h2", &["vm", "show", "f2"])["pid"].as_u64(), Some(pids["f2"]), "the same QEMU");

    // 4. A host cut off the LAN: offline, and its VM keeps its owner.
    lab.cut("h3");
    let took =
        lab.wait(Duration::from_secs(20), "h3 listed offline", || lab.host_state("h1", "h3") == "offline");
    eprintln!("h3 offline after {took:?} off the LAN");
    std::thread::sleep(Duration::from_secs(3));
    for h in ["h1", "h2"] {
        let f3 = lab.json(h, &["vm", "show", "f3"]);
        assert_eq!(f3["host"], "h3", "f3 keeps its owner: {f3}");
        assert_eq!(f3["state"], "unknown");
    }
    assert!(alive(pids["f3"]), "f3's QEMU runs on, off the LAN");
    lab.plug("h3");
    lab.wait(Duration::from_secs(30), "h3 online again", || lab.host_state("h1", "h3") == "online");
    lab.wait(Duration::from_secs(10), "f3 running, on h3", || lab.vm_state("h2", "f3") == "running");
    assert_eq!(lab.json("h1", &["vm", "show", "f3"])["host"], "h3");
    for (h, vm) in [("h1", "f1"), ("h2", "f2"), ("h3", "f3")] {
        lab.ok(h, &["vm", "off", vm]);
    }
}
