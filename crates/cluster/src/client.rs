//! One host's connection to its pool's etcd.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, PutOptions, TlsOptions,
    Txn, TxnOp,
};
use tokio::sync::watch;

use crate::config::{self, ClusterConfig, EtcdTls};
use crate::records::{EtcdMember, HostLoad, HostRecord, HostStatus, PoolInfo, PoolRecord};
use crate::token::{JoinToken, TOKEN_TTL_S};
use crate::{keys, now_ms, ClusterError};

/// Lifetime of a host's liveness key without a refresh: a host is listed offline at most this
/// long (plus one refresh interval) after its daemon stops refreshing it.
pub const LEASE_TTL_S: i64 = 10;
/// How often the liveness lease is refreshed.
pub const KEEPALIVE: Duration = Duration::from_secs(3);
/// The longest vine waits for one etcd request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest vine waits for a connection to one etcd member.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause before the membership task tries again after a failure.
pub(crate) const RETRY: Duration = Duration::from_secs(2);

/// A host's connection to its pool: the etcd client, and the task that keeps the host
/// registered and its liveness key alive, and its campaign for coordinator (started by [`Cluster::start`], stopped by
/// [`Cluster::stop`] or on drop).
pub struct Cluster {
    rt: tokio::runtime::Runtime,
    client: Client,
    cfg: ClusterConfig,
    endpoints: String,
    stop: watch::Sender<bool>,
    /// The membership task's last failure (None once registered and alive).
    last_error: Arc<Mutex<Option<String>>>,
    secret: std::sync::OnceLock<String>,
    /// This host's coordinatorship (see [`crate::coordinator`]).
    pub(crate) leadership: Arc<Mutex<crate::coordinator::Leadership>>,
    /// The fence the liveness lease's renewals move (see [`crate::fence`]), once the daemon sets it.
    fence: Arc<Mutex<FenceSlot>>,
}

/// The fence, and when the last answered renewal was sent (kept for a fence set later).
#[derive(Default)]
struct FenceSlot {
    fence: Option<Arc<crate::Fence>>,
    last_sent: Option<u64>,
}

fn runtime() -> Result<tokio::runtime::Runtime, ClusterError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("vine-cluster")
        // Requests and a migration's commit wait on etcd's answers (host::sched).
        .on_thread_start(host::sched::latency_critical)
        .enable_all()
        .build()
        .map_err(ClusterError::Runtime)
}

fn options(tls: Option<&EtcdTls>) -> Result<ConnectOptions, ClusterError> {
    let mut o = ConnectOptions::new().with_timeout(REQUEST_TIMEOUT).with_connect_timeout(CONNECT_TIMEOUT);
    if let Some(t) = tls {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| ClusterError::Invalid(format!("etcd TLS file {}: {e}", p.display())))
        };
        o = o.with_tls(
            TlsOptions::new()
                .ca_certificate(Certificate::from_pem(read(&t.ca)?))
                .identity(Identity::from_pem(read(&t.cert)?, read(&t.key)?)),
        );
    }
    Ok(o)
}

/// How often each etcd member's address is tried, and how long a try may take.
const PROBE_EVERY: Duration = Duration::from_secs(1);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Keeps the client's requests off etcd members that cannot be reached: every
/// [`PROBE_EVERY`], each endpoint's address is tried (a TCP connection); one that does not
/// answer is taken out of the set the client spreads requests over (never the last), and put
/// back once it answers again. Without this a request could land on a member that is down or
/// cut off and wait for its whole timeout.
async fn steer(client: Client, urls: Vec<String>, mut stop: watch::Receiver<bool>) {
    let mut out: Vec<String> = Vec::new();
    loop {
        for url in &urls {
            let addr = url.split("://").nth(1).unwrap_or(url).trim_end_matches('/').to_string();
            let up = matches!(
                tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr.as_str())).await,
                Ok(Ok(_))
            );
            let is_out = out.contains(url);
            if !up && !is_out && out.len() + 1 < urls.len() {
                if client.remove_endpoint(url.as_str()).await.is_ok() {
                    tracing::info!("etcd member {url} does not answer: requests go to the others");
                    out.push(url.clone());
                }
            } else if up && is_out && client.add_endpoint(url.as_str()).await.is_ok() {
                tracing::info!("etcd member {url} answers again");
                out.retain(|u| u != url);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Pause before a request that could not reach an etcd member is sent again.
pub(crate) const RESEND: Duration = Duration::from_millis(25);

/// Whether a request failed before it reached etcd (its connection could not be made), so
/// sending it again cannot apply it twice. The client spreads requests over the endpoints and
/// keeps a dead member's among them, so with one member down a request can land there; sent
/// again, it goes to another.
pub(crate) fn never_sent(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) => true,
        // gRPC's UNAVAILABLE (14), raised by the connection, not by etcd.
        etcd_client::Error::GRpcStatus(s) => s.code() as i32 == 14 && s.message().contains("connect"),
        _ => false,
    }
}

