//! Per-VM resource controls and their enforcement through cgroups.
//!
//! * [`controls`]: the operator's numbers (weight 1–10000, reservation and cap in % of one host
//!   CPU, memory), validated, and the admission rule (reservations and memory never exceed the host).
//! * [`shares`]: turning weights and reservations of all running VMs into effective weights that
//!   guarantee every reservation under full contention.
//! * [`mapping`]: effective controls → the files of cgroup v1 or v2 (pure, unit-tested for both).
//! * [`fs`]: creating cgroups, writing those files, moving processes (v1 tested on this host).
//! * [`daemon`]: the daemon's own CPU group beside its VMs' (high weight, a ceiling).
#![warn(missing_docs)]

pub mod controls;
pub mod daemon;
pub mod fs;
pub mod mapping;
pub mod shares;

pub use controls::{Admission, Controls, ControlsError};
pub use mapping::{CgroupFile, Effective};
