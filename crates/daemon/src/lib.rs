//! The host daemon. It owns every VM of this host:
//!
//! * [`protocol`]: the closed set of requests the daemon carries out (the REST API in the `api`
//!   crate maps its endpoints onto them), and the typed failures.
//! * [`server`]: the daemon itself — the registry of VMs, creation, reattachment after a restart,
//!   live metrics.
//! * [`actor`]: one thread per VM that owns its QEMU process and QMP session, carries out every
//!   control through [`vmm::state::check`], watches for crashes and guest power-offs.
//! * [`supervisor`]: runs each actor, and rebuilds one that failed from the store (an event says
//!   so), so no VM is ever left without its actor.
//! * [`helpers`]: the one supervisor of detached helper processes (disk and DHCP servers):
//!   start, readiness, identity, adoption, stop.
//! * [`disks`]: the `vine disk serve` processes that give QEMU its disks over NBD, one per image
//!   (shared between VMs for clustered disks), started so they outlive the daemon.
//! * [`resources`]: admission of CPU reservations and memory, and the cgroup files of every
//!   running VM.
//! * [`advice`]: the policy engine on the live pool: every host's metrics in one snapshot, a
//!   plan and its commands (a dry run; nothing is changed).
//! * [`automation`]: the requests that set how far the policy engine acts, and standby/wake.
//! * [`pilot`]: the policy engine acting on the pool: the coordinator's rounds (plan, the pool's
//!   rules, advice or live migrations, standby and wake), each recorded for replay.
//! * [`metrics`]: per-VM CPU utilisation sampled from the cgroups, for the policy engine.
//! * [`networks`]: virtual networks (bridges, rules, taps through `netconf`), their DHCP server
//!   processes (detached, adopted after a restart) and the MAC allocator of VM NICs.
//! * [`spans`]: networks that span the pool (VXLAN between hosts, one home for their L3).
//! * [`pools`]: storage pools (named directories) and their volumes (`POOL/NAME`), free space.
//! * [`shared`]: the store as the daemon and API see it: the host's SQLite, with a pool's
//!   shared users, tokens, rights and hooks (etcd first, a local copy for reads) and its event
//!   log on top.
//! * [`layout`]: where a VM's files live under the data directory.
//! * [`trash`]: big files no longer needed (restored states), deleted at idle priority.
//!
//! Nothing a running guest needs lives in the daemon process: QEMU and the disk servers run in
//! their own process groups, so `kill -9` of the daemon leaves guests running, and a new daemon
//! finds them again by pid and start time (recorded in the store) and reconnects to QMP.
#![warn(missing_docs)]

pub mod actor;
pub mod advice;
pub mod automation;
pub mod disks;
pub mod ha;
pub mod helpers;
pub mod layout;
pub mod membership;
pub mod metrics;
pub mod migrate;
pub mod moves;
pub mod networks;
pub mod pilot;
pub mod placement;
pub mod pools;
pub mod protocol;
pub mod resources;
pub mod server;
pub mod shared;
pub mod spans;
pub mod supervisor;
pub mod templates;
pub mod trash;

pub use server::{Config, Daemon, DaemonError};

/// Time since the Unix epoch (zero on a clock set before it).
pub fn since_epoch() -> std::time::Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}
