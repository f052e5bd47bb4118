//! Where the host daemon keeps what must survive it: registered VMs (their definition text, last
//! known state and QEMU process id) and the event log. [`Store`] is the seam — SQLite
//! ([`SqliteStore`]) on one host, a distributed store later — and the daemon knows only the trait.
#![warn(missing_docs)]

mod sqlite;

pub use sqlite::SqliteStore;

/// A registered VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRecord {
    /// Unique name.
    pub name: String,
    /// Unique id.
    pub uuid: String,
    /// The definition file's text (TOML).
    pub definition: String,
    /// Last recorded lifecycle state (`off`, `running`, …).
    pub state: String,
    /// The QEMU process while there is one.
    pub pid: Option<u32>,
    /// The daemon's record of the VM's processes (opaque JSON to the store) while it has any.
    pub runtime: Option<String>,
}

/// How much of a crash a write must survive before it returns.
///
/// A fact about a live process (a VM running or paused, its QEMU's pid and runtime record) is
/// only true while the host is up: a power loss or kernel crash ends the process as well, and
/// the next daemon finds it gone whatever the store says. Such a write must survive the daemon
/// (a `kill -9`, a panic) but need not wait for the disk. Everything else (definitions, users,
/// a VM being off or saved, the events that report them) must survive the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Survives a crash of the daemon, not of the host: written to the operating system, not
    /// synced to the disk.
    Process,
    /// Survives a crash of the host: synced to the disk before the write returns.
    Host,
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventRecord {
    /// Position in the log (assigned by the store, increasing).
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The VM concerned, if any.
    pub vm: Option<String>,
    /// The host it happened on, in a pool's log (a host's own log leaves it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `info`, `warning`, `error`.
    pub level: String,
    /// What happened, e.g. `vm.started`.
    pub kind: String,
    /// A sentence for operators.
    pub message: String,
}

/// A user of the management plane.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserRecord {
    /// Login name.
    pub name: String,
    /// Argon2id PHC string of the password.
    pub password_hash: String,
    /// Administrator: every right.
    pub admin: bool,
    /// May create VMs.
    pub can_create: bool,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
}

/// A login session or an API token (the secret itself is never stored, only its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenRecord {
    /// Public id (the first part of the token).
    pub id: String,
    /// Its user.
    pub user: String,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    /// `session` (web login) or `api` (CLI and scripts).
    pub kind: String,
    /// A label for the operator.
    pub label: String,
    /// Milliseconds since the Unix epoch.
    pub created_ms: i64,
    /// Expiry (sessions), ms since the epoch.
    pub expires_ms: Option<i64>,
}

/// One right of one user on one VM.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct AclEntry {
    /// The user.
    pub user: String,
    /// The VM.
    pub vm: String,
    /// `configure` or `use`.
    pub right: String,
}

/// An event script.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HookRecord {
    /// Id (assigned by the store).
    pub id: u64,
    /// Event kind it runs on, e.g. `vm.crashed`.
    pub event: String,
    /// The script (an executable path).
    pub script: String,
    /// Only for this VM.
    pub vm: Option<String>,
    /// Seconds before it is killed.
    pub timeout_s: u32,
}

/// The tables a pool of hosts shares (users, their tokens and rights, hooks): in a pool they live
/// in etcd, and each host's store holds a copy, replaced whole by [`Store::replace_shared`] and
/// kept current by [`Store::apply_shared`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedTables {
    /// Every user.
    pub users: Vec<UserRecord>,
    /// Every session and API token.
    pub tokens: Vec<TokenRecord>,
    /// Every right.
    pub acl: Vec<AclEntry>,
    /// Every event script.
    pub hooks: Vec<HookRecord>,
    /// Every VM template.
    pub templates: Vec<TemplateRecord>,
}

/// One change to the shared tables. Applying one is idempotent: a put replaces, a delete of
/// what is not there does nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedChange {
    /// A user made or changed.
    User(UserRecord),
    /// A user gone, with their tokens and rights.
    UserGone(String),
    /// A token issued.
    Token(TokenRecord),
    /// A token gone (by id).
    TokenGone(String),
    /// A right granted.
    Grant(AclEntry),
    /// A right revoked.
    Revoke(AclEntry),
    /// A hook added.
    Hook(HookRecord),
    /// A hook gone (by id).
    HookGone(u64),
    /// A template made.
    Template(TemplateRecord),
    /// A template gone (by name).
    TemplateGone(String),
}

/// A VM template: read-only base disks and the settings new VMs take from it (the daemon's
/// record, opaque JSON to the store). In a pool of hosts every host sees every template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TemplateRecord {
    /// Unique name.
    pub name: String,
    /// The daemon's record of the template (JSON).
    pub spec: String,
}

