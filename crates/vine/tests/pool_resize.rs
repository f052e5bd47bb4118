//! The pool's resizer on a running guest (two simulated hosts, scripts/pool-lab.sh): a guest
//! that idles, then takes memory on a schedule (guest kit `vine.hold`), with `--resize on`.
//!
//! - its CPU cap comes down from none to what it uses (the cgroup's quota says so, and `vine vm
//!   show`);
//! - its balloon shrinks it (the guest's own total memory drops), and when the guest takes memory
//!   the balloon gives it back (its total rises again) while it runs on;
//! - every change is a `policy.resize` event with its reason, sent by the coordinator to the host
//!   that owns the VM.

mod poollab;

use std::time::{Duration, Instant};

use poollab::Lab;
use serde_json::Value;
use test_infra::Kit;

/// The guest's memory, MiB.
const MEMORY_MB: u64 = 320;
/// Seconds from boot it idles before it takes memory.
const HOLD_AT_S: u32 = 75;
/// What it takes then, MiB.
const HOLD_MB: u32 = 160;

/// The last `VINE-MEM total=<kB> free=<kB>` line of `vm`'s console, in kB, with how many there were.
fn meminfo(lab: &Lab, vm: &str) -> Option<(u64, u64, usize)> {
    let out = lab.vine("h1", &["vm", "console", vm, "--log"]);
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("VINE-MEM ")).collect();
    let last = lines.last()?;
    let field = |k: &str| {
        last.split_whitespace().find_map(|w| w.strip_prefix(k)).and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((field("total=")?, field("free=")?, lines.len()))
}

fn console(lab: &Lab, vm: &str) -> String {
    String::from_utf8_lossy(&lab.vine("h1", &["vm", "console", vm, "--log"]).stdout).to_string()
}

fn counter(lab: &Lab, vm: &str) -> u64 {
    console(lab, vm)
        .lines()
        .filter_map(|l| l.strip_prefix("VINE-COUNTER ").and_then(|n| n.trim().parse().ok()))
        .next_back()
        .unwrap_or(0)
}

