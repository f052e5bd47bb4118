//! The daemon's own CPU group. A request needs a fraction of a millisecond of CPU, but on a host
//! whose cores the guests keep busy it waits for one, and the wait is what a user sees. As
//! VMware's ESXi gives its management agents a resource pool of their own, the daemon moves
//! itself into a cgroup beside its VMs' parent (`PARENT-daemon`) with a high CPU weight (by
//! default ten times the default), so it runs as soon as it has work, and a ceiling (a quarter
//! of the host's CPUs, at least one), so that a flood of requests can still never take the
//! guests' CPU. Processes the daemon starts (QEMU, disk servers, console loggers) are moved into
//! their VM's cgroup as they start; DHCP servers stay with the daemon.
//!
//! On cgroup v2 a daemon that a service manager already placed (any cgroup but the root, as
//! systemd's `vine.service`) stays where it is, since systemd must find a service's processes in
//! the service's cgroup; its weight is then the service's and its slice's to set.

use host::CgroupLayout;

use crate::fs::{Cgroup, CgroupError};
use crate::mapping::{self, Effective};

/// The daemon's CPU weight by default (1–10000, the scale of VMs' weights: 100 is the default).
pub const DEFAULT_WEIGHT: u32 = 1000;

/// Where the daemon ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Moved into this cgroup (relative to the hierarchy's root) with this weight and ceiling.
    Moved {
        /// The cgroup, e.g. `vine-daemon`.
        group: String,
        /// Its CPU weight (1–10000).
        weight: u32,
        /// Its ceiling, in % of one CPU.
        max_pct: u32,
    },
    /// Left where it was started, and why.
    Stayed(String),
}

/// The daemon's group for VMs under `parent`: its sibling `PARENT-daemon`.
pub fn group_for(parent: &str) -> String {
    let parent = parent.trim_matches('/');
    format!("{parent}-daemon")
}

/// The ceiling for a host of `cpus` CPUs, in % of one CPU: a quarter of them, at least one.
pub fn ceiling_pct(cpus: u32) -> u32 {
    (cpus.max(1) * 25).max(100)
}

/// Moves process `pid` (the daemon) into the group for VMs under `parent` with `weight`
/// (0: leave it where it is) and a ceiling of `max_pct` % of one CPU. `own_cgroup` is the v2
/// line of `/proc/self/cgroup` (`0::/PATH`), if any.
pub fn place(
    layout: &CgroupLayout,
    parent: &str,
    weight: u32,
    max_pct: u32,
    pid: u32,
    own_cgroup: Option<&str>,
) -> Result<Placement, CgroupError> {
    if weight == 0 {
        return Ok(Placement::Stayed("its CPU weight is 0: it stays in the cgroup it was started in".into()));
    }
    if let CgroupLayout::V2 { .. } = layout {
        if let Some(path) = own_cgroup.and_then(|l| l.strip_prefix("0::")).map(str::trim) {
            if path != "/" {
                return Ok(Placement::Stayed(format!(
                    "it was started in the cgroup {path} (a service manager's): its CPU weight comes from there"
                )));
            }
        }
    }
    let group = group_for(parent);
    let (dir, name) = match group.rsplit_once('/') {
        Some((d, n)) => (d.to_string(), n.to_string()),
        None => (String::new(), group.clone()),
    };
    let cg = Cgroup::new(layout, &dir, &name)?;
    cg.create()?;
    let e = Effective { weight: weight.clamp(1, 10_000), max_pct: Some(max_pct), memory: 0, overhead: 0 };
    let files = if cg.is_v2() { mapping::v2(&e) } else { mapping::v1(&e) };
    let cpu: Vec<_> = files.into_iter().filter(|f| f.controller == "cpu").collect();
    cg.write(&cpu)?;
    cg.add_process(pid)?;
    Ok(Placement::Moved { group, weight: e.weight, max_pct })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_is_the_parents_sibling_and_the_ceiling_a_quarter_of_the_host() {
        assert_eq!(group_for("vine"), "vine-daemon");
        assert_eq!(group_for("machine.slice/vine/"), "machine.slice/vine-daemon");
        assert_eq!(ceiling_pct(0), 100);
        assert_eq!(ceiling_pct(2), 100);
        assert_eq!(ceiling_pct(64), 1600);
    }

    fn v2(root: &std::path::Path) -> CgroupLayout {
        CgroupLayout::V2 {
            mount: root.display().to_string(),
            controllers: vec!["cpu".into(), "memory".into()],
        }
    }

    #[test]
    fn v2_writes_weight_and_ceiling_and_moves_the_process() {
        let root = tempfile::tempdir().unwrap();
        let p = place(&v2(root.path()), "vine", 1000, 100, 4242, Some("0::/")).unwrap();
        assert_eq!(p, Placement::Moved { group: "vine-daemon".into(), weight: 1000, max_pct: 100 });
        let d = root.path().join("vine-daemon");
        let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(read("cpu.weight"), "1000");
        assert_eq!(read("cpu.max"), "100000 100000");
        assert_eq!(read("cgroup.procs"), "4242");
        assert!(!d.join("memory.max").exists(), "no memory limit on the daemon");
        assert!(std::fs::read_to_string(root.path().join("cgroup.subtree_control"))
            .unwrap()
            .contains("+cpu"));
    }

    #[test]
    fn v1_scales_the_weight_to_shares() {
        let root = tempfile::tempdir().unwrap();
        let mount = |c: &str| {
            let m = root.path().join(c);
            std::fs::create_dir_all(&m).unwrap();
            (c.to_string(), m.display().to_string())
        };
        let layout = CgroupLayout::V1 { controllers: vec![mount("cpu"), mount("cpuacct"), mount("memory")] };
        let p = place(&layout, "lab-h1", 1000, 150, 7, None).unwrap();
        assert!(matches!(p, Placement::Moved { .. }));
        let d = root.path().join("cpu/lab-h1-daemon");
        let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(read("cpu.shares"), "10240");
        assert_eq!(read("cpu.cfs_quota_us"), "150000");
        assert_eq!(read("cgroup.procs"), "7");
    }

    #[test]
    fn a_daemon_a_service_manager_placed_or_weight_0_stays() {
        let root = tempfile::tempdir().unwrap();
        let p = place(&v2(root.path()), "vine", 1000, 100, 1, Some("0::/system.slice/vine.service")).unwrap();
        assert!(
            matches!(p, Placement::Stayed(ref why) if why.contains("/system.slice/vine.service")),
            "{p:?}"
        );
        let p = place(&v2(root.path()), "vine", 0, 100, 1, Some("0::/")).unwrap();
        assert!(matches!(p, Placement::Stayed(_)));
        assert!(!root.path().join("vine-daemon").exists());
    }
}
