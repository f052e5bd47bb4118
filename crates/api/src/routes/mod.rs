//! The REST endpoints. Every handler names the right it needs first ([`Need`]); the OpenAPI
//! document ([`ApiDoc`]) is generated from the same annotations, so an endpoint cannot exist
//! undocumented (the rights-matrix test walks the document).

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Path, Query, State};
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use daemon::protocol::{Changes, ControlOptions, Failure, Request, VmInfo};
use daemon::Daemon;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store::{AclEntry, HookRecord, Store, UserRecord};
use utoipa::{IntoParams, OpenApi, ToSchema};
use vmconfig::{Bus, Disk, KernelBoot, VmDefinition};
use vmm::Control;

use crate::auth::{self, Principal};
use crate::Peer;

pub mod confine;
mod hosts;
mod moves;
mod networks;
mod policy;
mod pools;
mod redfish;
mod session;
mod templates;
mod users;

pub use networks::Reservation;
use session::{check_login, check_password, peer_addr, right_of};
pub use session::{Issued, Login, Me, NewPassword, Right, RightKind};
pub use users::{Hook, NewHook, NewToken, NewUser, TokenInfo, UserInfo};

/// What every handler reaches.
#[derive(Clone)]
pub struct AppState {
    /// The host daemon.
    pub daemon: Arc<Daemon>,
    /// Its store (users, tokens, rights, hooks, events).
    pub store: Arc<dyn Store>,
    /// Failed logins, per user and address.
    pub throttle: Arc<std::sync::Mutex<crate::throttle::Throttle>>,
    /// The password hashing threads.
    pub hasher: crate::hasher::Hasher,
    /// Principals of tokens checked lately (kept only while users, tokens and rights are
    /// unchanged).
    pub principals: Arc<auth::PrincipalCache>,
}

impl AppState {
    /// The state of a daemon's API; password checks use at most `login_cpu` of one core over
    /// time (0 < share ≤ 1). Computes the stand-in password hash now, so the first login of an
    /// unknown user costs no more than any other.
    pub fn new(daemon: Arc<Daemon>, store: Arc<dyn Store>, login_cpu: f64) -> AppState {
        auth::warm_up();
        let hasher = crate::hasher::Hasher::start(crate::hasher::Hasher::default_threads(), login_cpu);
        daemon.set_peers(std::sync::Arc::new(moves::HostPeers::new(&daemon)));
        AppState { daemon, store, throttle: Default::default(), hasher, principals: Default::default() }
    }
}

/// Runs blocking work (SQLite, password hashing, fsync) on the blocking pool, never on the async
/// workers that serve every other connection.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> ApiResult<T> + Send + 'static,
) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("worker failed: {e}")))?
}

/// Runs `f` with the store on the blocking pool (SQLite never runs on the async workers).
pub(crate) async fn db<T: Send + 'static, E: Into<ApiError>>(
    state: &AppState,
    f: impl FnOnce(&dyn Store) -> Result<T, E> + Send + 'static,
) -> ApiResult<T> {
    let store = state.store.clone();
    blocking(move || f(store.as_ref()).map_err(Into::into)).await
}

/// An error answer: status and `{"error": "…"}` (and `Retry-After` when the caller must wait).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    retry_after_s: Option<u64>,
}

/// The body of every error answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for operators.
    pub error: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after_s: None }
    }
    /// Its HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// Seconds the caller must wait before trying again (a throttled login).
    pub fn retry_after_s(&self) -> Option<u64> {
        self.retry_after_s
    }
    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(ErrorBody { error: self.message })).into_response();
        if let Some(s) = self.retry_after_s {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, s.into());
        }
        r
    }
}

impl From<Failure> for ApiError {
    fn from(f: Failure) -> ApiError {
        let status = match f {
            Failure::NotFound(_) => StatusCode::NOT_FOUND,
            Failure::Refused(_) => StatusCode::CONFLICT,
            Failure::Invalid(_) => StatusCode::BAD_REQUEST,
            Failure::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Failure::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Failure::Elsewhere { .. } => StatusCode::MISDIRECTED_REQUEST,
        };
        ApiError::new(status, f.to_string())
    }
}

impl From<store::StoreError> for ApiError {
    fn from(e: store::StoreError) -> ApiError {
        let status = match e {
            store::StoreError::Duplicate { .. } | store::StoreError::Exists(_) => StatusCode::CONFLICT,
            store::StoreError::Missing { .. } | store::StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            store::StoreError::Pool(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// A JSON body whose rejections answer like every other error (`{"error": …}`).
pub struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        // serde reads a struct from a JSON array too (`[null, null]` as its fields in order):
        // every body here is an object, so anything else is refused before it is read.
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, BODY_LIMIT)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("reading the body: {e}")))?;
        if !object_text(&bytes) {
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "the body must be a JSON object"));
        }
        let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(r) => Err(ApiError::new(r.status(), r.body_text())),
        }
    }
}

/// Whether a body may be read as an object: not a JSON array, which serde would take as a
/// struct's fields in order. Anything else that is not an object the JSON reader refuses itself
/// (a syntax error, or the wrong type).
fn object_text(bytes: &[u8]) -> bool {
    bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[')
}

/// Path parameters whose rejections answer `{"error": …}` with 400.
pub struct P<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for P<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(P(v)),
            Err(r) => Err(ApiError::new(StatusCode::BAD_REQUEST, r.body_text())),
        }
    }
}

