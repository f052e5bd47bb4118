//! Creating a VM's cgroup, writing its control files, moving processes into it, reading its CPU
//! time, removing it. v1: one directory per hierarchy (`cpu`, `cpuacct`, `memory`); v2: one
//! directory under the unified mount with the controllers enabled in the parent.

use std::path::{Path, PathBuf};

use host::CgroupLayout;

use crate::mapping::{self, CgroupFile, Effective};

/// Errors touching cgroup files; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A read, write, mkdir or rmdir failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A controller vine needs is not mounted.
    #[error("the {0} cgroup controller is not available on this host")]
    NoController(&'static str),
    /// A file did not hold what it should.
    #[error("{path}: unexpected contents {text:?}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What it held.
        text: String,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io { op, path: path.to_path_buf(), source }
}

/// One VM's cgroup.
#[derive(Debug, Clone)]
pub struct Cgroup {
    layout: CgroupLayout,
    /// Directory per controller (v1) or the one directory (v2).
    dirs: Vec<(&'static str, PathBuf)>,
}

const V1_CONTROLLERS: [&str; 3] = ["cpu", "cpuacct", "memory"];

impl Cgroup {
    /// The cgroup `parent/name` (e.g. `vine/web1`) in `layout`; nothing is created yet.
    pub fn new(layout: &CgroupLayout, parent: &str, name: &str) -> Result<Cgroup, CgroupError> {
        let dirs = match layout {
            CgroupLayout::V2 { mount, .. } => vec![("", Path::new(mount).join(parent).join(name))],
            CgroupLayout::V1 { controllers } => {
                let mut dirs = Vec::new();
                for c in V1_CONTROLLERS {
                    // cpuacct is often mounted on its own; look it up beside cpu.
                    let mount = controllers
                        .iter()
                        .find(|(k, _)| k == c)
                        .map(|(_, m)| PathBuf::from(m))
                        .or_else(|| (c == "cpuacct").then(|| PathBuf::from("/sys/fs/cgroup/cpuacct")))
                        .filter(|m| m.exists())
                        .ok_or(CgroupError::NoController(c))?;
                    dirs.push((c, mount.join(parent).join(name)));
                }
                dirs
            }
        };
        Ok(Cgroup { layout: layout.clone(), dirs })
    }

    /// Whether this is a v2 cgroup.
    pub fn is_v2(&self) -> bool {
        matches!(self.layout, CgroupLayout::V2 { .. })
    }

    fn dir(&self, controller: &str) -> &Path {
        if self.is_v2() {
            return &self.dirs[0].1;
        }
        &self.dirs.iter().find(|(c, _)| *c == controller).expect("v1 controllers are fixed").1
    }

    /// Creates the directories (and, on v2, enables the controllers on the way down).
    pub fn create(&self) -> Result<(), CgroupError> {
        for (_, d) in &self.dirs {
            std::fs::create_dir_all(d).map_err(io("create", d))?;
        }
        if let CgroupLayout::V2 { mount, .. } = &self.layout {
            let mut p = PathBuf::from(mount);
            let rel = self.dirs[0].1.strip_prefix(mount).expect("under the mount").to_path_buf();
            for part in rel.parent().into_iter().flat_map(|r| r.components()) {
                let ctl = p.join("cgroup.subtree_control");
                std::fs::write(&ctl, "+cpu +memory").map_err(io("write", &ctl))?;
                p = p.join(part);
            }
            let ctl = p.join("cgroup.subtree_control");
            std::fs::write(&ctl, "+cpu +memory").map_err(io("write", &ctl))?;
        }
        Ok(())
    }

    /// Writes the control files for `e`.
    pub fn apply(&self, e: &Effective) -> Result<(), CgroupError> {
        let files = if self.is_v2() { mapping::v2(e) } else { mapping::v1(e) };
        self.write_files(&files)
    }

    /// Writes these control files.
    pub fn write(&self, files: &[CgroupFile]) -> Result<(), CgroupError> {
        self.write_files(files)
    }

    fn write_files(&self, files: &[CgroupFile]) -> Result<(), CgroupError> {
        for f in files {
            let path = self.dir(f.controller).join(f.file);
            std::fs::write(&path, &f.value).map_err(io("write", &path))?;
        }
        Ok(())
    }

    /// Reads a control file back (for status and tests).
    pub fn read(&self, controller: &str, file: &str) -> Result<String, CgroupError> {
        let path = self.dir(controller).join(file);
        Ok(std::fs::read_to_string(&path).map_err(io("read", &path))?.trim().to_string())
    }

    /// Moves a process (all its threads) into the cgroup.
    pub fn add_process(&self, pid: u32) -> Result<(), CgroupError> {
        for (_, d) in &self.dirs {
            let path = d.join("cgroup.procs");
            std::fs::write(&path, pid.to_string()).map_err(io("write", &path))?;
        }
        Ok(())
    }

    /// Processes in the cgroup.
    pub fn processes(&self) -> Result<Vec<u32>, CgroupError> {
        let path = self.dirs[0].1.join("cgroup.procs");
        let text = std::fs::read_to_string(&path).map_err(io("read", &path))?;
        text.lines()
            .map(|l| {
                l.trim()
                    .parse()
                    .map_err(|_| CgroupError::Malformed { path: path.clone(), text: l.to_string() })
            })
            .collect()
    }

    /// CPU time used by the cgroup, in nanoseconds.
    pub fn cpu_time_ns(&self) -> Result<u64, CgroupError> {
        if self.is_v2() {
            let text = self.read("cpu", "cpu.stat")?;
            let usec = text
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec ").and_then(|v| v.trim().parse::<u64>().ok()))
                .ok_or_else(|| CgroupError::Malformed {
                    path: self.dir("cpu").join("cpu.stat"),
                    text: text.clone(),
                })?;
            return Ok(usec * 1000);
        }
        let text = self.read("cpuacct", "cpuacct.usage")?;
        text.parse()
            .map_err(|_| CgroupError::Malformed { path: self.dir("cpuacct").join("cpuacct.usage"), text })
    }

    /// Scheduler periods in which the cgroup ran out of its CPU cap (`nr_throttled` in
    /// `cpu.stat`, v1 and v2): a cap that is holding a busy VM back makes this grow.
    pub fn throttled_periods(&self) -> Result<u64, CgroupError> {
        let text = self.read("cpu", "cpu.stat")?;
        text.lines()
            .find_map(|l| l.strip_prefix("nr_throttled ").and_then(|v| v.trim().parse::<u64>().ok()))
            .ok_or_else(|| CgroupError::Malformed { path: self.dir("cpu").join("cpu.stat"), text })
    }

    /// Removes the (empty) cgroup.
    pub fn remove(&self) -> Result<(), CgroupError> {
        for (_, d) in &self.dirs {
            if d.exists() {
                std::fs::remove_dir(d).map_err(io("remove", d))?;
            }
        }
        Ok(())
    }
}
