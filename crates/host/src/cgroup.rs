//! Where the resource controllers live: cgroup v2 (one unified hierarchy whose root lists the
//! controllers in `cgroup.controllers`) or v1 (one hierarchy per controller). A cgroup2 mount
//! with no controllers (a hybrid host, as systemd sets up) does not count as v2.

use serde::Serialize;

use crate::{HostError, Probe};

/// The controllers vine uses.
pub const WANTED: [&str; 3] = ["cpu", "cpuset", "memory"];

/// The layout found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "version")]
pub enum CgroupLayout {
    /// Unified hierarchy.
    #[serde(rename = "v2")]
    V2 {
        /// Mount point.
        mount: String,
        /// Controllers available at the root.
        controllers: Vec<String>,
    },
    /// One hierarchy per controller.
    #[serde(rename = "v1")]
    V1 {
        /// (controller, mount point) for each controller vine uses that is mounted.
        controllers: Vec<(String, String)>,
    },
}

/// Reads /proc/self/mountinfo (and cgroup.controllers of a cgroup2 mount).
pub fn detect(p: &dyn Probe) -> Result<CgroupLayout, HostError> {
    let mountinfo = p.read("/proc/self/mountinfo").ok_or(HostError::Missing("/proc/self/mountinfo"))?;
    let mut v1 = Vec::new();
    for line in mountinfo.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let mount = left.split_whitespace().nth(4).unwrap_or_default();
        let mut r = right.split_whitespace();
        let fstype = r.next().unwrap_or_default();
        let superopts = r.nth(1).unwrap_or_default();
        match fstype {
            "cgroup2" => {
                let controllers: Vec<String> = p
                    .read(&format!("{mount}/cgroup.controllers"))
                    .unwrap_or_default()
                    .split_whitespace()
                    .map(String::from)
                    .collect();
                if WANTED.iter().any(|w| controllers.iter().any(|c| c == w)) {
                    return Ok(CgroupLayout::V2 { mount: mount.to_string(), controllers });
                }
            }
            "cgroup" => {
                for opt in superopts.split(',') {
                    if WANTED.contains(&opt) && !v1.iter().any(|(c, _): &(String, String)| c == opt) {
                        v1.push((opt.to_string(), mount.to_string()));
                    }
                }
            }
            _ => {}
        }
    }
    if v1.is_empty() {
        return Err(HostError::Malformed {
            file: "/proc/self/mountinfo",
            problem: "no cgroup hierarchy offers the cpu, cpuset or memory controller".into(),
        });
    }
    v1.sort();
    Ok(CgroupLayout::V1 { controllers: v1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeHost;

    const HYBRID: &str = "\
25 30 0:22 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
28 25 0:25 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
29 25 0:26 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
";

    #[test]
    fn hybrid_host_with_empty_cgroup2_is_v1() {
        let mut h = FakeHost::default();
        h.files.insert("/proc/self/mountinfo", HYBRID.into());
        h.files.insert("/sys/fs/cgroup/unified/cgroup.controllers", "\n".into());
        let CgroupLayout::V1 { controllers } = detect(&h).unwrap() else { panic!("expected v1") };
        assert_eq!(controllers[0], ("cpu".to_string(), "/sys/fs/cgroup/cpu".to_string()));
        assert_eq!(controllers.len(), 3);
    }

    #[test]
    fn unified_host_is_v2() {
        let mut h = FakeHost::default();
        h.files.insert(
            "/proc/self/mountinfo",
            "30 1 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n".into(),
        );
        h.files.insert("/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n".into());
        assert_eq!(
            detect(&h).unwrap(),
            CgroupLayout::V2 {
                mount: "/sys/fs/cgroup".into(),
                controllers: ["cpuset", "cpu", "io", "memory", "pids"].map(String::from).to_vec()
            }
        );
    }

    #[test]
    fn no_controllers_anywhere_is_an_error() {
        let mut h = FakeHost::default();
        h.files.insert("/proc/self/mountinfo", "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n".into());
        assert!(matches!(detect(&h).unwrap_err(), HostError::Malformed { .. }));
    }
}
