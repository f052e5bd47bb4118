//! This host's membership in a pool of hosts (crate `cluster`, state in etcd): initialising,
//! joining and leaving a pool, rejoining it at every start, the pool's host list, and the pool's
//! VMs: a VM's name is claimed in etcd before the VM is made here (so no two hosts make VMs of one
//! name), each VM's view is published for every host to list (at once after a change, and every
//! [`SYNC`] besides), and a deleted VM's claim is released. A host in no pool answers for itself
//! alone, exactly as before pools existed, and never needs etcd.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use cluster::{Claim, Cluster, ClusterConfig, ClusterError, EtcdTls, HostRecord, HostStatus, JoinToken};
use serde_json::Value;

use crate::placement;
use crate::protocol::{Failure, VmInfo};
use crate::server::Daemon;
use crate::shared::{ClusterSlot, PoolStore};

/// How often every VM's view is published again (changes made through a control are published
/// at once; this catches the rest: a guest that powered off, a crash).
pub const SYNC: Duration = Duration::from_secs(2);

/// The pool connection, once the host is in a pool, and the address it advertises.
pub struct Membership {
    slot: Arc<ClusterSlot>,
    pub(crate) store: Arc<PoolStore>,
    pub(crate) url: Mutex<String>,
    fingerprint: Mutex<String>,
    /// What was last published of each VM (its JSON), so unchanged views are not rewritten.
    published: Mutex<BTreeMap<String, String>>,
    /// VMs whose names another host owns (reported once each).
    conflicts: Mutex<BTreeMap<String, String>>,
    sync_started: AtomicBool,
    /// Set (and the publishing thread woken) when a VM changed here.
    changed: (Mutex<bool>, std::sync::Condvar),
    /// How to reach the other hosts (set by the API).
    pub(crate) peers: std::sync::OnceLock<Arc<dyn crate::moves::Peers>>,
    /// The shared storage pools registered here.
    pub(crate) shared_pools: Mutex<std::collections::BTreeSet<String>>,
    /// VMs being moved away, with where to.
    pub(crate) moving: Mutex<BTreeMap<String, String>>,
    /// Live migrations from here: under way, or the last one's outcome, by VM.
    pub(crate) migrations: Mutex<BTreeMap<String, Arc<crate::actor::Job>>>,
    /// VMs arriving here by live migration, with the volumes made for them.
    pub(crate) incoming: Mutex<BTreeMap<String, Vec<String>>>,
    /// The load last published, and when.
    published_load: Mutex<Option<(cluster::HostLoad, std::time::Instant)>>,
    /// What the sync of spanning networks remembers between rounds.
    pub(crate) spans: Mutex<crate::spans::SpanState>,
    /// The policy engine's loop (acts while this host is the coordinator).
    pub(crate) pilot: crate::pilot::Pilot,
    /// This host's fence (`crate::ha`), made when it first enters a pool.
    pub(crate) fence: std::sync::OnceLock<Arc<cluster::Fence>>,
    /// The HA records last published, by VM.
    pub(crate) ha_published: Mutex<BTreeMap<String, cluster::HaRecord>>,
    /// HA guests the coordinator asked a host to take over, and when.
    pub(crate) ha_asked: Mutex<BTreeMap<String, std::time::Instant>>,
}

impl Membership {
    /// The membership of a daemon whose store is `store`, sharing its pool connection `slot`.
    pub fn new(slot: Arc<ClusterSlot>, store: Arc<PoolStore>) -> Membership {
        Membership {
            slot,
            store,
            url: Mutex::default(),
            fingerprint: Mutex::default(),
            published: Mutex::default(),
            conflicts: Mutex::default(),
            sync_started: AtomicBool::new(false),
            changed: Default::default(),
            peers: Default::default(),
            shared_pools: Default::default(),
            moving: Default::default(),
            migrations: Default::default(),
            incoming: Default::default(),
            published_load: Default::default(),
            spans: Default::default(),
            pilot: Default::default(),
            fence: Default::default(),
            ha_published: Default::default(),
            ha_asked: Default::default(),
        }
    }
}

