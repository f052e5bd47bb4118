//! [`Store`] on an embedded SQLite database: WAL journal, schema versioned with `user_version`.
//!
//! Durability ([`Durability`]): a write that must survive the host commits with
//! `synchronous=FULL` (the WAL is fsynced before the commit returns); a write about a live
//! process commits with `synchronous=NORMAL` (the WAL frames are in the operating system's page
//! cache when the commit returns, so they survive the daemon, and reach the disk with the next
//! FULL commit or checkpoint). Both keep the database consistent after any crash.
//!
//! Checkpoints (copying the WAL back into the database, two more fsyncs) never run inside a
//! caller's commit: automatic checkpoints are off and a background thread with its own
//! connection checkpoints once a second, so a VM control never waits for one.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::{
    AclEntry, Durability, EventRecord, HookRecord, NetworkRecord, NicRecord, PoolRecord, SharedChange,
    SharedTables, Store, StoreError, TemplateRecord, TokenRecord, UserRecord, VmRecord,
};

/// Schema version this code writes.
pub const SCHEMA_VERSION: i64 = 6;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS vms (
    name TEXT PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    definition TEXT NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER,
    runtime TEXT
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    vm TEXT,
    level TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_vm ON events (vm, id);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    admin INTEGER NOT NULL,
    can_create INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    secret_sha256 TEXT NOT NULL,
    kind TEXT NOT NULL,
    label TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    expires_ms INTEGER
);
CREATE TABLE IF NOT EXISTS acl (
    user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    vm TEXT NOT NULL,
    right TEXT NOT NULL,
    PRIMARY KEY (user, vm, right)
);
CREATE TABLE IF NOT EXISTS hooks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL,
    script TEXT NOT NULL,
    vm TEXT,
    timeout_s INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS networks (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pools (
    name TEXT PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS nics (
    mac TEXT PRIMARY KEY,
    vm TEXT NOT NULL,
    idx INTEGER NOT NULL,
    network TEXT NOT NULL,
    UNIQUE (vm, idx)
);
CREATE TABLE IF NOT EXISTS templates (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL
);
";

/// How often the background thread moves committed WAL frames into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// The WAL file is cut back to this size after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 4 << 20;

/// The SQLite store. One connection behind a mutex: the daemon's writes are small and few.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
    /// A second connection for the reads every API request makes (its token, user and rights;
    /// events): under WAL it sees every committed write and never waits for the writer's fsync.
    read: Mutex<Connection>,
    checkpointer: Option<Checkpointer>,
    /// [`Store::auth_generation`]: bumped after every write to users, rights, the shared tables
    /// or a token other than adding one (this process is the database's only writer).
    auth_generation: std::sync::atomic::AtomicU64,
}

/// The background checkpoint thread; dropping the sender ends it.
#[derive(Debug)]
struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    fn start(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(db("open the checkpoint connection"))?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(db("set busy timeout"))?;
        let (stop, rx) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || loop {
                match rx.recv_timeout(CHECKPOINT_EVERY) {
                    Err(RecvTimeoutError::Timeout) => {
                        // PASSIVE: never waits for readers or blocks writers; a later round
                        // finishes what a busy one left.
                        let r = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                        if let Err(e) = r {
                            tracing::warn!(error = %e, "store: checkpoint failed");
                        }
                    }
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            })
            .map_err(|e| StoreError::Thread(e.to_string()))?;
        Ok(Self { stop, thread })
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Some(c) = self.checkpointer.take() {
            drop(c.stop);
            let _ = c.thread.join();
        }
    }
}

fn db(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Db { op, source }
}

