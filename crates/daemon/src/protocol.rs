//! The local socket protocol: one JSON [`Request`] per line, one JSON [`Response`] per line back.
//! The set of requests is closed (an unknown `op` or field is refused with the parser's message),
//! so the daemon never has to guess what a client meant.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use vmm::{Control, VmState};

impl Request {
    /// The VM a request acts on, for the requests that go to the host owning it in a pool.
    pub fn vm_target(&self) -> Option<&str> {
        match self {
            Request::VmControl { name, .. }
            | Request::VmSet { name, .. }
            | Request::VmConsole { name, .. }
            | Request::VmNicAdd { name, .. }
            | Request::VmNicRemove { name, .. }
            | Request::VmMove { name, .. }
            | Request::VmMigrate { name, .. }
            | Request::VmMigration { name }
            | Request::VmMigrateCancel { name } => Some(name),
            Request::TemplateCreate(t) => t.from_vm.as_deref(),
            _ => None,
        }
    }
}

/// Longest request line the daemon reads (definitions are small).
pub const MAX_REQUEST: usize = 1 << 20;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Request {
    /// Is the daemon there? Answers with its version.
    Ping,
    /// Host facts (CPUs, memory, accelerator and why, cgroups) and what VMs use of them.
    HostInfo,
    /// Registers a VM from a definition file's text (format of `vmconfig`).
    VmCreate {
        /// The definition (TOML).
        definition: String,
        /// In a pool: the host to make it on (default: placement picks one).
        #[serde(default)]
        host: Option<String>,
        /// Made from this template: the definition's disks that name its bases become the
        /// VM's own clones of them (`crate::templates`).
        #[serde(default)]
        template: Option<crate::templates::TemplateUse>,
    },
    /// In a pool: moves a VM that is off or saved to host `to` (its volumes on host-local
    /// pools are copied there, those on shared pools stay; a saved state goes with it).
    VmMove {
        /// The VM.
        name: String,
        /// The host it goes to.
        to: String,
    },
    /// In a pool, from the host a VM moves from: registers it here, from its definition, with
    /// the saved state that host sent (when `saved`). Only hosts of the pool send it.
    VmAdopt {
        /// The definition (TOML).
        definition: String,
        /// Whether it arrives saved (its state is in this host's incoming directory).
        saved: bool,
        /// A container: its root file system arrived as a tarball in this host's incoming
        /// directory (owned by the ids the definition's `id_base` names; it gets a slot here).
        #[serde(default)]
        rootfs: bool,
    },
    /// In a pool, from the coordinator: takes HA guest `definition` over from host `from`, whose
    /// lease expired, and starts it here (`crate::ha`). Only hosts of the pool send it.
    VmRecover {
        /// The definition (TOML).
        definition: String,
        /// The dead host that owned it.
        from: String,
    },
    /// In a pool: live-migrates a running or paused VM to host `to` (`crate::migrate`).
    VmMigrate {
        /// The VM.
        name: String,
        /// The host it goes to.
        to: String,
        /// How it goes (bandwidth, downtime, post-copy).
        #[serde(default)]
        options: MigrateOptions,
    },
    /// The live migration of a VM under way (or the last one's outcome).
    VmMigration {
        /// The VM.
        name: String,
    },
    /// Cancels the live migration of a VM; it goes on running where it was.
    VmMigrateCancel {
        /// The VM.
        name: String,
    },
    /// In a pool, from the host a VM migrates from: prepares it here (disks, networks, an
    /// emulator waiting for its state). Only hosts of the pool send it.
    VmIncoming {
        /// The definition (TOML).
        definition: String,
        /// How each disk (by its place in the definition) arrives; disks not named are read-only
        /// and served here from this host's copy.
        disks: Vec<(usize, crate::migrate::IncomingDisk)>,
        /// Whether the source may switch to post-copy (the destination's QEMU must allow it too).
        #[serde(default)]
        postcopy: bool,
    },
    /// In a pool, from the host a VM migrates from, at the start of post-copy: the guest runs
    /// here from now on (the pool has given the VM to this host).
    VmIncomingRun {
        /// The VM.
        name: String,
    },
    /// In a pool, from the host a VM migrates from: the migration's end here. `commit`: the
    /// VM is this host's now (its guest goes on, `paused` or not); otherwise everything the
    /// incoming VM had here is removed.
    VmIncomingEnd {
        /// The VM.
        name: String,
        /// Whether the migration succeeded and the pool gave the VM to this host.
        commit: bool,
        /// Whether the guest was paused on the source (it stays paused).
        #[serde(default)]
        paused: bool,
    },
    /// Every VM.
    VmList,
    /// One VM.
    VmShow {
        /// Its name.
        name: String,
    },
    /// Applies a control (start, pause, …).
    VmControl {
        /// The VM.
        name: String,
        /// The control.
        control: Control,
        /// Options some controls take.
        #[serde(default)]
        options: ControlOptions,
    },
    /// Changes resource controls; running VMs get them at once.
    VmSet {
        /// The VM.
        name: String,
        /// What changes.
        changes: Changes,
    },
    /// A page of what the VM's serial console wrote (the bounded, rotated log).
    VmConsole {
        /// The VM.
        name: String,
        /// From this byte of the kept log (default: the last `limit` bytes).
        #[serde(default)]
        offset: Option<u64>,
        /// At most this many bytes (default 64 KiB, at most 1 MiB).
        #[serde(default)]
        limit: Option<u64>,
    },
    /// Live metrics: each running VM's CPU utilisation history.
    Metrics,
    /// What a policy would do with the pool (or this host) now; changes nothing.
    PolicyDryRun {
        /// The policy.
        policy: Box<policy::Policy>,
    },
    /// The pool's automation: its settings, every VM's rules, the coordinator and its last round.
    PolicyShow,
    /// Changes the pool's automation (fields left out stay as they are).
    PolicySet(PolicyChange),
    /// Changes one VM's rules for the policy engine (fields left out stay as they are).
    PolicyVm {
        /// The VM.
        name: String,
        /// What changes.
        change: VmRulesChange,
    },
    /// Adds a NIC to a VM that is not running.
    VmNicAdd {
        /// The VM.
        name: String,
        /// The network.
        network: String,
        /// Its MAC (allocated when absent).
        #[serde(default)]
        mac: Option<String>,
    },
    /// Removes NIC `index` of a VM that is not running.
    VmNicRemove {
        /// The VM.
        name: String,
        /// The NIC's position (0 = first).
        index: usize,
    },
    /// Makes this host the first of a new pool whose shared state lives in etcd.
    ClusterInit {
        /// etcd client URLs.
        etcd: Vec<String>,
        /// This host's name in the pool (default: its host name).
        #[serde(default)]
        name: Option<String>,
        /// TLS client files for `https://` endpoints.
        #[serde(default)]
        tls: Option<cluster::EtcdTls>,
    },
    /// A one-time join token admitting a new host to this host's pool.
    ClusterToken {
        /// The new host's name.
        host: String,
    },
    /// Joins the pool a token names.
    ClusterJoin {
        /// The token (`vine cluster token` on a member).
        token: String,
        /// TLS client files, when the pool's etcd uses TLS.
        #[serde(default)]
        tls: Option<cluster::EtcdTls>,
    },
    /// Leaves the pool: the host is on its own again.
    ClusterLeave,
    /// The pool this host belongs to: its etcd, members and hosts.
    ClusterShow,
    /// Every host of the pool (this host alone when it is in none), with its state.
    HostList,
    /// One host of the pool.
    HostShow {
        /// Its name.
        name: String,
    },
    /// Puts a host of the pool in maintenance (it keeps its VMs, gets no new ones) or out.
    HostMaintenance {
        /// Its name.
        name: String,
        /// In maintenance or not.
        on: bool,
    },
    /// Puts a host of the pool that runs no VM in standby (it takes no VMs and counts as
    /// powered off; the pool's power program powers it off), or wakes it.
    HostStandby {
        /// Its name.
        name: String,
        /// In standby (`true`) or woken.
        on: bool,
    },
    /// Live-migrates every running or paused VM away from a host of the pool (at most
    /// `parallel` at once, default 2), after putting it in maintenance.
    HostEvacuate {
        /// Its name.
        name: String,
        /// Most migrations at once.
        #[serde(default)]
        parallel: Option<u32>,
    },
    /// Creates a virtual network.
    NetworkCreate(NetworkCreate),
    /// Every network.
    NetworkList,
    /// One network.
    NetworkShow {
        /// Its name.
        name: String,
    },
    /// Deletes a network no NIC uses.
    NetworkDelete {
        /// Its name.
        name: String,
    },
    /// Reserves an address for a MAC in a network's DHCP server.
    NetworkReserve {
        /// The network.
        name: String,
        /// The client's MAC.
        mac: String,
        /// The address it always gets.
        ip: String,
    },
    /// The leases of a network's DHCP server.
    NetworkLeases {
        /// The network.
        name: String,
    },
    /// Registers a storage pool over a directory (made if missing).
    PoolCreate {
        /// Its name.
        name: String,
        /// Its directory.
        path: String,
        /// In a pool of hosts: a directory every host mounts at this path, whose volumes every
        /// host can use (one writer at a time in the whole pool).
        #[serde(default)]
        shared: bool,
    },
    /// Every pool.
    PoolList,
    /// One pool.
    PoolShow {
        /// Its name.
        name: String,
    },
    /// Unregisters a pool no VM uses (its files stay).
    PoolDelete {
        /// Its name.
        name: String,
    },
    /// A pool's volumes.
    VolumeList {
        /// The pool.
        pool: String,
    },
    /// One volume.
    VolumeShow {
        /// `POOL/NAME`.
        volume: String,
    },
    /// Makes a disk volume: a dynamic VHD of `size` bytes or a differencing child of `parent`.
    VolumeCreate {
        /// `POOL/NAME` (ends in `.vhd`).
        volume: String,
        /// Size in bytes.
        #[serde(default)]
        size: Option<u64>,
        /// The parent volume `POOL/NAME`.
        #[serde(default)]
        parent: Option<String>,
    },
    /// Deletes a volume no VM attaches and no volume stands on.
    VolumeDelete {
        /// `POOL/NAME`.
        volume: String,
    },
    /// Makes a template from a VM that is off or from a volume.
    TemplateCreate(crate::templates::TemplateNew),
    /// Every template.
    TemplateList,
    /// One template.
    TemplateShow {
        /// Its name.
        name: String,
    },
    /// Deletes a template no clone stands on, with its bases.
    TemplateDelete {
        /// Its name.
        name: String,
    },
    /// In a pool, to the host holding a template's bases: send them to host `to`, which makes
    /// its first VM from the template. Only hosts of the pool send it.
    TemplateShip {
        /// The template.
        name: String,
        /// The host that gets a copy.
        to: String,
    },
    /// In a pool, from the host deleting template `name`: which VMs here stand on copies of its
    /// `bases`; with `drop`, delete the copies if none does. Only hosts of the pool send it.
    TemplateLocal {
        /// The template.
        name: String,
        /// Its bases.
        bases: Vec<String>,
        /// Delete the copies (the template is gone).
        #[serde(default)]
        drop: bool,
    },
    /// The event log.
    Events {
        /// Only this VM's events.
        #[serde(default)]
        vm: Option<String>,
        /// Only events after this id.
        #[serde(default)]
        after: u64,
        /// At most this many (default 1000).
        #[serde(default)]
        limit: Option<usize>,
    },
}

