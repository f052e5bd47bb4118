//! Live migration in a pool of two simulated hosts (scripts/pool-lab.sh), with real guests that
//! count on their console and write sequence-numbered records to their disk the whole time:
//!
//! - a guest on a shared pool's volume goes from h1 to h2 and back: the volume stays, the write
//!   role moves with the guest;
//! - a guest on a host-local pool's volume goes from h1 to h2 and back: the volume is mirrored
//!   while it runs, the original goes;
//! - each time the counter continues without a reboot, the guest reads every record back intact,
//!   nothing of the VM is left on the host it left, and the event tells the figures;
//! - once off, `qemu-img compare` finds each disk equal, byte for byte, to the records the guest
//!   wrote;
//! - a migration cut short — cancelled, its destination QEMU killed, its source daemon killed and
//!   started again, the link between the hosts cut — leaves the guest running where it was, its
//!   counter going on, and nothing of the attempt on the other host (processes, files, volumes);
//! - on networks that span the pool, guests on different hosts ping each other, a guest on
//!   another network cannot reach them, and a guest answers a ping flood from a third host
//!   through its own migration (the test prints how many replies were lost).

mod poollab;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use poollab::{checks, compare_records, console, processes_naming, qemu_of, Lab};
use test_infra::Kit;

/// The values of the lines starting with `prefix`, in order.
fn values(log: &str, prefix: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.trim().strip_prefix(prefix)?.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Nothing of `vm`'s failed migration is on host `h`: no directory, no process naming it or
/// `volume` (a file the migration would have made there), no such file; within `limit`.
fn no_debris(lab: &Lab, h: &str, vm: &str, volume: Option<&Path>, limit: Duration) {
    let dir = Path::new(lab.get(&format!("LAB_{h}_DATA"))).join("vms").join(vm);
    let d = dir.display().to_string();
    lab.wait(limit, &format!("nothing of {vm}'s migration is left on {h}"), || {
        !dir.exists()
            && processes_naming(&d).is_empty()
            && volume.is_none_or(|v| !v.exists() && processes_naming(&v.display().to_string()).is_empty())
            && lab.vine(h, &["vm", "show", vm, "--json"]).status.success()
    });
}

/// The guest of `vm` on `h` goes on counting past where it was.
fn goes_on(lab: &Lab, h: &str, vm: &str) {
    // A guest that has just arrived may not have printed here yet.
    let last = lab.wait_value(Duration::from_secs(30), &format!("{vm} counts on {h}"), || {
        values(&console(lab, h, vm), "VINE-COUNTER ").last().copied()
    });
    lab.wait(Duration::from_secs(60), &format!("{vm} goes on counting on {h}"), || {
        values(&console(lab, h, vm), "VINE-COUNTER ").iter().any(|n| *n > last + 2)
    });
    let log = console(lab, h, vm);
    assert!(checks(&log).iter().all(|c| c.1), "{vm}'s records are intact: {log}");
    assert_eq!(lab.vm_state(h, vm), "running");
    assert_eq!(lab.json(h, &["vm", "show", vm])["host"], h);
}

/// Starts a slow migration of `vm` (through `h`) and waits until it is under way.
fn slow_migration(lab: &Lab, h: &str, vm: &str, to: &str, extra: &[&str]) -> std::process::Child {
    let mut args = vec!["vm", "migrate", vm, "--to", to, "--bandwidth", "2M"];
    args.extend(extra);
    let child = lab.spawn_vine(h, &args);
    lab.wait(Duration::from_secs(60), &format!("the migration of {vm} is under way"), || {
        lab.vm_state(h, vm) == "migrating"
    });
    child
}

/// Migrates `vm` from `from` to `to` (asked through `via`) and checks that its guest went on:
/// the counter continues, no second boot, records still intact after the move.
fn migrate_and_check(lab: &Lab, via: &str, vm: &str, from: &str, to: &str) {
    let before = console(lab, from, vm);
    let last = *values(&before, "VINE-COUNTER ").last().expect("the guest counts");
    let t = std::time::Instant::now();
    let out = lab.ok(via, &["vm", "migrate", vm, "--to", to]);
    eprintln!("{vm} {from} -> {to} in {:?}: {out}", t.elapsed());
    assert!(out.contains(&format!("migrated '{vm}' live to host '{to}'")), "{out}");
    for h in [from, to] {
        let v = lab.json(h, &["vm", "show", vm]);
        assert_eq!(
            (v["host"].as_str(), v["state"].as_str()),
            (Some(to), Some("running")),
            "seen from {h}: {v}"
        );
    }
    // The guest goes on over there: its counter continues, it did not boot again.
    let seen_before = checks(&before).last().map_or(0, |c| c.0);
    lab.wait(Duration::from_secs(90), &format!("{vm} counts and checks its records on {to}"), || {
        let log = console(lab, to, vm);
        values(&log, "VINE-COUNTER ").iter().any(|n| *n > last + 2)
            && checks(&log).iter().any(|c| c.0 > seen_before + 20)
    });
    let after = console(lab, to, vm);
    let counted = values(&after, "VINE-COUNTER ");
    assert!(
        counted[0] > last.saturating_sub(3) && counted[0] <= last + 10,
        "{vm} continued on {to}, not restarted: {last} then {counted:?}\nbefore:\n{}\nafter:\n{}",
        before.lines().rev().take(8).collect::<Vec<_>>().join("\n"),
        after.lines().take(8).collect::<Vec<_>>().join("\n")
    );
    assert!(!after.contains("VINE-BOOT-OK"), "{vm} was not booted again on {to}");
    assert!(!after.contains("VINE-ERROR"), "{vm}'s guest reported an error on {to}: {after}");
    let bad: Vec<_> = checks(&after).into_iter().filter(|c| !c.1).collect();
    assert!(bad.is_empty(), "{vm}'s guest found records damaged after the migration: {bad:?}\n{after}");
    // Nothing of it is left on the host it left.
    let data = Path::new(lab.get(&format!("LAB_{from}_DATA"))).to_path_buf();
    assert!(!data.join("vms").join(vm).exists(), "{vm}'s directory is gone from {from}");
    let vm_dir = data.join("vms").join(vm).display().to_string();
    let left = processes_naming(&vm_dir);
    assert!(left.is_empty(), "processes of {vm} left on {from}: {left:?}");
}

/// The last `VINE-PINGS` line of a console: (sent, replies).
fn pings(log: &str) -> Option<(u64, u64)> {
    let l = log.lines().rev().find_map(|l| l.trim().strip_prefix("VINE-PINGS "))?;
    let field = |k: &str| l.split_whitespace().find_map(|w| w.strip_prefix(k)?.parse::<u64>().ok());
    Some((field("sent=")?, field("recv=")?))
}

/// Whether guest `vm` on `h` printed `line` after its first `after` lines.
fn printed_since(lab: &Lab, h: &str, vm: &str, after: usize, line: &str) -> bool {
    console(lab, h, vm).lines().skip(after).any(|l| l.trim() == line)
}

/// The VXLAN links in host `h`'s namespace.
fn vxlan_links(lab: &Lab, h: &str) -> String {
    let ns = format!("--net=/var/run/netns/{}", lab.get(&format!("LAB_{h}_NS")));
    let out =
        Command::new("nsenter").args([ns.as_str(), "ip", "-o", "link", "show", "type", "vxlan"]).output();
    String::from_utf8_lossy(&out.unwrap().stdout).to_string()
}

/// Networks that span the pool: `lan` and `iso`, both with h1 as their home (h1 routes between
/// them, so only isolation keeps them apart). Guests na (h1) and nb (h2) on lan ping each other;
/// nx (h2) on iso reaches its gateway but neither of them; nc (h3) floods na with pings while na
/// migrates from h1 to h2. A VM on a host's own network cannot migrate.
fn networks_span_the_pool(lab: &Lab, kit: &Kit) {
    lab.ok("h1", &["network", "create", "lan", "--kind", "nat", "--span", "--subnet", "10.251.64.0/24"]);
    lab.ok("h1", &["network", "create", "iso", "--kind", "nat", "--span", "--subnet", "10.251.65.0/24"]);
    lab.ok("h3", &["network", "create", "own", "--kind", "nat", "--subnet", "10.251.66.0/24"]);
    for h in ["h2", "h3"] {
        lab.wait(Duration::from_secs(20), &format!("{h} joins the spanning networks"), || {
            let v = lab.json(h, &["network", "list"]);
            ["lan", "iso"]
                .iter()
                .all(|n| v.as_array().unwrap().iter().any(|x| x["name"] == *n && x["span"]["home"] == "h1"))
        });
    }
    let e =
        lab.fails("h2", &["network", "reserve", "lan", "--mac", "0a:56:4e:00:00:0a", "--ip", "10.251.64.10"]);
    assert!(e.contains("its DHCP server is on host 'h1'"), "{e}");
    let e = lab.fails("h2", &["network", "create", "br", "--kind", "bridged", "--uplink", "lo", "--span"]);
    assert!(e.contains("field `span`"), "{e}");
    for (m, ip) in [("0a", "10"), ("0b", "11"), ("0c", "12")] {
        let mac = format!("0a:56:4e:00:00:{m}");
        lab.ok("h1", &["network", "reserve", "lan", "--mac", &mac, "--ip", &format!("10.251.64.{ip}")]);
    }
    let nic = |net: &str, m: &str| format!("{net},mac=0a:56:4e:00:00:{m}");
    let guests = [
        ("h1", "na", nic("lan", "0a"), vec!["vine.counter=1", "vine.net=1", "vine.ping=10.251.64.11"]),
        ("h2", "nb", nic("lan", "0b"), vec!["vine.net=1", "vine.ping=10.251.64.10"]),
        ("h3", "nc", nic("lan", "0c"), vec!["vine.net=1", "vine.pings=10.251.64.10"]),
        ("h2", "nx", "iso".into(), vec!["vine.net=1", "vine.ping=10.251.64.10,10.251.64.11,10.251.65.1"]),
        ("h3", "nl", "own".into(), vec!["vine.counter=1"]),
    ];
    for (h, vm, nic, opts) in &guests {
        lab.kit_vm_ok(kit, h, vm, opts, &["--host", h, "--nic", nic]);
        lab.ok(h, &["vm", "start", vm]);
    }
    // A MAC on a spanning network is the pool's: no other host's VM may take it there; on a
    // host's own network it may.
    let out = lab.kit_vm(kit, "h3", "dup", &[], &["--host", "h3", "--nic", &nic("lan", "0a")]);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && said.contains("NIC 0 of VM 'na'"), "{said}");
    lab.kit_vm_ok(kit, "h3", "dup", &[], &["--host", "h3", "--nic", &nic("own", "0a")]);
    lab.ok("h3", &["vm", "delete", "dup"]);
    // The home of a spanning network stays in the pool while the network does.
    let e = lab.fails("h1", &["cluster", "leave"]);
    assert!(e.contains("home of network"), "{e}");
    // Guests on two hosts share the network: DHCP from h1 for both, and they ping each other.
    lab.wait(Duration::from_secs(120), "na (h1) and nb (h2) ping each other", || {
        printed_since(lab, "h1", "na", 0, "VINE-PING 10.251.64.11 ok")
            && printed_since(lab, "h2", "nb", 0, "VINE-PING 10.251.64.10 ok")
    });
    // A guest on another network reaches its own gateway, never them.
    // (It started with the others; its lease and pings are on a second spanning network, under
    // TCG with four guests booting: as long as na and nb get.)
    let asked = Instant::now();
    while console(lab, "h2", "nx").matches("VINE-PING 10.251.65.1 ok").count() < 3 {
        assert!(
            asked.elapsed() < Duration::from_secs(120),
            "nx tried them all a few times: not within 120 s; its console:\n{}\nleases on iso (h1):\n{}\nthe VXLAN links of h1:\n{}\nthe VXLAN links of h2:\n{}",
            console(lab, "h2", "nx"),
            lab.ok("h1", &["network", "leases", "iso"]),
            vxlan_links(lab, "h1"),
            vxlan_links(lab, "h2")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let nx = console(lab, "h2", "nx");
    assert!(nx.contains("VINE-IP 10.251.65."), "nx leased on iso: {nx}");
    for ip in ["10.251.64.10", "10.251.64.11"] {
        assert!(!nx.contains(&format!("VINE-PING {ip} ok")), "nx on iso reached {ip} on lan:\n{nx}");
        assert!(nx.contains(&format!("VINE-PING {ip} fail")), "nx tried {ip}:\n{nx}");
    }
    // A network in use anywhere in the pool stays; a VM on a host's own network stays too.
    let e = lab.fails("h3", &["network", "delete", "lan"]);
    assert!(e.contains("'na' (NIC 0, on host 'h1')") && e.contains("'nb' (NIC 0, on host 'h2')"), "{e}");
    lab.wait(Duration::from_secs(60), "nl runs", || lab.vm_state("h3", "nl") == "running");
    let e = lab.fails("h3", &["vm", "migrate", "nl", "--to", "h1"]);
    assert!(e.contains("network 'own', which is this host's own"), "{e}");

    // nc (h3) floods na with pings while na moves from h1 to h2. (nc booted with the others; its
    // lease crosses two hosts' VXLAN, so it is given as long as they were.)
    let asked = Instant::now();
    let before = loop {
        let log = console(lab, "h3", "nc");
        if let Some(p) = pings(&log).filter(|p| p.1 > 200) {
            break p;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(120),
            "nc's pings are answered: not within 120 s; its console's end:\n{}\nthe VXLAN links of h3:\n{}",
            log.lines().rev().take(30).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"),
            vxlan_links(lab, "h3")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let lines_before = console(lab, "h2", "nb").lines().count();
    let out = lab.ok("h1", &["vm", "migrate", "na", "--to", "h2"]);
    assert!(out.contains("migrated 'na' live to host 'h2'"), "{out}");
    let after = lab.wait_value(Duration::from_secs(60), "nc goes on pinging for 5 s", || {
        pings(&console(lab, "h3", "nc")).filter(|p| p.0 >= before.0 + 500)
    });
    let (sent, answered) = (after.0 - before.0, after.1 - before.1);
    let lost = sent.saturating_sub(answered);
    eprintln!(
        "ping flood (every 10 ms) from nc on h3 to na through na's migration h1 -> h2: \
         {lost} of {sent} replies lost"
    );
    assert!(answered * 2 > sent, "na kept answering through its migration: {answered} of {sent}");
    let later = lab.wait_value(Duration::from_secs(60), "nc goes on pinging", || {
        pings(&console(lab, "h3", "nc")).filter(|p| p.0 >= after.0 + 200)
    });
    assert!(later.1 - after.1 >= 190, "na answers every ping on h2: {after:?} then {later:?}");
    // It kept its address and its neighbour, and did not boot again.
    lab.wait(Duration::from_secs(30), "na pings nb from h2", || {
        printed_since(lab, "h2", "na", 0, "VINE-PING 10.251.64.11 ok")
    });
    let na = console(lab, "h2", "na");
    assert!(!na.contains("VINE-BOOT-OK") && !na.contains("VINE-IP 10.251.64.1"), "na went on: {na}");
    assert!(printed_since(lab, "h2", "nb", lines_before, "VINE-PING 10.251.64.10 ok"));
    let leases = lab.json("h2", &["network", "leases", "lan"]);
    assert!(
        leases
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["ip"] == "10.251.64.10" && l["mac"] == "0a:56:4e:00:00:0a"),
        "h2 follows h1's leases: {leases}"
    );

    // Off and deleted, from a host that is not its home: every host removes its part.
    for (h, vm) in [("h2", "na"), ("h2", "nb"), ("h3", "nc"), ("h2", "nx"), ("h3", "nl")] {
        lab.ok(h, &["vm", "off", vm]);
        lab.ok(h, &["vm", "delete", vm]);
    }
    lab.ok("h2", &["network", "delete", "lan"]);
    lab.ok("h3", &["network", "delete", "iso"]);
    lab.ok("h3", &["network", "delete", "own"]);
    for h in ["h1", "h2", "h3"] {
        lab.wait(Duration::from_secs(20), &format!("{h} removed the spanning networks"), || {
            lab.json(h, &["network", "list"]).as_array().unwrap().is_empty() && vxlan_links(lab, h).is_empty()
        });
    }
}

#[test]
fn running_guests_migrate_live_with_shared_and_mirrored_disks() {
    let lab = Lab::up(3, "vtmig", "10.251.0");
    lab.pool();
    let kit = Kit::ensure().expect("guest kit");
    networks_span_the_pool(&lab, &kit);
    let (shared, local) = lab.storage();
    let (loc1, loc2, loc3) = (local[0].clone(), local[1].clone(), local[2].clone());
    lab.ok("h1", &["volume", "create", "shr/ms.vhd", "--size", "32M"]);
    lab.ok("h1", &["volume", "create", "loc/ml.vhd", "--size", "32M"]);
    let guest = ["vine.counter=1", "vine.records=/dev/vda"];
    lab.kit_vm_ok(&kit, "h1", "ms", &guest, &["--host", "h1", "--disk", "shr/ms.vhd"]);
    lab.kit_vm_ok(&kit, "h1", "ml", &guest, &["--host", "h1", "--disk", "loc/ml.vhd"]);
    for vm in ["ms", "ml"] {
        lab.ok("h1", &["vm", "start", vm]);
    }
    for vm in ["ms", "ml"] {
        lab.wait(Duration::from_secs(120), &format!("{vm} counts and checks its records"), || {
            !checks(&console(&lab, "h1", vm)).is_empty()
        });
    }

    // Refusals say why.
    let e = lab.fails("h1", &["vm", "migrate", "ms", "--to", "h9"]);
    assert!(e.contains("no host named 'h9'"), "{e}");
    let e = lab.fails("h1", &["vm", "migrate", "ms", "--to", "h1"]);
    assert!(e.contains("already"), "{e}");

    // A cancelled migration: the guest goes on where it was, nothing is left on h2.
    let slow = lab.spawn_vine("h1", &["vm", "migrate", "ml", "--to", "h2", "--bandwidth", "1M"]);
    lab.wait(Duration::from_secs(60), "the slow migration of ml is under way", || {
        lab.vine("h1", &["vm", "show", "ml", "--json"]).status.success()
            && lab.vm_state("h1", "ml") == "migrating"
    });
    let out = lab.ok("h2", &["vm", "migrate", "ml", "--cancel"]);
    assert!(out.contains("cancelling"), "{out}");
    let out = slow.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("cancelled"), "a cancelled migration fails: {said}");
    assert_eq!(lab.vm_state("h2", "ml"), "running");
    assert_eq!(lab.json("h2", &["vm", "show", "ml"])["host"], "h1");
    assert!(!loc2.join("ml.vhd").exists(), "the mirror's target is gone from h2");
    let h2 = Path::new(lab.get("LAB_h2_DATA")).to_path_buf();
    assert!(!h2.join("vms/ml").exists(), "no directory of ml on h2");
    let events = lab.ok("h2", &["events", "--json"]);
    assert!(events.contains("vm.migration-failed") && events.contains("cancelled"), "{events}");

    // Shared storage: there and back.
    migrate_and_check(&lab, "h1", "ms", "h1", "h2");
    migrate_and_check(&lab, "h1", "ms", "h2", "h1");
    // Storage migration: there and back; the original goes each time.
    migrate_and_check(&lab, "h2", "ml", "h1", "h2");
    assert!(loc2.join("ml.vhd").exists() && !loc1.join("ml.vhd").exists(), "ml's volume went to h2");
    migrate_and_check(&lab, "h1", "ml", "h2", "h1");
    assert!(loc1.join("ml.vhd").exists() && !loc2.join("ml.vhd").exists(), "ml's volume came back");

    // The events tell what happened, with QEMU's figures.
    let events = lab.ok("h1", &["events", "--json"]);
    let migrated = events
        .lines()
        .filter(|l| {
            l.contains("\"vm.migrated\"") && (l.contains("\"vm\":\"ms\"") || l.contains("\"vm\":\"ml\""))
        })
        .count();
    assert_eq!(migrated, 4, "four migrations, four events: {events}");
    assert!(events.contains("downtime") && events.contains("MiB of disk mirrored"), "{events}");

    // Failures. The destination's QEMU is killed mid-migration.
    let loc2_ml = loc2.join("ml.vhd");
    let slow = slow_migration(&lab, "h1", "ml", "h2", &[]);
    let pid = lab.wait_value(Duration::from_secs(30), "ml's QEMU on h2", || qemu_of(&lab, "h2", "ml"));
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    let out = slow.wait_with_output().unwrap();
    assert!(!out.status.success(), "the migration fails: {}", String::from_utf8_lossy(&out.stdout));
    no_debris(&lab, "h2", "ml", Some(&loc2_ml), Duration::from_secs(30));
    goes_on(&lab, "h1", "ml");

    // The source's daemon is killed mid-migration and started again.
    let slow = slow_migration(&lab, "h1", "ml", "h2", &[]);
    lab.kill_daemon("h1");
    let _ = slow.wait_with_output();
    lab.start_daemon("h1");
    no_debris(&lab, "h2", "ml", Some(&loc2_ml), Duration::from_secs(60));
    goes_on(&lab, "h1", "ml");
    assert!(!Path::new(lab.get("LAB_h1_DATA")).join("vms/ml/migration-out.json").exists());

    // The link between the hosts is cut mid-migration (etcd keeps its majority through h1 and
    // h3): the migration gives up at its timeout; once the link is back, h2 lets go.
    let slow = slow_migration(&lab, "h1", "ms", "h2", &["--timeout", "15"]);
    lab.cut("h2");
    let out = slow.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    lab.plug("h2");
    assert!(!out.status.success(), "the migration fails: {said}");
    no_debris(&lab, "h2", "ms", None, Duration::from_secs(90));
    goes_on(&lab, "h1", "ms");

    // A guest that dirties its memory faster than a 16 MiB/s link carries: it converges under
    // auto-converge or fails back cleanly within its limit; allowed post-copy, it completes.
    lab.kit_vm_ok(
        &kit,
        "h3",
        "md",
        &["vine.counter=1", "vine.dirty=160"],
        &["--host", "h3", "--memory", "256"],
    );
    lab.ok("h3", &["vm", "start", "md"]);
    lab.wait(Duration::from_secs(120), "md dirties its memory", || {
        console(&lab, "h3", "md").contains("VINE-DIRTY ")
    });
    let t = std::time::Instant::now();
    let out = lab.vine("h3", &["vm", "migrate", "md", "--to", "h2", "--bandwidth", "16M", "--timeout", "10"]);
    let took = t.elapsed();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(took < Duration::from_secs(25), "it ended within its limit: {took:?} ({said})");
    let was = if out.status.success() {
        "h2"
    } else {
        assert!(said.contains("did not converge within 10s"), "{said}");
        no_debris(&lab, "h2", "md", None, Duration::from_secs(30));
        "h3"
    };
    goes_on(&lab, was, "md");
    let other = if was == "h2" { "h3" } else { "h2" };
    let out = lab.ok(
        was,
        &["vm", "migrate", "md", "--to", other, "--bandwidth", "16M", "--timeout", "5", "--postcopy"],
    );
    assert!(out.contains("migrated 'md' live") && out.contains("post-copy"), "{out}");
    goes_on(&lab, other, "md");
    lab.ok(other, &["vm", "off", "md"]);

    // Evacuation: h1's three running guests all go, each where placement puts it; h1 ends in
    // maintenance.
    lab.kit_vm_ok(&kit, "h1", "me", &["vine.counter=1"], &["--host", "h1"]);
    lab.ok("h1", &["vm", "start", "me"]);
    lab.wait(Duration::from_secs(120), "me counts", || {
        !values(&console(&lab, "h1", "me"), "VINE-COUNTER ").is_empty()
    });
    let out = lab.ok("h2", &["host", "evacuate", "h1"]);
    assert!(out.contains("evacuated host 'h1': 3 VM(s)"), "{out}");
    assert_eq!(lab.host_state("h3", "h1"), "maintenance");
    let mut at = std::collections::BTreeMap::new();
    for vm in ["ms", "ml", "me"] {
        let v = lab.json("h3", &["vm", "show", vm]);
        let host = v["host"].as_str().unwrap().to_string();
        assert!(host == "h2" || host == "h3", "{vm} left h1: {v}");
        goes_on(&lab, &host, vm);
        at.insert(vm, host);
    }
    let h1 = Path::new(lab.get("LAB_h1_DATA")).join("vms");
    for vm in ["ms", "ml", "me"] {
        assert!(!h1.join(vm).exists(), "nothing of {vm} is left on h1");
    }
    let events = lab.ok("h1", &["events", "--json"]);
    assert!(events.contains("host.evacuated"), "{events}");

    // Off: each disk holds exactly the records its guest wrote, through every migration.
    let mut written = Vec::new();
    for vm in ["ms", "ml"] {
        let log = console(&lab, &at[vm], vm);
        written.push(checks(&log).last().map_or(0, |c| c.0));
        lab.ok("h1", &["vm", "off", vm]);
    }
    let work = tempfile::tempdir().unwrap();
    let n = compare_records(&shared.join("ms.vhd"), work.path());
    assert!(n >= written[0], "ms's disk holds {n} records; its guest had checked {}", written[0]);
    let ml_at = if at["ml"] == "h2" { &loc2 } else { &loc3 };
    let n = compare_records(&ml_at.join("ml.vhd"), work.path());
    assert!(n >= written[1], "ml's disk holds {n} records; its guest had checked {}", written[1]);
}
