//! Resource controls through the daemon, measured on real guests while other programs keep every
//! core busy (the test starts them): two CPU-bound guests sharing one core with weights 100 and
//! 300 get CPU time within 15 % of 1:3 of each other; a 25 % cap set with `vine vm set` on the
//! running VM is never exceeded and is what holds it back (its cgroup is throttled); reservations
//! are admitted only while they fit, and refusals state the numbers. CPU time is read from
//! `vine vm show --json`. A running guest's balloon shrinks its memory (the guest's own MemTotal
//! drops) and grows it back, while it keeps running.

mod vmhost;

use std::process::Command;
use std::time::{Duration, Instant};

use test_infra::Burner;
use vmhost::{VmHost, BOOT};

/// Pins every process of the VM's cgroup (QEMU and its console logger) to CPU 0: a group with a
/// process on another CPU has its shares split between the CPUs by load, which would skew the
/// weights measured on CPU 0.
fn pin_to_cpu0(h: &VmHost, vm: &str) {
    let procs =
        std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/{}/{vm}/cgroup.procs", h.cgroup_parent)).unwrap();
    for pid in procs.lines() {
        let out = Command::new("taskset").args(["-a", "-p", "-c", "0", pid]).output().unwrap();
        assert!(out.status.success(), "taskset: {}", vmhost::text(&out));
    }
}

fn cpu_ns(h: &VmHost, vm: &str) -> u64 {
    h.show(vm)["cpu_time_ns"].as_u64().unwrap_or_else(|| panic!("{vm} reports no CPU time"))
}

/// Share of one core each VM used over `secs`.
fn measure(h: &VmHost, vms: &[&str], secs: u64) -> Vec<f64> {
    let before: Vec<u64> = vms.iter().map(|v| cpu_ns(h, v)).collect();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let after: Vec<u64> = vms.iter().map(|v| cpu_ns(h, v)).collect();
    let wall = t.elapsed().as_nanos() as f64;
    after.iter().zip(before).map(|(a, b)| (a - b) as f64 / wall).collect()
}

fn cgroup_file(h: &VmHost, controller: &str, vm: &str, file: &str) -> String {
    std::fs::read_to_string(format!("/sys/fs/cgroup/{controller}/{}/{vm}/{file}", h.cgroup_parent))
        .unwrap_or_else(|e| panic!("{controller}/{vm}/{file}: {e}"))
        .trim()
        .to_string()
}

/// A counter from the VM's `cpu.stat` (cgroup v1).
fn cgroup_stat(h: &VmHost, vm: &str, key: &str) -> u64 {
    let text = cgroup_file(h, "cpu", vm, "cpu.stat");
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("no {key} in {vm}'s cpu.stat: {text}"))
}