/// Whether etcd refused a request because its leader changed while serving it. etcd raises
/// this from the read path (a linearizable read that lost its leader), never for a proposal it
/// may have applied, so sending the request again, once the new leader is in place, is safe.
pub(crate) fn leader_changed(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(s) if s.message().contains("leader changed"))
}

/// Pause before a request refused during a leader change is sent again.
pub(crate) const AFTER_ELECTION: Duration = Duration::from_millis(100);

/// `timed!(endpoints, what, call)`: a future running the etcd `call` (an expression evaluated
/// again for each try) within [`REQUEST_TIMEOUT`], sending it again while it fails before
/// reaching etcd ([`never_sent`]) or meets a leader change ([`leader_changed`]); maps the client's errors to [`crate::ClusterError`], naming
/// etcd, the endpoints and `what` was being done.
macro_rules! timed {
    ($endpoints:expr, $what:expr, $call:expr $(,)?) => {
        async {
            let deadline = tokio::time::Instant::now() + $crate::client::REQUEST_TIMEOUT;
            loop {
                match tokio::time::timeout_at(deadline, $call).await {
                    Ok(Ok(v)) => break Ok(v),
                    Ok(Err(source)) => {
                        if $crate::client::never_sent(&source)
                            && tokio::time::Instant::now() + $crate::client::RESEND < deadline
                        {
                            tokio::time::sleep($crate::client::RESEND).await;
                            continue;
                        }
                        if $crate::client::leader_changed(&source)
                            && tokio::time::Instant::now() + $crate::client::AFTER_ELECTION < deadline
                        {
                            tokio::time::sleep($crate::client::AFTER_ELECTION).await;
                            continue;
                        }
                        break Err($crate::ClusterError::Etcd {
                            endpoints: ($endpoints).to_string(),
                            what: ($what).to_string(),
                            source,
                        });
                    }
                    Err(_) => {
                        break Err($crate::ClusterError::Timeout {
                            endpoints: ($endpoints).to_string(),
                            what: ($what).to_string(),
                            secs: $crate::client::REQUEST_TIMEOUT.as_secs(),
                        })
                    }
                }
            }
        }
    };
}
pub(crate) use timed;

/// A key's bytes read as `T` (a record, or any JSON value).
pub(crate) fn parse<T: serde::de::DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, ClusterError> {
    serde_json::from_slice(value)
        .map_err(|e| ClusterError::Record { key: key.into(), problem: e.to_string() })
}

/// A record (or any JSON value) as a key's bytes.
pub(crate) fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialise")
}