impl From<ClusterError> for Failure {
    fn from(e: ClusterError) -> Failure {
        match e {
            ClusterError::Conflict(m) => Failure::Refused(m),
            ClusterError::Invalid(m) => Failure::Invalid(m),
            e @ (ClusterError::Etcd { .. } | ClusterError::Timeout { .. }) => {
                Failure::Unavailable(e.to_string())
            }
            e => Failure::Failed(e.to_string()),
        }
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("pool records serialise")
}

impl Daemon {
    fn membership(&self) -> &Membership {
        &self.membership
    }

    /// The pool connection, if this host is in a pool.
    pub fn cluster(&self) -> Option<Arc<Cluster>> {
        self.membership().slot.get()
    }

    /// This host as a pool member named `name`.
    fn host_record(&self, name: &str) -> HostRecord {
        let h = &self.ctx().host;
        HostRecord {
            name: name.to_string(),
            url: self.membership().url.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            tls_fingerprint: self.membership().fingerprint.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            cpus: h.cpus,
            memory_bytes: h.memory_bytes,
            accelerator: h.accelerator.kind.qemu_name().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            joined_ms: cluster::now_ms(),
            maintenance: false,
            standby: false,
        }
    }

    /// Records the HTTPS address this host's API answers on and its certificate's fingerprint
    /// (what other hosts and clients are told), then rejoins the pool named in the data directory's `cluster.toml`, if any. The
    /// host registers in the background: a missing etcd delays it, never the daemon.
    pub fn rejoin_pool(&self, url: &str, fingerprint: &str) -> Result<(), Failure> {
        *self.membership().url.lock().unwrap_or_else(|p| p.into_inner()) = url.to_string();
        *self.membership().fingerprint.lock().unwrap_or_else(|p| p.into_inner()) = fingerprint.to_string();
        let Some(cfg) = ClusterConfig::load(&self.ctx().data)? else {
            return Ok(());
        };
        let name = cfg.host.clone();
        let c = Cluster::start(cfg, self.host_record(&name))?;
        tracing::info!("rejoining pool {} as host '{name}'", c.config().pool_id);
        self.membership().store.follow(&c);
        self.set_cluster(Some(Arc::new(c)));
        Ok(())
    }

    /// Sets (or clears) the pool connection; starts the publishing thread the first time.
    fn set_cluster(&self, c: Option<Arc<Cluster>>) {
        let m = self.membership();
        m.published.lock().unwrap_or_else(|p| p.into_inner()).clear();
        m.conflicts.lock().unwrap_or_else(|p| p.into_inner()).clear();
        m.ha_published.lock().unwrap_or_else(|p| p.into_inner()).clear();
        match &c {
            Some(c) => c.set_fence(self.fence()),
            None => {
                if let Some(f) = m.fence.get() {
                    f.disarm();
                }
            }
        }
        m.slot.set(c);
        if self.cluster().is_some() && !m.sync_started.swap(true, Ordering::SeqCst) {
            let weak: Weak<Daemon> = self.weak_self();
            std::thread::Builder::new()
                .name("pool-sync".into())
                .spawn(move || loop {
                    {
                        let Some(d) = weak.upgrade() else { return };
                        let (flag, wake) = &d.membership().changed;
                        let mut changed = flag.lock().unwrap_or_else(|p| p.into_inner());
                        if !*changed {
                            changed = wake.wait_timeout(changed, SYNC).unwrap_or_else(|p| p.into_inner()).0;
                        }
                        *changed = false;
                    }
                    let Some(d) = weak.upgrade() else { return };
                    if d.is_stopping() {
                        return;
                    }
                    d.publish_all();
                    if let Some(c) = d.cluster() {
                        d.sync_shared_pools(&c);
                        d.sync_span_networks(&c);
                        d.publish_ha(&c);
                        d.restart_fenced(&c);
                        d.release_writes(&c);
                        d.resolve_migrations(&c);
                        d.publish_load(&c);
                    }
                })
                .expect("threads can be started");
            self.start_pilot();
        }
    }

