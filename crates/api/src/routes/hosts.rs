//! The pool of hosts: making a pool (administrators), what it holds, and its hosts. A host in
//! no pool lists itself alone, so a script written for one host keeps working. And the hosts'
//! own channel: a request about a VM another host owns is checked here (the caller's rights),
//! then carried out there through `POST /api/pool/call` ([`forward`]), authenticated with the
//! pool's secret and with the owner's certificate pinned by the fingerprint it published.

use axum::http::StatusCode;
use axum::{extract::State, Json};
use cluster::{EtcdTls, HostStatus};
use daemon::protocol::Request;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{call, call_typed, need, ApiError, ApiResult, AppState, Body, ErrorBody, Need, P};
use crate::auth::{Principal, POOL_TOKEN_PREFIX};
use crate::client::{Client, ClientError};

/// A new pool with this host as its first member.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCluster {
    /// etcd client URLs (`http://HOST:2379` or `https://…`), 1 to 16.
    pub etcd: Vec<String>,
    /// This host's name in the pool (default: its host name): letters, digits, `-`, `_`, `.`.
    #[serde(default)]
    pub name: Option<String>,
    /// TLS client files (paths on this host) for `https://` endpoints.
    #[serde(default)]
    pub tls: Option<EtcdTls>,
}

/// Makes this host the first of a new pool whose shared state lives in etcd (administrators).
#[utoipa::path(post, path = "/api/cluster", tag = "pool", request_body = NewCluster,
    responses((status = 201, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn init(
    State(state): State<AppState>,
    p: Principal,
    Body(n): Body<NewCluster>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    need(&p, Need::Admin)?;
    let v = call(&state, Request::ClusterInit { etcd: n.etcd, name: n.name, tls: n.tls }).await?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// Whom a join token admits.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewJoinToken {
    /// The new host's name in the pool.
    pub host: String,
}

/// A join token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Join {
    /// The token, as `vine cluster token` (or `POST /api/cluster/tokens`) printed it on a member.
    pub token: String,
    /// TLS client files (paths on this host), when the pool's etcd uses TLS.
    #[serde(default)]
    pub tls: Option<EtcdTls>,
}

/// A one-time join token (valid for an hour) admitting a new host to this host's pool
/// (administrators). The new host joins with `POST /api/cluster/join`.
#[utoipa::path(post, path = "/api/cluster/tokens", tag = "pool", request_body = NewJoinToken,
    responses((status = 201, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(super) async fn token(
    State(state): State<AppState>,
    p: Principal,
    Body(n): Body<NewJoinToken>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    need(&p, Need::Admin)?;
    Ok((StatusCode::CREATED, Json(call(&state, Request::ClusterToken { host: n.host }).await?)))
}

/// Joins the pool a token names, as the host it admits (administrators of this host).
#[utoipa::path(post, path = "/api/cluster/join", tag = "pool", request_body = Join,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn join(
    State(state): State<AppState>,
    p: Principal,
    Body(j): Body<Join>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Admin)?;
    Ok(Json(call(&state, Request::ClusterJoin { token: j.token, tls: j.tls }).await?))
}

/// Leaves the pool: this host is on its own again (administrators).
#[utoipa::path(delete, path = "/api/cluster", tag = "pool",
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn leave(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Value>> {
    need(&p, Need::Admin)?;
    Ok(Json(call(&state, Request::ClusterLeave).await?))
}

/// The pool this host belongs to: its id, etcd endpoints and members, and its hosts.
#[utoipa::path(get, path = "/api/cluster", tag = "pool",
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(super) async fn show(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Value>> {
    need(&p, Need::Login)?;
    Ok(Json(call(&state, Request::ClusterShow).await?))
}

/// Every host of the pool with its state (`online`, `offline`, `maintenance`); this host alone
/// when it is in no pool.
#[utoipa::path(get, path = "/api/hosts", tag = "pool",
    responses((status = 200, body = [HostStatus]), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn list(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Vec<HostStatus>>> {
    need(&p, Need::Login)?;
    Ok(Json(call_typed(&state, Request::HostList).await?))
}

/// One host.
#[utoipa::path(get, path = "/api/hosts/{name}", tag = "pool", params(("name" = String, Path, description = "Host name")),
    responses((status = 200, body = HostStatus), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(super) async fn host(
    State(state): State<AppState>,
    p: Principal,
    P(name): P<String>,
) -> ApiResult<Json<HostStatus>> {
    need(&p, Need::Login)?;
    Ok(Json(call_typed(&state, Request::HostShow { name }).await?))
}

/// Carries out `req`, about VM `vm`, on `host`, the pool host that owns the VM (called on the
/// blocking pool by [`super::call`]). The owner's answer, or its refusal with its status and
/// sentence, is this request's.
pub(super) fn forward(d: &daemon::Daemon, vm: &str, host: &str, req: &Request) -> ApiResult<Value> {
    let unreachable = |why: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("VM '{vm}' is on host '{host}', which did not answer: {why}"),
        )
    };
    let (url, fingerprint) = d.host_contact(host).map_err(ApiError::from)?;
    let secret =
        d.pool_secret().ok_or_else(|| unreachable("this host cannot read the pool's secret".into()))?;
    let addr = url.strip_prefix("https://").unwrap_or(&url);
    let client = Client::https(addr, &fingerprint, Some(&format!("{POOL_TOKEN_PREFIX}{secret}")));
    // A create goes to the host placement chose, and stays there.
    let req = match req {
        Request::VmCreate { definition, template, .. } => Request::VmCreate {
            definition: definition.clone(),
            host: Some(host.to_string()),
            template: template.clone(),
        },
        r => r.clone(),
    };
    let body = serde_json::to_value(&req).expect("requests serialise");
    match client.call("POST", "/api/pool/call", Some(&body)) {
        Ok(v) => Ok(v),
        Err(ClientError::Refused { status, message }) => {
            Err(ApiError::new(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), message))
        }
        Err(e) => Err(unreachable(e.to_string())),
    }
}

/// Carries out a request about one of this host's VMs for another host of the pool, which
/// checked the caller's rights (pool hosts only: they present the pool's secret).
#[utoipa::path(post, path = "/api/pool/call", tag = "pool", request_body = Object,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn pool_call(
    State(state): State<AppState>,
    p: Principal,
    Body(v): Body<Value>,
) -> ApiResult<Json<Value>> {
    if !p.pool_peer {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "you may not call this: only the hosts of this host's pool forward requests here",
        ));
    }
    let req: Request = serde_json::from_value(v).map_err(|e| ApiError::bad(format!("request: {e}")))?;
    // A VM to make here, placed by another host (`host` names this one, so it is not placed again).
    if let Request::VmCreate { host: Some(h), .. } = &req {
        let d = state.daemon.clone();
        let me = tokio::task::spawn_blocking(move || d.pool_host_name()).await.unwrap_or(None);
        if me.as_deref() != Some(h.as_str()) {
            return Err(ApiError::bad(format!("request: this host is not '{h}'")));
        }
        return Ok(Json(call(&state, req).await?));
    }
    // An evacuation of this host, asked through another.
    if let Request::HostEvacuate { name, .. } = &req {
        let d = state.daemon.clone();
        let me = tokio::task::spawn_blocking(move || d.pool_host_name()).await.unwrap_or(None);
        if me.as_deref() != Some(name.as_str()) {
            return Err(ApiError::bad(format!("request: this host is not '{name}'")));
        }
        return Ok(Json(call(&state, req).await?));
    }
    // A template's bases, sent to a host making its first VM from it; a template's copies here,
    // checked or dropped for the host deleting it.
    if let Request::TemplateShip { .. } | Request::TemplateLocal { .. } = &req {
        return Ok(Json(call(&state, req).await?));
    }
    // This host's live metrics, for another host's policy dry run.
    if let Request::Metrics = &req {
        return Ok(Json(call(&state, req).await?));
    }
    // A VM another host moves or migrates here, or an HA guest the coordinator restarts here.
    if let Request::VmAdopt { .. }
    | Request::VmRecover { .. }
    | Request::VmIncoming { .. }
    | Request::VmIncomingEnd { .. }
    | Request::VmIncomingRun { .. } = &req
    {
        return Ok(Json(call(&state, req).await?));
    }
    let Some(vm) = req.vm_target().map(str::to_string) else {
        return Err(ApiError::bad("request: only requests about one VM are forwarded between hosts"));
    };
    // The VM must be here: a request is forwarded once, never on from here.
    let d = state.daemon.clone();
    let here = tokio::task::spawn_blocking(move || d.has_vm(&vm)).await.unwrap_or(false);
    if !here {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "no such VM on this host (it may have moved)"));
    }
    Ok(Json(call(&state, req).await?))
}

