//! Cold moves between the hosts of a pool: `POST /api/vms/{name}/move` (administrators; carried
//! out by the host that owns the VM, see `daemon::moves`), and what a moving host needs of the
//! others ([`HostPeers`]: requests, streamed files, deletions over HTTPS with the pool's secret
//! and the other host's certificate pinned) and sends them (`PUT /api/pool/incoming/{vm}/content`: a
//! saved state, pool hosts only).

use std::path::Path;
use std::sync::{Arc, Weak};

use axum::body::Body as RawBody;
use axum::http::StatusCode;
use axum::{extract::State, Json};
use daemon::protocol::{Failure, Request};
use daemon::Daemon;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{blocking, call, need, ApiError, ApiResult, AppState, Body, ErrorBody, Need, P};
use crate::auth::{Principal, POOL_TOKEN_PREFIX};
use crate::client::{Client, ClientError};

/// Where a VM goes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveTo {
    /// The host of the pool it goes to.
    pub to: String,
}

/// Moves a VM that is off or saved to another host of the pool (administrators): its volumes on
/// host-local pools are copied there, those on shared pools stay, a saved state goes with it.
#[utoipa::path(post, path = "/api/vms/{name}/move", tag = "pool", request_body = MoveTo,
    params(("name" = String, Path, description = "VM name")),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(super) async fn move_vm(
    State(state): State<AppState>,
    p: Principal,
    P(name): P<String>,
    Body(m): Body<MoveTo>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Admin)?;
    Ok(Json(call(&state, Request::VmMove { name, to: m.to }).await?))
}

/// A live migration's destination and choices.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateTo {
    /// The host of the pool it goes to.
    pub to: String,
    /// Most bytes per second for memory and disks (default: no limit).
    #[serde(default)]
    pub bandwidth: Option<u64>,
    /// Longest pause of the guest at switchover, in milliseconds (default 100).
    #[serde(default)]
    pub downtime_ms: Option<u64>,
    /// Give up after this many seconds (default 600) and let the VM go on where it was, unless
    /// post-copy is allowed.
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Past the timeout, switch to post-copy instead of giving up.
    #[serde(default)]
    pub postcopy: bool,
}

/// Live-migrates a running or paused VM to another host of the pool (administrators): volumes on
/// host-local pools are mirrored there, those on shared pools stay; the guest goes on without a
/// reboot. Answers when it has ended, with its figures.
#[utoipa::path(post, path = "/api/vms/{name}/migrate", tag = "pool", request_body = MigrateTo,
    params(("name" = String, Path, description = "VM name")),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 500, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn migrate_vm(
    State(state): State<AppState>,
    p: Principal,
    P(name): P<String>,
    Body(m): Body<MigrateTo>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Admin)?;
    let options = daemon::protocol::MigrateOptions {
        bandwidth: m.bandwidth,
        downtime_ms: m.downtime_ms,
        timeout_s: m.timeout_s,
        postcopy: m.postcopy,
    };
    Ok(Json(call(&state, Request::VmMigrate { name, to: m.to, options }).await?))
}

/// The live migration of a VM under way (or the last one's outcome): phase, memory and disk
/// bytes sent and left, dirty rate, expected downtime.
#[utoipa::path(get, path = "/api/vms/{name}/migration", tag = "pool",
    params(("name" = String, Path, description = "VM name")),
    responses((status = 200, body = daemon::actor::Progress), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn migration(
    State(state): State<AppState>,
    p: Principal,
    P(name): P<String>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Admin)?;
    Ok(Json(call(&state, Request::VmMigration { name }).await?))
}

/// Cancels the live migration of a VM; it goes on running where it was.
#[utoipa::path(delete, path = "/api/vms/{name}/migration", tag = "pool",
    params(("name" = String, Path, description = "VM name")),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn cancel_migration(
    State(state): State<AppState>,
    p: Principal,
    P(name): P<String>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Admin)?;
    Ok(Json(call(&state, Request::VmMigrateCancel { name }).await?))
}