/// Query parameters whose rejections answer `{"error": …}` with 400.
pub struct Q<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Q(v)),
            Err(r) => Err(ApiError::new(StatusCode::BAD_REQUEST, r.body_text())),
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(Peer::Local { uid: 0 }) = parts.extensions.get::<Peer>() {
            return Ok(Principal {
                user: "root".into(),
                admin: true,
                can_create: true,
                token: None,
                rights: Vec::new(),
                pool_peer: false,
            });
        }
        let bearer = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let cookie = parts.headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|c| {
            c.split(';')
                .find_map(|kv| kv.trim().strip_prefix(&format!("{}=", auth::COOKIE)).map(str::to_string))
        });
        if bearer.is_none() && cookie.is_none() {
            return Err(not_logged_in());
        }
        if let Some(secret) = bearer.as_deref().and_then(|b| b.strip_prefix(auth::POOL_TOKEN_PREFIX)) {
            // Another host of the pool (its secret is read from etcd once, on the blocking pool).
            let (d, secret) = (state.daemon.clone(), secret.to_string());
            let ours = blocking(move || Ok(d.pool_secret())).await?;
            if ours.is_some_and(|o| auth::equal(&o, &secret)) {
                return Ok(Principal {
                    user: auth::POOL_PEER.into(),
                    admin: true,
                    can_create: true,
                    token: None,
                    rights: Vec::new(),
                    pool_peer: true,
                });
            }
            return Err(not_logged_in());
        }
        // A token checked lately, with users, tokens and rights unchanged since: no store read.
        let kept = state.store.auth_generation().and_then(|now| match (&bearer, &cookie) {
            (Some(b), _) => state.principals.get(now, b).map(|p| (p, false)),
            (None, Some(c)) => state.principals.get(now, c).map(|p| (p, true)),
            (None, None) => None,
        });
        let (by_bearer, by_cookie) = match kept {
            Some((p, false)) => (Some(p), None),
            Some((p, true)) => (None, Some(p)),
            None => {
                // Two SQLite reads (token, user): on the blocking pool, not on the async workers.
                let (store, principals) = (state.store.clone(), state.principals.clone());
                blocking(move || {
                    // Read before the token: a write after this makes what is kept below stale.
                    let generation = store.auth_generation();
                    let check = |presented: &str| {
                        let (p, until) = auth::check_token_until(store.as_ref(), presented)?;
                        if let Some(g) = generation {
                            principals.put(g, presented, &p, until);
                        }
                        Some(p)
                    };
                    let by_bearer = bearer.as_deref().and_then(check);
                    let by_cookie = match by_bearer {
                        Some(_) => None,
                        None => cookie.as_deref().and_then(check),
                    };
                    Ok((by_bearer, by_cookie))
                })
                .await?
            }
        };
        if let Some(p) = by_bearer {
            return Ok(p);
        }
        if let Some(p) = by_cookie {
            // A browser sends the cookie with any request to this site, whoever's page made it.
            if !parts.method.is_safe() && !same_origin(&parts.headers) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "cross-site request refused: a change made with the session cookie must come from this \
                     site's own pages (its Origin or Referer header must be this host)",
                ));
            }
            return Ok(p);
        }
        Err(not_logged_in())
    }
}

fn not_logged_in() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "not logged in: log in (POST /api/login) or send an API token (Authorization: Bearer …)",
    )
}

/// Whether a request's `Origin` (or, without one, `Referer`) is this host over HTTPS: the CSRF
/// defence of requests authenticated by the session cookie, besides its `SameSite=Strict`.
fn same_origin(headers: &axum::http::HeaderMap) -> bool {
    let Some(host) = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let ours = format!("https://{host}");
    if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
        return origin.to_str().is_ok_and(|o| o == ours);
    }
    headers
        .get(axum::http::header::REFERER)
        .and_then(|r| r.to_str().ok())
        .is_some_and(|r| r == ours || r.strip_prefix(&ours).is_some_and(|rest| rest.starts_with('/')))
}