    /// `vine cluster init`: a new pool in the etcd at `etcd`, this host its first member.
    pub(crate) fn cluster_init(
        &self,
        etcd: Vec<String>,
        name: Option<String>,
        tls: Option<EtcdTls>,
    ) -> Result<Value, Failure> {
        if let Some(c) = self.cluster() {
            return Err(Failure::Refused(format!(
                "this host is already host '{}' of pool {} (vine cluster show)",
                c.config().host,
                c.config().pool_id
            )));
        }
        let name = name.unwrap_or_else(|| self.ctx().host.hostname.clone());
        let (c, cfg) = Cluster::init(&etcd, tls, self.host_record(&name))?;
        if let Err(e) = self.membership().store.enter_pool(&c, true) {
            let _ = c.leave();
            return Err(Failure::Unavailable(format!("the pool was made in etcd, but {e}")));
        }
        if let Err(e) = cfg.save(&self.ctx().data) {
            c.stop();
            return Err(Failure::Failed(format!("the pool was made in etcd, but {e}")));
        }
        self.membership().store.follow(&c);
        // Listed online at once; if etcd is slow the membership task goes on trying.
        let _ = c.wait_registered();
        self.set_cluster(Some(Arc::new(c)));
        self.publish_all();
        let m = format!("made pool {} with this host as '{name}' (etcd {})", cfg.pool_id, cfg.etcd.join(","));
        self.ctx().event(None, "info", "cluster.init", &m);
        Ok(serde_json::json!({ "message": m, "pool": cfg.pool_id, "host": name }))
    }

    /// `vine cluster token HOST`: a one-time join token for a new host.
    pub(crate) fn cluster_token(&self, host: &str) -> Result<Value, Failure> {
        let c = self.cluster().ok_or_else(not_in_a_pool)?;
        let t = c.issue_token(host)?;
        self.ctx().event(None, "info", "cluster.token", &format!("issued a join token for host '{host}'"));
        Ok(
            serde_json::json!({ "token": t.encode(), "host": host, "expires_in_s": cluster::token::TOKEN_TTL_S }),
        )
    }

    /// `vine cluster join TOKEN`: this host joins the pool the token names, under the name it admits.
    pub(crate) fn cluster_join(&self, token: &str, tls: Option<EtcdTls>) -> Result<Value, Failure> {
        if let Some(c) = self.cluster() {
            return Err(Failure::Refused(format!(
                "this host is already host '{}' of pool {} (vine cluster leave first)",
                c.config().host,
                c.config().pool_id
            )));
        }
        let t = JoinToken::decode(token)?;
        let (c, cfg) = Cluster::join(&t, tls, self.host_record(&t.host))?;
        if let Err(e) = self.membership().store.enter_pool(&c, false) {
            let _ = c.leave();
            return Err(Failure::Unavailable(format!("joined in etcd, but {e}; left again")));
        }
        if let Err(e) = cfg.save(&self.ctx().data) {
            let _ = c.leave();
            return Err(Failure::Failed(format!("joined in etcd, but {e}; left again")));
        }
        self.membership().store.follow(&c);
        // Listed online at once; if etcd is slow the membership task goes on trying.
        let _ = c.wait_registered();
        self.set_cluster(Some(Arc::new(c)));
        self.publish_all();
        let m = format!("joined pool {} as host '{}'", cfg.pool_id, cfg.host);
        self.ctx().event(None, "info", "cluster.join", &m);
        Ok(serde_json::json!({ "message": m, "pool": cfg.pool_id, "host": cfg.host }))
    }