impl SqliteStore {
    /// Runs a write that may change what a token stands for, then counts it
    /// ([`Store::auth_generation`]), whether it succeeded or not.
    fn counted(&self, write: impl FnOnce() -> Result<(), StoreError>) -> Result<(), StoreError> {
        let r = write();
        self.auth_generation.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        r
    }

    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(db("open"))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(db("set WAL journal"))?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(db("set synchronous"))?;
        conn.pragma_update(None, "wal_autocheckpoint", 0).map_err(db("turn off automatic checkpoints"))?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT).map_err(db("limit the WAL"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(db("set busy timeout"))?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db("enable foreign keys"))?;
        let version: i64 =
            conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(db("read schema version"))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::TooNew {
                path: path.display().to_string(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        // Versions 3 (users, tokens, rights, hooks), 4 (networks, NIC MACs), 5 (storage pools)
        // and 6 (templates) added tables only: SCHEMA creates those missing.
        conn.execute_batch(SCHEMA).map_err(db("create schema"))?;
        if version == 1 {
            // Version 2 added the runtime record (the processes of a running VM, as JSON).
            conn.execute_batch("ALTER TABLE vms ADD COLUMN runtime TEXT")
                .map_err(db("upgrade schema to 2"))?;
        }
        conn.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(db("write schema version"))?;
        let read = Connection::open(path).map_err(db("open the read connection"))?;
        read.busy_timeout(std::time::Duration::from_secs(5)).map_err(db("set busy timeout"))?;
        let checkpointer = Some(Checkpointer::start(path)?);
        Ok(Self {
            conn: Mutex::new(conn),
            read: Mutex::new(read),
            checkpointer,
            auth_generation: Default::default(),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The read connection (for reads only).
    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.read.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the connection with its commits as durable as `d` says; the connection is
    /// left at `synchronous=FULL`, the default for every other write.
    fn with_durability<T>(
        &self,
        d: Durability,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        if d == Durability::Host {
            return f(&mut conn);
        }
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(db("set synchronous"))?;
        let r = f(&mut conn);
        let back = conn.pragma_update(None, "synchronous", "FULL").map_err(db("set synchronous"));
        match (r, back) {
            (Ok(v), Ok(())) => Ok(v),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        }
    }
}

/// Records a VM's state on `conn` (a connection or an open transaction).
fn write_state(
    conn: &Connection,
    name: &str,
    state: &str,
    pid: Option<u32>,
    runtime: Option<&str>,
) -> Result<(), StoreError> {
    let n = conn
        .execute(
            "UPDATE vms SET state = ?2, pid = ?3, runtime = ?4 WHERE name = ?1",
            params![name, state, pid.map(i64::from), runtime],
        )
        .map_err(db("set state"))?;
    if n == 0 {
        return Err(StoreError::NotFound(name.into()));
    }
    Ok(())
}

/// Appends an event on `conn`; returns its id.
fn write_event(conn: &Connection, e: &EventRecord) -> Result<u64, StoreError> {
    conn.execute(
        "INSERT INTO events (time_ms, vm, level, kind, message) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![e.time_ms, e.vm, e.level, e.kind, e.message],
    )
    .map_err(db("append event"))?;
    Ok(conn.last_insert_rowid() as u64)
}

fn vm_row(r: &rusqlite::Row) -> rusqlite::Result<VmRecord> {
    Ok(VmRecord {
        name: r.get(0)?,
        uuid: r.get(1)?,
        definition: r.get(2)?,
        state: r.get(3)?,
        pid: r.get::<_, Option<i64>>(4)?.map(|p| p as u32),
        runtime: r.get(5)?,
    })
}

impl Store for SqliteStore {
    fn auth_generation(&self) -> Option<u64> {
        Some(self.auth_generation.load(std::sync::atomic::Ordering::SeqCst))
    }

    fn create_vm(&self, vm: &VmRecord) -> Result<(), StoreError> {
        let r = self.conn().execute(
            "INSERT INTO vms (name, uuid, definition, state, pid, runtime) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![vm.name, vm.uuid, vm.definition, vm.state, vm.pid.map(i64::from), vm.runtime],
        );
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::Exists(vm.name.clone()))
            }
            Err(e) => Err(StoreError::Db { op: "create VM", source: e }),
        }
    }

    fn update_definition(&self, name: &str, definition: &str) -> Result<(), StoreError> {
        let n = self
            .conn()
            .execute("UPDATE vms SET definition = ?2 WHERE name = ?1", params![name, definition])
            .map_err(db("update definition"))?;
        if n == 0 {
            return Err(StoreError::NotFound(name.into()));
        }
        Ok(())
    }

    fn set_state(
        &self,
        name: &str,
        state: &str,
        pid: Option<u32>,
        runtime: Option<&str>,
        durability: Durability,
    ) -> Result<(), StoreError> {
        self.with_durability(durability, |conn| write_state(conn, name, state, pid, runtime))
    }

    fn set_state_with_event(
        &self,
        name: &str,
        state: &str,
        pid: Option<u32>,
        runtime: Option<&str>,
        e: &EventRecord,
        durability: Durability,
    ) -> Result<u64, StoreError> {
        self.with_durability(durability, |conn| {
            let tx = conn.transaction().map_err(db("begin a state change"))?;
            write_state(&tx, name, state, pid, runtime)?;
            let id = write_event(&tx, e)?;
            tx.commit().map_err(db("commit a state change"))?;
            Ok(id)
        })
    }

    fn get_vm(&self, name: &str) -> Result<Option<VmRecord>, StoreError> {
        self.conn()
            .query_row(
                "SELECT name, uuid, definition, state, pid, runtime FROM vms WHERE name = ?1",
                params![name],
                vm_row,
            )
            .optional()
            .map_err(db("read VM"))
    }

    fn list_vms(&self) -> Result<Vec<VmRecord>, StoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT name, uuid, definition, state, pid, runtime FROM vms ORDER BY name")
            .map_err(db("list VMs"))?;
        let rows = st.query_map([], vm_row).map_err(db("list VMs"))?;
        rows.collect::<Result<_, _>>().map_err(db("list VMs"))
    }

    fn remove_vm(&self, name: &str) -> Result<(), StoreError> {
        let n =
            self.conn().execute("DELETE FROM vms WHERE name = ?1", params![name]).map_err(db("remove VM"))?;
        if n == 0 {
            return Err(StoreError::NotFound(name.into()));
        }
        Ok(())
    }

    fn append_event(&self, e: &EventRecord) -> Result<u64, StoreError> {
        write_event(&self.conn(), e)
    }

    fn events(&self, vm: Option<&str>, after_id: u64, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        let conn = self.reader();
        let mut st = conn
            .prepare(
                "SELECT id, time_ms, vm, level, kind, message FROM events
                 WHERE id > ?1 AND (?2 IS NULL OR vm = ?2) ORDER BY id LIMIT ?3",
            )
            .map_err(db("read events"))?;
        let rows = st
            .query_map(params![after_id as i64, vm, limit as i64], |r| {
                Ok(EventRecord {
                    id: r.get::<_, i64>(0)? as u64,
                    time_ms: r.get(1)?,
                    vm: r.get(2)?,
                    host: None,
                    level: r.get(3)?,
                    kind: r.get(4)?,
                    message: r.get(5)?,
                })
            })
            .map_err(db("read events"))?;
        rows.collect::<Result<_, _>>().map_err(db("read events"))
    }

    fn create_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        self.counted(|| {
            let r = self.conn().execute(
                "INSERT INTO users (name, password_hash, admin, can_create, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![u.name, u.password_hash, u.admin, u.can_create, u.created_ms],
            );
            match r {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Err(StoreError::Duplicate { what: "user", name: u.name.clone() })
                }
                Err(e) => Err(StoreError::Db { op: "create user", source: e }),
            }
        })
    }

    fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.reader()
            .query_row(
                "SELECT name, password_hash, admin, can_create, created_ms FROM users WHERE name = ?1",
                params![name],
                user_row,
            )
            .optional()
            .map_err(db("read user"))
    }

    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let conn = self.reader();
        let mut st = conn
            .prepare("SELECT name, password_hash, admin, can_create, created_ms FROM users ORDER BY name")
            .map_err(db("list users"))?;
        let rows = st.query_map([], user_row).map_err(db("list users"))?;
        rows.collect::<Result<_, _>>().map_err(db("list users"))
    }

    fn update_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        self.counted(|| {
            let n = self
                .conn()
                .execute(
                    "UPDATE users SET password_hash = ?2, admin = ?3, can_create = ?4 WHERE name = ?1",
                    params![u.name, u.password_hash, u.admin, u.can_create],
                )
                .map_err(db("update user"))?;
            if n == 0 {
                return Err(StoreError::Missing { what: "user", name: u.name.clone() });
            }
            Ok(())
        })
    }

    fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        self.counted(|| {
            let n = self
                .conn()
                .execute("DELETE FROM users WHERE name = ?1", params![name])
                .map_err(db("delete user"))?;
            if n == 0 {
                return Err(StoreError::Missing { what: "user", name: name.into() });
            }
            Ok(())
        })
    }

    fn put_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        // Not counted in `auth_generation`: a plain INSERT adds a token and changes none, and
        // only what a token was found to be is ever kept (a login a second would otherwise end
        // every kept entry).
        self.conn()
            .execute(
                "INSERT INTO tokens (id, user, secret_sha256, kind, label, created_ms, expires_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![t.id, t.user, t.secret_sha256, t.kind, t.label, t.created_ms, t.expires_ms],
            )
            .map_err(db("store token"))?;
        Ok(())
    }

    fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.reader()
            .query_row(
                "SELECT id, user, secret_sha256, kind, label, created_ms, expires_ms FROM tokens WHERE id = ?1",
                params![id],
                token_row,
            )
            .optional()
            .map_err(db("read token"))
    }

    fn list_tokens(&self, user: &str) -> Result<Vec<TokenRecord>, StoreError> {
        let conn = self.reader();
        let mut st = conn
            .prepare(
                "SELECT id, user, secret_sha256, kind, label, created_ms, expires_ms FROM tokens
                 WHERE user = ?1 ORDER BY created_ms, id",
            )
            .map_err(db("list tokens"))?;
        let rows = st.query_map(params![user], token_row).map_err(db("list tokens"))?;
        rows.collect::<Result<_, _>>().map_err(db("list tokens"))
    }

    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.counted(|| {
            let n = self
                .conn()
                .execute("DELETE FROM tokens WHERE id = ?1", params![id])
                .map_err(db("delete token"))?;
            if n == 0 {
                return Err(StoreError::Missing { what: "token", name: id.into() });
            }
            Ok(())
        })
    }

    fn grant(&self, e: &AclEntry) -> Result<(), StoreError> {
        self.counted(|| {
            self.conn()
                .execute(
                    "INSERT OR IGNORE INTO acl (user, vm, right) VALUES (?1, ?2, ?3)",
                    params![e.user, e.vm, e.right],
                )
                .map_err(db("grant"))?;
            Ok(())
        })
    }

    fn revoke(&self, e: &AclEntry) -> Result<(), StoreError> {
        self.counted(|| {
            let n = self
                .conn()
                .execute(
                    "DELETE FROM acl WHERE user = ?1 AND vm = ?2 AND right = ?3",
                    params![e.user, e.vm, e.right],
                )
                .map_err(db("revoke"))?;
            if n == 0 {
                return Err(StoreError::Missing {
                    what: "right",
                    name: format!("{} {} {}", e.user, e.right, e.vm),
                });
            }
            Ok(())
        })
    }

    fn acl(&self, user: Option<&str>, vm: Option<&str>) -> Result<Vec<AclEntry>, StoreError> {
        let conn = self.reader();
        let mut st = conn
            .prepare(
                "SELECT user, vm, right FROM acl WHERE (?1 IS NULL OR user = ?1) AND (?2 IS NULL OR vm = ?2)
                 ORDER BY user, vm, right",
            )
            .map_err(db("read rights"))?;
        let rows = st
            .query_map(params![user, vm], |r| {
                Ok(AclEntry { user: r.get(0)?, vm: r.get(1)?, right: r.get(2)? })
            })
            .map_err(db("read rights"))?;
        rows.collect::<Result<_, _>>().map_err(db("read rights"))
    }

    fn revoke_vm(&self, vm: &str) -> Result<(), StoreError> {
        self.counted(|| {
            self.conn()
                .execute("DELETE FROM acl WHERE vm = ?1", params![vm])
                .map_err(db("revoke VM rights"))?;
            Ok(())
        })
    }

    fn add_hook(&self, h: &HookRecord) -> Result<u64, StoreError> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO hooks (event, script, vm, timeout_s) VALUES (?1, ?2, ?3, ?4)",
            params![h.event, h.script, h.vm, h.timeout_s],
        )
        .map_err(db("add hook"))?;
        Ok(conn.last_insert_rowid() as u64)
    }

    fn list_hooks(&self) -> Result<Vec<HookRecord>, StoreError> {
        let conn = self.reader();
        let mut st = conn
            .prepare("SELECT id, event, script, vm, timeout_s FROM hooks ORDER BY id")
            .map_err(db("list hooks"))?;
        let rows = st
            .query_map([], |r| {
                Ok(HookRecord {
                    id: r.get::<_, i64>(0)? as u64,
                    event: r.get(1)?,
                    script: r.get(2)?,
                    vm: r.get(3)?,
                    timeout_s: r.get(4)?,
                })
            })
            .map_err(db("list hooks"))?;
        rows.collect::<Result<_, _>>().map_err(db("list hooks"))
    }

    fn delete_hook(&self, id: u64) -> Result<(), StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM hooks WHERE id = ?1", params![id as i64])
            .map_err(db("delete hook"))?;
        if n == 0 {
            return Err(StoreError::Missing { what: "hook", name: id.to_string() });
        }
        Ok(())
    }

    fn create_template(&self, t: &TemplateRecord) -> Result<(), StoreError> {
        let r = self
            .conn()
            .execute("INSERT INTO templates (name, spec) VALUES (?1, ?2)", params![t.name, t.spec]);
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::Duplicate { what: "template", name: t.name.clone() })
            }
            Err(e) => Err(StoreError::Db { op: "create template", source: e }),
        }
    }

    fn list_templates(&self) -> Result<Vec<TemplateRecord>, StoreError> {
        let conn = self.reader();
        let mut st =
            conn.prepare("SELECT name, spec FROM templates ORDER BY name").map_err(db("list templates"))?;
        let rows = st
            .query_map([], |r| Ok(TemplateRecord { name: r.get(0)?, spec: r.get(1)? }))
            .map_err(db("list templates"))?;
        rows.collect::<Result<_, _>>().map_err(db("list templates"))
    }

    fn remove_template(&self, name: &str) -> Result<(), StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM templates WHERE name = ?1", params![name])
            .map_err(db("remove template"))?;
        if n == 0 {
            return Err(StoreError::Missing { what: "template", name: name.into() });
        }
        Ok(())
    }

    fn create_network(&self, n: &NetworkRecord) -> Result<(), StoreError> {
        let r =
            self.conn().execute("INSERT INTO networks (name, spec) VALUES (?1, ?2)", params![n.name, n.spec]);
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::NetworkExists(n.name.clone()))
            }
            Err(e) => Err(StoreError::Db { op: "create network", source: e }),
        }
    }

    fn update_network(&self, n: &NetworkRecord) -> Result<(), StoreError> {
        let k = self
            .conn()
            .execute("UPDATE networks SET spec = ?2 WHERE name = ?1", params![n.name, n.spec])
            .map_err(db("update network"))?;
        if k == 0 {
            return Err(StoreError::NoNetwork(n.name.clone()));
        }
        Ok(())
    }

    fn list_networks(&self) -> Result<Vec<NetworkRecord>, StoreError> {
        let conn = self.conn();
        let mut st =
            conn.prepare("SELECT name, spec FROM networks ORDER BY name").map_err(db("list networks"))?;
        let rows = st
            .query_map([], |r| Ok(NetworkRecord { name: r.get(0)?, spec: r.get(1)? }))
            .map_err(db("list networks"))?;
        rows.collect::<Result<_, _>>().map_err(db("list networks"))
    }

    fn remove_network(&self, name: &str) -> Result<(), StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM networks WHERE name = ?1", params![name])
            .map_err(db("remove network"))?;
        if n == 0 {
            return Err(StoreError::NoNetwork(name.into()));
        }
        Ok(())
    }

    fn create_pool(&self, p: &PoolRecord) -> Result<(), StoreError> {
        let r = self.conn().execute(
            "INSERT INTO pools (name, path, created_ms) VALUES (?1, ?2, ?3)",
            params![p.name, p.path, p.created_ms],
        );
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, Some(m)))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                let (what, name) = if m.contains("pools.path") {
                    ("pool directory", p.path.clone())
                } else {
                    ("pool", p.name.clone())
                };
                Err(StoreError::Duplicate { what, name })
            }
            Err(e) => Err(StoreError::Db { op: "create pool", source: e }),
        }
    }

    fn list_pools(&self) -> Result<Vec<PoolRecord>, StoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT name, path, created_ms FROM pools ORDER BY name")
            .map_err(db("list pools"))?;
        let rows = st
            .query_map([], |r| Ok(PoolRecord { name: r.get(0)?, path: r.get(1)?, created_ms: r.get(2)? }))
            .map_err(db("list pools"))?;
        rows.collect::<Result<_, _>>().map_err(db("list pools"))
    }

    fn remove_pool(&self, name: &str) -> Result<(), StoreError> {
        let n = self
            .conn()
            .execute("DELETE FROM pools WHERE name = ?1", params![name])
            .map_err(db("remove pool"))?;
        if n == 0 {
            return Err(StoreError::Missing { what: "pool", name: name.into() });
        }
        Ok(())
    }

    fn claim_mac(&self, nic: &NicRecord) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db("claim MAC"))?;
        let holder: Option<(String, u32)> = tx
            .query_row("SELECT vm, idx FROM nics WHERE mac = ?1", params![nic.mac], |r| {
                Ok((r.get(0)?, r.get::<_, i64>(1)? as u32))
            })
            .optional()
            .map_err(db("claim MAC"))?;
        if let Some((vm, index)) = holder {
            if vm != nic.vm {
                return Err(StoreError::MacInUse { mac: nic.mac.clone(), vm, index });
            }
        }
        // The same VM may move a MAC to another of its NICs (a NIC before it was removed).
        tx.execute("DELETE FROM nics WHERE mac = ?1", params![nic.mac]).map_err(db("claim MAC"))?;
        tx.execute("DELETE FROM nics WHERE vm = ?1 AND idx = ?2", params![nic.vm, i64::from(nic.index)])
            .map_err(db("claim MAC"))?;
        tx.execute(
            "INSERT INTO nics (mac, vm, idx, network) VALUES (?1, ?2, ?3, ?4)",
            params![nic.mac, nic.vm, i64::from(nic.index), nic.network],
        )
        .map_err(db("claim MAC"))?;
        tx.commit().map_err(db("claim MAC"))
    }

    fn list_nics(&self) -> Result<Vec<NicRecord>, StoreError> {
        let conn = self.conn();
        let mut st = conn
            .prepare("SELECT mac, vm, idx, network FROM nics ORDER BY vm, idx")
            .map_err(db("list NICs"))?;
        let rows = st
            .query_map([], |r| {
                Ok(NicRecord {
                    mac: r.get(0)?,
                    vm: r.get(1)?,
                    index: r.get::<_, i64>(2)? as u32,
                    network: r.get(3)?,
                })
            })
            .map_err(db("list NICs"))?;
        rows.collect::<Result<_, _>>().map_err(db("list NICs"))
    }

    fn release_macs(&self, vm: &str, from: u32) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM nics WHERE vm = ?1 AND idx >= ?2", params![vm, i64::from(from)])
            .map_err(db("release MACs"))?;
        Ok(())
    }

    fn last_event_id(&self) -> Result<u64, StoreError> {
        self.reader()
            .query_row("SELECT COALESCE(MAX(id), 0) FROM events", [], |r| r.get::<_, i64>(0))
            .map(|id| id.max(0) as u64)
            .map_err(db("read the last event"))
    }

    fn shared(&self) -> Result<SharedTables, StoreError> {
        let tokens = {
            let conn = self.reader();
            let mut st = conn
                .prepare(
                    "SELECT id, user, secret_sha256, kind, label, created_ms, expires_ms FROM tokens ORDER BY id",
                )
                .map_err(db("list tokens"))?;
            let rows = st.query_map([], token_row).map_err(db("list tokens"))?;
            rows.collect::<Result<_, _>>().map_err(db("list tokens"))?
        };
        Ok(SharedTables {
            users: self.list_users()?,
            tokens,
            acl: self.acl(None, None)?,
            hooks: self.list_hooks()?,
            templates: self.list_templates()?,
        })
    }

    fn replace_shared(&self, t: &SharedTables) -> Result<(), StoreError> {
        self.counted(|| {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(db("replace shared tables"))?;
            tx.execute_batch(
                "DELETE FROM acl; DELETE FROM tokens; DELETE FROM users; DELETE FROM hooks;
                            DELETE FROM templates;",
            )
            .map_err(db("replace shared tables"))?;
            let changes = t
                .users
                .iter()
                .cloned()
                .map(SharedChange::User)
                .chain(t.tokens.iter().cloned().map(SharedChange::Token))
                .chain(t.acl.iter().cloned().map(SharedChange::Grant))
                .chain(t.hooks.iter().cloned().map(SharedChange::Hook))
                .chain(t.templates.iter().cloned().map(SharedChange::Template));
            for c in changes {
                apply(&tx, &c)?;
            }
            tx.commit().map_err(db("replace shared tables"))
        })
    }

    fn apply_shared(&self, c: &SharedChange) -> Result<(), StoreError> {
        self.counted(|| apply(&self.conn(), c))
    }
}

