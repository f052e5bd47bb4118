//! The store as the rest of the daemon and the API see it ([`PoolStore`]). On a host in no pool
//! it is the host's SQLite, nothing more. On a host in a pool:
//!
//! - the *shared tables* (users, sessions and API tokens, rights, hooks, templates) are changed in etcd
//!   first, where a transaction decides (a name taken, a user gone), then in this host's copy at
//!   once, so the host that made a change sees it on the next request; every other host's copy
//!   follows through the pool's watch ([`cluster::Cluster::mirror_shared`]). Reads (every
//!   login, token and rights check) are the copy's, so they never wait for etcd and go on
//!   working while it is down; a change while etcd is down is refused with etcd's error.
//! - events are journaled here first, as always, and a shipper thread copies them to the pool's
//!   log ([`cluster::Cluster::ship_events`]); reading events reads the pool's log.
//! - the MACs of NICs on networks that span the pool are claimed in etcd first
//!   ([`cluster::Cluster::claim_mac`]), then here; other MACs, VMs, networks and storage pools
//!   stay the host's own.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cluster::{Cluster, ClusterError, MirrorUpdate};
use store::{
    AclEntry, Durability, EventRecord, HookRecord, NetworkRecord, NicRecord, PoolRecord, SharedChange,
    SharedTables, Store, StoreError, TemplateRecord, TokenRecord, UserRecord, VmRecord,
};

/// How often the shipper looks for events even when not woken.
const SHIP_EVERY: Duration = Duration::from_secs(2);
/// How often the pool's log is trimmed.
const TRIM_EVERY: Duration = Duration::from_secs(60);
/// Events shipped per round.
const SHIP_BATCH: usize = 500;

/// The pool connection this host has, if any: one slot the membership sets and the store reads.
#[derive(Default)]
pub struct ClusterSlot(Mutex<Option<Arc<Cluster>>>);

impl ClusterSlot {
    /// The connection, if the host is in a pool.
    pub fn get(&self) -> Option<Arc<Cluster>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sets or clears the connection.
    pub fn set(&self, c: Option<Arc<Cluster>>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = c;
    }
}

/// Wakes the shipper; remembers how far this host's events are in the pool's log.
#[derive(Default)]
struct Shipper {
    /// `(woken, shipped through)`: the mark is None until read from etcd (again after a failure).
    state: Mutex<(bool, Option<u64>)>,
    wake: Condvar,
}

/// The daemon's store: the host's own, with the pool's shared tables and event log on top.
pub struct PoolStore {
    local: Arc<dyn Store>,
    slot: Arc<ClusterSlot>,
    shipper: Arc<Shipper>,
    /// The networks here that span the pool (their NICs' MACs are claimed pool-wide).
    spanning: Mutex<std::collections::BTreeSet<String>>,
}

fn pool_error(e: ClusterError) -> StoreError {
    StoreError::Pool(e.to_string())
}

impl PoolStore {
    /// `local` under the pool connection in `slot`; starts the event shipper.
    pub fn new(local: Arc<dyn Store>, slot: Arc<ClusterSlot>) -> Arc<PoolStore> {
        let s = Arc::new(PoolStore { local, slot, shipper: Arc::default(), spanning: Mutex::default() });
        let weak = Arc::downgrade(&s);
        std::thread::Builder::new()
            .name("event-shipper".into())
            .spawn(move || {
                let mut last_trim = Instant::now();
                loop {
                    let Some(s) = weak.upgrade() else { return };
                    let shipper = s.shipper.clone();
                    if let Some(c) = s.slot.get() {
                        s.ship(&c);
                        if last_trim.elapsed() >= TRIM_EVERY {
                            last_trim = Instant::now();
                            if let Err(e) = c.trim_events() {
                                tracing::debug!("trimming the pool's events: {e}");
                            }
                        }
                    }
                    drop(s);
                    let mut st = shipper.state.lock().unwrap_or_else(|p| p.into_inner());
                    if !st.0 {
                        st = shipper.wake.wait_timeout(st, SHIP_EVERY).unwrap_or_else(|p| p.into_inner()).0;
                    }
                    st.0 = false;
                }
            })
            .expect("threads can be started");
        s
    }

