//! A pool of three simulated hosts on one three-member etcd (scripts/pool-lab.sh): one host
//! makes the pool, the others join with one-time tokens, and every host's CLI and HTTPS API list
//! the same hosts and the same VMs (each with its host); a VM name is the pool's (a second VM of
//! that name on another host is refused, naming the owner); controls sent to a host that does
//! not own the VM are forwarded to its owner (the guest boots, its console reads from a third
//! host, pause and off hold) and refusals come back whole; a state change on one host shows on
//! the others; 50 starts of one VM sent at once to all hosts leave exactly one QEMU; a deleted
//! VM leaves every list; VMs made without `--host` spread over the hosts
//! by the memory left, each with a `vm.placed` reason, and `--host` pins one; a host in
//! maintenance keeps its VMs and gets no new ones. Exactly one host is the pool's coordinator;
//! when its daemon is killed another takes over within 10 s. A host whose daemon is killed is listed offline by
//! the others within 15 s and online again when its daemon comes back; tokens admit one named
//! host once; a host already in a pool cannot make or join another.

mod poollab;

use std::time::Duration;

use poollab::Lab;
use serde_json::Value;
use test_infra::Kit;

/// `(name, host, state)` of every VM `h` lists.
fn vms_on(lab: &Lab, h: &str) -> Vec<(String, String, String)> {
    lab.json(h, &["vm", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            (s("name"), s("host"), s("state"))
        })
        .collect()
}

fn names_and_states(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|h| (h["name"].as_str().unwrap().to_string(), h["state"].as_str().unwrap().to_string()))
        .collect()
}

fn state_of(lab: &Lab, on: &str, host: &str) -> String {
    let v = lab.json(on, &["host", "list"]);
    names_and_states(&v).into_iter().find(|(n, _)| n == host).map(|(_, s)| s).unwrap_or_default()
}

/// The pool's coordinator, once every host names the same one and exactly that host says it
/// is coordinating.
fn coordinator_of(lab: &Lab) -> String {
    lab.wait_value(Duration::from_secs(10), "one coordinator, named alike by every host", || {
        let shows: Vec<Value> = lab.hosts().iter().map(|h| lab.json(h, &["cluster", "show"])).collect();
        let c = shows[0]["coordinator"].as_str()?.to_string();
        let alike = shows.iter().all(|v| v["coordinator"] == c.as_str());
        let coordinating: Vec<&str> = shows
            .iter()
            .filter(|v| v["coordinating"] == true)
            .filter_map(|v| v["this_host"].as_str())
            .collect();
        (alike && coordinating == [c.as_str()]).then_some(c)
    })
}