/// In maintenance or not.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Maintenance {
    /// `true`: the host keeps its VMs and gets no new ones; `false`: back in service.
    pub maintenance: bool,
}

/// How an evacuation goes.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Evacuate {
    /// Most live migrations at once (default 2).
    #[serde(default)]
    pub parallel: Option<u32>,
}

/// Evacuates a host of the pool (administrators): it goes in maintenance, then every VM running
/// or paused on it is live-migrated to where placement puts it. Answers when all have moved.
#[utoipa::path(post, path = "/api/hosts/{name}/evacuate", tag = "pool", request_body = Evacuate,
    params(("name" = String, Path, description = "Host name")),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 500, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(super) async fn evacuate(
    State(state): State<AppState>,
    p: Principal,
    P(name): P<String>,
    Body(e): Body<Evacuate>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Admin)?;
    Ok(Json(call(&state, Request::HostEvacuate { name, parallel: e.parallel }).await?))
}

/// Puts a host of the pool in maintenance or takes it out (administrators).
#[utoipa::path(put, path = "/api/hosts/{name}/maintenance", tag = "pool", request_body = Maintenance,
    params(("name" = String, Path, description = "Host name")),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn maintenance(
    State(state): State<AppState>,
    p: Principal,
    P(name): P<String>,
    Body(m): Body<Maintenance>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Admin)?;
    Ok(Json(call(&state, Request::HostMaintenance { name, on: m.maintenance }).await?))
}

/// In standby or not.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Standby {
    /// `true`: the host, which must run no VM, takes no VMs and counts as powered off (the
    /// pool's power program powers it off); `false`: it is woken.
    pub standby: bool,
}

/// Puts a host of the pool that runs no VM in standby, or wakes it (administrators).
#[utoipa::path(put, path = "/api/hosts/{name}/standby", tag = "pool", request_body = Standby,
    params(("name" = String, Path, description = "Host name")),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(super) async fn standby(
    State(state): State<AppState>,
    p: Principal,
    P(name): P<String>,
    Body(s): Body<Standby>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Admin)?;
    Ok(Json(call(&state, Request::HostStandby { name, on: s.standby }).await?))
}