/// A new network's settings (absent = default; see docs/network.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreate {
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: netconf::Kind,
    /// Subnet `A.B.C.D/N` (default: a free 10.77.N.0/24).
    #[serde(default)]
    pub subnet: Option<String>,
    /// DHCP range `A-B`.
    #[serde(default)]
    pub range: Option<String>,
    /// Gateway handed out (default: the host's address, none on internal networks).
    #[serde(default)]
    pub gateway: Option<String>,
    /// DNS servers handed out.
    #[serde(default)]
    pub dns: Vec<String>,
    /// Lease time in seconds.
    #[serde(default)]
    pub lease_s: Option<u32>,
    /// The host NIC of a bridged network.
    #[serde(default)]
    pub uplink: Option<String>,
    /// No DHCP server.
    #[serde(default)]
    pub no_dhcp: bool,
    /// The network spans the pool: it exists on every host, joined by VXLAN; this host holds
    /// its address, DHCP server and NAT.
    #[serde(default)]
    pub span: bool,
}

/// What happens to undo disks at the end of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UndoAction {
    /// Merge the session's writes into the disks.
    Commit,
    /// Throw the session's writes away.
    Discard,
    /// Keep the undo disks; the next session continues them.
    Keep,
}

/// Options of `shutdown`, `off` and friends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlOptions {
    /// Undo disks at the end of this session (default keep).
    #[serde(default)]
    pub undo: Option<UndoAction>,
    /// Shutdown: seconds to wait for the guest (default: the definition's `shutdown_timeout`).
    #[serde(default)]
    pub timeout_s: Option<u32>,
}