    /// `vine cluster leave`: this host leaves its pool and is a host on its own again.
    pub(crate) fn cluster_leave(&self) -> Result<Value, Failure> {
        let c = self.cluster().ok_or_else(not_in_a_pool)?;
        self.may_leave_span_networks()?;
        for name in self.membership().published.lock().unwrap_or_else(|p| p.into_inner()).keys() {
            c.release_vm(name)?;
        }
        c.leave()?;
        ClusterConfig::remove(&self.ctx().data)?;
        self.set_cluster(None);
        self.leave_span_networks();
        let m = format!("left pool {} (was host '{}')", c.config().pool_id, c.config().host);
        self.ctx().event(None, "info", "cluster.leave", &m);
        Ok(serde_json::json!({ "message": m }))
    }

    /// `vine cluster show`.
    pub(crate) fn cluster_show(&self) -> Result<Value, Failure> {
        let c = self.cluster().ok_or_else(not_in_a_pool)?;
        let mut v = to_value(&c.show()?);
        v["registered"] = Value::Bool(c.last_error().is_none());
        v["coordinating"] = Value::Bool(c.is_coordinator());
        if let Some(e) = c.last_error() {
            v["membership_problem"] = Value::String(e);
        }
        Ok(v)
    }

    /// Every host: the pool's, or this host alone when it is in none. This host's load is
    /// always its live one.
    pub(crate) fn host_list(&self) -> Result<Vec<HostStatus>, Failure> {
        let mine = self.host_load();
        match self.cluster() {
            Some(c) => {
                let me = c.config().host.clone();
                Ok(c.hosts()?
                    .into_iter()
                    .map(
                        |h| {
                            if h.record.name == me {
                                HostStatus { load: Some(mine.clone()), ..h }
                            } else {
                                h
                            }
                        },
                    )
                    .collect())
            }
            None => Ok(vec![HostStatus {
                load: Some(mine),
                ..HostStatus::of(self.host_record(&self.ctx().host.hostname), true)
            }]),
        }
    }

    /// Publishes this host's load when it changed, and every 30 s besides (so its time shows
    /// it is fresh).
    fn publish_load(&self, c: &Cluster) {
        let load = self.host_load();
        let mut last = self.membership().published_load.lock().unwrap_or_else(|p| p.into_inner());
        let same = last.as_ref().is_some_and(|(l, at)| {
            at.elapsed() < Duration::from_secs(30)
                && cluster::HostLoad { at_ms: 0, ..l.clone() }
                    == cluster::HostLoad { at_ms: 0, ..load.clone() }
        });
        if same {
            return;
        }
        match c.publish_load(&load) {
            Ok(()) => *last = Some((load, std::time::Instant::now())),
            Err(e) => tracing::debug!("publishing this host's load: {e}"),
        }
    }

    /// One host.
    pub(crate) fn host_show(&self, name: &str) -> Result<HostStatus, Failure> {
        self.host_list()?
            .into_iter()
            .find(|h| h.record.name == name)
            .ok_or_else(|| Failure::NotFound(format!("no host named '{name}' (vine host list)")))
    }

    /// `vine host maintenance HOST on|off`.
    pub(crate) fn host_maintenance(&self, name: &str, on: bool) -> Result<Value, Failure> {
        let c = self.cluster().ok_or_else(not_in_a_pool)?;
        c.set_maintenance(name, on)?;
        let m = if on {
            format!("host '{name}' is in maintenance: it keeps its VMs and gets no new ones")
        } else {
            format!("host '{name}' is out of maintenance")
        };
        self.ctx().event(None, "info", "host.maintenance", &m);
        Ok(serde_json::json!({ "message": m }))
    }