impl Cluster {
    /// Makes a new pool in the etcd at `etcd` with this host (`host.name`) as its first member,
    /// and starts keeping the host alive in it. Refused if that etcd already holds a vine pool.
    /// Returns the configuration to save in the data directory.
    pub fn init(
        etcd: &[String],
        tls: Option<EtcdTls>,
        host: HostRecord,
    ) -> Result<(Cluster, ClusterConfig), ClusterError> {
        config::check_name(&host.name)?;
        let etcd = config::check_endpoints(etcd)?;
        let rt = runtime()?;
        let endpoints = etcd.join(",");
        let mut client = rt.block_on(timed!(
            &endpoints,
            "connecting",
            Client::connect(&etcd, Some(options(tls.as_ref())?)),
        ))?;
        let pool = PoolRecord {
            id: uuid::Uuid::new_v4().to_string(),
            created_ms: now_ms(),
            created_by: host.name.clone(),
        };
        let txn = Txn::new()
            .when([Compare::version(keys::POOL, CompareOp::Equal, 0)])
            .and_then([
                TxnOp::put(keys::POOL, json(&pool), None),
                TxnOp::put(keys::SECRET, crate::token::random_hex(32), None),
                TxnOp::put(keys::host(&host.name), json(&host), None),
            ])
            .or_else([TxnOp::get(keys::POOL, None)]);
        let resp = rt.block_on(timed!(&endpoints, "creating the pool", client.txn(txn.clone())))?;
        if !resp.succeeded() {
            let existing = resp
                .op_responses()
                .into_iter()
                .find_map(|r| match r {
                    etcd_client::TxnOpResponse::Get(g) => g.kvs().first().map(|kv| kv.value().to_vec()),
                    _ => None,
                })
                .and_then(|v| parse::<PoolRecord>(keys::POOL, &v).ok());
            let who = existing
                .map(|p| format!(" (pool {}, made by host '{}')", p.id, p.created_by))
                .unwrap_or_default();
            return Err(ClusterError::Conflict(format!(
                "the etcd at {endpoints} already holds a vine pool{who}: join it instead, with a token from one \
                 of its hosts (vine cluster token NEWHOST there, vine cluster join TOKEN here)"
            )));
        }
        let cfg = ClusterConfig { pool_id: pool.id, host: host.name.clone(), etcd, tls };
        let c = Cluster::with(rt, client, cfg.clone());
        c.spawn_membership(host);
        Ok((c, cfg))
    }

    /// Joins the pool a token from one of its hosts names, as the host the token admits, and
    /// starts keeping this host alive in it. The token is spent. Returns the configuration to
    /// save in the data directory.
    pub fn join(
        token: &JoinToken,
        tls: Option<EtcdTls>,
        host: HostRecord,
    ) -> Result<(Cluster, ClusterConfig), ClusterError> {
        if host.name != token.host {
            return Err(ClusterError::Invalid(format!(
                "this token admits a host named '{}', not '{}'",
                token.host, host.name
            )));
        }
        match (&token.etcd_ca_sha256, &tls) {
            (Some(_), None) => {
                return Err(ClusterError::Invalid(
                    "the pool's etcd uses TLS: give its CA certificate and this host's client certificate and key                      (--etcd-ca, --etcd-cert, --etcd-key)"
                        .into(),
                ))
            }
            (Some(want), Some(t)) => {
                let have = config::ca_fingerprint(&t.ca)?;
                if &have != want {
                    return Err(ClusterError::Invalid(format!(
                        "etcd CA {}: its certificate's SHA-256 is {have}, but the pool's etcd CA is {want}",
                        t.ca.display()
                    )));
                }
            }
            _ => {}
        }
        let rt = runtime()?;
        let endpoints = token.etcd.join(",");
        let mut client = rt.block_on(timed!(
            &endpoints,
            "connecting",
            Client::connect(&token.etcd, Some(options(tls.as_ref())?))
        ))?;
        let pool = rt.block_on(timed!(&endpoints, "reading the pool", client.get(keys::POOL, None)))?;
        let pool: PoolRecord = match pool.kvs().first() {
            Some(kv) => parse(keys::POOL, kv.value())?,
            None => {
                return Err(ClusterError::Conflict(format!("the etcd at {endpoints} holds no vine pool")))
            }
        };
        if pool.id != token.pool {
            return Err(ClusterError::Conflict(format!(
                "the etcd at {endpoints} holds pool {}, not the token's pool {}",
                pool.id, token.pool
            )));
        }
        let join_key = keys::join(&token.host);
        let host_key = keys::host(&host.name);
        let txn = Txn::new()
            .when([
                Compare::value(join_key.as_str(), CompareOp::Equal, token.secret_hash()),
                Compare::version(host_key.as_str(), CompareOp::Equal, 0),
            ])
            .and_then([
                TxnOp::delete(join_key.as_str(), None),
                TxnOp::put(host_key.as_str(), json(&host), None),
            ])
            .or_else([TxnOp::get(host_key.as_str(), None)]);
        let resp = rt.block_on(timed!(&endpoints, "joining the pool", client.txn(txn.clone())))?;
        if !resp.succeeded() {
            let taken = resp
                .op_responses()
                .into_iter()
                .any(|r| matches!(r, etcd_client::TxnOpResponse::Get(g) if !g.kvs().is_empty()));
            return Err(ClusterError::Conflict(if taken {
                format!("the pool already has a host named '{}'", host.name)
            } else {
                "the join token is spent, expired (tokens last an hour) or unknown: ask a member for a new one \
                 (vine cluster token NEWHOST)"
                    .to_string()
            }));
        }
        let cfg = ClusterConfig { pool_id: pool.id, host: host.name.clone(), etcd: token.etcd.clone(), tls };
        let c = Cluster::with(rt, client, cfg.clone());
        c.spawn_membership(host);
        Ok((c, cfg))
    }