/// Receives the saved state of a VM another host is moving here (pool hosts only).
#[utoipa::path(put, path = "/api/pool/incoming/{name}/content", tag = "pool",
    params(("name" = String, Path, description = "VM name")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The saved state"),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn incoming(
    State(state): State<AppState>,
    p: Principal,
    P(vm): P<String>,
    body: RawBody,
) -> ApiResult<StatusCode> {
    if !p.pool_peer {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "you may not call this: only the hosts of this host's pool send saved states here",
        ));
    }
    vmconfig::validate_name(&vm).map_err(|e| ApiError::bad(e.to_string()))?;
    let dest = daemon::layout::incoming_state(&state.daemon.ctx().data, &vm);
    let part = dest.with_extension("part");
    let (d2, p2) = (dest.clone(), part.clone());
    let mut file = blocking(move || {
        if let Some(dir) = d2.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| ApiError::internal(format!("{}: {e}", dir.display())))?;
        }
        std::fs::File::create(&p2).map_err(|e| ApiError::internal(format!("{}: {e}", p2.display())))
    })
    .await?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                return Err(ApiError::bad(format!("reading the saved state: {e}")));
            }
        };
        let p3 = part.clone();
        file = blocking(move || {
            use std::io::Write;
            file.write_all(&chunk).map_err(|e| ApiError::internal(format!("{}: {e}", p3.display())))?;
            Ok(file)
        })
        .await?;
    }
    blocking(move || {
        file.sync_all().map_err(|e| ApiError::internal(format!("{}: {e}", part.display())))?;
        std::fs::rename(&part, &dest).map_err(|e| ApiError::internal(format!("{}: {e}", dest.display())))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The other hosts of the pool as the daemon reaches them: HTTPS to each host's address with
/// the pool's secret, its certificate pinned by the fingerprint it published.
pub struct HostPeers {
    daemon: Weak<Daemon>,
}

impl HostPeers {
    /// The peers of `daemon`'s host.
    pub fn new(daemon: &Arc<Daemon>) -> HostPeers {
        HostPeers { daemon: Arc::downgrade(daemon) }
    }

    fn client(&self, host: &str) -> Result<Client, Failure> {
        let d = self.daemon.upgrade().ok_or_else(|| Failure::Failed("the daemon is stopping".into()))?;
        let (url, fingerprint) = d.host_contact(host)?;
        let secret = d.pool_secret().ok_or_else(|| {
            Failure::Unavailable("this host cannot read the pool's secret from etcd".into())
        })?;
        let addr = url.strip_prefix("https://").unwrap_or(&url).to_string();
        Ok(Client::https(&addr, &fingerprint, Some(&format!("{POOL_TOKEN_PREFIX}{secret}"))))
    }
}

/// A peer's answer as a daemon failure (its status read back as the kind).
fn failure(host: &str, e: ClientError) -> Failure {
    match e {
        ClientError::Refused { status, message } => match status {
            400 => Failure::Invalid(message),
            404 => Failure::NotFound(message),
            409 | 403 | 507 => Failure::Refused(message),
            503 => Failure::Unavailable(message),
            _ => Failure::Failed(message),
        },
        e => Failure::Unavailable(format!("host '{host}' did not answer: {e}")),
    }
}

fn checked(host: &str, r: Result<(u16, Value), ClientError>) -> Result<Value, Failure> {
    let (status, v) = r.map_err(|e| failure(host, e))?;
    if (200..300).contains(&status) {
        return Ok(v);
    }
    let message = v["error"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {status}"));
    Err(failure(host, ClientError::Refused { status, message }))
}

impl daemon::moves::Peers for HostPeers {
    fn call(&self, host: &str, req: &Request) -> Result<Value, Failure> {
        let body = serde_json::to_value(req).expect("requests serialise");
        checked(host, self.client(host)?.request("POST", "/api/pool/call", Some(&body)))
    }

    fn send(&self, host: &str, target: &str, file: &Path) -> Result<(), Failure> {
        checked(host, self.client(host)?.upload(target, file, &|_, _| {})).map(|_| ())
    }

    fn delete(&self, host: &str, target: &str) -> Result<(), Failure> {
        checked(host, self.client(host)?.request("DELETE", target, None)).map(|_| ())
    }

    fn ready(&self, host: &str) -> Box<dyn daemon::moves::ReadyCall> {
        let client = self.client(host);
        let open = client.as_ref().ok().and_then(|c| match c.open() {
            Ok(o) => Some(o),
            Err(e) => {
                tracing::debug!("opening a connection to host '{host}' ahead of a call: {e}");
                None
            }
        });
        Box::new(Ready { host: host.to_string(), client, open })
    }
}

/// A pool call made ready: the peer's address and certificate looked up, its connection open.
struct Ready {
    host: String,
    client: Result<Client, Failure>,
    open: Option<crate::client::Open>,
}

impl daemon::moves::ReadyCall for Ready {
    fn call(self: Box<Self>, req: &Request) -> Result<Value, Failure> {
        let body = serde_json::to_value(req).expect("requests serialise");
        let sent = match self.open {
            Some(open) => open.request("POST", "/api/pool/call", Some(&body)),
            None => self.client?.request("POST", "/api/pool/call", Some(&body)),
        };
        checked(&self.host, sent)
    }
}
