//! Effective controls → cgroup files. cgroup v2: `cpu.weight` (1–10000, the same scale as vine's
//! weights), `cpu.max` ("QUOTA PERIOD" or "max PERIOD"), `memory.max`. cgroup v1: `cpu.shares`
//! (weight × 1024 / 100, so the default 100 is the kernel's default 1024),
//! `cpu.cfs_period_us` + `cpu.cfs_quota_us` (−1 = no cap), `memory.limit_in_bytes`.

/// CFS period used for caps: 100 ms, the kernel default.
pub const PERIOD_US: u64 = 100_000;
/// Memory allowed to QEMU itself beyond the guest's RAM (device emulation, TCG code cache).
pub const QEMU_OVERHEAD: u64 = 384 << 20;

/// What is written for one VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Effective {
    /// Effective weight, 1–10000 (see [`crate::shares`]).
    pub weight: u32,
    /// Cap in % of one CPU, if any.
    pub max_pct: Option<u32>,
    /// Guest memory in bytes.
    pub memory: u64,
    /// What the limit adds to `memory` (a VM's [`QEMU_OVERHEAD`], a container's none).
    pub overhead: u64,
}

/// One file to write. `controller` names the v1 hierarchy (`cpu`, `memory`); for v2 it is the
/// controller the file belongs to, all in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupFile {
    /// Controller.
    pub controller: &'static str,
    /// File name.
    pub file: &'static str,
    /// Value.
    pub value: String,
}

fn f(controller: &'static str, file: &'static str, value: impl ToString) -> CgroupFile {
    CgroupFile { controller, file, value: value.to_string() }
}

/// Files for cgroup v2.
pub fn v2(e: &Effective) -> Vec<CgroupFile> {
    let max = match e.max_pct {
        Some(pct) => format!("{} {PERIOD_US}", quota_us(pct)),
        None => format!("max {PERIOD_US}"),
    };
    vec![
        f("cpu", "cpu.weight", e.weight),
        f("cpu", "cpu.max", max),
        f("memory", "memory.max", e.memory + e.overhead),
    ]
}

/// Files for cgroup v1.
pub fn v1(e: &Effective) -> Vec<CgroupFile> {
    let shares = (u64::from(e.weight) * 1024 / 100).clamp(2, 262_144);
    let quota: i64 = e.max_pct.map(|p| quota_us(p) as i64).unwrap_or(-1);
    vec![
        f("cpu", "cpu.shares", shares),
        f("cpu", "cpu.cfs_period_us", PERIOD_US),
        f("cpu", "cpu.cfs_quota_us", quota),
        f("memory", "memory.limit_in_bytes", e.memory + e.overhead),
    ]
}

fn quota_us(pct: u32) -> u64 {
    // The kernel's smallest quota is 1 ms.
    (u64::from(pct) * PERIOD_US / 100).max(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value<'a>(files: &'a [CgroupFile], name: &str) -> &'a str {
        &files.iter().find(|x| x.file == name).unwrap_or_else(|| panic!("no {name}")).value
    }

    #[test]
    fn v2_uses_weight_directly_and_cpu_max_pairs() {
        let files =
            v2(&Effective { weight: 300, max_pct: Some(25), memory: 1 << 30, overhead: QEMU_OVERHEAD });
        assert_eq!(value(&files, "cpu.weight"), "300");
        assert_eq!(value(&files, "cpu.max"), "25000 100000");
        assert_eq!(value(&files, "memory.max"), ((1u64 << 30) + QEMU_OVERHEAD).to_string());
        let uncapped = v2(&Effective { weight: 1, max_pct: None, memory: 1 << 20, overhead: QEMU_OVERHEAD });
        assert_eq!(value(&uncapped, "cpu.max"), "max 100000");
        assert_eq!(value(&uncapped, "cpu.weight"), "1");
    }

    #[test]
    fn v2_cap_above_one_cpu_and_tiny_cap() {
        assert_eq!(
            value(
                &v2(&Effective { weight: 100, max_pct: Some(250), memory: 1 << 20, overhead: QEMU_OVERHEAD }),
                "cpu.max"
            ),
            "250000 100000"
        );
        assert_eq!(
            value(
                &v2(&Effective { weight: 100, max_pct: Some(0), memory: 1 << 20, overhead: QEMU_OVERHEAD }),
                "cpu.max"
            ),
            "1000 100000"
        );
    }

    #[test]
    fn v1_scales_weight_to_shares_and_uses_cfs_quota() {
        let files = v1(&Effective { weight: 100, max_pct: None, memory: 1 << 30, overhead: QEMU_OVERHEAD });
        assert_eq!(value(&files, "cpu.shares"), "1024");
        assert_eq!(value(&files, "cpu.cfs_quota_us"), "-1");
        let files =
            v1(&Effective { weight: 10_000, max_pct: Some(50), memory: 1 << 30, overhead: QEMU_OVERHEAD });
        assert_eq!(value(&files, "cpu.shares"), "102400");
        assert_eq!(value(&files, "cpu.cfs_quota_us"), "50000");
        assert_eq!(
            value(
                &v1(&Effective { weight: 1, max_pct: None, memory: 1 << 20, overhead: QEMU_OVERHEAD }),
                "cpu.shares"
            ),
            "10"
        );
    }
}