#[test]
fn weights_caps_and_reservations_on_running_guests() {
    let layout = host::cgroup::detect(&host::LiveHost).unwrap();
    assert!(matches!(layout, host::CgroupLayout::V1 { .. }), "this test reads cgroup v1 files");
    let h = VmHost::start();
    // The daemon runs in a CPU group of its own beside its VMs', ten times the default weight,
    // with a ceiling of a quarter of the host (at least one CPU).
    let own = format!("{}-daemon", h.cgroup_parent);
    let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", h.daemon_pid())).unwrap();
    assert!(
        cgroup.lines().any(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == "cpu"))
            && l.ends_with(&format!(":/{own}"))),
        "the daemon is not in {own}:\n{cgroup}"
    );
    let own_file = |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/cpu/{own}/{f}")).unwrap();
    assert_eq!(own_file("cpu.shares").trim(), "10240");
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(own_file("cpu.cfs_quota_us").trim(), (cpus * 25_000).max(100_000).to_string());
    h.create_kit_vm("w100", &["vine.cpuburn=1"], &["--cpu-weight", "100"]);
    h.create_kit_vm("w300", &["vine.cpuburn=1"], &["--cpu-weight", "300"]);
    for vm in ["w100", "w300"] {
        h.ok(&["vm", "start", vm]);
        pin_to_cpu0(&h, vm);
    }
    for vm in ["w100", "w300"] {
        h.console(vm).wait_for("VINE-CPUBURN", BOOT).unwrap();
    }
    assert_eq!(cgroup_file(&h, "cpu", "w100", "cpu.shares"), "1024");
    assert_eq!(cgroup_file(&h, "cpu", "w300", "cpu.shares"), "3072");
    assert!(cgroup_file(&h, "cpu", "w100", "cgroup.procs").contains(&h.pid("w100").to_string()));
    // Other programs keep every core busy while the shares are measured: the guests' ratio
    // must hold whatever share of the core those leave them.
    let others = Burner::every_core().expect("start the busy programs");
    let used = measure(&h, &["w100", "w300"], 10);
    drop(others);
    let ratio = used[1] / used[0];
    eprintln!(
        "weights 100:300 -> {:.1}% : {:.1}% of one core (ratio {ratio:.2})",
        used[0] * 100.0,
        used[1] * 100.0
    );
    assert!((ratio - 3.0).abs() <= 0.45, "weights 100:300 gave ratio {ratio:.2} ({used:?})");
    assert!(used[0] > 0.01, "w100 got no CPU at all: {used:?}");

    // The policy engine sees the same through the daemon's live metrics (sampled every 2 s).
    let dry: serde_json::Value =
        serde_json::from_str(&h.ok(&["policy", "dry-run", "--policy", "thr-mmt-0.8", "--json"])).unwrap();
    assert_eq!(dry["changed"], false);
    assert_eq!(dry["vm_names"], serde_json::json!(["w100", "w300"]), "{dry}");
    let latest = |i: usize| dry["snapshot"]["vms"][i]["history"][0].as_f64().unwrap();
    assert!(latest(1) > 1.5 * latest(0), "w300 should use more than w100: {dry}");
    assert!(dry["commands"].as_array().unwrap().is_empty(), "one host at half load needs no change: {dry}");
    let text = h.ok(&["policy", "dry-run", "--policy", "thr-mmt-0.8"]);
    assert!(
        text.contains("w300: ")
            && text.contains("nothing is changed")
            && text.contains("it would do nothing"),
        "{text}"
    );

    // A cap set on the running VM holds it, even with the other VM gone quiet.
    h.ok(&["vm", "off", "w100"]);
    h.ok(&["vm", "set", "w300", "--cpu-max", "25"]);
    assert_eq!(cgroup_file(&h, "cpu", "w300", "cpu.cfs_quota_us"), "25000");
    let others = Burner::every_core().expect("start the busy programs");
    let throttled = || cgroup_stat(&h, "w300", "nr_throttled");
    let before = throttled();
    let capped = measure(&h, &["w300"], 10)[0];
    let periods = throttled() - before;
    drop(others);
    eprintln!("cap 25% -> {:.1}%, throttled in {periods} periods", capped * 100.0);
    assert!(capped <= 0.25 * 1.1, "a 25% cap let w300 use {:.1}%", capped * 100.0);
    assert!(capped > 0.01, "the capped w300 got no CPU at all");
    // Throttled in most of the 100 ms periods of those 10 s: the cap, not the busy programs, held
    // it at what it got.
    assert!(periods >= 50, "the cap never held w300 back ({periods} throttled periods)");
    h.ok(&["vm", "set", "w300", "--cpu-max", "none"]);
    assert_eq!(cgroup_file(&h, "cpu", "w300", "cpu.cfs_quota_us"), "-1");

    // Reservations: admitted while they fit (this host has `cpus` × 100 %), refused with numbers.
    let cpus = host::host_info(&host::LiveHost).unwrap().cpus;
    let capacity = cpus * 100;
    h.ok(&["vm", "set", "w300", "--cpu-weight", "100"]);
    let e = h.fails(&["vm", "set", "w300", "--cpu-reserve", "150"]);
    assert!(e.contains("field `cpu.reserve`: 150% is more than 1 vCPU(s) can use"), "{e}");
    h.ok(&["vm", "set", "w300", "--cpu-reserve", "100"]);
    // w100 gets as many vCPUs as the host has CPUs, so it may ask for more than is free.
    let def = h.data.join("vms/w100/w100.vm.toml");
    let text = std::fs::read_to_string(&def).unwrap();
    std::fs::write(&def, text.replace("cpus = 1", &format!("cpus = {cpus}"))).unwrap();
    let asked = capacity - 100 + 50;
    h.ok(&["vm", "set", "w100", "--cpu-reserve", &asked.to_string()]);
    let e = h.fails(&["vm", "start", "w100"]);
    let want = format!(
        "cannot reserve {asked}% CPU for 'w100': 100% of the host's {capacity}% is already reserved by running VMs, {}% is free",
        capacity - 100
    );
    assert!(e.contains(&want), "{e}\nwanted: {want}");
    assert_eq!(h.state("w100"), "off");
    h.ok(&["vm", "set", "w100", "--cpu-reserve", &(capacity - 100).to_string()]);
    h.ok(&["vm", "start", "w100"]);
    // Raising a running VM's reservation past the host is refused too, and changes nothing.
    let e =
        h.fails(&["vm", "set", "w100", "--cpu-reserve", &(capacity - 90).to_string(), "--cpu-weight", "500"]);
    assert!(e.contains(&format!("cannot reserve {}% CPU for 'w100'", capacity - 90)), "{e}");
    assert_eq!(h.show("w100")["cpu"]["weight"], 100);
    assert_eq!(h.show("w100")["cpu"]["reserve"], capacity - 100);
}