    /// Says which networks here span the pool.
    pub fn set_spanning(&self, names: std::collections::BTreeSet<String>) {
        *self.spanning.lock().unwrap_or_else(|p| p.into_inner()) = names;
    }

    fn spans(&self, network: &str) -> bool {
        self.spanning.lock().unwrap_or_else(|p| p.into_inner()).contains(network)
    }

    fn cluster(&self) -> Option<Arc<Cluster>> {
        self.slot.get()
    }

    fn wake_shipper(&self) {
        if self.slot.get().is_some() {
            let mut st = self.shipper.state.lock().unwrap_or_else(|p| p.into_inner());
            st.0 = true;
            self.shipper.wake.notify_one();
        }
    }

    /// Copies this host's events not yet in the pool's log there (as many rounds as needed).
    fn ship(&self, c: &Cluster) {
        loop {
            let mark = self.shipper.state.lock().unwrap_or_else(|p| p.into_inner()).1;
            let from = match mark {
                Some(m) => m,
                None => match c.shipped() {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!("reading how far events were shipped: {e}");
                        return;
                    }
                },
            };
            let batch = match self.local.events(None, from, SHIP_BATCH) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("reading events to ship to the pool: {e}");
                    return;
                }
            };
            let Some(last) = batch.last().map(|e| e.id) else {
                self.shipper.state.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(from);
                return;
            };
            let r = c.ship_events(&batch);
            let mut st = self.shipper.state.lock().unwrap_or_else(|p| p.into_inner());
            match r {
                Ok(()) => st.1 = Some(last),
                Err(e) => {
                    st.1 = None;
                    tracing::debug!("shipping events to the pool: {e}");
                    return;
                }
            }
            if batch.len() < SHIP_BATCH {
                return;
            }
        }
    }

    /// This host enters a pool: events from now on go to the pool's log (its history stays
    /// its own), and, when it makes the pool (`bring` is true), its users, tokens, rights and
    /// hooks become the pool's; either way its copy then follows the pool's.
    pub fn enter_pool(&self, c: &Cluster, bring: bool) -> Result<(), StoreError> {
        if bring {
            c.upload_shared(&self.local.shared()?).map_err(pool_error)?;
        }
        let last = self.local.last_event_id()?;
        c.mark_shipped(last).map_err(pool_error)?;
        self.shipper.state.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(last);
        Ok(())
    }

    /// Keeps this host's copy of the shared tables equal to the pool's (until `c` stops).
    pub fn follow(&self, c: &Cluster) {
        self.shipper.state.lock().unwrap_or_else(|p| p.into_inner()).1 = None;
        let local = self.local.clone();
        c.mirror_shared(Arc::new(move |u| {
            match u {
                MirrorUpdate::Snapshot(t) => local.replace_shared(&t),
                MirrorUpdate::Change(ch) => local.apply_shared(&ch),
            }
            .map_err(|e| e.to_string())
        }));
    }

    /// Writes to etcd with `f` when in a pool (refused as `missing` when `f` says no), then here.
    fn shared_write(
        &self,
        f: impl FnOnce(&Cluster) -> Result<bool, ClusterError>,
        missing: impl FnOnce() -> StoreError,
        change: SharedChange,
        alone: impl FnOnce(&dyn Store) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        match self.cluster() {
            None => alone(self.local.as_ref()),
            Some(c) => {
                if !f(&c).map_err(pool_error)? {
                    return Err(missing());
                }
                self.local.apply_shared(&change)
            }
        }
    }
}

impl Store for PoolStore {
    // Every change to users, tokens and rights, made here or on another host, is written to
    // the local store (`apply_shared`, `replace_shared`), which counts them.
    fn auth_generation(&self) -> Option<u64> {
        self.local.auth_generation()
    }

    fn create_vm(&self, vm: &VmRecord) -> Result<(), StoreError> {
        self.local.create_vm(vm)
    }

    fn update_definition(&self, name: &str, definition: &str) -> Result<(), StoreError> {
        self.local.update_definition(name, definition)
    }

    fn set_state(
        &self,
        name: &str,
        state: &str,
        pid: Option<u32>,
        runtime: Option<&str>,
        durability: Durability,
    ) -> Result<(), StoreError> {
        self.local.set_state(name, state, pid, runtime, durability)
    }