/// Resource control changes (absent = unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Changes {
    /// Relative CPU weight.
    #[serde(default)]
    pub cpu_weight: Option<u32>,
    /// CPU reservation, % of one host CPU.
    #[serde(default)]
    pub cpu_reserve: Option<u32>,
    /// CPU cap, % of one host CPU.
    #[serde(default)]
    pub cpu_max: Option<u32>,
    /// Remove the CPU cap.
    #[serde(default)]
    pub no_cpu_max: bool,
    /// A CPU cap for the running guest alone, % of one host CPU, as the pool's resizer gives:
    /// under its own cap, over its reservation, gone when it stops (its definition keeps its own).
    #[serde(default)]
    pub allocated_cpu_max: Option<u32>,
    /// Remove the running guest's resizer cap.
    #[serde(default)]
    pub no_allocated_cpu_max: bool,
    /// Memory in bytes (takes effect at the next start).
    #[serde(default)]
    pub memory: Option<u64>,
    /// Memory the running guest keeps, in bytes, through its balloon: at least
    /// [`BALLOON_MIN`], at most its memory (which the host keeps reserved for it).
    #[serde(default)]
    pub balloon: Option<u64>,
    /// When the host stops: `keep`, `save`, `shutdown` or `off`.
    #[serde(default)]
    pub on_host_stop: Option<String>,
    /// When the daemon starts: `nothing` or `start`.
    #[serde(default)]
    pub on_host_start: Option<String>,
    /// High availability (in a pool, for a VM whose disks are all on shared storage pools): when
    /// its host dies, the pool starts it on another host.
    #[serde(default)]
    pub ha: Option<bool>,
    /// cloud-init data, replacing the VM's (its seed is built at each start: from the next
    /// start on, changed data gives the guest a new instance id, and first-boot steps run again).
    #[serde(default)]
    pub cloud_init: Option<vmconfig::CloudInit>,
    /// Remove the cloud-init data (no seed from the next start).
    #[serde(default)]
    pub no_cloud_init: bool,
}