    /// Stops keeping this host alive in its pool (the daemon is stopping): the others see it
    /// offline at once rather than when its lease runs out.
    pub fn leave_quietly(&self) {
        if let Some(c) = self.cluster() {
            c.stop();
        }
    }
}

impl Daemon {
    /// A container made on host `to` from an image of a host-local pool here: the image goes
    /// there first (once: a copy it has already is used as it is), as a template's bases do.
    fn ship_image(&self, image: &str, to: &str) -> Result<(), Failure> {
        let Some((pool, volume)) = vmconfig::volume_ref(image) else { return Ok(()) };
        if self.shared_pool_names().contains(pool) {
            return Ok(());
        }
        let Ok(file) = self.ctx().pools.resolve(image) else { return Ok(()) };
        let target = format!("/api/pools/{pool}/volumes/{volume}/content");
        match self.peers()?.send(to, &target, &file) {
            Ok(()) => {
                let m = format!("copied image {image} to host '{to}' for a container made there");
                self.ctx().event(None, "info", "volume.copied", &m);
                Ok(())
            }
            Err(e) if e.is_already_there() => Ok(()),
            Err(e) => Err(Failure::Failed(format!("cannot copy image {image} to host '{to}': {e}"))),
        }
    }

    /// `vine vm create`, in a pool or not. In a pool the VM goes to `host`, or where placement
    /// puts it (the reason is an event, `vm.placed`); made elsewhere, the request is forwarded
    /// there ([`Failure::Elsewhere`]). Here, the name is claimed in etcd first (refused if
    /// another host owns a VM of that name) and released again if the VM cannot be made.
    pub(crate) fn create_in_pool(
        &self,
        text: &str,
        host: Option<&str>,
        template: Option<&crate::templates::TemplateUse>,
    ) -> Result<Value, Failure> {
        let Some(c) = self.cluster() else {
            if let Some(h) = host {
                return Err(Failure::Invalid(format!(
                    "host: this host is in no pool, so there is no host '{h}' to choose"
                )));
            }
            return self.create_from(text, template);
        };
        let def =
            vmconfig::VmDefinition::parse(text).map_err(|e| Failure::Invalid(format!("definition: {e}")))?;
        let me = c.config().host.clone();
        let target = match host {
            Some(h) => {
                let status = c
                    .hosts()?
                    .into_iter()
                    .find(|s| s.record.name == h)
                    .ok_or_else(|| Failure::Invalid(format!("host: no host named '{h}' in the pool")))?;
                if h != me && status.state == cluster::HostState::Offline {
                    return Err(Failure::Unavailable(format!(
                        "host '{h}' is offline: it cannot take '{}' now",
                        def.name
                    )));
                }
                if def.group.is_some() {
                    placement::check_apart(h, &c.vms()?, &def)?;
                }
                h.to_string()
            }
            None => {
                let (h, why) = placement::place(&c.hosts()?, &c.vms()?, &def)?;
                self.ctx().event(Some(&def.name), "info", "vm.placed", &why);
                h
            }
        };
        if target != me {
            if let Some(c) = def.container.as_ref() {
                self.ship_image(&c.image, &target)?;
            }
            return Err(Failure::Elsewhere { vm: def.name.clone(), host: target });
        }
        let first =
            serde_json::json!({ "name": def.name, "state": "off", "cpus": def.cpus, "memory": def.memory });
        let claim = c.claim_vm(&def.name, &first)?;
        if let Claim::Theirs(h) = &claim {
            return Err(Failure::Refused(format!("a VM named '{}' already exists on host '{h}'", def.name)));
        }
        let made = self.create_from(text, template);
        match (&made, claim) {
            // Published before the answer: the claim alone is no view, and a `show` on another
            // host right after the create must find it.
            (Ok(_), _) => self.publish_now(&def.name),
            (Err(_), Claim::Claimed) => {
                if let Err(e) = c.release_vm(&def.name) {
                    tracing::warn!("releasing the claim on '{}' after a failed create: {e}", def.name);
                }
            }
            _ => {}
        }
        made.map(|mut v| {
            v["host"] = Value::String(me);
            v
        })
    }

