//! Facts about the host: CPUs, memory, which accelerator QEMU can use and why, and which cgroup
//! hierarchy holds the resource controllers. Everything is read through [`Probe`], so the rules
//! are unit-tested against recorded files from other hosts. [`sched`] asks the host's scheduler
//! for short slices for the daemon's latency-critical threads.
#![warn(missing_docs)]

pub mod accel;
pub mod cgroup;
pub mod sched;

use std::path::Path;

use serde::Serialize;

pub use accel::{Accelerator, AcceleratorChoice};
pub use cgroup::CgroupLayout;

/// Reads host files; the real one reads the file system, tests use a map.
pub trait Probe {
    /// The file's contents, or `None` when it does not exist or cannot be read.
    fn read(&self, path: &str) -> Option<String>;
    /// Whether `path` exists and can be opened for reading and writing.
    fn openable_rw(&self, path: &str) -> bool;
}

/// The live host.
#[derive(Debug, Default, Clone, Copy)]
pub struct LiveHost;

impl Probe for LiveHost {
    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }
    fn openable_rw(&self, path: &str) -> bool {
        std::fs::OpenOptions::new().read(true).write(true).open(Path::new(path)).is_ok()
    }
}

/// What `vine host info` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostInfo {
    /// Host name.
    pub hostname: String,
    /// Logical CPUs.
    pub cpus: u32,
    /// Total memory in bytes.
    pub memory_bytes: u64,
    /// Kernel release.
    pub kernel: String,
    /// The accelerator vine starts guests with, and why.
    pub accelerator: AcceleratorChoice,
    /// Where the cgroup controllers are.
    pub cgroup: CgroupLayout,
}

/// Errors reading host facts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HostError {
    /// A file every Linux host has is missing or unreadable.
    #[error("cannot read {0}")]
    Missing(&'static str),
    /// A file did not hold what it should.
    #[error("{file}: {problem}")]
    Malformed {
        /// The file.
        file: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// Gathers every fact.
pub fn host_info(p: &dyn Probe) -> Result<HostInfo, HostError> {
    let cpuinfo = p.read("/proc/cpuinfo").ok_or(HostError::Missing("/proc/cpuinfo"))?;
    let cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count() as u32;
    let meminfo = p.read("/proc/meminfo").ok_or(HostError::Missing("/proc/meminfo"))?;
    Ok(HostInfo {
        hostname: p.read("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string(),
        cpus: cpus.max(1),
        memory_bytes: mem_total(&meminfo)?,
        kernel: p.read("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        accelerator: accel::choose(p),
        cgroup: cgroup::detect(p)?,
    })
}

/// `MemTotal` of /proc/meminfo in bytes.
pub fn mem_total(meminfo: &str) -> Result<u64, HostError> {
    let line = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .ok_or(HostError::Malformed { file: "/proc/meminfo", problem: "no MemTotal line".into() })?;
    let kib: u64 = line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).ok_or_else(|| {
        HostError::Malformed { file: "/proc/meminfo", problem: format!("bad MemTotal line {line:?}") }
    })?;
    Ok(kib * 1024)
}

#[cfg(test)]
pub(crate) mod fake {
    use std::collections::HashMap;

    /// A host made of a few files.
    #[derive(Default)]
    pub struct FakeHost {
        pub files: HashMap<&'static str, String>,
        pub rw: Vec<&'static str>,
    }

    impl super::Probe for FakeHost {
        fn read(&self, path: &str) -> Option<String> {
            self.files.get(path).cloned()
        }
        fn openable_rw(&self, path: &str) -> bool {
            self.rw.contains(&path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_read_in_bytes() {
        assert_eq!(mem_total("MemFree: 1 kB\nMemTotal:       24597036 kB\n").unwrap(), 24_597_036 * 1024);
        assert!(matches!(mem_total("MemTotal: lots").unwrap_err(), HostError::Malformed { .. }));
        assert!(matches!(mem_total("").unwrap_err(), HostError::Malformed { .. }));
    }
}