impl ControlOptions {
    /// Checks the bounds of every field; the error names the field.
    pub fn validate(&self) -> Result<(), Failure> {
        if let Some(t) = self.timeout_s {
            if t > vmconfig::MAX_SHUTDOWN_TIMEOUT {
                return Err(Failure::Invalid(format!(
                    "options: timeout_s: must be at most {} seconds, got {t}",
                    vmconfig::MAX_SHUTDOWN_TIMEOUT
                )));
            }
        }
        Ok(())
    }
}

impl Changes {
    /// Checks each field against its documented bound before anything is loaded or written
    /// (`vmconfig`'s limits); the error names the field. Whether a change fits the VM (a
    /// reservation its vCPUs can use) is the definition's own validation.
    pub fn validate(&self) -> Result<(), Failure> {
        let bad = |field: &str, problem: String| Err(Failure::Invalid(format!("{field}: {problem}")));
        let most_pct = vmconfig::MAX_CPUS * 100;
        if let Some(w) = self.cpu_weight {
            if !(1..=vmconfig::MAX_CPU_WEIGHT).contains(&w) {
                return bad("cpu_weight", format!("must be 1 to {}, got {w}", vmconfig::MAX_CPU_WEIGHT));
            }
        }
        if let Some(r) = self.cpu_reserve {
            if r > most_pct {
                return bad("cpu_reserve", format!("must be 0 to {most_pct} (% of one host CPU), got {r}"));
            }
        }
        if let Some(m) = self.cpu_max {
            if !(1..=most_pct).contains(&m) {
                return bad("cpu_max", format!("must be 1 to {most_pct} (% of one host CPU), got {m}"));
            }
            if self.no_cpu_max {
                return bad("no_cpu_max", "cannot be given with cpu_max".into());
            }
        }
        if let Some(m) = self.allocated_cpu_max {
            if !(1..=most_pct).contains(&m) {
                return bad(
                    "allocated_cpu_max",
                    format!("must be 1 to {most_pct} (% of one host CPU), got {m}"),
                );
            }
            if self.no_allocated_cpu_max {
                return bad("no_allocated_cpu_max", "cannot be given with allocated_cpu_max".into());
            }
        }
        if let Some(m) = self.memory {
            if !(vmconfig::MIN_MEMORY..=vmconfig::MAX_MEMORY).contains(&m) || !m.is_multiple_of(1 << 20) {
                return bad(
                    "memory",
                    format!(
                        "must be a whole number of MiB from 16 MiB to {} GiB, got {m} bytes",
                        vmconfig::MAX_MEMORY >> 30
                    ),
                );
            }
        }
        if let Some(a) = &self.on_host_stop {
            if !["keep", "save", "shutdown", "off"].contains(&a.as_str()) {
                return bad("on_host_stop", format!("{:?} is not keep, save, shutdown or off", clip(a)));
            }
        }
        if let Some(a) = &self.on_host_start {
            if !["nothing", "start"].contains(&a.as_str()) {
                return bad("on_host_start", format!("{:?} is not nothing or start", clip(a)));
            }
        }
        Ok(())
    }
}