    /// Every VM: the pool's (each with its host) when this host is in one, else this host's.
    /// This host's own VMs are always its live views.
    pub fn list_vms(&self) -> Result<Vec<VmInfo>, Failure> {
        let local = self.local_infos();
        let Some(c) = self.cluster() else { return Ok(local) };
        let me = c.config().host.clone();
        let offline: Vec<String> = c
            .hosts()?
            .into_iter()
            .filter(|h| h.state == cluster::HostState::Offline)
            .map(|h| h.record.name)
            .collect();
        let mut all: BTreeMap<String, VmInfo> = BTreeMap::new();
        for mut info in c.vms_as::<VmInfo>()? {
            if info.host.as_deref() == Some(me.as_str()) {
                continue;
            }
            if info.host.as_ref().is_some_and(|h| offline.contains(h)) {
                info.state = vmm::state::VmState::Unknown;
            }
            all.insert(info.name.clone(), info);
        }
        for mut info in local {
            info.host = Some(me.clone());
            all.insert(info.name.clone(), info);
        }
        Ok(all.into_values().collect())
    }

    /// One VM: this host's live view, or what its owner published.
    pub(crate) fn show_vm(&self, name: &str) -> Result<VmInfo, Failure> {
        let c = self.cluster();
        match self.local_info(name) {
            Ok(mut info) => {
                info.host = c.map(|c| c.config().host.clone());
                Ok(info)
            }
            Err(Failure::NotFound(m)) => {
                let Some(c) = c else { return Err(Failure::NotFound(m)) };
                let mut info = c
                    .vm(name)?
                    .and_then(|v| serde_json::from_value::<VmInfo>(v).ok())
                    .ok_or(Failure::NotFound(m))?;
                if let Some(h) = &info.host {
                    if !c.is_alive(h)? {
                        info.state = vmm::state::VmState::Unknown;
                    }
                }
                Ok(info)
            }
            Err(e) => Err(e),
        }
    }

    /// Has the VMs' views published at once (after a control or a change), if this host is in
    /// a pool. The publishing thread does it, so a control never waits for etcd (and works while
    /// etcd is away: its result is published when etcd is back).
    pub(crate) fn publish_vm(&self, _name: &str) {
        self.wake_sync();
    }

    /// Publishes VM `name`'s view before a control answers, so a list on any host of the pool
    /// shows the control's result as soon as it has answered. While this host cannot reach
    /// etcd (its membership says so) the control does not wait: the publishing thread publishes
    /// the view once etcd is back, as [`Daemon::publish_vm`] does.
    pub(crate) fn publish_now(&self, name: &str) {
        let Some(c) = self.cluster() else { return };
        let arriving =
            self.membership().incoming.lock().unwrap_or_else(|p| p.into_inner()).contains_key(name);
        if c.last_error().is_none() && !arriving {
            if let Ok(info) = self.local_info(name) {
                self.publish(vec![info]);
            }
        }
        self.wake_sync();
    }

    /// Has the sync round run at once (a VM or a spanning network changed here).
    pub(crate) fn wake_sync(&self) {
        if self.cluster().is_none() {
            return;
        }
        let (flag, wake) = &self.membership().changed;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_one();
    }

    /// Publishes every VM whose view changed since it was last published.
    fn publish_all(&self) {
        if self.cluster().is_some() {
            // A VM on its way here is the source's until the handover.
            let busy = |name: &str| {
                self.membership().incoming.lock().unwrap_or_else(|p| p.into_inner()).contains_key(name)
            };
            self.publish(self.local_infos().into_iter().filter(|i| !busy(&i.name)).collect());
        }
    }