/// The last `VINE-MEM total=… free=…` line's total, kB.
fn guest_total_kb(h: &VmHost, vm: &str) -> Option<u64> {
    let text = h.console(vm).contents().unwrap();
    text.lines()
        .rev()
        .find_map(|l| l.split("VINE-MEM total=").nth(1)?.split_whitespace().next()?.parse().ok())
}

#[test]
fn a_running_guest_s_balloon_shrinks_and_grows_its_memory() {
    let h = VmHost::start();
    h.create_kit_vm("bal", &["vine.meminfo=1", "vine.counter=1"], &[]);
    // Off: a balloon sizes a running guest only.
    let e = h.fails(&["vm", "set", "bal", "--balloon", "128M"]);
    assert!(e.contains("balloon: 'bal' is off"), "{e}");
    h.ok(&["vm", "start", "bal"]);
    let mut log = h.console("bal");
    log.wait_for("VINE-MEM total=", BOOT).unwrap();
    let full = guest_total_kb(&h, "bal").unwrap();
    assert!(full > 200 << 10, "the guest sees {full} kB of its 256 MiB");
    // Out of range: refused, naming the field and the limits.
    for (size, why) in [("16M", "must be 32 MiB to its memory (256 MiB)"), ("512M", "must be 32 MiB")] {
        let e = h.fails(&["vm", "set", "bal", "--balloon", size]);
        assert!(e.contains(why), "{size}: {e}");
    }
    // Down to 128 MiB: the guest's own MemTotal drops by about the 128 MiB it gave back.
    h.ok(&["vm", "set", "bal", "--balloon", "128M"]);
    vmhost::eventually("the guest's memory shrinks", Duration::from_secs(60), || {
        guest_total_kb(&h, "bal").is_some_and(|t| t + (120 << 10) < full)
    });
    let shrunk = guest_total_kb(&h, "bal").unwrap();
    eprintln!("guest MemTotal: {full} kB, ballooned to 128 MiB: {shrunk} kB");
    let before = h.next_counter(&mut log);
    // Back up to all of it.
    h.ok(&["vm", "set", "bal", "--balloon", "256M"]);
    vmhost::eventually("the guest's memory grows back", Duration::from_secs(60), || {
        guest_total_kb(&h, "bal").is_some_and(|t| t + (8 << 10) >= full)
    });
    // It kept running all along: no reboot, the counter goes on.
    let after = h.next_counter(&mut log);
    assert!(after > before, "the counter went from {before} to {after}");
    assert_eq!(h.state("bal"), "running");
    assert_eq!(h.show("bal")["memory"], 256u64 << 20, "the definition's memory is unchanged");
    let events = h.ok(&["events", "--vm", "bal", "--json"]);
    assert!(
        events.contains("vm.balloon") && events.contains("is to keep 128 MiB of its 256 MiB"),
        "{events}"
    );
}
