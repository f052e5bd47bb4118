//! Storage pools and their volumes: the administrator makes and removes pools; a user with the
//! `use` right on a pool lists, makes, uploads, downloads and deletes its volumes. Uploads and
//! downloads stream (they are not held in memory), and a volume another user's VM attaches is
//! not theirs to download or delete.

use axum::body::Body as RawBody;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{extract::State, Json};
use daemon::pools::{PoolInfo, VolumeInfo};
use daemon::protocol::Request;
use futures_util::StreamExt;
use serde::Deserialize;
use utoipa::ToSchema;

use super::confine::{check_not_anothers, check_volume, may_use_pool};
use super::{blocking, call, call_typed, need, ApiError, ApiResult, AppState, Body, ErrorBody, Need, P};
use crate::auth::Principal;

/// A new storage pool.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPool {
    /// Name: letters, digits, `-`, `_`, `.` (at most 128).
    pub name: String,
    /// Its directory on the host (absolute; made if missing).
    pub path: String,
    /// In a pool of hosts: a directory every host mounts at this path, whose volumes every
    /// host can use (one writer at a time in the whole pool).
    #[serde(default)]
    pub shared: bool,
}

/// A new disk volume: give `size` (a new dynamic VHD) or `parent` (a differencing child).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVolume {
    /// Name in the pool, ending in `.vhd`.
    pub name: String,
    /// Size in bytes (at most 64 TiB).
    #[serde(default)]
    pub size: Option<u64>,
    /// The parent volume `POOL/NAME`.
    #[serde(default)]
    pub parent: Option<String>,
}

fn volume_ref(pool: &str, volume: &str) -> String {
    format!("{pool}/{volume}")
}

/// Hides from a non-administrator what lies outside the pools.
fn for_user(p: &Principal, mut v: VolumeInfo) -> VolumeInfo {
    if !p.admin && v.parent.as_deref().is_some_and(|x| x.starts_with('/')) {
        v.parent = Some("(a file outside the storage pools)".into());
    }
    v
}

/// Storage pools the caller may use (administrators: all, with their directories).
#[utoipa::path(get, path = "/api/pools", tag = "storage",
    responses((status = 200, body = [PoolInfo]), (status = 401, body = ErrorBody)))]
pub(super) async fn list_pools(
    State(state): State<AppState>,
    p: Principal,
) -> ApiResult<Json<Vec<PoolInfo>>> {
    need(&p, Need::Login)?;
    let all: Vec<PoolInfo> = call_typed(&state, Request::PoolList).await?;
    Ok(Json(
        all.into_iter()
            .filter(|x| p.admin || may_use_pool(&p, &x.name))
            .map(|x| PoolInfo { path: x.path.filter(|_| p.admin), ..x })
            .collect(),
    ))
}

