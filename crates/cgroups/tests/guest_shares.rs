//! CPU weights and caps measured on real guests while other programs keep every core busy (the
//! test starts them): two CPU-bound TCG guests pinned to one core in cgroups with weights 100
//! and 300 get CPU time within 15% of 1:3 of each other, whatever share of the core the other
//! programs leave them; a cap of 25% is never exceeded and is what holds the guest back (the
//! cgroup is throttled). cgroup v1 on this host (the v2 mapping is unit-tested).

use std::process::Command;
use std::time::{Duration, Instant};

use cgroups::fs::Cgroup;
use cgroups::Effective;
use test_infra::{tcg_command, Burner, Kit, QemuGuard, SerialLog};

struct Group(Cgroup);
impl Drop for Group {
    fn drop(&mut self) {
        let _ = self.0.remove();
    }
}

fn busy_guest(kit: &Kit, dir: &std::path::Path, name: &str) -> (QemuGuard, SerialLog) {
    let log = dir.join(format!("{name}.log"));
    let cmd = tcg_command(kit, &log, &["vine.cpuburn=1"]);
    let q = QemuGuard::spawn(cmd).expect("start QEMU");
    (q, SerialLog::new(log))
}

fn pin_to_cpu0(pid: u32) {
    // All threads of the QEMU process, so the two guests contend for one core.
    let ok =
        Command::new("taskset").args(["-a", "-p", "-c", "0", &pid.to_string()]).output().expect("taskset");
    assert!(ok.status.success(), "taskset: {}", String::from_utf8_lossy(&ok.stderr));
}

fn measure(groups: &[&Cgroup], secs: u64) -> Vec<f64> {
    let before: Vec<u64> = groups.iter().map(|g| g.cpu_time_ns().unwrap()).collect();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let wall = t.elapsed().as_nanos() as f64;
    groups.iter().zip(before).map(|(g, b)| (g.cpu_time_ns().unwrap() - b) as f64 / wall).collect()
}

#[test]
fn weights_share_one_core_and_a_cap_holds() {
    let kit = Kit::ensure().expect("guest kit");
    let layout = host::cgroup::detect(&host::LiveHost).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tag = std::process::id();
    let a = Group(Cgroup::new(&layout, "vine-test", &format!("w100-{tag}")).unwrap());
    let b = Group(Cgroup::new(&layout, "vine-test", &format!("w300-{tag}")).unwrap());
    for g in [&a, &b] {
        g.0.create().unwrap();
    }
    a.0.apply(&Effective {
        weight: 100,
        max_pct: None,
        memory: 256 << 20,
        overhead: cgroups::mapping::QEMU_OVERHEAD,
    })
    .unwrap();
    b.0.apply(&Effective {
        weight: 300,
        max_pct: None,
        memory: 256 << 20,
        overhead: cgroups::mapping::QEMU_OVERHEAD,
    })
    .unwrap();
    let (mut qa, mut la) = busy_guest(&kit, dir.path(), "a");
    let (mut qb, mut lb) = busy_guest(&kit, dir.path(), "b");
    a.0.add_process(qa.pid()).unwrap();
    b.0.add_process(qb.pid()).unwrap();
    pin_to_cpu0(qa.pid());
    pin_to_cpu0(qb.pid());
    la.wait_for("VINE-BOOT-OK", Duration::from_secs(180)).unwrap();
    lb.wait_for("VINE-BOOT-OK", Duration::from_secs(180)).unwrap();
    let others = Burner::every_core().expect("start the busy programs");
    let used = measure(&[&a.0, &b.0], 10);
    let ratio = used[1] / used[0];
    eprintln!(
        "weights 100:300 -> {:.1}% : {:.1}% of one core (ratio {ratio:.2})",
        used[0] * 100.0,
        used[1] * 100.0
    );
    assert!(
        (ratio - 3.0).abs() <= 0.45,
        "weights 100:300 gave {:.1}% : {:.1}% (ratio {ratio:.2}, want 3 ± 15%)",
        used[0] * 100.0,
        used[1] * 100.0
    );
    assert!(used[0] > 0.01, "the weight-100 guest got no CPU at all: {used:?}");

    // A cap of 25% on the weight-300 guest; the other is stopped, so only the cap and the other
    // programs limit it.
    qa.kill().unwrap();
    b.0.apply(&Effective {
        weight: 300,
        max_pct: Some(25),
        memory: 256 << 20,
        overhead: cgroups::mapping::QEMU_OVERHEAD,
    })
    .unwrap();
    let throttled = b.0.throttled_periods().unwrap();
    let capped = measure(&[&b.0], 10)[0];
    let throttled = b.0.throttled_periods().unwrap() - throttled;
    eprintln!("cap 25% -> {:.1}%, throttled in {throttled} periods", capped * 100.0);
    assert!(capped <= 0.25 * 1.1, "a 25% cap let the guest use {:.1}%", capped * 100.0);
    assert!(capped > 0.01, "the capped guest got no CPU at all");
    // Throttled in most of the 100 ms periods of those 10 s: the cap, not the other programs,
    // is what held it at what it got.
    assert!(throttled >= 50, "the cap never held the guest back ({throttled} throttled periods)");
    drop(others);
    qb.kill().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop((a, b));
    for c in ["cpu", "cpuacct", "memory"] {
        let _ = std::fs::remove_dir(format!("/sys/fs/cgroup/{c}/vine-test"));
    }
}