/// The right an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need<'a> {
    /// Any logged-in user.
    Login,
    /// An administrator.
    Admin,
    /// May create VMs.
    Create,
    /// May configure this VM.
    Configure(&'a str),
    /// May use this VM (console, power).
    Use(&'a str),
    /// May configure or use this VM.
    See(&'a str),
    /// May use this storage pool (allocate and attach its volumes).
    UsePool(&'a str),
    /// May attach NICs to this network.
    UseNetwork(&'a str),
}

fn has_right(p: &Principal, vm: &str, right: &str) -> bool {
    p.admin || p.rights.iter().any(|e| e.vm == vm && e.right == right)
}

pub(crate) fn need(p: &Principal, n: Need) -> ApiResult<()> {
    let ok = match n {
        Need::Login => true,
        Need::Admin => p.admin,
        Need::Create => p.admin || p.can_create,
        Need::Configure(vm) => has_right(p, vm, "configure"),
        Need::Use(vm) => has_right(p, vm, "use"),
        Need::See(vm) => has_right(p, vm, "configure") || has_right(p, vm, "use"),
        Need::UsePool(pool) => confine::may_use_pool(p, pool),
        Need::UseNetwork(net) => confine::may_use_network(p, net),
    };
    if ok {
        return Ok(());
    }
    let what = match n {
        Need::Login => unreachable!("always allowed"),
        Need::Admin => "be an administrator".to_string(),
        Need::Create => "create VMs".to_string(),
        Need::Configure(vm) => format!("configure '{vm}'"),
        Need::Use(vm) => format!("use '{vm}'"),
        Need::See(vm) => format!("see '{vm}'"),
        Need::UsePool(pool) => format!("use storage pool '{pool}'"),
        Need::UseNetwork(net) => format!("use network '{net}'"),
    };
    Err(ApiError::new(StatusCode::FORBIDDEN, format!("user '{}' may not {what}", p.user)))
}

async fn call(state: &AppState, req: Request) -> ApiResult<Value> {
    if let Some(r) = state.daemon.answer_now(&req) {
        return r.map_err(ApiError::from);
    }
    let d = state.daemon.clone();
    tokio::task::spawn_blocking(move || match d.call(req.clone()) {
        // Another host of the pool owns the VM: the request goes there, with the pool's secret
        // (the caller's rights were checked here).
        Err(Failure::Elsewhere { vm, host }) => hosts::forward(&d, &vm, &host, &req),
        r => r.map_err(ApiError::from),
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("worker failed: {e}")))?
}

/// [`call`], its result read as `T` (the daemon's answer types).
pub(crate) async fn call_typed<T: serde::de::DeserializeOwned>(
    state: &AppState,
    req: Request,
) -> ApiResult<T> {
    serde_json::from_value(call(state, req).await?)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("the daemon's answer: {e}")))
}

// ----- host -----

/// Host facts (CPUs, memory, accelerator and why, cgroups) and what VMs hold.
#[utoipa::path(get, path = "/api/host", tag = "host", responses((status = 200, body = Object), (status = 401, body = ErrorBody)))]
async fn host(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Value>> {
    need(&p, Need::Login)?;
    Ok(Json(call(&state, Request::HostInfo).await?))
}

// ----- VMs -----

/// A disk of a new VM.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDisk {
    /// Absolute path of a VHD (or ISO for a CD/DVD).
    pub path: String,
    /// `virtio` (default), `ide` or `scsi`.
    #[serde(default)]
    pub bus: Option<String>,
    /// A CD/DVD.
    #[serde(default)]
    pub cdrom: bool,
    /// Shared with another VM (clustering).
    #[serde(default)]
    pub shared: bool,
    /// Read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// A NIC of a new VM.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNic {
    /// The network.
    pub network: String,
    /// Its MAC (allocated by vine when absent).
    #[serde(default)]
    pub mac: Option<String>,
}

/// A new VM.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVm {
    /// Name.
    pub name: String,
    /// `vm` (the default) or `container`.
    #[serde(default)]
    pub kind: vmconfig::Kind,
    /// A container's image: a root file system tarball volume `POOL/NAME` (its root is
    /// unpacked from it).
    #[serde(default)]
    pub image: Option<String>,
    /// vCPUs (default 1).
    #[serde(default)]
    pub cpus: Option<u32>,
    /// Memory in bytes (default with a template: the template's).
    #[serde(default)]
    pub memory: Option<u64>,
    /// Made from this template: its settings, and a linked clone of each of its base disks
    /// (the fields given here replace the template's; `disks` are added after its bases, `nics`
    /// replace its NICs).
    #[serde(default)]
    pub template: Option<String>,
    /// With `template`: full copies of its bases instead of linked clones.
    #[serde(default)]
    pub full: bool,
    /// Make this many VMs at once, named NAME-1 … NAME-COUNT (all or none is made).
    #[serde(default)]
    pub count: Option<u32>,
    /// Start the new VM(s) once made.
    #[serde(default)]
    pub start: bool,
    /// First-boot configuration by cloud-init (a NoCloud seed is attached at each start).
    #[serde(default)]
    pub cloud_init: Option<vmconfig::CloudInit>,
    /// Disks and CD/DVDs.
    #[serde(default)]
    pub disks: Vec<NewDisk>,
    /// Kernel for direct boot (absolute path).
    #[serde(default)]
    pub kernel: Option<String>,
    /// Its initrd.
    #[serde(default)]
    pub initrd: Option<String>,
    /// Its command line.
    #[serde(default)]
    pub append: Option<String>,
    /// The device of vine's console in the guest: `uart` (default, Linux `ttyS0`) or `virtio`
    /// (Linux `hvc0`).
    #[serde(default)]
    pub console: Option<vmconfig::ConsoleDevice>,
    /// Undo disks.
    #[serde(default)]
    pub undo_disks: bool,
    /// CPU weight 1–10000.
    #[serde(default)]
    pub cpu_weight: Option<u32>,
    /// CPU reservation, % of one host CPU.
    #[serde(default)]
    pub cpu_reserve: Option<u32>,
    /// CPU cap, % of one host CPU.
    #[serde(default)]
    pub cpu_max: Option<u32>,
    /// Seconds an ACPI shutdown may take.
    #[serde(default)]
    pub shutdown_timeout: Option<u32>,
    /// When the host stops: `keep` (default), `save`, `shutdown`, `off`.
    #[serde(default)]
    pub on_host_stop: Option<String>,
    /// When the daemon starts: `nothing` (default), `start`.
    #[serde(default)]
    pub on_host_start: Option<String>,
    /// NICs.
    #[serde(default)]
    pub nics: Vec<NewNic>,
    /// In a pool: the host to make it on (default: the host with the most memory free after it).
    #[serde(default)]
    pub host: Option<String>,
    /// Anti-affinity group: in a pool, no two of its VMs share a host.
    #[serde(default)]
    pub group: Option<String>,
}

/// The definition of VM `n` (named `name`) over `base`: a template's settings, or none.
fn definition_of(n: &NewVm, name: &str, base: Option<VmDefinition>) -> ApiResult<VmDefinition> {
    let mut d = match base {
        Some(mut t) => {
            if let Some(c) = n.cpus {
                t.cpus = c;
            }
            if let Some(m) = n.memory {
                t.memory = m;
            }
            if !n.nics.is_empty() {
                t.nics.clear();
            }
            t
        }
        None if n.kind == vmconfig::Kind::Container => {
            let memory =
                n.memory.ok_or_else(|| ApiError::bad("memory: missing (a container's memory limit)"))?;
            let image = n
                .image
                .as_deref()
                .ok_or_else(|| ApiError::bad("image: missing (a container's image, POOL/NAME)"))?;
            // The daemon gives it its own id slot and the halt signal its init wants.
            let c = vmconfig::Container::new(image, lxc_slot_placeholder(), "SIGPWR");
            VmDefinition::new_container(name, n.cpus.unwrap_or(1), memory, c)
        }
        None => {
            let memory =
                n.memory.ok_or_else(|| ApiError::bad("memory: missing (it is needed without a template)"))?;
            VmDefinition::new(name, n.cpus.unwrap_or(1), memory)
        }
    };
    if n.kind == vmconfig::Kind::Container && d.kind != vmconfig::Kind::Container {
        return Err(ApiError::bad("template: a template makes VMs; a container is made from an image"));
    }
    if n.image.is_some() && n.kind != vmconfig::Kind::Container {
        return Err(ApiError::bad("image: a VM has no image; give kind \"container\""));
    }
    d.group = n.group.clone().or(d.group);
    for (i, x) in n.disks.iter().enumerate() {
        let bus = match x.bus.as_deref() {
            None | Some("virtio") => Bus::Virtio,
            Some("ide") => Bus::Ide,
            Some("scsi") => Bus::Scsi,
            Some(other) => {
                return Err(ApiError::bad(format!("disks[{i}].bus: {other:?} is not virtio, ide or scsi")))
            }
        };
        d.disks.push(Disk {
            path: x.path.clone(),
            bus,
            cdrom: x.cdrom,
            shared: x.shared,
            read_only: x.read_only,
        });
    }
    if let Some(k) = &n.kernel {
        d.kernel = Some(KernelBoot {
            kernel: k.clone(),
            initrd: n.initrd.clone(),
            append: n.append.clone().unwrap_or_default(),
        });
    } else if n.initrd.is_some() || n.append.is_some() {
        return Err(ApiError::bad("initrd and append need kernel"));
    }
    for x in &n.nics {
        d.nics.push(vmconfig::Nic { network: x.network.clone(), mac: x.mac.clone() });
    }
    if let Some(c) = n.console {
        d.console = c;
    }
    d.undo_disks |= n.undo_disks;
    if let Some(c) = &n.cloud_init {
        d.cloud_init = Some(c.clone());
    }
    if let Some(w) = n.cpu_weight {
        d.cpu.weight = w;
    }
    if let Some(r) = n.cpu_reserve {
        d.cpu.reserve = r;
    }
    if n.cpu_max.is_some() {
        d.cpu.max = n.cpu_max;
    }
    if let Some(t) = n.shutdown_timeout {
        d.shutdown_timeout = t;
    }
    if let Some(a) = &n.on_host_stop {
        d.host.on_stop = serde_json::from_value(Value::String(a.clone()))
            .map_err(|_| ApiError::bad(format!("on_host_stop: {a:?} is not keep, save, shutdown or off")))?;
    }
    if let Some(a) = &n.on_host_start {
        d.host.on_start = serde_json::from_value(Value::String(a.clone()))
            .map_err(|_| ApiError::bad(format!("on_host_start: {a:?} is not nothing or start")))?;
    }
    d.validate().map_err(|e| ApiError::bad(format!("definition: {e}")))?;
    Ok(d)
}

/// The id base a new container's definition carries until the daemon gives it a slot of its own.
fn lxc_slot_placeholder() -> u32 {
    vmconfig::CONTAINER_IDS
}

/// VMs the caller may see.
#[utoipa::path(get, path = "/api/vms", tag = "vms", responses((status = 200, body = [VmInfo]), (status = 401, body = ErrorBody)))]
async fn list_vms(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Vec<VmInfo>>> {
    need(&p, Need::Login)?;
    // The daemon's typed list (the pool's records read straight into views, no JSON between).
    let d = state.daemon.clone();
    let all: Vec<VmInfo> = blocking(move || d.list_vms().map_err(ApiError::from)).await?;
    Ok(Json(all.into_iter().filter(|v| need(&p, Need::See(&v.name)).is_ok()).collect()))
}

/// Most VMs one `POST /api/vms` makes (`count`).
pub const MAX_COUNT: u32 = 100;

/// Creates a VM (it starts off unless `start`), or `count` of them; from a template, each gets
/// linked clones of the template's bases. The creator may configure and use what is made.
/// With `count` the answer is a list, and a failure unmakes what the call made.
#[utoipa::path(post, path = "/api/vms", request_body = NewVm, tag = "vms",
    responses((status = 201, body = VmInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_vm(
    State(state): State<AppState>,
    p: Principal,
    Body(n): Body<NewVm>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    need(&p, Need::Create)?;
    if let Some(t) = &n.template {
        if !templates::may_use_template(&p, t) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("template: user '{}' may not use template '{t}'", p.user),
            ));
        }
    } else if n.full {
        return Err(ApiError::bad("full: a full copy is of a template's bases; give template"));
    }
    let names: Vec<String> = match n.count {
        None => vec![n.name.clone()],
        Some(c) if c == 0 || c > MAX_COUNT => {
            return Err(ApiError::bad(format!("count: must be 1 to {MAX_COUNT}, got {c}")))
        }
        Some(c) => (1..=c).map(|i| format!("{}-{i}", n.name)).collect(),
    };
    let mut answers = Vec::new();
    for name in &names {
        match create_one(&state, &p, &n, name).await {
            Ok(v) => answers.push(v),
            Err(e) => {
                // All or none: what this call made goes again.
                for made in &names[..answers.len()] {
                    let req = Request::VmControl {
                        name: made.clone(),
                        control: Control::Delete,
                        options: ControlOptions::default(),
                    };
                    if let Err(d) = call(&state, req).await {
                        tracing::warn!("unmaking '{made}' after a failed create: {}", d.message);
                    }
                }
                return Err(e);
            }
        }
    }
    if n.start {
        // The VMs start side by side (each VM has its own actor).
        let state = &state;
        let starts = names.iter().map(|name| async move {
            let req = Request::VmControl {
                name: name.clone(),
                control: Control::Start,
                options: ControlOptions::default(),
            };
            call(state, req).await.map_err(|e| {
                ApiError::new(e.status, format!("made '{name}', but it did not start: {}", e.message))
            })?;
            call(state, Request::VmShow { name: name.clone() }).await
        });
        for (answer, shown) in answers.iter_mut().zip(futures_util::future::join_all(starts).await) {
            *answer = shown?;
        }
    }
    let body = if n.count.is_some() { Value::Array(answers) } else { answers.pop().unwrap_or_default() };
    Ok((StatusCode::CREATED, Json(body)))
}

/// Makes VM `name` of request `n`.
async fn create_one(state: &AppState, p: &Principal, n: &NewVm, name: &str) -> ApiResult<Value> {
    let (base, bases) = match &n.template {
        Some(t) => {
            let (d, t, vm) = (state.daemon.clone(), t.clone(), name.to_string());
            let (def, bases) =
                blocking(move || d.template_definition(&t, &vm).map_err(ApiError::from)).await?;
            (Some(def), bases)
        }
        None => (None, Vec::new()),
    };
    let d = definition_of(n, name, base)?;
    // A template's bases are the template's to give (its right was checked); the rest of the
    // definition is confined as any other.
    let mut rest = d.clone();
    rest.disks.retain(|x| !bases.contains(&x.path));
    let (st, who) = (state.clone(), p.clone());
    blocking(move || confine::check_vm(&st, &who, &rest)).await?;
    let definition = d.to_toml().map_err(|e| ApiError::bad(format!("definition: {e}")))?;
    let template = n.template.clone().map(|name| daemon::templates::TemplateUse { name, full: n.full });
    let v = call(state, Request::VmCreate { definition, host: n.host.clone(), template }).await?;
    if !p.admin {
        let (user, vm) = (p.user.clone(), d.name.clone());
        db(state, move |s| {
            for right in ["configure", "use"] {
                s.grant(&AclEntry { user: user.clone(), vm: vm.clone(), right: right.into() })?;
            }
            Ok::<(), store::StoreError>(())
        })
        .await?;
    }
    Ok(v)
}

/// One VM.
#[utoipa::path(get, path = "/api/vms/{name}", tag = "vms", params(("name" = String, Path, description = "VM name")),
    responses((status = 200, body = VmInfo), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn show_vm(State(state): State<AppState>, p: Principal, P(name): P<String>) -> ApiResult<Json<Value>> {
    need(&p, Need::See(&name))?;
    Ok(Json(call(&state, Request::VmShow { name }).await?))
}

/// Changes CPU weight, reservation, cap or memory (CPU changes apply to a running VM at once).
#[utoipa::path(patch, path = "/api/vms/{name}", tag = "vms", request_body = Changes,
    params(("name" = String, Path, description = "VM name")),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn set_vm(
    State(state): State<AppState>,
    p: Principal,
    P(name): P<String>,
    Body(changes): Body<Changes>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Configure(&name))?;
    Ok(Json(call(&state, Request::VmSet { name, changes }).await?))
}

/// `DELETE /api/vms/{name}` options.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Keep the VM's files (unregister only: Virtual Server's "remove").
    #[serde(default)]
    pub keep_files: bool,
}