    /// A join token admitting a new host named `host` (valid for an hour, once).
    pub fn issue_token(&self, host: &str) -> Result<JoinToken, ClusterError> {
        config::check_name(host)?;
        let mut token = JoinToken::new(&self.cfg.pool_id, host, &self.cfg.etcd);
        if let Some(t) = &self.cfg.tls {
            token.etcd_ca_sha256 = Some(config::ca_fingerprint(&t.ca)?);
        }
        let mut c = self.client.clone();
        let e = self.endpoints.clone();
        let (key, hash) = (keys::join(host), token.secret_hash());
        let host_key = keys::host(host);
        self.rt.block_on(async move {
            let lease = timed!(&e, "taking the token's lease", c.lease_grant(TOKEN_TTL_S, None)).await?;
            let txn = Txn::new()
                .when([Compare::version(host_key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.as_str(), hash, Some(PutOptions::new().with_lease(lease.id())))]);
            let r = timed!(&e, "writing the join token", c.txn(txn.clone())).await?;
            if r.succeeded() {
                Ok(())
            } else {
                Err(ClusterError::Conflict(format!("the pool already has a host named '{host}'")))
            }
        })?;
        Ok(token)
    }

    /// Takes this host out of the pool: its record and liveness key go; the caller removes the
    /// configuration file. Stops the membership task.
    pub fn leave(&self) -> Result<(), ClusterError> {
        let _ = self.stop.send(true);
        self.resign();
        let mut c = self.client.clone();
        let e = self.endpoints.clone();
        let (host_key, alive_key) = (keys::host(&self.cfg.host), keys::alive(&self.cfg.host));
        self.rt.block_on(async move {
            let txn = Txn::new()
                .and_then([TxnOp::delete(host_key.as_str(), None), TxnOp::delete(alive_key.as_str(), None)]);
            timed!(&e, "removing this host from the pool", c.txn(txn.clone())).await.map(|_| ())
        })
    }

    /// Rejoins the pool of `cfg` (at a daemon's start). Never fails for want of etcd: the host
    /// registers and keeps itself alive in the background, retrying until etcd answers;
    /// [`Cluster::last_error`] says what stands in the way meanwhile.
    pub fn start(cfg: ClusterConfig, host: HostRecord) -> Result<Cluster, ClusterError> {
        let rt = runtime()?;
        let endpoints = cfg.etcd.join(",");
        let opts = options(cfg.tls.as_ref())?;
        // The client connects lazily; a first failure shows in the membership task.
        let client = rt
            .block_on(async { Client::connect(&cfg.etcd, Some(opts)).await })
            .map_err(|source| ClusterError::Etcd { endpoints, what: "connecting".into(), source })?;
        let c = Cluster::with(rt, client, cfg);
        c.spawn_membership(host);
        Ok(c)
    }

    fn with(rt: tokio::runtime::Runtime, client: Client, cfg: ClusterConfig) -> Cluster {
        let (stop, _) = watch::channel(false);
        let c = Cluster {
            rt,
            client,
            endpoints: cfg.etcd.join(","),
            cfg,
            stop,
            last_error: Arc::new(Mutex::new(Some("not registered yet".into()))),
            secret: std::sync::OnceLock::new(),
            leadership: Arc::default(),
            fence: Arc::default(),
        };
        let (client, urls) = (c.client.clone(), c.cfg.etcd.clone());
        c.spawn(move |stop| steer(client, urls, stop));
        c
    }

