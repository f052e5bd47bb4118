//! This host's membership in a pool of hosts (crate `cluster`, state in etcd): initialising a
//! pool, rejoining it at every start, and the pool's host list. A host in no pool answers for
//! itself alone, exactly as before pools existed, and never needs etcd.

use std::sync::{Arc, Mutex};

use cluster::{Cluster, ClusterConfig, ClusterError, EtcdTls, HostRecord, HostStatus, JoinToken};
use serde_json::Value;

use crate::protocol::Failure;
use crate::server::Daemon;

/// The pool connection, once the host is in a pool, and the address it advertises.
#[derive(Default)]
pub struct Membership {
    cluster: Mutex<Option<Arc<Cluster>>>,
    url: Mutex<String>,
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
        self.membership().cluster.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// This host as a pool member named `name`.
    fn host_record(&self, name: &str) -> HostRecord {
        let h = &self.ctx().host;
        HostRecord {
            name: name.to_string(),
            url: self.membership().url.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            cpus: h.cpus,
            memory_bytes: h.memory_bytes,
            accelerator: h.accelerator.kind.qemu_name().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            joined_ms: cluster::now_ms(),
            maintenance: false,
        }
    }

    /// Records the HTTPS address this host's API answers on (what other hosts and clients are
    /// told), then rejoins the pool named in the data directory's `cluster.toml`, if any. The
    /// host registers in the background: a missing etcd delays it, never the daemon.
    pub fn rejoin_pool(&self, url: &str) -> Result<(), Failure> {
        *self.membership().url.lock().unwrap_or_else(|p| p.into_inner()) = url.to_string();
        let Some(cfg) = ClusterConfig::load(&self.ctx().data)? else {
            return Ok(());
        };
        let name = cfg.host.clone();
        let c = Cluster::start(cfg, self.host_record(&name))?;
        tracing::info!("rejoining pool {} as host '{name}'", c.config().pool_id);
        *self.membership().cluster.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(c));
        Ok(())
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
        if let Err(e) = cfg.save(&self.ctx().data) {
            c.stop();
            return Err(Failure::Failed(format!("the pool was made in etcd, but {e}")));
        }
        let c = Arc::new(c);
        *self.membership().cluster.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
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
    pub(crate) fn cluster_join(&self, token: &str) -> Result<Value, Failure> {
        if let Some(c) = self.cluster() {
            return Err(Failure::Refused(format!(
                "this host is already host '{}' of pool {} (vine cluster leave first)",
                c.config().host,
                c.config().pool_id
            )));
        }
        let t = JoinToken::decode(token)?;
        let (c, cfg) = Cluster::join(&t, self.host_record(&t.host))?;
        if let Err(e) = cfg.save(&self.ctx().data) {
            let _ = c.leave();
            return Err(Failure::Failed(format!("joined in etcd, but {e}; left again")));
        }
        *self.membership().cluster.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(c));
        let m = format!("joined pool {} as host '{}'", cfg.pool_id, cfg.host);
        self.ctx().event(None, "info", "cluster.join", &m);
        Ok(serde_json::json!({ "message": m, "pool": cfg.pool_id, "host": cfg.host }))
    }

    /// `vine cluster leave`: this host leaves its pool and is a host on its own again.
    pub(crate) fn cluster_leave(&self) -> Result<Value, Failure> {
        let c = self.cluster().ok_or_else(not_in_a_pool)?;
        c.leave()?;
        ClusterConfig::remove(&self.ctx().data)?;
        *self.membership().cluster.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let m = format!("left pool {} (was host '{}')", c.config().pool_id, c.config().host);
        self.ctx().event(None, "info", "cluster.leave", &m);
        Ok(serde_json::json!({ "message": m }))
    }

    /// `vine cluster show`.
    pub(crate) fn cluster_show(&self) -> Result<Value, Failure> {
        let c = self.cluster().ok_or_else(not_in_a_pool)?;
        let mut v = to_value(&c.show()?);
        v["registered"] = Value::Bool(c.last_error().is_none());
        if let Some(e) = c.last_error() {
            v["membership_problem"] = Value::String(e);
        }
        Ok(v)
    }

    /// Every host: the pool's, or this host alone when it is in none.
    pub(crate) fn host_list(&self) -> Result<Vec<HostStatus>, Failure> {
        match self.cluster() {
            Some(c) => Ok(c.hosts()?),
            None => Ok(vec![HostStatus::of(self.host_record(&self.ctx().host.hostname), true)]),
        }
    }

    /// One host.
    pub(crate) fn host_show(&self, name: &str) -> Result<HostStatus, Failure> {
        self.host_list()?
            .into_iter()
            .find(|h| h.record.name == name)
            .ok_or_else(|| Failure::NotFound(format!("no host named '{name}' (vine host list)")))
    }

    /// Stops keeping this host alive in its pool (the daemon is stopping): the others see it
    /// offline at once rather than when its lease runs out.
    pub fn leave_quietly(&self) {
        if let Some(c) = self.cluster() {
            c.stop();
        }
    }
}

fn not_in_a_pool() -> Failure {
    Failure::NotFound(
        "this host is in no pool: make one with vine cluster init --etcd URL, or join one with vine cluster join TOKEN"
            .into(),
    )
}
