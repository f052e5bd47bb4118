//! The cgroup layer on this host (cgroup v1): a cgroup is created, controls written and read
//! back, a process moved in, its CPU time counted, the cgroup removed.

use std::process::Command;
use std::time::Duration;

use cgroups::fs::Cgroup;
use cgroups::Effective;

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn controls_reach_the_kernel_and_cpu_time_is_counted() {
    let layout = host::cgroup::detect(&host::LiveHost).unwrap();
    let name = format!("test-{}", std::process::id());
    let cg = Cgroup::new(&layout, "vine-test", &name).unwrap();
    cg.create().unwrap();
    let result = std::panic::catch_unwind(|| {
        cg.apply(&Effective {
            weight: 300,
            max_pct: Some(25),
            memory: 64 << 20,
            overhead: cgroups::mapping::QEMU_OVERHEAD,
        })
        .unwrap();
        if cg.is_v2() {
            assert_eq!(cg.read("cpu", "cpu.weight").unwrap(), "300");
            assert_eq!(cg.read("cpu", "cpu.max").unwrap(), "25000 100000");
        } else {
            assert_eq!(cg.read("cpu", "cpu.shares").unwrap(), "3072");
            assert_eq!(cg.read("cpu", "cpu.cfs_quota_us").unwrap(), "25000");
            assert_eq!(
                cg.read("memory", "memory.limit_in_bytes").unwrap(),
                ((64u64 << 20) + cgroups::mapping::QEMU_OVERHEAD).to_string()
            );
        }
        // A busy process in the cgroup is counted and capped near 25% of one CPU.
        let child = Child(Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap());
        cg.add_process(child.0.id()).unwrap();
        assert_eq!(cg.processes().unwrap(), vec![child.0.id()]);
        let t0 = cg.cpu_time_ns().unwrap();
        let start = std::time::Instant::now();
        std::thread::sleep(Duration::from_secs(2));
        let used = (cg.cpu_time_ns().unwrap() - t0) as f64 / start.elapsed().as_nanos() as f64;
        assert!(used > 0.10 && used < 0.30, "capped at 25% yet used {:.1}% of a CPU", used * 100.0);
        drop(child);
        std::thread::sleep(Duration::from_millis(200));
    });
    cg.remove().unwrap();
    for (_, parent) in [
        ("cpu", "/sys/fs/cgroup/cpu/vine-test"),
        ("cpuacct", "/sys/fs/cgroup/cpuacct/vine-test"),
        ("memory", "/sys/fs/cgroup/memory/vine-test"),
    ] {
        let _ = std::fs::remove_dir(parent);
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