pub use vmconfig::clip;

/// The least memory a balloon leaves a running guest, bytes.
pub const BALLOON_MIN: u64 = 32 << 20;

/// A change to the pool's automation (`vine policy mode|use|set`); absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyChange {
    /// `off`, `advise` or `automatic`.
    #[serde(default)]
    pub mode: Option<cluster::Mode>,
    /// The policy the pool runs (as `vine policy show --json` prints one).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub policy: Option<Box<policy::Policy>>,
    /// Seconds between planning rounds (2 to 3600).
    #[serde(default)]
    pub interval_s: Option<u32>,
    /// Live migrations at once (1 to 8).
    #[serde(default)]
    pub parallel: Option<u32>,
    /// Migration threshold, 1 (only relieve overloaded hosts) to 5 (every move planned).
    #[serde(default)]
    pub threshold: Option<u8>,
    /// The program that powers hosts off and on (`PROGRAM off|on HOST`); empty: none.
    #[serde(default)]
    pub power_program: Option<String>,
}

/// A change to one VM's rules; absent fields stay, and an empty string clears one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmRulesChange {
    /// Its own mode (`off`, `advise`, `automatic`), or `""`: the pool's.
    #[serde(default)]
    pub mode: Option<String>,
    /// The host it runs on and nowhere else, or `""`: anywhere.
    #[serde(default)]
    pub pin: Option<String>,
    /// Its affinity group (the group's VMs stay on one host), or `""`: none.
    #[serde(default)]
    pub together: Option<String>,
    /// Whether the pool's resizer may cap its CPU and size its balloon while it runs.
    #[serde(default)]
    pub resize: Option<bool>,
}

/// How a live migration goes (every field has a default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateOptions {
    /// Most bytes per second for memory and disks (default: no limit).
    #[serde(default)]
    pub bandwidth: Option<u64>,
    /// Longest pause of the guest at switchover, in milliseconds (default 100: Proxmox's).
    #[serde(default)]
    pub downtime_ms: Option<u64>,
    /// Give up after this many seconds (default 600) and let the VM go on where it was — unless
    /// post-copy is allowed, when the destination takes over and fetches the rest.
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Allow post-copy: past the timeout, the guest runs on the destination while the memory
    /// it has not got yet is fetched from the source.
    #[serde(default)]
    pub postcopy: bool,
}

impl MigrateOptions {
    /// Checks the values' ranges (a failure names the field).
    pub fn validate(&self) -> Result<(), Failure> {
        if self.bandwidth == Some(0) {
            return Err(Failure::Invalid("bandwidth: must be at least 1 byte per second".into()));
        }
        if let Some(d) = self.downtime_ms {
            if !(1..=2_000_000).contains(&d) {
                return Err(Failure::Invalid(format!("downtime_ms: must be 1 to 2000000, got {d}")));
            }
        }
        if let Some(t) = self.timeout_s {
            if !(1..=86_400).contains(&t) {
                return Err(Failure::Invalid(format!("timeout_s: must be 1 to 86400 seconds, got {t}")));
            }
        }
        Ok(())
    }
}