#[test]
fn three_hosts_make_one_pool_seen_alike_from_every_host() {
    let lab = Lab::up(3, "vtpool", "10.241.0");

    // Before the pool: each host lists itself alone, as a single host always has.
    let alone = lab.json("h2", &["host", "list"]);
    assert_eq!(alone.as_array().unwrap().len(), 1, "{alone}");
    assert!(lab.fails("h2", &["cluster", "show"]).contains("this host is in no pool"));
    let e = lab.fails("h2", &["cluster", "join", "vine1.garbage"]);
    assert!(e.contains("join token"), "{e}");

    lab.pool();
    let all = vec![
        ("h1".to_string(), "online".to_string()),
        ("h2".to_string(), "online".to_string()),
        ("h3".to_string(), "online".to_string()),
    ];
    // The same hosts from every host's CLI …
    for h in lab.hosts() {
        assert_eq!(names_and_states(&lab.json(&h, &["host", "list"])), all, "vine host list on {h}");
        let show = lab.json(&h, &["cluster", "show"]);
        assert_eq!(show["this_host"], h.as_str());
        assert_eq!(show["etcd_members"].as_array().unwrap().len(), 3, "{show}");
        assert_eq!(show["pool"]["id"], lab.json("h1", &["cluster", "show"])["pool"]["id"]);
    }
    // … and from every host's HTTPS API, asked across the lab's LAN. The pool's users are the
    // first host's: its administrator's password works on every host, a joined host's own
    // first password no longer does.
    let password = lab.admin_password("h1");
    assert_eq!(lab.try_login("h1", "h2", "admin", &lab.admin_password("h2")), None);
    for to in lab.hosts() {
        let token = lab.login("h1", &to, "admin", &password);
        let (code, body) = lab.https("h1", &to, "GET", "/api/hosts", &token, None);
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(names_and_states(&v), all, "GET /api/hosts on {to}");
        let h2 = v.as_array().unwrap().iter().find(|h| h["name"] == "h2").unwrap();
        assert_eq!(h2["url"], lab.get("LAB_h2_URL"), "{h2}");
        let (code, body) = lab.https("h1", &to, "GET", "/api/hosts/h3", &token, None);
        assert_eq!(code, 200, "{body}");
    }

    // VMs: made on different hosts, listed alike (with their host) everywhere.
    let kit = Kit::ensure().expect("guest kit");
    for (h, vm) in [("h1", "a1"), ("h2", "b1"), ("h2", "b2"), ("h3", "c1")] {
        let out = lab.kit_vm(&kit, h, vm, &[], &["--host", h]);
        assert!(out.status.success(), "create {vm} on {h}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let want: Vec<(String, String, String)> = [("a1", "h1"), ("b1", "h2"), ("b2", "h2"), ("c1", "h3")]
        .iter()
        .map(|(v, h)| (v.to_string(), h.to_string(), "off".to_string()))
        .collect();
    for h in lab.hosts() {
        lab.wait(Duration::from_secs(10), &format!("every VM listed on {h}"), || vms_on(&lab, &h) == want);
    }
    let token = lab.login("h3", "h1", "admin", &password);
    let (code, body) = lab.https("h3", "h1", "GET", "/api/vms", &token, None);
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 4, "{v}");
    assert_eq!(lab.json("h1", &["vm", "show", "c1"])["host"], "h3");

    // One set of users, rights and hooks: a user made through h1, given a right through h2,
    // logs in on h3 and sees only that VM; a hook added on h3 is listed on h1.
    let (code, body) = lab.https(
        "h2",
        "h1",
        "POST",
        "/api/users",
        &token,
        Some(r#"{"name": "olga", "password": "olga-password-1"}"#),
    );
    assert_eq!(code, 201, "{body}");
    let h2_token = lab.login("h1", "h2", "admin", &password);
    let (code, body) = lab.https(
        "h1",
        "h2",
        "POST",
        "/api/acl",
        &h2_token,
        Some(r#"{"user": "olga", "vm": "b2", "right": "use"}"#),
    );
    assert_eq!(code / 100, 2, "{code} {body}");
    let olga = lab.wait_value(Duration::from_secs(5), "olga can log in on h3", || {
        lab.try_login("h2", "h3", "olga", "olga-password-1")
    });
    lab.wait(Duration::from_secs(5), "olga sees b2 alone from h3", || {
        let (code, body) = lab.https("h2", "h3", "GET", "/api/vms", &olga, None);
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        let names: Vec<&str> =
            v.as_array().map(|a| a.iter().filter_map(|x| x["name"].as_str()).collect()).unwrap_or_default();
        code == 200 && names == ["b2"]
    });
    let (code, _) = lab.https("h2", "h3", "GET", "/api/vms/c1", &olga, None);
    assert_eq!(code, 403, "olga may not see c1, which lives on h3 itself");
    let (code, _) = lab.https("h2", "h1", "POST", "/api/vms/b1/actions/start", &olga, None);
    assert!(code == 403 || code == 404, "olga may not start b1: {code}");
    lab.ok("h3", &["hook", "add", "vm.crashed", "/bin/true"]);
    lab.wait(Duration::from_secs(5), "h3's hook listed on h1", || {
        lab.json("h1", &["hook", "list"]).to_string().contains("vm.crashed")
    });

    // One event log: every host shows the same events, from all three hosts, in time order.
    let log = |h: &str| -> Vec<(i64, String, String)> {
        lab.ok(h, &["events", "--json"])
            .lines()
            .map(|l| {
                let e: Value = serde_json::from_str(l).unwrap();
                (
                    e["time_ms"].as_i64().unwrap(),
                    e["host"].as_str().unwrap_or("").to_string(),
                    e["kind"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    lab.wait(Duration::from_secs(10), "the same event log on every host", || {
        let first = log("h1");
        lab.hosts().iter().all(|h| log(h) == first)
    });
    let first = log("h1");
    assert!(first.windows(2).all(|w| w[0].0 <= w[1].0), "in time order: {first:?}");
    for (h, kind) in [
        ("h1", "cluster.init"),
        ("h2", "cluster.join"),
        ("h3", "cluster.join"),
        ("h2", "vm.created"),
        ("h3", "vm.created"),
        ("h1", "vm.created"),
    ] {
        assert!(
            first.iter().any(|(_, host, k)| host == h && k == kind),
            "{kind} from {h} in the pool's log: {first:?}"
        );
    }
    // Every control works when sent to a host that does not own the VM: it is forwarded to
    // the owner (here h2), and the guest shows it.
    lab.ok("h1", &["vm", "start", "b1"]);
    lab.wait(Duration::from_secs(120), "b1's guest booted, read through h3", || {
        let out = lab.vine("h3", &["vm", "console", "b1", "--log"]);
        String::from_utf8_lossy(&out.stdout).contains("VINE-BOOT-OK")
    });
    // The web console's websocket, opened on h1 from h3's namespace: h1 relays it from h2.
    let ws = lab.inside(
        "h3",
        &[
            "python3",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/ws_console.py"),
            &format!("{}:8443", lab.get("LAB_h1_IP")),
            "b1",
            &token,
            "2",
        ],
    );
    let seen = String::from_utf8_lossy(&ws.stdout);
    assert!(ws.status.success() && seen.contains("VINE-BOOT-OK"), "b1's console through h1: {seen} {ws:?}");
    let state_from =
        |h: &str| lab.json(h, &["vm", "show", "b1"])["state"].as_str().unwrap_or_default().to_string();
    lab.ok("h3", &["vm", "pause", "b1"]);
    assert_eq!(lab.json("h2", &["vm", "show", "b1"])["state"], "paused", "the owner paused it");
    lab.wait(Duration::from_secs(10), "h1 sees b1 paused", || state_from("h1") == "paused");
    lab.ok("h1", &["vm", "resume", "b1"]);
    // h2's load, as every host lists it: two VMs, one running with its 128 MiB.
    lab.wait(Duration::from_secs(10), "h1 lists h2's load", || {
        let h2 = lab.json("h1", &["host", "show", "h2"]);
        h2["load"]["vms"] == 2
            && h2["load"]["running"] == 1
            && h2["load"]["memory_held_bytes"] == 128u64 << 20
    });
    // Reset through h3: the guest boots again; save through h1, restore through h3.
    lab.ok("h3", &["vm", "reset", "b1"]);
    lab.wait(Duration::from_secs(120), "b1's guest booted a second time", || {
        let out = lab.vine("h1", &["vm", "console", "b1", "--log"]);
        String::from_utf8_lossy(&out.stdout).matches("VINE-BOOT-OK").count() >= 2
    });
    lab.ok("h1", &["vm", "save", "b1"]);
    assert_eq!(lab.json("h2", &["vm", "show", "b1"])["state"], "saved");
    lab.ok("h3", &["vm", "restore", "b1"]);
    assert_eq!(lab.json("h2", &["vm", "show", "b1"])["state"], "running");
    lab.ok("h3", &["vm", "off", "b1"]);
    assert_eq!(lab.json("h2", &["vm", "show", "b1"])["state"], "off");
    let e = lab.fails("h1", &["vm", "resume", "b1"]);
    assert!(e.contains("off"), "the owner's refusal comes back whole: {e}");

    // Ownership under a race: 50 starts of one VM sent at once to all three hosts leave one
    // QEMU for it in the whole lab; every other request is refused with a sentence.
    let out = lab.kit_vm(&kit, "h1", "race", &[], &["--host", "h2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let results: Vec<(bool, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let lab = &lab;
                s.spawn(move || {
                    let out = lab.vine(["h1", "h2", "h3"][i % 3], &["vm", "start", "race"]);
                    (out.status.success(), String::from_utf8_lossy(&out.stderr).trim().to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let started = results.iter().filter(|(ok, _)| *ok).count();
    assert_eq!(started, 1, "exactly one start succeeds: {results:?}");
    for (ok, e) in &results {
        assert!(*ok || e.contains("'race'"), "a refusal that names the VM: {e:?}");
    }
    let qemus = std::process::Command::new("pgrep").args(["-f", "guest=race,"]).output().unwrap();
    let pids = String::from_utf8_lossy(&qemus.stdout).lines().count();
    assert_eq!(pids, 1, "one QEMU for 'race' in the whole lab (every namespace shares this pid space)");
    lab.ok("h3", &["vm", "off", "race"]);

    // A VM name is the pool's.
    let out = lab.kit_vm(&kit, "h1", "b1", &[], &["--host", "h1"]);
    let e = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success() && e.contains("already exists on host 'h2'"), "{e}");
    // A change on the owner shows on the others; a deleted VM leaves every list.
    lab.ok("h2", &["vm", "set", "b2", "--cpu-weight", "300"]);
    lab.wait(Duration::from_secs(10), "b2's new weight seen from h3", || {
        lab.json("h3", &["vm", "show", "b2"])["cpu"]["weight"] == 300
    });
    lab.ok("h2", &["vm", "delete", "b2"]);
    for h in lab.hosts() {
        lab.wait(Duration::from_secs(10), &format!("b2 gone from {h}"), || {
            vms_on(&lab, &h).iter().all(|(n, _, _)| n != "b2")
        });
    }
    // Its name is free again, for any host.
    let out = lab.kit_vm(&kit, "h3", "b2", &[], &["--host", "h3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Placement: six VMs made through h1 without --host spread over the hosts by the memory
    // left on each, each with its reason; --host pins one.
    for i in 1..=6 {
        let out = lab.kit_vm(&kit, "h1", &format!("p{i}"), &[], &[]);
        assert!(out.status.success(), "p{i}: {}", String::from_utf8_lossy(&out.stderr));
    }
    // The hosts are alike, and every VM has the same memory: placement evens out the VMs per
    // host (the ones made earlier count), so no host ends with more than one over another.
    let placed = vms_on(&lab, "h2");
    let per_host: Vec<usize> =
        lab.hosts().iter().map(|h| placed.iter().filter(|(_, host, _)| host == h).count()).collect();
    let (most, least) = (per_host.iter().max().unwrap(), per_host.iter().min().unwrap());
    assert!(most - least <= 1, "uneven: {per_host:?} {placed:?}");
    for h in lab.hosts() {
        assert!(
            placed.iter().any(|(v, host, _)| v.starts_with('p') && *host == h),
            "{h} got none: {placed:?}"
        );
    }
    let events = lab.ok("h1", &["events", "--json"]);
    for i in 1..=6 {
        assert!(events.contains(&format!("placed 'p{i}' on host")), "no reason for p{i}: {events}");
    }
    let kernel = kit.vmlinuz.display().to_string();
    let out =
        lab.vine("h1", &["vm", "create", "pinned", "--memory", "64", "--kernel", &kernel, "--host", "h3"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("on host 'h3'"), "{out:?}");
    assert_eq!(lab.json("h2", &["vm", "show", "pinned"])["host"], "h3");

    // An anti-affinity group: its VMs go to different hosts, each placement says so; a fourth
    // has nowhere to go, and a pin onto a host of the group is refused.
    for i in 1..=3 {
        let out = lab.kit_vm(&kit, "h2", &format!("g{i}"), &[], &["--group", "db"]);
        assert!(out.status.success(), "g{i}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let hosts_of: std::collections::BTreeSet<String> = (1..=3)
        .map(|i| lab.json("h1", &["vm", "show", &format!("g{i}")])["host"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(hosts_of.len(), 3, "one VM of group db per host: {hosts_of:?}");
    assert!(lab.ok("h2", &["events", "--json"]).contains("kept apart from its anti-affinity group 'db'"));
    let out = lab.kit_vm(&kit, "h3", "g4", &[], &["--group", "db"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("anti-affinity group 'db'"), "{e}");
    let out = lab.kit_vm(&kit, "h3", "g4", &[], &["--group", "db", "--host", "h1"]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("of anti-affinity group 'db'"), "{e}");
    assert_eq!(lab.json("h3", &["vm", "show", "g1"])["group"], "db");

    // Maintenance: the host keeps its VMs and gets no new ones.
    lab.ok("h2", &["host", "maintenance", "h3", "on"]);
    assert_eq!(state_of(&lab, "h1", "h3"), "maintenance");
    for i in 1..=2 {
        let name = format!("m{i}");
        let out = lab.kit_vm(&kit, "h3", &name, &[], &[]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_ne!(
            lab.json("h1", &["vm", "show", &name])["host"],
            "h3",
            "{name} placed on a host in maintenance"
        );
    }
    assert_eq!(lab.json("h1", &["vm", "show", "c1"])["host"], "h3", "its VMs stay");
    lab.ok("h1", &["host", "maintenance", "h3", "off"]);
    assert_eq!(state_of(&lab, "h2", "h3"), "online");

    // Tokens: one named host, once.
    let token = lab.ok("h1", &["cluster", "token", "h9"]);
    let e = lab.fails("h1", &["cluster", "token", "h2"]);
    assert!(e.contains("already has a host named 'h2'"), "{e}");
    let e = lab.fails("h3", &["cluster", "join", token.trim()]);
    assert!(e.contains("already host 'h3'"), "{e}");
    let e = lab.fails("h3", &["cluster", "init", "--etcd", lab.get("LAB_ETCD")]);
    assert!(e.contains("already host 'h3'"), "{e}");

    // A policy's dry run sees every host of the pool, from any host, and changes nothing.
    let dry = lab.json("h2", &["policy", "dry-run", "--policy", "thr-mmt-0.8"]);
    let mut seen: Vec<&str> = dry["hosts"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    seen.sort();
    assert_eq!(seen, ["h1", "h2", "h3"], "{dry}");
    assert_eq!(dry["changed"], false);
    assert_eq!(dry["snapshot"]["hosts"].as_array().unwrap().len(), 3, "{dry}");

    // One coordinator; its daemon killed, another host takes over within 10 s, and it stays
    // the coordinator when the first comes back.
    let first = coordinator_of(&lab);
    lab.kill_daemon(&first);
    let others: Vec<String> = lab.hosts().into_iter().filter(|h| *h != first).collect();
    let took = lab.wait(Duration::from_secs(10), "another host takes over as coordinator", || {
        others.iter().all(|h| {
            let v = lab.json(h, &["cluster", "show"]);
            v["coordinator"].as_str().is_some_and(|c| c != first)
        })
    });
    eprintln!("coordinator {first} killed; another took over after {took:?}");
    lab.start_daemon(&first);
    lab.wait(Duration::from_secs(15), "the first coordinator's host online again", || {
        state_of(&lab, &others[0], &first) == "online"
    });
    let second = coordinator_of(&lab);
    assert_ne!(second, first, "the new coordinator stays");

    // A daemon killed: the others list its host offline within 15 s; back, it is online again.
    lab.kill_daemon("h2");
    let took = lab
        .wait(Duration::from_secs(15), "h2 listed offline by h1", || state_of(&lab, "h1", "h2") == "offline");
    eprintln!("h2 offline after {took:?}");
    assert_eq!(state_of(&lab, "h3", "h2"), "offline");
    lab.start_daemon("h2");
    lab.wait(Duration::from_secs(15), "h2 online again", || state_of(&lab, "h3", "h2") == "online");
    assert_eq!(names_and_states(&lab.json("h2", &["host", "list"])), all, "h2 rejoined its pool by itself");

    // Leaving: the host is on its own again, and gone from the others' lists.
    lab.ok("h3", &["cluster", "leave"]);
    assert_eq!(lab.json("h3", &["host", "list"]).as_array().unwrap().len(), 1);
    assert_eq!(names_and_states(&lab.json("h1", &["host", "list"])), all[..2].to_vec());
}