    fn publish(&self, infos: Vec<VmInfo>) {
        let Some(c) = self.cluster() else { return };
        let m = self.membership();
        let changed: Vec<(String, Value)> = {
            let published = m.published.lock().unwrap_or_else(|p| p.into_inner());
            infos
                .into_iter()
                .filter_map(|i| {
                    let v = serde_json::to_value(&i).expect("serialises");
                    let text = v.to_string();
                    (published.get(&i.name) != Some(&text)).then_some((i.name, v))
                })
                .collect()
        };
        if changed.is_empty() {
            return;
        }
        let mut taken_over = Vec::new();
        match c.publish_vms(&changed) {
            Ok(conflicts) => {
                let mut published = m.published.lock().unwrap_or_else(|p| p.into_inner());
                let mut known = m.conflicts.lock().unwrap_or_else(|p| p.into_inner());
                for (name, v) in &changed {
                    if let Some((_, owner)) = conflicts.iter().find(|(n, _)| n == name) {
                        let ha = v["ha"].as_bool().unwrap_or(false);
                        if ha && self.moving_to(name).is_none() {
                            // Most likely restarted elsewhere while this host was taken for dead.
                            taken_over.push((name.clone(), owner.clone()));
                            continue;
                        }
                        // A VM moving away may be its destination's already: no conflict.
                        if self.moving_to(name).is_none()
                            && known.insert(name.clone(), owner.clone()).is_none()
                        {
                            self.ctx().event(
                                Some(name),
                                "error",
                                "cluster.name-conflict",
                                &format!(
                                    "host '{owner}' owns a VM named '{name}' in the pool; this host's '{name}' \
                                     is not listed by the pool until one of them is renamed or removed"
                                ),
                            );
                        }
                    } else {
                        published.insert(name.clone(), v.to_string());
                    }
                }
            }
            Err(e) => tracing::warn!("publishing VMs to the pool: {e}"),
        }
        for (name, owner) in taken_over {
            if !self.drop_taken_over(&name, &owner)
                && m.conflicts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name.clone(), owner.clone())
                    .is_none()
            {
                self.ctx().event(
                    Some(&name),
                    "error",
                    "cluster.name-conflict",
                    &format!(
                        "host '{owner}' owns a VM named '{name}' in the pool; this host's '{name}' is not listed by the \
                         pool until one of them is renamed or removed"
                    ),
                );
            }
        }
    }

    /// The host that owns `vm`, when that is not this host (in a pool).
    pub fn owner_elsewhere(&self, vm: &str) -> Result<Option<String>, Failure> {
        let Some(c) = self.cluster() else { return Ok(None) };
        let Some(owner) = c.owner_of(vm)?.filter(|h| *h != c.config().host) else { return Ok(None) };
        if !c.is_alive(&owner)? {
            return Err(Failure::Unavailable(format!(
                "VM '{vm}' is on host '{owner}', which is offline: its state is unknown and it cannot be \
                 reached until the host is back (vine host list)"
            )));
        }
        Ok(Some(owner))
    }

    /// Where host `name` answers and the fingerprint of its certificate, for forwarding.
    pub fn host_contact(&self, name: &str) -> Result<(String, String), Failure> {
        let c = self.cluster().ok_or_else(not_in_a_pool)?;
        let h =
            c.host(name)?.ok_or_else(|| Failure::NotFound(format!("no host named '{name}' in the pool")))?;
        Ok((h.url, h.tls_fingerprint))
    }

    /// The pool's secret, which hosts present to each other, if this host is in a pool.
    pub fn pool_secret(&self) -> Option<String> {
        self.cluster().and_then(|c| c.secret().ok())
    }

    /// This host's name in its pool.
    pub fn pool_host_name(&self) -> Option<String> {
        self.cluster().map(|c| c.config().host.clone())
    }

    /// A VM deleted or removed here: its claim in the pool goes.
    pub(crate) fn vm_gone(&self, name: &str) {
        self.membership().published.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        if let Some(c) = self.cluster() {
            if let Err(e) = c.release_vm(name) {
                tracing::warn!("releasing '{name}' in the pool: {e}");
            }
            if let Err(e) = c.remove_ha(name) {
                tracing::warn!("removing the HA record of '{name}': {e}");
            }
        }
    }
}

fn not_in_a_pool() -> Failure {
    Failure::NotFound(
        "this host is in no pool: make one with vine cluster init --etcd URL, or join one with vine cluster join TOKEN"
            .into(),
    )
}