/// Why a request did not succeed, by whose fault: the REST API maps these to HTTP statuses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "kind", content = "message", rename_all = "kebab-case")]
pub enum Failure {
    /// No such VM (404).
    #[error("{0}")]
    NotFound(String),
    /// Not possible as things stand: the VM's state, admission, a broken definition (409).
    #[error("{0}")]
    Refused(String),
    /// The request itself is malformed or names bad values (400).
    #[error("{0}")]
    Invalid(String),
    /// It was tried and went wrong (500).
    #[error("{0}")]
    Failed(String),
    /// Something the request needs is out of reach for now, e.g. the pool's etcd (503): the
    /// same request may succeed later.
    #[error("{0}")]
    Unavailable(String),
    /// The VM is another host's: the request goes there (the API forwards it).
    #[error("VM '{vm}' is on host '{host}'")]
    Elsewhere {
        /// The VM.
        vm: String,
        /// The host that owns it.
        host: String,
    },
}

impl Failure {
    /// Whether a peer refused an upload because it holds that volume already (what a copy of a
    /// base, an image or a read-only volume to another host takes as done).
    pub fn is_already_there(&self) -> bool {
        matches!(self, Failure::Refused(m) if m.contains("already exists"))
    }
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// The result (request-specific) when it did.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub result: Value,
    /// The reason, for operators, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure (`not-found`, `refused`, `invalid`, `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl Response {
    /// A success.
    pub fn ok(result: Value) -> Response {
        Response { ok: true, result, error: None, kind: None }
    }
    /// A failure.
    pub fn err(message: impl Into<String>) -> Response {
        Response { ok: false, result: Value::Null, error: Some(message.into()), kind: Some("invalid".into()) }
    }
    /// A failure of a given kind.
    pub fn failure(f: &Failure) -> Response {
        let kind = match f {
            Failure::NotFound(_) => "not-found",
            Failure::Refused(_) => "refused",
            Failure::Invalid(_) => "invalid",
            Failure::Failed(_) => "failed",
            Failure::Unavailable(_) => "unavailable",
            Failure::Elsewhere { .. } => "elsewhere",
        };
        Response { ok: false, result: Value::Null, error: Some(f.to_string()), kind: Some(kind.into()) }
    }
}

/// CPU controls as shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CpuInfo {
    /// Relative weight.
    pub weight: u32,
    /// Reservation, % of one host CPU.
    pub reserve: u32,
    /// Cap, % of one host CPU.
    pub max: Option<u32>,
    /// The pool's resizer's cap while it runs (the lower of the two holds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated_max: Option<u32>,
}

/// One disk or CD/DVD drive as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DriveInfo {
    /// The image: a volume (`POOL/NAME`) or a host path.
    pub path: String,
    /// `virtio`, `ide` or `scsi`.
    pub bus: String,
    /// A CD/DVD drive.
    pub cdrom: bool,
    /// Attached read-only.
    pub read_only: bool,
    /// Shared with other VMs.
    pub shared: bool,
}

/// One NIC as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NicInfo {
    /// The network.
    pub network: String,
    /// The MAC.
    pub mac: Option<String>,
    /// The tap while the VM runs.
    pub tap: Option<String>,
}

/// One VM as `vine vm list/show --json` print it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VmInfo {
    /// Name.
    pub name: String,
    /// What it is: `vm` or `container`.
    #[serde(default)]
    pub kind: vmconfig::Kind,
    /// A container's own facts (absent for a VM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerInfo>,
    /// The host that owns it, when this host is in a pool (absent on a host on its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Unique id.
    pub uuid: String,
    /// Lifecycle state.
    pub state: VmState,
    /// Its anti-affinity group, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// QEMU's process id while there is one.
    pub pid: Option<u32>,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in bytes.
    pub memory: u64,
    /// CPU controls.
    pub cpu: CpuInfo,
    /// Disk image paths (CD/DVD included), in bus order.
    pub disks: Vec<String>,
    /// The same disks and CD/DVD drives with how each is attached.
    #[serde(default)]
    pub drives: Vec<DriveInfo>,
    /// The kernel it boots directly, if it does (a volume or a host path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// NICs: network and MAC, in order.
    #[serde(default)]
    pub nics: Vec<NicInfo>,
    /// Whether undo disks are on.
    pub undo_disks: bool,
    /// High availability: when its host dies, the pool starts it on another host.
    #[serde(default)]
    pub ha: bool,
    /// Its cloud-init data, if it has a seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_init: Option<vmconfig::CloudInit>,
    /// The instance id its seed gives the guest (changes when the data does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_init_instance: Option<String>,
    /// The definition file.
    pub definition_file: String,
    /// The serial console log.
    pub console_log: String,
    /// The device vine's console is on in the guest (`uart` or `virtio`).
    #[serde(default)]
    pub console: vmconfig::ConsoleDevice,
    /// Whether a saved state exists.
    pub saved_state: bool,
    /// CPU time used since the current start, in nanoseconds (from its cgroup).
    pub cpu_time_ns: Option<u64>,
    /// The last control that failed, with the reason.
    pub last_error: Option<String>,
}

