//! Cold moves and shared storage in a pool of two simulated hosts (scripts/pool-lab.sh):
//!
//! - a shared pool made on h1 is registered by h2 by itself; host-local pools of one name on
//!   each host stay each host's own;
//! - an off VM with a disk on a host-local pool and one on the shared pool moves to h2: the local
//!   disk is copied (qemu-io reads the pattern written before, qemu-img checks it) and its
//!   original goes, the shared disk stays where it is, nothing of the VM is left on h1, and
//!   it boots on h2;
//! - a volume of the shared pool has one writer in the whole pool: a VM on h1 cannot start while
//!   a VM on h2 writes it, and can once that one is off;
//! - a saved VM moves and restores on h2: its guest's counter continues where it stopped;
//! - a running VM, a host path disk and an unknown host are refused with sentences;
//! - a container moves cold from h1 to h2 with its root file system (a file written inside is
//!   there), gets a slot of ids on h2, keeps its address on a network that spans the pool, and
//!   the pool lists it with its kind; a running one is refused, and live migration is for VMs;
//!   evacuating its host moves it cold (shut down, moved, started) and it runs on the other;
//! - the policy engine, consolidating two idle hosts that each run a container, moves one
//!   container cold (an event says it is cold and why), and both run on one host.

mod poollab;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use poollab::Lab;
use serde_json::Value;
use test_infra::Kit;

fn console(lab: &Lab, h: &str, vm: &str) -> String {
    String::from_utf8_lossy(&lab.vine(h, &["vm", "console", vm, "--log", "--all"]).stdout).to_string()
}

/// The counter values a guest printed, in order.
fn counters(log: &str) -> Vec<u64> {
    log.lines().filter_map(|l| l.trim().strip_prefix("VINE-COUNTER ")?.trim().parse().ok()).collect()
}