/// Deletes a VM with its files, or only unregisters it (`keep_files=true`).
#[utoipa::path(delete, path = "/api/vms/{name}", tag = "vms", params(("name" = String, Path, description = "VM name"), DeleteQuery),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn delete_vm(
    State(state): State<AppState>,
    p: Principal,
    P(name): P<String>,
    Q(q): Q<DeleteQuery>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Configure(&name))?;
    let control = if q.keep_files { Control::Remove } else { Control::Delete };
    let v =
        call(&state, Request::VmControl { name: name.clone(), control, options: ControlOptions::default() })
            .await?;
    db(&state, move |s| s.revoke_vm(&name)).await?;
    Ok(Json(v))
}

/// Applies a power or state control: start, pause, resume, save, restore, discard-state,
/// shutdown, off, reset.
#[utoipa::path(post, path = "/api/vms/{name}/actions/{action}", tag = "vms",
    params(("name" = String, Path, description = "VM name"), ("action" = Control, Path, description = "The control")),
    request_body(content = Option<ControlOptions>, description = "Options of shutdown and off"),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 500, body = ErrorBody)))]
async fn control_vm(
    State(state): State<AppState>,
    p: Principal,
    P((name, action)): P<(String, Control)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Use(&name))?;
    if matches!(action, Control::Remove | Control::Delete) {
        return Err(ApiError::bad(
            "remove and delete are DELETE /api/vms/{name} (they need the configure right)",
        ));
    }
    let options: ControlOptions = if body.iter().all(u8::is_ascii_whitespace) {
        ControlOptions::default()
    } else if !object_text(&body) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "options: the body must be a JSON object",
        ));
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::bad(format!("options: {e}")))?
    };
    Ok(Json(call(&state, Request::VmControl { name, control: action, options }).await?))
}

