//! The policy engine on the pool (administrators): how far it acts (`off`, `advise`,
//! `automatic`), the policy it runs, each VM's rules, the coordinator's last round with its
//! advice, and a dry run of any policy against the live metrics.

use axum::http::StatusCode;
use axum::{extract::State, Json};
use daemon::protocol::{PolicyChange, Request, VmRulesChange};
use serde_json::Value;

use super::{call, need, ApiError, ApiResult, AppState, Body, ErrorBody, Need, P};
use crate::auth::Principal;

/// The pool's automation: mode, policy, interval, threshold, parallel migrations, power
/// program, every VM's rules, the coordinator's host and its last round (what it advised or
/// did, and why).
#[utoipa::path(get, path = "/api/policy", tag = "policy",
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(super) async fn show(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Value>> {
    need(&p, Need::Admin)?;
    Ok(Json(call(&state, Request::PolicyShow).await?))
}

/// Changes the pool's automation; fields left out stay as they are.
#[utoipa::path(put, path = "/api/policy", tag = "policy", request_body = PolicyChange,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(super) async fn set(
    State(state): State<AppState>,
    p: Principal,
    Body(change): Body<PolicyChange>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Admin)?;
    if let Some(policy) = &change.policy {
        policy
            .validate()
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("policy: {e}")))?;
    }
    Ok(Json(call(&state, Request::PolicySet(change)).await?))
}

/// Changes one VM's rules for the policy engine (its own mode, a pin to a host, an affinity
/// group); fields left out stay as they are, an empty string clears one.
#[utoipa::path(put, path = "/api/policy/vms/{name}", tag = "policy", request_body = VmRulesChange,
    params(("name" = String, Path, description = "VM name")),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 503, body = ErrorBody)))]
pub(super) async fn vm(
    State(state): State<AppState>,
    p: Principal,
    P(name): P<String>,
    Body(change): Body<VmRulesChange>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Admin)?;
    Ok(Json(call(&state, Request::PolicyVm { name, change }).await?))
}

/// What a policy (the body: a policy as `vine policy show --json` prints one) would do with the
/// pool, or this host alone, now: the snapshot of every host's metrics, the plan, the commands
/// with their reasons. Nothing is changed.
#[utoipa::path(post, path = "/api/policy/dry-run", tag = "policy", request_body = Object,
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn dry_run(
    State(state): State<AppState>,
    p: Principal,
    Body(v): Body<Value>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Admin)?;
    let policy: ::policy::Policy = serde_json::from_value(v)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("policy: {e}")))?;
    policy.validate().map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("policy: {e}")))?;
    Ok(Json(call(&state, Request::PolicyDryRun { policy: Box::new(policy) }).await?))
}