fn qemu_io(file: &Path, cmd: &str) -> String {
    let out = Command::new("qemu-io").args(["-f", "vpc", "-c", cmd]).arg(file).output().unwrap();
    assert!(out.status.success(), "qemu-io {cmd}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn sha256(file: &Path) -> String {
    let out = Command::new("sha256sum").arg(file).output().unwrap();
    assert!(out.status.success(), "sha256sum {}", file.display());
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string()
}

#[test]
fn vms_move_cold_between_hosts_with_local_and_shared_volumes() {
    // Samples every 2 s: the policy at the end plans on a few of them.
    let lab = Lab::up_with(2, "vtmove", "10.246.0", &["--sample-interval", "2"]);
    lab.pool();
    let kit = Kit::ensure().expect("guest kit");
    let dir = Path::new(lab.get("LAB_DIR")).to_path_buf();
    // Pools: one shared, registered by h2 by itself; "loc" is each host's own.
    let (shared, local) = lab.storage();
    let (loc1, loc2) = (local[0].clone(), local[1].clone());
    let loc_of = |h: &str| {
        let pools = lab.json(h, &["pool", "list"]);
        pools.as_array().unwrap().iter().find(|p| p["name"] == "loc").map(|p| p["shared"].clone())
    };
    assert_eq!(loc_of("h1"), Some(Value::Null), "a host-local pool is not shared");
    for v in ["loc/d1.vhd", "shr/s1.vhd", "loc/d2.vhd", "shr/s2.vhd"] {
        lab.ok("h1", &["volume", "create", v, "--size", "64M"]);
    }
    qemu_io(&loc1.join("d1.vhd"), "write -P 0x5a 0 1M");
    qemu_io(&shared.join("s1.vhd"), "write -P 0x3c 1M 1M");
    let d1_sum = sha256(&loc1.join("d1.vhd"));

    // An off VM: its local disk is copied, its shared disk stays, nothing is left on h1.
    lab.kit_vm_ok(&kit, "h1", "mv1", &[], &["--host", "h1", "--disk", "loc/d1.vhd", "--disk", "shr/s1.vhd"]);
    let e = lab.fails("h2", &["vm", "move", "mv1", "--to", "h9"]);
    assert!(e.contains("no host named 'h9'"), "{e}");
    let out = lab.ok("h2", &["vm", "move", "mv1", "--to", "h2"]);
    assert!(out.contains("copied loc/d1.vhd") && out.contains("shr/s1.vhd stay"), "{out}");
    for h in ["h1", "h2"] {
        assert_eq!(lab.json(h, &["vm", "show", "mv1"])["host"], "h2", "mv1 on h2, seen from {h}");
    }
    let read = qemu_io(&loc2.join("d1.vhd"), "read -P 0x5a 0 1M");
    assert!(
        read.contains("read 1048576/1048576") && !read.contains("fail"),
        "the copy holds what was written: {read}"
    );
    assert_eq!(sha256(&loc2.join("d1.vhd")), d1_sum, "the copy is the original, byte for byte");
    let info =
        Command::new("qemu-img").args(["info", "-f", "vpc"]).arg(loc2.join("d1.vhd")).output().unwrap();
    assert!(info.status.success(), "qemu-img reads the copy: {}", String::from_utf8_lossy(&info.stderr));
    assert!(!loc1.join("d1.vhd").exists(), "the original of a moved disk goes");
    let read = qemu_io(&shared.join("s1.vhd"), "read -P 0x3c 1M 1M");
    assert!(
        read.contains("read 1048576/1048576") && !read.contains("fail"),
        "the shared disk is as it was: {read}"
    );
    assert!(!Path::new(lab.get("LAB_h1_DATA")).join("vms/mv1").exists(), "no directory of mv1 left on h1");
    assert!(lab.ok("h1", &["events", "--json"]).contains("\"vm.moved\""));
    lab.ok("h1", &["vm", "start", "mv1"]);
    lab.wait(Duration::from_secs(120), "mv1 boots on h2", || {
        console(&lab, "h2", "mv1").contains("VINE-BOOT-OK")
    });

    // One writer per shared volume in the whole pool.
    lab.kit_vm_ok(&kit, "h1", "mw", &[], &["--host", "h1", "--disk", "shr/s1.vhd"]);
    let e = lab.fails("h1", &["vm", "start", "mw"]);
    assert!(e.contains("shr/s1.vhd") && e.contains("h2/mv1"), "{e}");
    let e = lab.fails("h1", &["vm", "move", "mv1", "--to", "h1"]);
    assert!(e.contains("running"), "a running VM does not move cold: {e}");
    lab.ok("h2", &["vm", "off", "mv1"]);
    lab.wait(Duration::from_secs(10), "mw starts once mv1 is off", || {
        lab.vine("h1", &["vm", "start", "mw"]).status.success()
    });
    lab.ok("h1", &["vm", "off", "mw"]);

    // A saved VM moves and continues on h2.
    lab.kit_vm_ok(
        &kit,
        "h1",
        "mv2",
        &["vine.counter=1"],
        &["--host", "h1", "--disk", "loc/d2.vhd", "--disk", "shr/s2.vhd"],
    );
    lab.ok("h1", &["vm", "start", "mv2"]);
    lab.wait(Duration::from_secs(120), "mv2 counts", || counters(&console(&lab, "h1", "mv2")).len() >= 3);
    lab.ok("h1", &["vm", "save", "mv2"]);
    let before = *counters(&console(&lab, "h1", "mv2")).last().unwrap();
    let out = lab.ok("h1", &["vm", "move", "mv2", "--to", "h2"]);
    assert!(out.contains("(saved)"), "{out}");
    let moved = lab.json("h2", &["vm", "show", "mv2"]);
    assert_eq!(
        (moved["state"].as_str(), moved["saved_state"].as_bool()),
        (Some("saved"), Some(true)),
        "{moved}"
    );
    lab.ok("h1", &["vm", "restore", "mv2"]);
    lab.wait(Duration::from_secs(60), "mv2's counter goes on past where it stopped", || {
        counters(&console(&lab, "h2", "mv2")).iter().any(|n| *n > before + 1)
    });
    let after = console(&lab, "h2", "mv2");
    let seen = counters(&after);
    assert!(
        seen[0] > before.saturating_sub(2) && seen[0] <= before + 3,
        "continued, not restarted: {before} then {seen:?}"
    );
    assert!(!after.contains("VINE-BOOT-OK"), "the guest was not booted again on h2");
    lab.ok("h2", &["vm", "off", "mv2"]);

    // A host path disk does not move.
    let raw = dir.join("raw.vhd");
    lab.ok("h2", &["volume", "create", "loc/tmp.vhd", "--size", "16M"]);
    std::fs::copy(loc2.join("tmp.vhd"), &raw).unwrap();
    lab.kit_vm_ok(&kit, "h2", "hp", &[], &["--host", "h2", "--disk", raw.to_str().unwrap()]);
    let e = lab.fails("h1", &["vm", "move", "hp", "--to", "h1"]);
    assert!(e.contains("host path"), "{e}");
    assert_eq!(
        lab.json("h1", &["vm", "show", "hp"])["host"],
        "h2",
        "a refused move leaves the VM where it was"
    );

    // Templates in a pool: every host sees them. Bases on h1's own pool are copied to h2 once,
    // on its first clone there; a template on the shared pool needs no copy; deleting a
    // template is refused while a clone stands on it on any host, and then takes every copy.
    lab.ok("h1", &["volume", "create", "loc/tsrc.vhd", "--size", "16M"]);
    lab.ok("h1", &["template", "create", "tl", "--from-volume", "loc/tsrc.vhd", "--memory", "64M"]);
    lab.ok("h1", &["volume", "create", "shr/tsrc.vhd", "--size", "16M"]);
    lab.ok("h1", &["template", "create", "ts", "--from-volume", "shr/tsrc.vhd", "--memory", "64M"]);
    lab.wait(Duration::from_secs(10), "h2 sees the templates", || {
        let all = lab.json("h2", &["template", "list"]);
        all.as_array().is_some_and(|a| a.len() == 2)
    });
    assert!(!loc2.join("tl.base.vhd").exists());
    lab.ok("h1", &["vm", "create", "tc1", "--template", "tl", "--host", "h2"]);
    let base2 = loc2.join("tl.base.vhd");
    assert_eq!(sha256(&base2), sha256(&loc1.join("tl.base.vhd")), "h2's copy of the base differs");
    let copied_at = std::fs::metadata(&base2).unwrap().modified().unwrap();
    lab.ok("h2", &["vm", "create", "tc2", "--template", "tl", "--host", "h2"]);
    assert_eq!(std::fs::metadata(&base2).unwrap().modified().unwrap(), copied_at, "copied twice");
    let vol = lab.json("h2", &["volume", "show", "loc/tc2.vhd"]);
    assert_eq!(vol["parent"], "loc/tl.base.vhd", "{vol}");
    lab.ok("h1", &["vm", "create", "tc3", "--template", "ts", "--host", "h2"]);
    assert_eq!(lab.json("h2", &["volume", "show", "shr/tc3.vhd"])["parent"], "shr/ts.base.vhd");
    let e = lab.fails("h1", &["template", "delete", "tl"]);
    assert!(e.contains("host 'h2'") && e.contains("tc1"), "{e}");
    for vm in ["tc1", "tc2", "tc3"] {
        lab.ok("h1", &["vm", "delete", vm]);
    }
    lab.ok("h1", &["template", "delete", "tl"]);
    lab.ok("h2", &["template", "delete", "ts"]);
    assert!(
        !base2.exists() && !loc1.join("tl.base.vhd").exists(),
        "a copy of the base outlived its template"
    );
    assert!(!shared.join("ts.base.vhd").exists());
    container_moves(&lab);
}

/// A container's cold move from h1 to h2 (see the file's comment).
fn container_moves(lab: &Lab) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/ct-image.sh");
    let out = Command::new("bash").arg(&script).arg("busybox").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let img = String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim().to_string();
    lab.ok("h1", &["ct", "image", "import", "loc/bb", &img]);
    lab.ok("h1", &["network", "create", "ctn", "--kind", "nat", "--span", "--subnet", "10.246.64.0/24"]);
    lab.wait(Duration::from_secs(20), "h2 joins the spanning network", || {
        lab.json("h2", &["network", "list"]).as_array().unwrap().iter().any(|x| x["name"] == "ctn")
    });
    lab.ok(
        "h1",
        &[
            "ct", "create", "k1", "--image", "loc/bb", "--memory", "64M", "--nic", "ctn", "--host", "h1",
            "--start",
        ],
    );
    let data = |h: &str| Path::new(lab.get(&format!("LAB_{h}_DATA"))).to_path_buf();
    let address = |h: &str, boot: usize| -> String {
        lab.wait_value(Duration::from_secs(60), "the container's lease", || {
            let log = std::fs::read_to_string(data(h).join("vms/k1/run/console.log")).unwrap_or_default();
            // The boot count lives in the container's root: "boot 2" on h2 shows it came along.
            if !log.contains(&format!("vine-ct: up k1 boot {boot}")) {
                return None;
            }
            log.lines()
                .rev()
                .find_map(|l| l.split("vine-ct: address ").nth(1))
                .map(|r| r.split_whitespace().next().unwrap().to_string())
        })
    };
    let before = address("h1", 1);
    let attach = |h: &str, script: &str| {
        let lxc = data(h).join("lxc");
        let out = lab.inside(
            h,
            &["lxc-attach", "-P", lxc.to_str().unwrap(), "-n", "k1", "--", "/bin/sh", "-c", script],
        );
        assert!(out.status.success(), "in k1 on {h}: {script}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    attach("h1", "echo kept-across-hosts > /root/mark");
    let e = lab.fails("h1", &["ct", "move", "k1", "--to", "h2"]);
    assert!(e.contains("running"), "{e}");
    let e = lab.fails("h1", &["vm", "migrate", "k1", "--to", "h2"]);
    assert!(e.contains("container"), "{e}");
    let base1 = lab.json("h1", &["ct", "show", "k1"])["container"]["id_base"].as_u64().unwrap();
    lab.ok("h1", &["ct", "off", "k1"]);
    let out = lab.ok("h1", &["ct", "move", "k1", "--to", "h2"]);
    assert!(out.contains("root file system"), "{out}");
    assert!(!data("h1").join("vms/k1").exists(), "k1's directory is left on h1");
    let listed = lab.json("h1", &["vm", "list"]);
    let k1 = listed.as_array().unwrap().iter().find(|v| v["name"] == "k1").cloned().unwrap_or_default();
    assert_eq!((k1["host"].as_str(), k1["kind"].as_str()), (Some("h2"), Some("container")), "{listed}");
    lab.ok("h2", &["ct", "start", "k1"]);
    let after = address("h2", 2);
    assert_eq!(after, before, "the container's address changed with its host");
    assert_eq!(attach("h2", "cat /root/mark").trim(), "kept-across-hosts");
    let v = lab.json("h2", &["ct", "show", "k1"]);
    let pid = v["pid"].as_u64().unwrap();
    let uid = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid: u64 = uid
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        uid,
        v["container"]["id_base"].as_u64().unwrap(),
        "root inside is not the container's id base"
    );
    eprintln!("k1: id base {base1} on h1, {uid} on h2");
    // A container made on h2 from an image of h1's host-local pool: the image goes there first.
    let has_image = |h: &str| {
        lab.json(h, &["volume", "list", "loc"]).as_array().unwrap().iter().any(|v| v["volume"] == "loc/bb")
    };
    assert!(!has_image("h2"), "h2 has the image before any container needs it");
    lab.ok("h1", &["ct", "create", "k2", "--image", "loc/bb", "--memory", "64M", "--host", "h2"]);
    assert_eq!(lab.json("h1", &["ct", "show", "k2"])["host"], "h2");
    assert!(has_image("h2"), "the image did not go to h2");
    lab.ok("h1", &["ct", "delete", "k2"]);
    // Evacuating h2 moves the running container cold back to h1, where it runs again.
    let out = lab.ok("h1", &["host", "evacuate", "h2"]);
    assert!(out.contains("1 container(s) moved cold"), "{out}");
    assert_eq!(lab.json("h1", &["ct", "show", "k1"])["state"], "running");
    assert!(lab.ok("h1", &["events", "--vm", "k1"]).contains("vm.moved"));
    lab.ok("h1", &["host", "maintenance", "h2", "off"]);
    policy_moves_a_container_cold(lab);
}

/// Two idle hosts, a container running on each: the policy consolidates them on one host, which
/// for a container is a cold move (see the file's comment).
fn policy_moves_a_container_cold(lab: &Lab) {
    lab.ok("h1", &["ct", "create", "k3", "--image", "loc/bb", "--memory", "64M", "--host", "h2", "--start"]);
    let where_ = || -> Vec<(String, String)> {
        let listed = lab.json("h1", &["vm", "list"]);
        let mut at: Vec<(String, String)> = listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["kind"] == "container")
            .map(|v| (v["name"].as_str().unwrap().to_string(), format!("{} {}", v["host"], v["state"])))
            .collect();
        at.sort();
        at
    };
    let before = where_();
    eprintln!("before the policy: {before:?}");
    let file = std::env::temp_dir().join("vine-lab-move-policy.toml");
    std::fs::write(&file, include_str!("../../../bench/pool-policy.toml")).unwrap();
    lab.ok("h1", &["policy", "use", file.to_str().unwrap()]);
    lab.ok("h1", &["policy", "set", "--interval", "3", "--threshold", "5"]);
    lab.ok("h1", &["policy", "mode", "automatic"]);
    let mut polls = 0u32;
    let after =
        lab.wait_value(Duration::from_secs(150), "the policy puts both containers on one host", || {
            polls += 1;
            if polls.is_multiple_of(50) {
                // What the engine sees meanwhile, for whoever reads a failure.
                let a = lab.vine("h1", &["policy", "advice"]);
                let e = lab.vine("h1", &["events"]);
                let e = String::from_utf8_lossy(&e.stdout);
                let policy: Vec<&str> =
                    e.lines().filter(|l| l.contains("policy.") || l.contains("vm.")).collect();
                eprintln!(
                    "meanwhile, at {:?}:\n{}\n{}",
                    where_(),
                    String::from_utf8_lossy(&a.stdout),
                    policy[policy.len().saturating_sub(12)..].join("\n")
                );
            }
            let at = where_();
            let hosts: std::collections::BTreeSet<&str> =
                at.iter().map(|(_, h)| h.split(' ').next().unwrap()).collect();
            (at.len() == 2 && hosts.len() == 1 && at.iter().all(|(_, h)| h.ends_with("\"running\"")))
                .then_some(at)
        });
    lab.ok("h1", &["policy", "mode", "off"]);
    eprintln!("after the policy: {after:?}");
    let events: Vec<Value> =
        lab.ok("h1", &["events", "--json"]).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let cold: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "policy.cold-move")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(cold.len(), 1, "one cold move by the policy: {cold:?}");
    assert!(cold[0].contains("cannot move live") && cold[0].contains("root file system"), "{}", cold[0]);
    let moved = if cold[0].contains("'k1'") { "k1" } else { "k3" };
    assert!(
        lab.ok("h1", &["events", "--vm", moved]).contains("vm.moved"),
        "{moved}'s move is not in its events"
    );
    for ct in ["k1", "k3"] {
        lab.ok("h1", &["ct", "off", ct]);
        lab.ok("h1", &["ct", "delete", ct]);
    }
}