/// A page of what the VM's serial console wrote.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConsoleLog {
    /// The text (bytes that are not UTF-8 shown as U+FFFD).
    pub log: String,
    /// Where the page starts in the kept log (0 = its oldest byte).
    pub offset: u64,
    /// The page's length in bytes.
    pub length: u64,
    /// The kept log's length (at most 8 MiB: 2 MiB files, rotated, four kept).
    pub total: u64,
}

/// `GET /api/vms/{name}/console` paging.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsoleQuery {
    /// From this byte of the kept log (default: the last `limit` bytes).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub offset: Option<u64>,
    /// At most this many bytes (default 65536, at most 1048576).
    #[param(minimum = 1, maximum = 1_048_576)]
    pub limit: Option<u64>,
}

/// A page of the serial console's output: by default the latest 64 KiB; page through the kept
/// log with `offset` and `limit`.
#[utoipa::path(get, path = "/api/vms/{name}/console", tag = "vms", params(("name" = String, Path, description = "VM name"), ConsoleQuery),
    responses((status = 200, body = ConsoleLog), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn console(
    State(state): State<AppState>,
    p: Principal,
    P(name): P<String>,
    Q(q): Q<ConsoleQuery>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Use(&name))?;
    if q.offset.is_some_and(|o| o > i64::MAX as u64)
        || q.limit.is_some_and(|l| !(1..=conlog::MAX_PAGE).contains(&l))
    {
        return Err(ApiError::bad(format!(
            "offset must be 0 to {} and limit 1 to {}",
            i64::MAX,
            conlog::MAX_PAGE
        )));
    }
    Ok(Json(call(&state, Request::VmConsole { name, offset: q.offset, limit: q.limit }).await?))
}

