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

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Position in the log (assigned by the store, increasing).
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The VM concerned, if any.
    pub vm: Option<String>,
    /// `info`, `warning`, `error`.
    pub level: String,
    /// What happened, e.g. `vm.started`.
    pub kind: String,
    /// A sentence for operators.
    pub message: String,
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
    /// A VM with this name is already registered.
    #[error("a VM named '{0}' already exists")]
    Exists(String),
    /// No VM with this name.
    #[error("no VM named '{0}'")]
    NotFound(String),
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
    /// Records a VM's state, its QEMU process and the runtime record of all its processes.
    fn set_state(
        &self,
        name: &str,
        state: &str,
        pid: Option<u32>,
        runtime: Option<&str>,
    ) -> Result<(), StoreError>;
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
}
