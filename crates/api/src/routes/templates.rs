//! VM templates: an administrator, or a user who may create VMs, makes a template from a VM
//! they may configure (or a volume of a pool they may use) into a pool they may use, and may
//! then use and delete it; others use a template when granted `use` on it. Making VMs from a
//! template is `POST /api/vms` with `template` (see [`super::create_vm`]).

use axum::http::StatusCode;
use axum::{extract::State, Json};
use daemon::protocol::Request;
use daemon::templates::{TemplateInfo, TemplateNew};
use serde_json::Value;
use store::AclEntry;

use super::confine::{may_use_pool, template_object};
use super::{call, call_typed, db, has_right, need, ApiError, ApiResult, AppState, Body, ErrorBody, Need, P};
use crate::auth::Principal;

/// Whether `p` may make VMs from template `name`.
pub fn may_use_template(p: &Principal, name: &str) -> bool {
    has_right(p, &template_object(name), "use") || has_right(p, &template_object(name), "configure")
}

fn forbidden(m: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, m)
}

/// Templates the caller may use (administrators: all).
#[utoipa::path(get, path = "/api/templates", tag = "templates",
    responses((status = 200, body = [TemplateInfo]), (status = 401, body = ErrorBody)))]
pub(super) async fn list_templates(
    State(state): State<AppState>,
    p: Principal,
) -> ApiResult<Json<Vec<TemplateInfo>>> {
    need(&p, Need::Login)?;
    let all: Vec<TemplateInfo> = call_typed(&state, Request::TemplateList).await?;
    Ok(Json(all.into_iter().filter(|t| may_use_template(&p, &t.name)).collect()))
}

/// One template.
#[utoipa::path(get, path = "/api/templates/{template}", tag = "templates", params(("template" = String, Path, description = "Template")),
    responses((status = 200, body = TemplateInfo), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn show_template(
    State(state): State<AppState>,
    p: Principal,
    P(name): P<String>,
) -> ApiResult<Json<TemplateInfo>> {
    if !may_use_template(&p, &name) {
        return Err(forbidden(format!("user '{}' may not use template '{name}'", p.user)));
    }
    Ok(Json(call_typed(&state, Request::TemplateShow { name }).await?))
}

/// Makes a template from a VM that is off or from a volume (its bases are copies).
#[utoipa::path(post, path = "/api/templates", tag = "templates", request_body = TemplateNew,
    responses((status = 201, body = TemplateInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_template(
    State(state): State<AppState>,
    p: Principal,
    Body(new): Body<TemplateNew>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    need(&p, Need::Create)?;
    if !p.admin {
        if let Some(vm) = &new.from_vm {
            need(&p, Need::Configure(vm))?;
        }
        let mut pools: Vec<String> = new.pool.iter().cloned().collect();
        if let Some((pool, _)) = new.from_volume.as_deref().and_then(vmconfig::volume_ref) {
            pools.push(pool.to_string());
        }
        if let Some(vm) = &new.from_vm {
            // The bases go to the pool of the VM's first disk unless a pool is named.
            let info: daemon::protocol::VmInfo =
                call_typed(&state, Request::VmShow { name: vm.clone() }).await?;
            if new.pool.is_none() {
                if let Some(first) = info.drives.iter().find(|x| !x.cdrom) {
                    pools.extend(vmconfig::volume_ref(&first.path).map(|(p, _)| p.to_string()));
                }
            }
        }
        for pool in &pools {
            if !may_use_pool(&p, pool) {
                return Err(forbidden(format!("pool: user '{}' may not use storage pool '{pool}'", p.user)));
            }
        }
    }
    let name = new.name.clone();
    let v = call(&state, Request::TemplateCreate(new)).await?;
    if !p.admin {
        let user = p.user.clone();
        db(&state, move |s| {
            for right in ["configure", "use"] {
                s.grant(&AclEntry { user: user.clone(), vm: template_object(&name), right: right.into() })?;
            }
            Ok::<(), store::StoreError>(())
        })
        .await?;
    }
    Ok((StatusCode::CREATED, Json(v)))
}

/// Deletes a template no linked clone stands on, with its bases.
#[utoipa::path(delete, path = "/api/templates/{template}", tag = "templates", params(("template" = String, Path, description = "Template")),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn delete_template(
    State(state): State<AppState>,
    p: Principal,
    P(name): P<String>,
) -> ApiResult<Json<Value>> {
    if !has_right(&p, &template_object(&name), "configure") {
        return Err(forbidden(format!("user '{}' may not delete template '{name}'", p.user)));
    }
    let v = call(&state, Request::TemplateDelete { name: name.clone() }).await?;
    let object = template_object(&name);
    db(&state, move |s| {
        for e in s.acl(None, Some(&object))? {
            s.revoke(&e)?;
        }
        Ok::<(), store::StoreError>(())
    })
    .await?;
    Ok(Json(v))
}