/// A virtual network: its name and its settings (opaque JSON to the store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRecord {
    /// Unique name.
    pub name: String,
    /// The daemon's record of the network (JSON).
    pub spec: String,
}

/// A storage pool: a named directory of volumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRecord {
    /// Unique name.
    pub name: String,
    /// Its directory (absolute, canonical).
    pub path: String,
    /// When it was made, ms since the epoch.
    pub created_ms: i64,
}

/// A MAC address held by a VM's NIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicRecord {
    /// The MAC, `xx:xx:xx:xx:xx:xx` in lower case.
    pub mac: String,
    /// The VM.
    pub vm: String,
    /// The NIC's position in the VM's definition.
    pub index: u32,
    /// Its network.
    pub network: String,
}

/// Errors of a store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed; the message says which operation.
    #[error("state store: {op}: {source}")]
    Db {
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The background checkpoint thread could not be started.
    #[error("state store: cannot start the checkpoint thread: {0}")]
    Thread(String),
    /// A VM with this name is already registered.
    #[error("a VM named '{0}' already exists")]
    Exists(String),
    /// No VM with this name.
    #[error("no VM named '{0}'")]
    NotFound(String),
    /// Another object of this kind has this name.
    #[error("a {what} named '{name}' already exists")]
    Duplicate {
        /// user, token, …
        what: &'static str,
        /// The name.
        name: String,
    },
    /// No object of this kind with this name.
    #[error("no {what} '{name}'")]
    Missing {
        /// user, token, …
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A network with this name is already registered.
    #[error("a network named '{0}' already exists")]
    NetworkExists(String),
    /// No network with this name.
    #[error("no network named '{0}'")]
    NoNetwork(String),
    /// The MAC address is held by another NIC.
    #[error("MAC address {mac} is already used by NIC {index} of VM '{vm}'")]
    MacInUse {
        /// The MAC.
        mac: String,
        /// The VM holding it.
        vm: String,
        /// Which of its NICs.
        index: u32,
    },
    /// The pool's shared state (in etcd) could not be read or written; the message names etcd.
    #[error("{0}")]
    Pool(String),
    /// The database was written by a newer vine.
    #[error("state store {path} has schema version {found}; this vine understands up to {supported}")]
    TooNew {
        /// The database file.
        path: String,
        /// Its version.
        found: i64,
        /// Ours.
        supported: i64,
    },
}

/// The daemon's persistent state.
pub trait Store: Send + Sync {
    /// Registers a new VM; fails with [`StoreError::Exists`] if the name is taken.
    fn create_vm(&self, vm: &VmRecord) -> Result<(), StoreError>;
    /// Replaces a VM's definition text.
    fn update_definition(&self, name: &str, definition: &str) -> Result<(), StoreError>;
    /// Records a VM's state, its QEMU process and the runtime record of all its processes, as
    /// durably as `durability` says.
    fn set_state(
        &self,
        name: &str,
        state: &str,
        pid: Option<u32>,
        runtime: Option<&str>,
        durability: Durability,
    ) -> Result<(), StoreError>;
    /// Records a VM's state (as [`Store::set_state`]) and appends the event that reports it, in
    /// one transaction: both are kept, or neither. Returns the event's id.
    fn set_state_with_event(
        &self,
        name: &str,
        state: &str,
        pid: Option<u32>,
        runtime: Option<&str>,
        event: &EventRecord,
        durability: Durability,
    ) -> Result<u64, StoreError>;
    /// One VM.
    fn get_vm(&self, name: &str) -> Result<Option<VmRecord>, StoreError>;
    /// All VMs, by name.
    fn list_vms(&self) -> Result<Vec<VmRecord>, StoreError>;
    /// Unregisters a VM; fails with [`StoreError::NotFound`] if there is none.
    fn remove_vm(&self, name: &str) -> Result<(), StoreError>;
    /// Appends an event (its `id` is ignored and assigned); returns the id.
    fn append_event(&self, e: &EventRecord) -> Result<u64, StoreError>;
    /// Events after `after_id`, oldest first, optionally for one VM, at most `limit`.
    fn events(&self, vm: Option<&str>, after_id: u64, limit: usize) -> Result<Vec<EventRecord>, StoreError>;

    /// Adds a user; [`StoreError::Duplicate`] if the name is taken.
    fn create_user(&self, u: &UserRecord) -> Result<(), StoreError>;
    /// One user.
    fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;
    /// All users, by name.
    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;
    /// Replaces a user's password hash and flags.
    fn update_user(&self, u: &UserRecord) -> Result<(), StoreError>;
    /// Deletes a user with its tokens and rights.
    fn delete_user(&self, name: &str) -> Result<(), StoreError>;
    /// Stores a token.
    fn put_token(&self, t: &TokenRecord) -> Result<(), StoreError>;
    /// One token by id.
    fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// A user's tokens.
    fn list_tokens(&self, user: &str) -> Result<Vec<TokenRecord>, StoreError>;
    /// Deletes a token.
    fn delete_token(&self, id: &str) -> Result<(), StoreError>;
    /// Grants a right (granting it twice is not an error).
    fn grant(&self, e: &AclEntry) -> Result<(), StoreError>;
    /// Revokes a right; [`StoreError::Missing`] if it was not granted.
    fn revoke(&self, e: &AclEntry) -> Result<(), StoreError>;
    /// Rights, optionally of one user and/or on one VM.
    fn acl(&self, user: Option<&str>, vm: Option<&str>) -> Result<Vec<AclEntry>, StoreError>;
    /// Removes every right on a VM (it was deleted).
    fn revoke_vm(&self, vm: &str) -> Result<(), StoreError>;
    /// Adds an event script; returns its id.
    fn add_hook(&self, h: &HookRecord) -> Result<u64, StoreError>;
    /// All event scripts.
    fn list_hooks(&self) -> Result<Vec<HookRecord>, StoreError>;
    /// Removes an event script.
    fn delete_hook(&self, id: u64) -> Result<(), StoreError>;
    /// Records a template (refused with [`StoreError::Duplicate`] if the name is taken).
    fn create_template(&self, t: &TemplateRecord) -> Result<(), StoreError>;
    /// Every template, by name.
    fn list_templates(&self) -> Result<Vec<TemplateRecord>, StoreError>;
    /// Removes a template ([`StoreError::Missing`] if there is none of that name).
    fn remove_template(&self, name: &str) -> Result<(), StoreError>;
    /// Registers a network; fails with [`StoreError::NetworkExists`] if the name is taken.
    fn create_network(&self, n: &NetworkRecord) -> Result<(), StoreError>;
    /// Replaces a network's settings.
    fn update_network(&self, n: &NetworkRecord) -> Result<(), StoreError>;
    /// All networks, by name.
    fn list_networks(&self) -> Result<Vec<NetworkRecord>, StoreError>;
    /// Unregisters a network; fails with [`StoreError::NoNetwork`] if there is none.
    fn remove_network(&self, name: &str) -> Result<(), StoreError>;
    /// Registers a pool; fails with [`StoreError::Duplicate`] if its name or directory is taken.
    fn create_pool(&self, p: &PoolRecord) -> Result<(), StoreError>;
    /// All pools, by name.
    fn list_pools(&self) -> Result<Vec<PoolRecord>, StoreError>;
    /// Unregisters a pool (its files stay); fails with [`StoreError::Missing`] if there is none.
    fn remove_pool(&self, name: &str) -> Result<(), StoreError>;
    /// Gives `nic.mac` to `nic.vm`'s NIC `nic.index` (replacing what that NIC held); fails with
    /// [`StoreError::MacInUse`] when another VM's NIC holds the MAC (the same VM may move it). Atomic: a MAC is never held twice.
    fn claim_mac(&self, nic: &NicRecord) -> Result<(), StoreError>;
    /// Every NIC holding a MAC, by VM and index.
    fn list_nics(&self) -> Result<Vec<NicRecord>, StoreError>;
    /// Frees the MACs of `vm`'s NICs whose index is `from` or more (all of them with 0).
    fn release_macs(&self, vm: &str, from: u32) -> Result<(), StoreError>;
    /// The id of the newest event (0 for an empty log).
    fn last_event_id(&self) -> Result<u64, StoreError>;
    /// The shared tables as they are here.
    fn shared(&self) -> Result<SharedTables, StoreError>;
    /// Replaces the shared tables with `t` in one transaction (a host joining a pool, or
    /// catching up with it).
    fn replace_shared(&self, t: &SharedTables) -> Result<(), StoreError>;
    /// A number that changes after every write that can change who a token or session is or
    /// what they may do (users, tokens deleted, rights, the shared tables; not a token added,
    /// which changes no other), read without waiting on anything: what was read about a token
    /// may be kept while it is unchanged. `None`: this store cannot tell, so nothing read from
    /// it may be kept.
    fn auth_generation(&self) -> Option<u64> {
        None
    }
    /// Applies one change to the shared tables (idempotent).
    fn apply_shared(&self, c: &SharedChange) -> Result<(), StoreError>;
}