// ----- events and metrics -----

/// The last millisecond of the year 9999: the latest time the API takes.
pub const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// `GET /api/events` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Only this VM.
    pub vm: Option<String>,
    /// Only after this event id.
    #[serde(default)]
    pub after: u64,
    /// At most this many (default 1000, at most 10000).
    pub limit: Option<usize>,
    /// Only events at or after this time (ms since the Unix epoch, at most the end of 9999).
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    pub since_ms: Option<i64>,
}

/// One logged event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// Position in the log.
    pub id: u64,
    /// ms since the epoch.
    pub time_ms: i64,
    /// The VM, if any.
    pub vm: Option<String>,
    /// The host it happened on (in a pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// info, warning, error.
    pub level: String,
    /// e.g. vm.start.
    pub kind: String,
    /// A sentence.
    pub message: String,
}

/// The event log: operator actions, state changes, warnings and errors, oldest first.
#[utoipa::path(get, path = "/api/events", tag = "events", params(EventQuery),
    responses((status = 200, body = [Event]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn events(
    State(state): State<AppState>,
    p: Principal,
    Q(q): Q<EventQuery>,
) -> ApiResult<Json<Vec<Event>>> {
    match &q.vm {
        Some(vm) => need(&p, Need::See(vm))?,
        None => need(&p, Need::Login)?,
    }
    // Event ids and counts are SQLite integers (at most 2^63 − 1), as the document says (int64).
    if q.after > i64::MAX as u64 || q.limit.is_some_and(|l| l as u64 > i64::MAX as u64) {
        return Err(ApiError::bad(format!("after and limit: must be 0 to {}", i64::MAX)));
    }
    if q.since_ms.is_some_and(|t| !(0..=MAX_TIME_MS).contains(&t)) {
        return Err(ApiError::bad(format!("since_ms: must be 0 to {MAX_TIME_MS} (ms since the Unix epoch)")));
    }
    let limit = q.limit.unwrap_or(1000).min(10_000);
    let v = call(&state, Request::Events { vm: q.vm.clone(), after: q.after, limit: Some(limit) }).await?;
    let all: Vec<Event> = serde_json::from_value(v)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // Without a VM filter, a non-administrator sees host events and the events of VMs they may see.
    Ok(Json(
        all.into_iter()
            .filter(|e| q.since_ms.is_none_or(|t| e.time_ms >= t))
            .filter(|e| e.vm.as_deref().is_none_or(|vm| need(&p, Need::See(vm)).is_ok()))
            .collect(),
    ))
}

/// Prometheus metrics for the host and every running VM.
#[utoipa::path(get, path = "/metrics", tag = "metrics",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn metrics(State(state): State<AppState>, p: Principal) -> ApiResult<Response> {
    need(&p, Need::Admin)?;
    let m = call(&state, Request::Metrics).await?;
    let list = call(&state, Request::VmList).await?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render(&m, &list))
        .into_response())
}