/// Registers a storage pool over a directory (administrators).
#[utoipa::path(post, path = "/api/pools", tag = "storage", request_body = NewPool,
    responses((status = 201, body = PoolInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_pool(
    State(state): State<AppState>,
    p: Principal,
    Body(n): Body<NewPool>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    need(&p, Need::Admin)?;
    Ok((
        StatusCode::CREATED,
        Json(call(&state, Request::PoolCreate { name: n.name, path: n.path, shared: n.shared }).await?),
    ))
}

/// One storage pool: space and volume count.
#[utoipa::path(get, path = "/api/pools/{pool}", tag = "storage", params(("pool" = String, Path, description = "Pool")),
    responses((status = 200, body = PoolInfo), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(super) async fn show_pool(
    State(state): State<AppState>,
    p: Principal,
    P(pool): P<String>,
) -> ApiResult<Json<PoolInfo>> {
    need(&p, Need::UsePool(&pool))?;
    let info: PoolInfo = call_typed(&state, Request::PoolShow { name: pool }).await?;
    Ok(Json(PoolInfo { path: info.path.filter(|_| p.admin), ..info }))
}

/// Unregisters a storage pool no VM uses; its files stay (administrators).
#[utoipa::path(delete, path = "/api/pools/{pool}", tag = "storage", params(("pool" = String, Path, description = "Pool")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn delete_pool(
    State(state): State<AppState>,
    p: Principal,
    P(pool): P<String>,
) -> ApiResult<StatusCode> {
    need(&p, Need::Admin)?;
    call(&state, Request::PoolDelete { name: pool.clone() }).await?;
    let store = state.store.clone();
    blocking(move || Ok(store.revoke_vm(&super::confine::pool_object(&pool))?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The volumes of a pool, with the VMs that attach each.
#[utoipa::path(get, path = "/api/pools/{pool}/volumes", tag = "storage", params(("pool" = String, Path, description = "Pool")),
    responses((status = 200, body = [VolumeInfo]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(super) async fn list_volumes(
    State(state): State<AppState>,
    p: Principal,
    P(pool): P<String>,
) -> ApiResult<Json<Vec<VolumeInfo>>> {
    need(&p, Need::UsePool(&pool))?;
    let all: Vec<VolumeInfo> = call_typed(&state, Request::VolumeList { pool }).await?;
    Ok(Json(all.into_iter().map(|v| for_user(&p, v)).collect()))
}

/// Makes a disk volume: a dynamic VHD, or a differencing child of a volume of a pool the caller
/// may use.
#[utoipa::path(post, path = "/api/pools/{pool}/volumes", tag = "storage", request_body = NewVolume,
    params(("pool" = String, Path, description = "Pool")),
    responses((status = 201, body = VolumeInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_volume(
    State(state): State<AppState>,
    p: Principal,
    P(pool): P<String>,
    Body(n): Body<NewVolume>,
) -> ApiResult<(StatusCode, Json<VolumeInfo>)> {
    need(&p, Need::UsePool(&pool))?;
    if let Some(parent) = n.parent.clone() {
        let (st, who) = (state.clone(), p.clone());
        blocking(move || check_volume(&st, &who, "parent", &parent, false, None)).await?;
    }
    let volume = volume_ref(&pool, &n.name);
    let v: VolumeInfo =
        call_typed(&state, Request::VolumeCreate { volume, size: n.size, parent: n.parent }).await?;
    Ok((StatusCode::CREATED, Json(for_user(&p, v))))
}

/// One volume.
#[utoipa::path(get, path = "/api/pools/{pool}/volumes/{volume}", tag = "storage",
    params(("pool" = String, Path, description = "Pool"), ("volume" = String, Path, description = "Volume name")),
    responses((status = 200, body = VolumeInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn show_volume(
    State(state): State<AppState>,
    p: Principal,
    P((pool, volume)): P<(String, String)>,
) -> ApiResult<Json<VolumeInfo>> {
    need(&p, Need::UsePool(&pool))?;
    let v: VolumeInfo =
        call_typed(&state, Request::VolumeShow { volume: volume_ref(&pool, &volume) }).await?;
    Ok(Json(for_user(&p, v)))
}

/// Refuses (403) a volume that a VM the caller may not configure attaches.
async fn not_anothers(state: &AppState, p: &Principal, volume: String, what: &'static str) -> ApiResult<()> {
    let (st, who) = (state.clone(), p.clone());
    blocking(move || check_not_anothers(&st, &who, what, &volume)).await
}

/// Deletes a volume no VM attaches and no volume stands on.
#[utoipa::path(delete, path = "/api/pools/{pool}/volumes/{volume}", tag = "storage",
    params(("pool" = String, Path, description = "Pool"), ("volume" = String, Path, description = "Volume name")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn delete_volume(
    State(state): State<AppState>,
    p: Principal,
    P((pool, volume)): P<(String, String)>,
) -> ApiResult<StatusCode> {
    need(&p, Need::UsePool(&pool))?;
    let reference = volume_ref(&pool, &volume);
    not_anothers(&state, &p, reference.clone(), "delete").await?;
    call(&state, Request::VolumeDelete { volume: reference }).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Uploads a new volume's content (a VHD, ISO, kernel or initrd), streamed: the volume appears
/// when the whole body has arrived and is on disk, or not at all.
#[utoipa::path(put, path = "/api/pools/{pool}/volumes/{volume}/content", tag = "storage",
    params(("pool" = String, Path, description = "Pool"), ("volume" = String, Path, description = "Volume name")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The volume's bytes"),
    responses((status = 201, body = VolumeInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 507, body = ErrorBody)))]
pub(super) async fn upload(
    State(state): State<AppState>,
    p: Principal,
    P((pool, volume)): P<(String, String)>,
    body: RawBody,
) -> ApiResult<(StatusCode, Json<VolumeInfo>)> {
    let mut stream = body.into_data_stream();
    let reference = volume_ref(&pool, &volume);
    let d = state.daemon.clone();
    let r = reference.clone();
    let prepared = async {
        need(&p, Need::UsePool(&pool))?;
        blocking(move || {
            let pools = &d.ctx().pools;
            let dir = pools.dir(&pool)?;
            let free = daemon::pools::space(&dir).map(|(_, f)| f).unwrap_or(u64::MAX);
            Ok((pools.upload(&r)?, free))
        })
        .await
    };
    let (mut up, free) = match prepared.await {
        Ok(x) => x,
        Err(e) => {
            drain(&mut stream).await;
            return Err(e);
        }
    };
    let mut written: u64 = 0;
    loop {
        let chunk = match tokio::time::timeout(super::BODY_TIMEOUT, stream.next()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the upload stalled for {} s", super::BODY_TIMEOUT.as_secs()),
                ))
            }
        };
        let chunk =
            chunk.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("reading the upload: {e}")))?;
        written += chunk.len() as u64;
        if written > free {
            return Err(ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                format!("the upload is larger than the {} MiB free in its pool", free >> 20),
            ));
        }
        up = blocking(move || {
            up.write(&chunk)?;
            Ok(up)
        })
        .await?;
    }
    let d = state.daemon.clone();
    blocking(move || Ok(up.finish()?)).await?;
    d.ctx().event(
        None,
        "info",
        "volume.uploaded",
        &format!("uploaded volume '{reference}' ({written} bytes)"),
    );
    let v: VolumeInfo = call_typed(&state, Request::VolumeShow { volume: reference }).await?;
    Ok((StatusCode::CREATED, Json(for_user(&p, v))))
}

/// Reads what a refused upload sent, up to [`super::BODY_LIMIT`] bytes and for at most
/// [`super::BODY_TIMEOUT`]: a refusal of a small upload then leaves the connection clean for the
/// client's next request (hyper would close it over unread bytes, under the client's feet); a
/// larger upload still sees its connection closed.
async fn drain(stream: &mut axum::body::BodyDataStream) {
    let mut read = 0usize;
    let deadline = tokio::time::Instant::now() + super::BODY_TIMEOUT;
    while read <= super::BODY_LIMIT {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => read += chunk.len(),
            _ => return,
        }
    }
}

/// Downloads a volume's bytes, streamed.
#[utoipa::path(get, path = "/api/pools/{pool}/volumes/{volume}/content", tag = "storage",
    params(("pool" = String, Path, description = "Pool"), ("volume" = String, Path, description = "Volume name")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>), (status = 400, body = ErrorBody),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn download(
    State(state): State<AppState>,
    p: Principal,
    P((pool, volume)): P<(String, String)>,
) -> ApiResult<Response> {
    need(&p, Need::UsePool(&pool))?;
    let reference = volume_ref(&pool, &volume);
    not_anothers(&state, &p, reference.clone(), "download").await?;
    let d = state.daemon.clone();
    let file = blocking(move || Ok(d.ctx().pools.resolve(&reference)?)).await?;
    let f = tokio::fs::File::open(&file)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{}: {e}", file.display())))?;
    let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    // Chunks until the end of the file; a read error ends the stream with that error.
    let chunks = futures_util::stream::unfold(Some(f), |f| async move {
        use tokio::io::AsyncReadExt;
        let mut f = f?;
        let mut buf = vec![0u8; 256 << 10];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok((
        [(CONTENT_TYPE, "application/octet-stream".to_string()), (CONTENT_LENGTH, len.to_string())],
        RawBody::from_stream(chunks),
    )
        .into_response())
}
