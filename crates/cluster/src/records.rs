//! What the pool's keys hold (JSON), and what vine derives from them.

use serde::{Deserialize, Serialize};

/// The pool (`/vine/pool`), written once by the host that initialises it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolRecord {
    /// Random id: a host's configuration names the pool it belongs to, so pointing a host at
    /// another pool's etcd is noticed.
    pub id: String,
    /// When it was made, ms since the epoch.
    pub created_ms: i64,
    /// The host that made it.
    pub created_by: String,
}

/// A member host (`/vine/hosts/HOST`), written when it joins and at each daemon start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostRecord {
    /// The host's name in the pool (unique).
    pub name: String,
    /// Its HTTPS API, as other hosts and clients reach it.
    pub url: String,
    /// The SHA-256 fingerprint of its HTTPS certificate (hosts pin it when they talk to it).
    #[serde(default)]
    pub tls_fingerprint: String,
    /// CPUs.
    pub cpus: u32,
    /// Memory, bytes.
    pub memory_bytes: u64,
    /// KVM or TCG.
    pub accelerator: String,
    /// vine's version on it.
    pub version: String,
    /// When it joined, ms since the epoch.
    pub joined_ms: i64,
    /// In maintenance: keeps its VMs, gets no new ones.
    #[serde(default)]
    pub maintenance: bool,
    /// In standby: emptied by the policy engine to save power; takes no VMs and counts as
    /// powered off until it is woken.
    #[serde(default)]
    pub standby: bool,
}

/// A host's state as the pool sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum HostState {
    /// Its daemon keeps its liveness key alive.
    Online,
    /// Its liveness key is gone: the daemon stopped, or the host cannot reach etcd.
    Offline,
    /// Online, and in maintenance.
    Maintenance,
    /// Emptied to save power (powered off, or counted so): takes no VMs until woken.
    Standby,
}

impl HostState {
    /// The state's name as listed.
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::Online => "online",
            HostState::Offline => "offline",
            HostState::Maintenance => "maintenance",
            HostState::Standby => "standby",
        }
    }
}

/// A host and its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostStatus {
    /// The record.
    #[serde(flatten)]
    pub record: HostRecord,
    /// Derived from the liveness key and the maintenance flag.
    pub state: HostState,
    /// What the host last published of its use (absent until it has).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<HostLoad>,
}

impl HostStatus {
    /// The state of `record`, alive or not.
    pub fn of(record: HostRecord, alive: bool) -> HostStatus {
        // A host in standby may well be powered off: it is in standby, not offline.
        let state = match (record.standby, alive, record.maintenance) {
            (true, _, _) => HostState::Standby,
            (false, false, _) => HostState::Offline,
            (false, true, true) => HostState::Maintenance,
            (false, true, false) => HostState::Online,
        };
        HostStatus { record, state, load: None }
    }
}

/// What a host uses of itself (`/vine/load/HOST`), published by the host every few seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HostLoad {
    /// VMs registered on the host.
    pub vms: usize,
    /// Of those, with a running process.
    pub running: usize,
    /// Memory the running VMs hold, bytes.
    pub memory_held_bytes: u64,
    /// CPU reservations of the running VMs, percent of one CPU, summed.
    pub cpu_reserved_pct: u32,
    /// CPUs the VMs kept busy over the last sample interval (2.5 = two and a half CPUs).
    pub cpu_used: f64,
    /// When it was published, ms since the epoch.
    pub at_ms: i64,
}

/// The pool as one host sees it (`vine cluster show`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolInfo {
    /// The pool.
    pub pool: PoolRecord,
    /// This host's name.
    pub this_host: String,
    /// The etcd endpoints this host uses.
    pub etcd: Vec<String>,
    /// etcd's members as etcd lists them (name and client URLs).
    pub etcd_members: Vec<EtcdMember>,
    /// Every host.
    pub hosts: Vec<HostStatus>,
    /// The host that is the pool's coordinator now (none for the few seconds after one died).
    #[serde(default)]
    pub coordinator: Option<String>,
}

/// One etcd member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EtcdMember {
    /// Its name.
    pub name: String,
    /// Where clients reach it.
    pub client_urls: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(maintenance: bool) -> HostRecord {
        HostRecord {
            name: "h1".into(),
            url: "https://10.0.0.1:8443".into(),
            tls_fingerprint: String::new(),
            cpus: 2,
            memory_bytes: 1 << 30,
            accelerator: "tcg".into(),
            version: "0.1.0".into(),
            joined_ms: 1,
            maintenance,
            standby: false,
        }
    }

    #[test]
    fn state_follows_liveness_then_maintenance() {
        assert_eq!(HostStatus::of(rec(false), true).state, HostState::Online);
        assert_eq!(HostStatus::of(rec(true), true).state, HostState::Maintenance);
        assert_eq!(HostStatus::of(rec(true), false).state, HostState::Offline);
        assert_eq!(HostStatus::of(rec(false), false).state, HostState::Offline);
        let standby = HostRecord { standby: true, ..rec(false) };
        assert_eq!(HostStatus::of(standby.clone(), true).state, HostState::Standby);
        assert_eq!(HostStatus::of(standby, false).state, HostState::Standby, "powered off in standby");
    }

    #[test]
    fn a_status_serialises_flat_with_its_state() {
        let v = serde_json::to_value(HostStatus::of(rec(false), true)).unwrap();
        assert_eq!(v["name"], "h1");
        assert_eq!(v["state"], "online");
    }
}