/// Live metrics as JSON: each running VM's CPU utilisation history (the policy engine's input).
#[utoipa::path(get, path = "/api/metrics/live", tag = "metrics",
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn live_metrics(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Value>> {
    need(&p, Need::Admin)?;
    Ok(Json(call(&state, Request::Metrics).await?))
}

// ----- the document -----

/// The OpenAPI document of every endpoint.
#[derive(OpenApi)]
#[openapi(
    info(title = "vine", description = "vine's management API: VMs, storage pools and volumes, networks, host, events, users and rights, event scripts, metrics, the pool and its policy engine."),
    paths(session::login, session::logout, session::me, session::my_password, host, list_vms, create_vm, show_vm, set_vm, delete_vm, control_vm, console, networks::add_nic, networks::remove_nic, networks::list_networks, networks::create_network, networks::show_network,
          networks::delete_network, networks::reserve, networks::leases,
          events, metrics, live_metrics, policy::dry_run, policy::show, policy::set, policy::vm, users::list_users, users::create_user, users::delete_user, users::user_password, users::list_tokens, users::create_token,
          users::delete_token, users::list_acl, users::grant, users::revoke, users::revoke_pool, users::revoke_network, users::revoke_template,
          templates::list_templates, templates::create_template, templates::show_template, templates::delete_template, users::list_hooks, users::create_hook, users::delete_hook, openapi,
          crate::console::serial_ws, crate::console::vnc_ws, crate::console::event_stream,
          pools::list_pools, pools::create_pool, pools::show_pool, pools::delete_pool, pools::list_volumes,
          pools::create_volume, pools::show_volume, pools::delete_volume, pools::upload, pools::download,
          hosts::init, hosts::show, hosts::list, hosts::host, hosts::token, hosts::join, hosts::leave, hosts::pool_call, hosts::maintenance, hosts::standby, hosts::evacuate, moves::move_vm, moves::incoming, moves::migrate_vm, moves::migration, moves::cancel_migration),
    components(schemas(ErrorBody, hosts::Evacuate, moves::MoveTo, moves::MigrateTo, daemon::actor::Progress, Login, Issued, Me, Right, RightKind, NewPassword, NewDisk, NewNic, NewVm, Reservation, VmInfo, daemon::protocol::NicInfo, daemon::protocol::DriveInfo,
                       daemon::protocol::CpuInfo, vmconfig::CloudInit, Changes, ControlOptions, daemon::protocol::UndoAction, Control,
                       vmm::VmState, ConsoleLog, Event, UserInfo, NewUser, TokenInfo, NewToken, Hook, NewHook,
                       pools::NewPool, pools::NewVolume, daemon::pools::PoolInfo, daemon::pools::VolumeInfo,
                       daemon::pools::VolumeFormat, daemon::templates::TemplateNew, daemon::templates::TemplateInfo, daemon::templates::BaseInfo, hosts::NewCluster, hosts::NewJoinToken, hosts::Join, hosts::Maintenance, hosts::Standby, daemon::protocol::PolicyChange, daemon::protocol::VmRulesChange, cluster::Mode, cluster::EtcdTls, cluster::HostStatus,
                       cluster::HostRecord, cluster::HostState)),
    modifiers(&Security),
    security(("token" = []), ("session" = []))
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        c.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(auth::COOKIE))),
        );
    }
}

/// The OpenAPI document: [`ApiDoc`] plus the answers every operation can give besides its own —
/// malformed parameters (400), and for operations with a body a malformed (400), too large (413),
/// untyped (415) or ill-shaped (422) one; all with the error body.
pub fn document() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{Ref, ResponseBuilder};
    let mut api = ApiDoc::openapi();
    let error = |text: &str| {
        ResponseBuilder::new()
            .description(text)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build()
    };
    for item in api.paths.paths.values_mut() {
        for op in [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete]
            .into_iter()
            .flatten()
        {
            let mut add = |code: &str, text: &str| {
                op.responses.responses.entry(code.to_string()).or_insert_with(|| error(text).into());
            };
            add("400", "Malformed request");
            if op.request_body.is_some() {
                add("413", "Body too large");
                add("415", "Body is not JSON");
                add("422", "Body does not have the expected fields");
            }
        }
    }
    api
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta", responses((status = 200, body = Object), (status = 401, body = ErrorBody)))]
async fn openapi(p: Principal) -> ApiResult<Json<utoipa::openapi::OpenApi>> {
    need(&p, Need::Login)?;
    Ok(Json(document()))
}

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 1 << 20;
/// Time for a request's body to arrive (an upload: for each piece of it).
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads every request body in full before routing, so no answer (401, 404, …) leaves unread
/// bytes behind that would make the server drop a keep-alive connection under the client's next
/// request. A body over the limit is answered 413 and the connection is closed. An answer that
/// took [`SLOW_ANSWER`] or more is logged (debug) with its time.
async fn read_body(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    if !tracing::enabled!(target: "vine_api::slow", tracing::Level::DEBUG) {
        return read_body_then(req, next).await;
    }
    let began = std::time::Instant::now();
    let queued_before = queued_on_this_thread();
    let what = (req.method().clone(), req.uri().clone());
    let answer = read_body_then(req, next).await;
    let took = began.elapsed();
    if took >= SLOW_ANSWER {
        // Time this thread was runnable but not running (meaningful when the request stayed on
        // one thread, as most do).
        let queued_ms = queued_before
            .zip(queued_on_this_thread())
            .filter(|((t0, _), (t1, _))| t0 == t1)
            .map(|((_, q0), (_, q1))| q1.saturating_sub(q0) as f64 / 1e6);
        tracing::debug!(
            target: "vine_api::slow",
            method = %what.0,
            path = what.1.path(),
            status = answer.status().as_u16(),
            ms = took.as_secs_f64() * 1e3,
            queued_ms,
            "answered slowly (from its head read to its answer made)"
        );
    }
    answer
}

