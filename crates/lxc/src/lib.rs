//! System containers through LXC, as Incus and Proxmox run them: vine writes each container's
//! configuration and drives it with LXC's own commands (`lxc-start`, `lxc-stop`, `lxc-freeze`,
//! `lxc-checkpoint`, …); it never builds namespaces itself.
//!
//! - [`config`]: a container's LXC configuration from vine's settings (pure): its root file
//!   system, its id map, its cgroups (inside the ones vine's resource controls write), its
//!   NICs (veths on vine's bridges with vine's MACs and host-side names) and its console log.
//! - [`idmap`]: every container is unprivileged and has ids of its own: slot `k` maps container
//!   ids 0–65535 onto host ids `IDMAP_START + k × 65536`, inside one range vine registers for
//!   root in `/etc/subuid` and `/etc/subgid` (Incus's isolated idmaps).
//! - [`rootfs`]: a container's root from an image (a root file system tarball), owned by its
//!   slot's ids.
//! - [`cmd`]: the lifecycle commands and what they answer.
#![warn(missing_docs)]

pub mod cmd;
pub mod config;
pub mod idmap;
pub mod rootfs;

pub use cmd::{Lxc, LxcError, RunState};
pub use config::{ContainerConfig, Veth};