#[test]
fn the_resizer_caps_an_idle_guest_and_its_balloon_follows_what_the_guest_uses() {
    let lab = Lab::up_with(2, "vrsz", "10.239.0", &["--sample-interval", "2"]);
    lab.pool();
    let kit = Kit::ensure().expect("guest kit");
    let t0 = Instant::now();
    let step = |what: &str| println!("[{:5.1}s] {what}", t0.elapsed().as_secs_f64());

    // The VM lives on the host that does not coordinate: the coordinator's commands go there.
    let coordinator = lab.wait_value(Duration::from_secs(30), "a coordinator", || {
        lab.json("h1", &["cluster", "show"])["coordinator"].as_str().map(str::to_string)
    });
    let owner = lab.hosts().into_iter().find(|h| *h != coordinator).unwrap();
    let hold = format!("vine.hold=0:{HOLD_AT_S},{HOLD_MB}:100000");
    let memory = MEMORY_MB.to_string();
    lab.kit_vm_ok(
        &kit,
        "h1",
        "r1",
        &["vine.meminfo=1", "vine.counter=1", &hold],
        &["--host", &owner, "--memory", &memory],
    );
    lab.ok("h1", &["vm", "start", "r1"]);
    let booted = Instant::now();
    let (full, _, _) =
        lab.wait_value(Duration::from_secs(60), "the guest's first memory figures", || meminfo(&lab, "r1"));
    step(&format!("r1 runs on {owner} ({coordinator} coordinates); the guest sees {full} kB"));

    // The pool's mode stays off: this VM alone is automatic, pinned, and resized.
    lab.ok("h1", &["policy", "set", "--interval", "3"]);
    lab.ok("h2", &["policy", "vm", "r1", "--mode", "automatic", "--pin", &owner, "--resize", "on"]);
    let status = lab.json("h1", &["policy", "status"]);
    assert_eq!(status["mode"], "off", "{status}");
    assert_eq!(status["vms"]["r1"]["resize"], true, "{status}");

    // Idle: its CPU cap comes down from none (its guest, a shell printing twice a second, keeps
    // about a fifth of a vCPU busy under TCG), and the balloon takes memory back: the guest sees
    // its total drop.
    let quota = format!("/sys/fs/cgroup/cpu/vrsz-{owner}/r1/cpu.cfs_quota_us");
    let (mut capped, mut shrunk) = (None, None);
    let mut polls = 0u32;
    lab.wait_value(Duration::from_secs(90), "a CPU cap and a smaller balloon for the idle guest", || {
        polls += 1;
        if polls.is_multiple_of(50) {
            // What the coordinator did meanwhile, for whoever reads a failure.
            let a = lab.vine(&coordinator, &["policy", "advice"]);
            step(&format!("meanwhile:\n{}", String::from_utf8_lossy(&a.stdout)));
        }
        if capped.is_none() {
            let q: Option<i64> = std::fs::read_to_string(&quota).ok().and_then(|t| t.trim().parse().ok());
            capped = q.filter(|q| *q > 0 && *q < 60_000);
        }
        if shrunk.is_none() {
            shrunk = meminfo(&lab, "r1").filter(|(total, _, _)| total + 64 * 1024 < full).map(|(t, f, _)| {
                step(&format!("the guest sees {t} kB ({f} kB free), {} kB less", full - t));
                assert!(
                    booted.elapsed() < Duration::from_secs(u64::from(HOLD_AT_S)),
                    "the balloon came down only after the guest took memory"
                );
                t
            });
        }
        (capped.is_some() && shrunk.is_some()).then_some(())
    });
    let (capped, shrunk) = (capped.unwrap(), shrunk.unwrap());
    let shown = lab.json("h1", &["vm", "show", "r1"]);
    let allocated = shown["cpu"]["allocated_max"].as_u64().expect("vm show names the resizer's cap");
    assert!(allocated < 100, "{shown}");
    assert!(shown["cpu"]["max"].is_null(), "the VM's own cap is untouched: {shown}");
    step(&format!("capped at {allocated} % of one CPU (cpu.cfs_quota_us {capped} when first seen)"));

    // The guest takes memory: the balloon gives it back as it does, and the guest runs on.
    let before = counter(&lab, "r1");
    lab.wait_value(Duration::from_secs(u64::from(HOLD_AT_S) + 120), "the guest holding its memory", || {
        console(&lab, "r1").contains(&format!("VINE-HOLD 1 {HOLD_MB}")).then_some(())
    });
    let (grown, free) = lab.wait_value(Duration::from_secs(60), "the guest's memory given back", || {
        let (total, free, _) = meminfo(&lab, "r1")?;
        (total > shrunk + u64::from(HOLD_MB) * 1024 / 2).then_some((total, free))
    });
    step(&format!("the guest holds {HOLD_MB} MiB and sees {grown} kB ({free} kB free)"));
    std::thread::sleep(Duration::from_secs(3));
    assert!(counter(&lab, "r1") > before, "the guest stopped counting");
    let states: Value = lab.json("h1", &["vm", "list"]);
    assert_eq!(states[0]["state"], "running", "{states}");
    assert!(!console(&lab, "r1").contains("Out of memory"), "the guest ran out of memory");

    // Every change is an event with its reason, carried out by the owner.
    let events: Vec<Value> =
        lab.ok(&owner, &["events", "--json"]).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let set: Vec<&str> =
        events.iter().filter(|e| e["kind"] == "vm.set").filter_map(|e| e["message"].as_str()).collect();
    let coord_events = lab.ok(&coordinator, &["events", "--json"]);
    assert!(coord_events.contains("cap VM 'r1' at"), "no cap event on the coordinator");
    assert!(coord_events.contains("balloon VM 'r1' to"), "no balloon event on the coordinator");
    assert!(coord_events.contains("used up to"), "a cap without its reason");
    assert!(coord_events.contains("its balloon goes from"), "a balloon without its reason");
    assert!(set.iter().any(|m| m.contains("the resizer caps it at")), "the owner did not cap it: {set:?}");
    let balloons = events.iter().filter(|e| e["kind"] == "vm.balloon").count();
    assert!(balloons >= 2, "the owner ballooned it {balloons} time(s)");
    let failed = coord_events.lines().filter(|l| l.contains("policy.failed")).collect::<Vec<_>>();
    assert!(failed.is_empty(), "{failed:?}");
    step("every change an event with its reason");

    // The record planned again gives the same resizes.
    let status = lab.json(&coordinator, &["policy", "status"]);
    let record = status["last_round"]["record"].as_str().expect("a record").to_string();
    let out = lab.vine(&coordinator, &["policy", "simulate", "--replay", &record, "--json"]);
    let replay: Value = serde_json::from_slice(&out.stdout).expect("replay JSON");
    assert!(out.status.success(), "replayed rounds differ: {:?}", replay["differ"]);
    let sent: Vec<String> = replay["rounds"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["recorded"].as_array().unwrap().iter())
        .filter(|c| c["command"] == "cap" || c["command"] == "balloon")
        .map(|c| match c["bytes"].as_u64() {
            Some(b) => format!("balloon {} MiB", b >> 20),
            None => format!("cap {}", c["pct"]),
        })
        .collect();
    assert!(sent.len() >= 3, "{} resizes replayed", sent.len());
    step(&format!("replay: the same {} resizes: {}", sent.len(), sent.join(", ")));
}