/// This thread's id and the nanoseconds it has spent waiting for a CPU (Linux schedstat).
fn queued_on_this_thread() -> Option<(std::thread::ThreadId, u64)> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some((std::thread::current().id(), text.split_whitespace().nth(1)?.parse().ok()?))
}

/// An answer slower than this is logged at debug level under the target `vine_api::slow`.
const SLOW_ANSWER: std::time::Duration = std::time::Duration::from_millis(5);

async fn read_body_then(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    // A volume upload streams its body to disk (its handler reads it all, whatever it answers).
    if req.method() == axum::http::Method::PUT && req.uri().path().ends_with("/content") {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let Ok(read) = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, BODY_LIMIT)).await else {
        let mut r = ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("the body did not arrive within {} s", BODY_TIMEOUT.as_secs()),
        )
        .into_response();
        r.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        return r;
    };
    match read {
        Ok(bytes) => next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Err(_) => {
            let mut r = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {BODY_LIMIT} bytes"),
            )
            .into_response();
            r.headers_mut()
                .insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
            r
        }
    }
}

/// The router of every endpoint.
pub fn router(state: AppState) -> Router {
    redfish::mount(Router::new(), &state)
        .route("/api/login", post(session::login))
        .route("/api/logout", post(session::logout))
        .route("/api/me", get(session::me))
        .route("/api/me/password", put(session::my_password))
        .route("/api/openapi.json", get(openapi))
        .route("/api/host", get(host))
        .route("/api/vms", get(list_vms).post(create_vm))
        .route("/api/vms/{name}", get(show_vm).patch(set_vm).delete(delete_vm))
        .route("/api/vms/{name}/actions/{action}", post(control_vm))
        .route("/api/vms/{name}/console", get(console))
        .route("/api/vms/{name}/nics", post(networks::add_nic))
        .route("/api/vms/{name}/nics/{index}", delete(networks::remove_nic))
        .route("/api/networks", get(networks::list_networks).post(networks::create_network))
        .route("/api/networks/{net}", get(networks::show_network).delete(networks::delete_network))
        .route("/api/networks/{net}/reservations", post(networks::reserve))
        .route("/api/networks/{net}/leases", get(networks::leases))
        .route("/api/events", get(events))
        .route("/metrics", get(metrics))
        .route("/api/metrics/live", get(live_metrics))
        .route("/api/policy", get(policy::show).put(policy::set))
        .route("/api/policy/dry-run", post(policy::dry_run))
        .route("/api/policy/vms/{name}", put(policy::vm))
        .route("/api/users", get(users::list_users).post(users::create_user))
        .route("/api/users/{user}", delete(users::delete_user))
        .route("/api/users/{user}/password", put(users::user_password))
        .route("/api/tokens", get(users::list_tokens).post(users::create_token))
        .route("/api/tokens/{id}", delete(users::delete_token))
        .route("/api/acl", get(users::list_acl).post(users::grant))
        .route("/api/acl/{user}/{vm}/{right}", delete(users::revoke))
        .route("/api/acl/{user}/pools/{pool}/{right}", delete(users::revoke_pool))
        .route("/api/acl/{user}/networks/{net}/{right}", delete(users::revoke_network))
        .route("/api/acl/{user}/templates/{template}/{right}", delete(users::revoke_template))
        .route("/api/templates", get(templates::list_templates).post(templates::create_template))
        .route("/api/templates/{template}", get(templates::show_template).delete(templates::delete_template))
        .route("/api/cluster", get(hosts::show).post(hosts::init).delete(hosts::leave))
        .route("/api/cluster/tokens", post(hosts::token))
        .route("/api/cluster/join", post(hosts::join))
        .route("/api/pool/call", post(hosts::pool_call))
        .route("/api/pool/incoming/{name}/content", put(moves::incoming))
        .route("/api/vms/{name}/move", post(moves::move_vm))
        .route("/api/vms/{name}/migrate", post(moves::migrate_vm))
        .route("/api/vms/{name}/migration", get(moves::migration).delete(moves::cancel_migration))
        .route("/api/hosts", get(hosts::list))
        .route("/api/hosts/{name}", get(hosts::host))
        .route("/api/hosts/{name}/maintenance", put(hosts::maintenance))
        .route("/api/hosts/{name}/standby", put(hosts::standby))
        .route("/api/hosts/{name}/evacuate", post(hosts::evacuate))
        .route("/api/pools", get(pools::list_pools).post(pools::create_pool))
        .route("/api/pools/{pool}", get(pools::show_pool).delete(pools::delete_pool))
        .route("/api/pools/{pool}/volumes", get(pools::list_volumes).post(pools::create_volume))
        .route("/api/pools/{pool}/volumes/{volume}", get(pools::show_volume).delete(pools::delete_volume))
        .route("/api/pools/{pool}/volumes/{volume}/content", get(pools::download).put(pools::upload))
        .route("/api/hooks", get(users::list_hooks).post(users::create_hook))
        .route("/api/hooks/{id}", delete(users::delete_hook))
        .route("/api/vms/{name}/console/ws", get(crate::console::serial_ws))
        .route("/api/vms/{name}/vnc/ws", get(crate::console::vnc_ws))
        .route("/api/events/stream", get(crate::console::event_stream))
        .fallback(crate::web::fallback)
        .with_state(state)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(read_body))
}