    /// Sets the fence each answered renewal of the liveness lease moves (see [`crate::fence`]).
    pub fn set_fence(&self, fence: Arc<crate::Fence>) {
        let mut slot = self.fence.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sent) = slot.last_sent {
            fence.renewed(sent);
        }
        slot.fence = Some(fence);
    }

    /// This host's configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// The pool's secret, which hosts present to each other (read once, then kept).
    pub fn secret(&self) -> Result<String, ClusterError> {
        if let Some(s) = self.secret.get() {
            return Ok(s.clone());
        }
        let mut c = self.client.clone();
        let e = self.endpoints.clone();
        let s = self.rt.block_on(async move {
            let r = timed!(&e, "reading the pool's secret", c.get(keys::SECRET, None)).await?;
            r.kvs()
                .first()
                .map(|kv| String::from_utf8_lossy(kv.value()).to_string())
                .filter(|s| s.len() >= 32)
                .ok_or_else(|| ClusterError::Record {
                    key: keys::SECRET.into(),
                    problem: "missing or too short".into(),
                })
        })?;
        Ok(self.secret.get_or_init(|| s).clone())
    }

    /// The record of host `name`.
    pub fn host(&self, name: &str) -> Result<Option<HostRecord>, ClusterError> {
        let mut c = self.client.clone();
        let e = self.endpoints.clone();
        let key = keys::host(name);
        self.rt.block_on(async move {
            let r = timed!(&e, &format!("reading host '{name}'"), c.get(key.as_str(), None)).await?;
            r.kvs().first().map(|kv| parse(&key, kv.value())).transpose()
        })
    }

    /// Puts host `name` in maintenance (it keeps its VMs and gets no new ones) or takes it out.
    pub fn set_maintenance(&self, name: &str, on: bool) -> Result<HostRecord, ClusterError> {
        self.update_host(name, |rec| rec.maintenance = on)
    }

    /// Puts host `name` in standby (emptied to save power: it takes no VMs and counts as
    /// powered off) or wakes it.
    pub fn set_standby(&self, name: &str, on: bool) -> Result<HostRecord, ClusterError> {
        self.update_host(name, |rec| rec.standby = on)
    }

    /// Changes host `name`'s record with `change`. The record changes only if nobody changed
    /// it meanwhile (compare-and-swap on its revision).
    fn update_host(&self, name: &str, change: impl Fn(&mut HostRecord)) -> Result<HostRecord, ClusterError> {
        let mut c = self.client.clone();
        let e = self.endpoints.clone();
        let key = keys::host(name);
        self.rt.block_on(async move {
            for _ in 0..5 {
                let r = timed!(&e, &format!("reading host '{name}'"), c.get(key.as_str(), None)).await?;
                let Some(kv) = r.kvs().first() else {
                    return Err(ClusterError::Invalid(format!("no host named '{name}' in the pool")));
                };
                let mut rec: HostRecord = parse(&key, kv.value())?;
                change(&mut rec);
                let txn = Txn::new()
                    .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, kv.mod_revision())])
                    .and_then([TxnOp::put(key.as_str(), json(&rec), None)]);
                if timed!(&e, &format!("writing host '{name}'"), c.txn(txn.clone())).await?.succeeded() {
                    return Ok(rec);
                }
            }
            Err(ClusterError::Conflict(format!(
                "host '{name}' changed five times while being updated; try again"
            )))
        })
    }

    /// A handle on the etcd client (cheap: clients share one connection).
    pub(crate) fn client(&self) -> Client {
        self.client.clone()
    }

    /// The endpoints, as errors name them.
    pub(crate) fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// Starts a background task on the crate's runtime; it is handed a receiver that changes
    /// when the connection stops, and must end then.
    pub(crate) fn spawn<F, Fut>(&self, task: F)
    where
        F: FnOnce(watch::Receiver<bool>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.rt.spawn(task(self.stop.subscribe()));
    }

    /// Runs a future on the crate's runtime, blocking the calling thread.
    pub(crate) fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Waits (at most [`REQUEST_TIMEOUT`]) until this host is registered and alive in the pool,
    /// so a host that has just made or joined a pool is listed online at once.
    pub fn wait_registered(&self) -> Result<(), ClusterError> {
        let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
        loop {
            match self.last_error() {
                None => return Ok(()),
                Some(e) if std::time::Instant::now() >= deadline => {
                    return Err(ClusterError::Timeout {
                        endpoints: self.endpoints.clone(),
                        what: format!("registering this host ({e})"),
                        secs: REQUEST_TIMEOUT.as_secs(),
                    })
                }
                Some(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Why this host is not (yet) registered and alive in the pool, if it is not.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Registers the host (keeping what the pool knows of it: when it joined, maintenance) and
    /// keeps its liveness key alive, starting over after any failure, until stopped; starts its
    /// campaign for coordinator.
    fn spawn_membership(&self, host: HostRecord) {
        self.spawn_campaign();
        let mut client = self.client.clone();
        let endpoints = self.endpoints.clone();
        let pool_id = self.cfg.pool_id.clone();
        let last_error = self.last_error.clone();
        let fence = self.fence.clone();
        let mut stop = self.stop.subscribe();
        self.rt.spawn(async move {
            loop {
                let result = tokio::select! {
                    r = membership(&mut client, &endpoints, &pool_id, &host, &last_error, &fence) => r,
                    _ = stop.changed() => return,
                };
                if let Err(e) = result {
                    let text = e.to_string();
                    let mut last = last_error.lock().unwrap_or_else(|p| p.into_inner());
                    if last.as_deref() != Some(&text) {
                        tracing::warn!("pool membership of '{}': {text}; retrying", host.name);
                    }
                    *last = Some(text);
                }
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = stop.changed() => return,
                }
            }
        });
    }

    /// Every host of the pool with its state, by name.
    pub fn hosts(&self) -> Result<Vec<HostStatus>, ClusterError> {
        let mut c = self.client.clone();
        let e = &self.endpoints;
        self.rt.block_on(async move {
            // Records, liveness and loads read at one revision, in one round trip.
            let txn = Txn::new().and_then([
                TxnOp::get(keys::HOSTS, Some(GetOptions::new().with_prefix())),
                TxnOp::get(keys::ALIVE, Some(GetOptions::new().with_prefix().with_keys_only())),
                TxnOp::get(keys::LOAD, Some(GetOptions::new().with_prefix())),
            ]);
            let r = timed!(e, "listing hosts", c.txn(txn.clone())).await?;
            let mut gets = r.op_responses().into_iter().filter_map(|op| match op {
                etcd_client::TxnOpResponse::Get(g) => Some(g),
                _ => None,
            });
            let (Some(recs), Some(alive), Some(loads)) = (gets.next(), gets.next(), gets.next()) else {
                return Err(ClusterError::Record {
                    key: keys::HOSTS.into(),
                    problem: "an incomplete answer".into(),
                });
            };
            let alive: Vec<&[u8]> = alive.kvs().iter().map(|kv| kv.key()).collect();
            let mut out = Vec::new();
            for kv in recs.kvs() {
                let key = String::from_utf8_lossy(kv.key()).to_string();
                let rec: HostRecord = parse(&key, kv.value())?;
                let is_alive = alive.contains(&keys::alive(&rec.name).as_bytes());
                let load_key = keys::load(&rec.name);
                let load = loads
                    .kvs()
                    .iter()
                    .find(|kv| kv.key() == load_key.as_bytes())
                    .and_then(|kv| parse::<HostLoad>(&load_key, kv.value()).ok());
                out.push(HostStatus { load, ..HostStatus::of(rec, is_alive) });
            }
            Ok(out)
        })
    }

    /// Publishes what this host uses of itself.
    pub fn publish_load(&self, load: &HostLoad) -> Result<(), ClusterError> {
        let mut c = self.client.clone();
        let e = self.endpoints.clone();
        let key = keys::load(&self.cfg.host);
        let value = json(load);
        self.rt.block_on(async move {
            timed!(&e, "publishing this host's load", c.put(key.as_str(), value.clone(), None)).await?;
            Ok(())
        })
    }

    /// The pool as this host sees it.
    pub fn show(&self) -> Result<PoolInfo, ClusterError> {
        let mut c = self.client.clone();
        let e = self.endpoints.clone();
        let (pool, members, coordinator) = self.rt.block_on(async {
            let pool = timed!(&e, "reading the pool", c.get(keys::POOL, None)).await?;
            let pool = match pool.kvs().first() {
                Some(kv) => parse::<PoolRecord>(keys::POOL, kv.value())?,
                None => {
                    return Err(ClusterError::Conflict(format!(
                        "the etcd at {e} holds no vine pool (was it wiped?)"
                    )))
                }
            };
            let coordinator =
                timed!(&e, "reading the coordinator", c.get(crate::coordinator::COORDINATOR, None))
                    .await?
                    .kvs()
                    .first()
                    .map(|kv| String::from_utf8_lossy(kv.value()).to_string());
            let members = timed!(&e, "listing etcd's members", c.member_list()).await?;
            let members = members
                .members()
                .iter()
                .map(|m| EtcdMember { name: m.name().to_string(), client_urls: m.client_urls().to_vec() })
                .collect();
            Ok::<_, ClusterError>((pool, members, coordinator))
        })?;
        Ok(PoolInfo {
            pool,
            this_host: self.cfg.host.clone(),
            etcd: self.cfg.etcd.clone(),
            etcd_members: members,
            hosts: self.hosts()?,
            coordinator,
        })
    }

    /// Stops keeping this host alive and drops its liveness key at once (the host shows
    /// offline); its record stays.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        self.resign();
        let mut c = self.client.clone();
        let key = keys::alive(&self.cfg.host);
        let e = self.endpoints.clone();
        let _ = self
            .rt
            .block_on(async move { timed!(&e, "dropping liveness", c.delete(key.as_str(), None)).await });
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// One round of membership: check the pool, write the host's record, take a lease, hold the
/// liveness key under it and refresh it every [`KEEPALIVE`] until something fails.
async fn membership(
    c: &mut Client,
    e: &str,
    pool_id: &str,
    host: &HostRecord,
    last_error: &Mutex<Option<String>>,
    fence: &Mutex<FenceSlot>,
) -> Result<(), ClusterError> {
    let renewed = |sent: u64| {
        let f = {
            let mut slot = fence.lock().unwrap_or_else(|p| p.into_inner());
            slot.last_sent = Some(sent);
            slot.fence.clone()
        };
        if let Some(f) = f {
            f.renewed(sent);
        }
    };
    let pool = timed!(e, "reading the pool", c.get(keys::POOL, None)).await?;
    match pool.kvs().first() {
        Some(kv) => {
            let p: PoolRecord = parse(keys::POOL, kv.value())?;
            if p.id != pool_id {
                return Err(ClusterError::Conflict(format!(
                    "the etcd at {e} holds pool {}, not this host's pool {pool_id}",
                    p.id
                )));
            }
        }
        None => {
            return Err(ClusterError::Conflict(format!("the etcd at {e} holds no vine pool (was it wiped?)")))
        }
    }
    let key = keys::host(&host.name);
    let mut rec = host.clone();
    let old = timed!(e, "reading this host's record", c.get(key.as_str(), None)).await?;
    if let Some(kv) = old.kvs().first() {
        let old: HostRecord = parse(&key, kv.value())?;
        rec.joined_ms = old.joined_ms;
        rec.maintenance = old.maintenance;
        rec.standby = old.standby;
    }
    timed!(e, "writing this host's record", c.put(key.as_str(), json(&rec), None)).await?;
    let sent = crate::fence::monotonic_ms();
    let lease = timed!(e, "taking a liveness lease", c.lease_grant(LEASE_TTL_S, None)).await?;
    timed!(
        e,
        "writing the liveness key",
        c.put(keys::alive(&host.name), Vec::new(), Some(PutOptions::new().with_lease(lease.id()))),
    )
    .await?;
    let (mut keeper, mut answers) =
        timed!(e, "keeping the lease alive", c.lease_keep_alive(lease.id())).await?;
    renewed(sent);
    *last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    tracing::info!("host '{}' is registered and alive in pool {pool_id}", host.name);
    loop {
        tokio::time::sleep(KEEPALIVE).await;
        let sent = crate::fence::monotonic_ms();
        timed!(e, "refreshing the liveness lease", keeper.keep_alive()).await?;
        match timed!(e, "refreshing the liveness lease", answers.message()).await? {
            Some(a) if a.ttl() > 0 => renewed(sent),
            _ => {
                return Err(ClusterError::Conflict(format!(
                    "the liveness lease of '{}' expired (etcd was out of reach for over {LEASE_TTL_S} s)",
                    host.name
                )))
            }
        }
    }
}