    fn set_state_with_event(
        &self,
        name: &str,
        state: &str,
        pid: Option<u32>,
        runtime: Option<&str>,
        event: &EventRecord,
        durability: Durability,
    ) -> Result<u64, StoreError> {
        let id = self.local.set_state_with_event(name, state, pid, runtime, event, durability)?;
        self.wake_shipper();
        Ok(id)
    }

    fn get_vm(&self, name: &str) -> Result<Option<VmRecord>, StoreError> {
        self.local.get_vm(name)
    }

    fn list_vms(&self) -> Result<Vec<VmRecord>, StoreError> {
        self.local.list_vms()
    }

    fn remove_vm(&self, name: &str) -> Result<(), StoreError> {
        self.local.remove_vm(name)
    }

    fn append_event(&self, e: &EventRecord) -> Result<u64, StoreError> {
        let id = self.local.append_event(e)?;
        self.wake_shipper();
        Ok(id)
    }

    fn events(&self, vm: Option<&str>, after_id: u64, limit: usize) -> Result<Vec<EventRecord>, StoreError> {
        match self.cluster() {
            None => self.local.events(vm, after_id, limit),
            Some(c) => c.pool_events(vm, after_id, limit).map_err(pool_error),
        }
    }

    fn create_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        self.shared_write(
            |c| c.create_user(u),
            || StoreError::Duplicate { what: "user", name: u.name.clone() },
            SharedChange::User(u.clone()),
            |s| s.create_user(u),
        )
    }

    fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.local.get_user(name)
    }

    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.local.list_users()
    }

    fn update_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        self.shared_write(
            |c| c.update_user(u),
            || StoreError::Missing { what: "user", name: u.name.clone() },
            SharedChange::User(u.clone()),
            |s| s.update_user(u),
        )
    }

    fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        self.shared_write(
            |c| c.delete_user(name),
            || StoreError::Missing { what: "user", name: name.into() },
            SharedChange::UserGone(name.into()),
            |s| s.delete_user(name),
        )
    }

    fn put_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        self.shared_write(
            |c| c.put_token(t),
            || StoreError::Missing { what: "user", name: t.user.clone() },
            SharedChange::Token(t.clone()),
            |s| s.put_token(t),
        )
    }

    fn get_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.local.get_token(id)
    }

    fn list_tokens(&self, user: &str) -> Result<Vec<TokenRecord>, StoreError> {
        self.local.list_tokens(user)
    }

    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        let missing = || StoreError::Missing { what: "token", name: id.into() };
        if self.cluster().is_none() {
            return self.local.delete_token(id);
        }
        let user = self.local.get_token(id)?.ok_or_else(missing)?.user;
        self.shared_write(
            |c| c.delete_token(&user, id),
            missing,
            SharedChange::TokenGone(id.into()),
            |s| s.delete_token(id),
        )
    }

    fn grant(&self, e: &AclEntry) -> Result<(), StoreError> {
        self.shared_write(
            |c| c.grant(e),
            || StoreError::Missing { what: "user", name: e.user.clone() },
            SharedChange::Grant(e.clone()),
            |s| s.grant(e),
        )
    }

    fn revoke(&self, e: &AclEntry) -> Result<(), StoreError> {
        self.shared_write(
            |c| c.revoke(e),
            || StoreError::Missing { what: "right", name: format!("{} {} {}", e.user, e.right, e.vm) },
            SharedChange::Revoke(e.clone()),
            |s| s.revoke(e),
        )
    }

    fn acl(&self, user: Option<&str>, vm: Option<&str>) -> Result<Vec<AclEntry>, StoreError> {
        self.local.acl(user, vm)
    }

    fn revoke_vm(&self, vm: &str) -> Result<(), StoreError> {
        if let Some(c) = self.cluster() {
            c.revoke_object(&self.local.acl(None, Some(vm))?).map_err(pool_error)?;
        }
        self.local.revoke_vm(vm)
    }

    fn add_hook(&self, h: &HookRecord) -> Result<u64, StoreError> {
        match self.cluster() {
            None => self.local.add_hook(h),
            Some(c) => {
                let id = c.add_hook(h).map_err(pool_error)?;
                self.local.apply_shared(&SharedChange::Hook(HookRecord { id, ..h.clone() }))?;
                Ok(id)
            }
        }
    }

    fn list_hooks(&self) -> Result<Vec<HookRecord>, StoreError> {
        self.local.list_hooks()
    }

    fn delete_hook(&self, id: u64) -> Result<(), StoreError> {
        self.shared_write(
            |c| c.delete_hook(id),
            || StoreError::Missing { what: "hook", name: id.to_string() },
            SharedChange::HookGone(id),
            |s| s.delete_hook(id),
        )
    }

    fn create_template(&self, t: &TemplateRecord) -> Result<(), StoreError> {
        self.shared_write(
            |c| c.create_template(t),
            || StoreError::Duplicate { what: "template", name: t.name.clone() },
            SharedChange::Template(t.clone()),
            |s| s.create_template(t),
        )
    }

    fn list_templates(&self) -> Result<Vec<TemplateRecord>, StoreError> {
        self.local.list_templates()
    }

    fn remove_template(&self, name: &str) -> Result<(), StoreError> {
        self.shared_write(
            |c| c.remove_template(name),
            || StoreError::Missing { what: "template", name: name.into() },
            SharedChange::TemplateGone(name.into()),
            |s| s.remove_template(name),
        )
    }

    fn create_network(&self, n: &NetworkRecord) -> Result<(), StoreError> {
        self.local.create_network(n)
    }

    fn update_network(&self, n: &NetworkRecord) -> Result<(), StoreError> {
        self.local.update_network(n)
    }

    fn list_networks(&self) -> Result<Vec<NetworkRecord>, StoreError> {
        self.local.list_networks()
    }

    fn remove_network(&self, name: &str) -> Result<(), StoreError> {
        self.local.remove_network(name)
    }

    fn create_pool(&self, p: &PoolRecord) -> Result<(), StoreError> {
        self.local.create_pool(p)
    }

    fn list_pools(&self) -> Result<Vec<PoolRecord>, StoreError> {
        self.local.list_pools()
    }

    fn remove_pool(&self, name: &str) -> Result<(), StoreError> {
        self.local.remove_pool(name)
    }

    fn claim_mac(&self, nic: &NicRecord) -> Result<(), StoreError> {
        // On a network that spans the pool, a MAC is claimed pool-wide first.
        let pool = self.cluster().filter(|_| self.spans(&nic.network));
        if let Some(c) = &pool {
            if let Some(held) = c.claim_mac(&nic.mac, &nic.vm, nic.index).map_err(pool_error)? {
                return Err(StoreError::MacInUse { mac: nic.mac.clone(), vm: held.vm, index: held.index });
            }
        }
        let before = self.local.list_nics()?;
        let r = self.local.claim_mac(nic);
        if let Some(c) = &pool {
            match &r {
                // The NIC's MAC before, if it had another, is free now.
                Ok(()) => {
                    for old in
                        before.iter().filter(|o| o.vm == nic.vm && o.index == nic.index && o.mac != nic.mac)
                    {
                        let _ = c.release_mac(&old.mac, &nic.vm);
                    }
                }
                Err(_) => {
                    let _ = c.release_mac(&nic.mac, &nic.vm);
                }
            }
        }
        r
    }

    fn list_nics(&self) -> Result<Vec<NicRecord>, StoreError> {
        self.local.list_nics()
    }

    fn release_macs(&self, vm: &str, from: u32) -> Result<(), StoreError> {
        if let Some(c) = self.cluster() {
            for nic in self.local.list_nics()?.into_iter().filter(|n| n.vm == vm && n.index >= from) {
                if let Err(e) = c.release_mac(&nic.mac, vm) {
                    tracing::warn!(vm, mac = nic.mac, error = %e, "cannot give back a MAC in the pool");
                }
            }
        }
        self.local.release_macs(vm, from)
    }

    fn last_event_id(&self) -> Result<u64, StoreError> {
        self.local.last_event_id()
    }

    fn shared(&self) -> Result<SharedTables, StoreError> {
        self.local.shared()
    }

    fn replace_shared(&self, t: &SharedTables) -> Result<(), StoreError> {
        self.local.replace_shared(t)
    }

    fn apply_shared(&self, c: &SharedChange) -> Result<(), StoreError> {
        self.local.apply_shared(c)
    }
}