/// Applies one change to the shared tables on `conn` (a put replaces, a delete of nothing is no
/// error). A token or right whose user is not there is refused by the foreign keys.
fn apply(conn: &Connection, c: &SharedChange) -> Result<(), StoreError> {
    let r = match c {
        SharedChange::User(u) => conn.execute(
            "INSERT INTO users (name, password_hash, admin, can_create, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (name) DO UPDATE SET password_hash = ?2, admin = ?3, can_create = ?4, created_ms = ?5",
            params![u.name, u.password_hash, u.admin, u.can_create, u.created_ms],
        ),
        SharedChange::UserGone(name) => conn.execute("DELETE FROM users WHERE name = ?1", params![name]),
        SharedChange::Token(t) => conn.execute(
            "INSERT OR REPLACE INTO tokens (id, user, secret_sha256, kind, label, created_ms, expires_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![t.id, t.user, t.secret_sha256, t.kind, t.label, t.created_ms, t.expires_ms],
        ),
        SharedChange::TokenGone(id) => conn.execute("DELETE FROM tokens WHERE id = ?1", params![id]),
        SharedChange::Grant(e) => conn.execute(
            "INSERT OR IGNORE INTO acl (user, vm, right) VALUES (?1, ?2, ?3)",
            params![e.user, e.vm, e.right],
        ),
        SharedChange::Revoke(e) => conn.execute(
            "DELETE FROM acl WHERE user = ?1 AND vm = ?2 AND right = ?3",
            params![e.user, e.vm, e.right],
        ),
        SharedChange::Hook(h) => conn.execute(
            "INSERT OR REPLACE INTO hooks (id, event, script, vm, timeout_s) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![h.id as i64, h.event, h.script, h.vm, h.timeout_s],
        ),
        SharedChange::HookGone(id) => conn.execute("DELETE FROM hooks WHERE id = ?1", params![*id as i64]),
        SharedChange::Template(t) => conn.execute(
            "INSERT OR REPLACE INTO templates (name, spec) VALUES (?1, ?2)",
            params![t.name, t.spec],
        ),
        SharedChange::TemplateGone(name) => {
            conn.execute("DELETE FROM templates WHERE name = ?1", params![name])
        }
    };
    r.map(|_| ()).map_err(db("apply a change of the pool's shared tables"))
}

fn user_row(r: &rusqlite::Row) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        name: r.get(0)?,
        password_hash: r.get(1)?,
        admin: r.get(2)?,
        can_create: r.get(3)?,
        created_ms: r.get(4)?,
    })
}

fn token_row(r: &rusqlite::Row) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        user: r.get(1)?,
        secret_sha256: r.get(2)?,
        kind: r.get(3)?,
        label: r.get(4)?,
        created_ms: r.get(5)?,
        expires_ms: r.get(6)?,
    })
}