/// What `vine ct show` adds for a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContainerInfo {
    /// The image its root file system was made from (`POOL/NAME`).
    pub image: String,
    /// Its root file system on the host.
    pub rootfs: String,
    /// The host id its root (id 0) is; its ids 0–65535 are host ids `id_base` and up.
    pub id_base: u32,
    /// The signal that asks its init to power off.
    pub halt_signal: String,
    /// LXC's directory of containers on its host (`lxc-console -P …` there reaches its console).
    pub lxc_path: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resizer_cap_out_of_bounds_is_refused_by_name() {
        let e = |c: Changes| c.validate().unwrap_err().to_string();
        assert!(e(Changes { allocated_cpu_max: Some(0), ..Default::default() }).contains("allocated_cpu_max"));
        let both = Changes { allocated_cpu_max: Some(20), no_allocated_cpu_max: true, ..Default::default() };
        assert!(e(both).contains("no_allocated_cpu_max"));
        assert!(Changes { allocated_cpu_max: Some(20), ..Default::default() }.validate().is_ok());
    }

    #[test]
    fn requests_round_trip_and_unknown_ones_are_refused_by_name() {
        let r = Request::VmControl {
            name: "web1".into(),
            control: Control::DiscardState,
            options: ControlOptions { undo: Some(UndoAction::Commit), timeout_s: Some(5) },
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(
            text,
            r#"{"op":"vm-control","name":"web1","control":"discard-state","options":{"undo":"commit","timeout_s":5}}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        let e = serde_json::from_str::<Request>(r#"{"op":"vm-format-disk","name":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown variant `vm-format-disk`"), "{e}");
        let e = serde_json::from_str::<Request>(r#"{"op":"vm-show","name":"x","force":true}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `force`"), "{e}");
        let e = serde_json::from_str::<Request>(r#"{"op":"vm-control","name":"x","control":"explode"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("unknown variant `explode`"), "{e}");
    }

    #[test]
    fn network_requests_round_trip_and_unknown_fields_are_refused() {
        let text =
            r#"{"op":"network-create","name":"lan","kind":"nat","subnet":"10.1.2.0/24","dns":["10.1.2.1"]}"#;
        let r: Request = serde_json::from_str(text).unwrap();
        let Request::NetworkCreate(c) = &r else { panic!("{r:?}") };
        assert_eq!(
            (c.kind, c.subnet.as_deref(), c.no_dhcp),
            (netconf::Kind::Nat, Some("10.1.2.0/24"), false)
        );
        assert_eq!(serde_json::from_str::<Request>(&serde_json::to_string(&r).unwrap()).unwrap(), r);
        let e =
            serde_json::from_str::<Request>(r#"{"op":"network-create","name":"x","kind":"nat","vlan":3}"#)
                .unwrap_err();
        assert!(e.to_string().contains("unknown field `vlan`"), "{e}");
        let e = serde_json::from_str::<Request>(r#"{"op":"network-create","name":"x","kind":"wifi"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("unknown variant `wifi`"), "{e}");
        let r = Request::VmNicRemove { name: "web1".into(), index: 2 };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"op":"vm-nic-remove","name":"web1","index":2}"#);
    }

    #[test]
    fn responses_carry_either_a_result_or_an_error() {
        assert_eq!(
            serde_json::to_string(&Response::ok(serde_json::json!([1]))).unwrap(),
            r#"{"ok":true,"result":[1]}"#
        );
        assert_eq!(
            serde_json::to_string(&Response::err("no")).unwrap(),
            r#"{"ok":false,"error":"no","kind":"invalid"}"#
        );
    }
}
