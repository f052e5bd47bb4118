//! Users, API tokens, rights and hook scripts: the administrator's side of who may do what.

use super::*;

/// A user as listed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserInfo {
    /// Login name.
    pub name: String,
    /// Administrator.
    pub admin: bool,
    /// May create VMs.
    pub can_create: bool,
}

/// A new user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Login name: letters, digits, '-', '_', '.'.
    pub name: String,
    /// At least 8 characters.
    pub password: String,
    /// Administrator.
    #[serde(default)]
    pub admin: bool,
    /// May create VMs.
    #[serde(default)]
    pub can_create: bool,
}

/// Users.
#[utoipa::path(get, path = "/api/users", tag = "users", responses((status = 200, body = [UserInfo]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn list_users(
    State(state): State<AppState>,
    p: Principal,
) -> ApiResult<Json<Vec<UserInfo>>> {
    need(&p, Need::Admin)?;
    Ok(Json(
        state
            .store
            .list_users()?
            .into_iter()
            .map(|u| UserInfo { name: u.name, admin: u.admin, can_create: u.can_create })
            .collect(),
    ))
}

/// Adds a user.
#[utoipa::path(post, path = "/api/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_user(
    State(state): State<AppState>,
    p: Principal,
    Body(n): Body<NewUser>,
) -> ApiResult<(StatusCode, Json<UserInfo>)> {
    need(&p, Need::Admin)?;
    vmconfig::validate_name(&n.name)
        .map_err(|e| ApiError::bad(e.to_string().replace("field `name`", "user name")))?;
    if n.name == "root" {
        return Err(ApiError::bad("user name: 'root' is the local socket's administrator"));
    }
    check_password(&n.password)?;
    let store = state.store.clone();
    let (name, password) = (n.name.clone(), n.password);
    let password_hash = state.hasher.run(move || auth::hash_password(&password)).await?;
    blocking(move || {
        Ok(store.create_user(&UserRecord {
            name,
            password_hash,
            admin: n.admin,
            can_create: n.can_create,
            created_ms: auth::now_ms(),
        })?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(UserInfo { name: n.name, admin: n.admin, can_create: n.can_create })))
}

/// Deletes a user with their tokens and rights.
#[utoipa::path(delete, path = "/api/users/{user}", tag = "users", params(("user" = String, Path, description = "User name")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn delete_user(
    State(state): State<AppState>,
    p: Principal,
    P(user): P<String>,
) -> ApiResult<StatusCode> {
    need(&p, Need::Admin)?;
    if user == p.user {
        return Err(ApiError::new(StatusCode::CONFLICT, "you cannot delete yourself"));
    }
    db(&state, move |s| s.delete_user(&user)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a user's password.
#[utoipa::path(put, path = "/api/users/{user}/password", tag = "users", request_body = NewPassword,
    params(("user" = String, Path, description = "User name")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn user_password(
    State(state): State<AppState>,
    p: Principal,
    P(user): P<String>,
    Body(n): Body<NewPassword>,
) -> ApiResult<StatusCode> {
    need(&p, Need::Admin)?;
    check_password(&n.password)?;
    let store = state.store.clone();
    let hash = state.hasher.run(move || auth::hash_password(&n.password)).await?;
    blocking(move || {
        let mut u = store
            .get_user(&user)?
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no user '{user}'")))?;
        u.password_hash = hash;
        store.update_user(&u)?;
        let keep = if user == p.user { p.token.as_deref() } else { None };
        auth::end_sessions(store.as_ref(), &user, keep)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// A token as listed (never with its secret).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// Id.
    pub id: String,
    /// `session` or `api`.
    pub kind: String,
    /// Label.
    pub label: String,
    /// Created, ms since the epoch.
    pub created_ms: i64,
    /// Expiry.
    pub expires_ms: Option<i64>,
}

/// A new API token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What it is for.
    #[serde(default)]
    pub label: String,
}

/// The caller's sessions and tokens.
#[utoipa::path(get, path = "/api/tokens", tag = "auth", responses((status = 200, body = [TokenInfo]), (status = 401, body = ErrorBody)))]
pub(super) async fn list_tokens(
    State(state): State<AppState>,
    p: Principal,
) -> ApiResult<Json<Vec<TokenInfo>>> {
    need(&p, Need::Login)?;
    Ok(Json(
        state
            .store
            .list_tokens(&p.user)?
            .into_iter()
            .map(|t| TokenInfo {
                id: t.id,
                kind: t.kind,
                label: t.label,
                created_ms: t.created_ms,
                expires_ms: t.expires_ms,
            })
            .collect(),
    ))
}

/// Issues an API token for the caller (shown once).
#[utoipa::path(post, path = "/api/tokens", tag = "auth", request_body = NewToken,
    responses((status = 201, body = Issued), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_token(
    State(state): State<AppState>,
    p: Principal,
    Body(n): Body<NewToken>,
) -> ApiResult<(StatusCode, Json<Issued>)> {
    need(&p, Need::Login)?;
    if n.label.len() > 200 {
        return Err(ApiError::bad("label: at most 200 bytes"));
    }
    let user = p.user.clone();
    if db(&state, move |s| s.get_user(&user)).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("'{}' is not a stored user; create a user for tokens", p.user),
        ));
    }
    let (user, label) = (p.user.clone(), n.label.clone());
    let (token, rec) = db(&state, move |s| auth::issue(s, &user, "api", &label)).await?;
    Ok((StatusCode::CREATED, Json(Issued { token, id: rec.id, user: rec.user, expires_ms: None })))
}

/// Revokes one of the caller's tokens (administrators: anyone's).
#[utoipa::path(delete, path = "/api/tokens/{id}", tag = "auth", params(("id" = String, Path, description = "Token id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_token(
    State(state): State<AppState>,
    p: Principal,
    P(id): P<String>,
) -> ApiResult<StatusCode> {
    need(&p, Need::Login)?;
    let asked = id.clone();
    let t = db(&state, move |s| s.get_token(&asked)).await?;
    match t {
        Some(t) if t.user == p.user || p.admin => {
            db(&state, move |s| s.delete_token(&id)).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no token '{id}'"))),
    }
}

/// Every right.
#[utoipa::path(get, path = "/api/acl", tag = "users", responses((status = 200, body = [Right]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn list_acl(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Vec<Right>>> {
    need(&p, Need::Admin)?;
    Ok(Json(db(&state, |s| s.acl(None, None)).await?.into_iter().filter_map(right_of).collect()))
}

/// Grants a user a right on a VM, a storage pool or a network.
#[utoipa::path(post, path = "/api/acl", tag = "users", request_body = Right,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn grant(
    State(state): State<AppState>,
    p: Principal,
    Body(r): Body<Right>,
) -> ApiResult<StatusCode> {
    need(&p, Need::Admin)?;
    let user = r.user.clone();
    if db(&state, move |s| s.get_user(&user)).await?.is_none() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no user '{}'", r.user)));
    }
    let object = match (&r.vm, &r.pool, &r.network, &r.template) {
        (None, None, None, Some(t)) => {
            let (d, name) = (state.daemon.clone(), t.clone());
            super::blocking(move || d.call(Request::TemplateShow { name }).map_err(ApiError::from)).await?;
            confine::template_object(t)
        }
        (Some(vm), None, None, None) => {
            if !state.daemon.has_vm(vm) {
                return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no VM named '{vm}'")));
            }
            vm.clone()
        }
        (None, Some(pool), None, None) => {
            state.daemon.ctx().pools.dir(pool)?;
            confine::pool_object(pool)
        }
        (None, None, Some(net), None) => {
            if !state.daemon.ctx().networks.exists(net) {
                return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no network named '{net}'")));
            }
            confine::network_object(net)
        }
        _ => return Err(ApiError::bad("give exactly one of vm, pool, network and template")),
    };
    if (r.pool.is_some() || r.network.is_some()) && r.right != RightKind::Use {
        return Err(ApiError::bad("pools and networks have one right: use"));
    }
    let entry = AclEntry { user: r.user, vm: object, right: r.right.name().into() };
    db(&state, move |s| s.grant(&entry)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes a right on a storage pool.
#[utoipa::path(delete, path = "/api/acl/{user}/pools/{pool}/{right}", tag = "users",
    params(("user" = String, Path, description = "User"), ("pool" = String, Path, description = "Storage pool"), ("right" = RightKind, Path, description = "Right")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke_pool(
    State(state): State<AppState>,
    p: Principal,
    P((user, pool, right)): P<(String, String, RightKind)>,
) -> ApiResult<StatusCode> {
    need(&p, Need::Admin)?;
    let entry = AclEntry { user, vm: confine::pool_object(&pool), right: right.name().into() };
    db(&state, move |s| s.revoke(&entry)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes a right on a template.
#[utoipa::path(delete, path = "/api/acl/{user}/templates/{template}/{right}", tag = "users",
    params(("user" = String, Path, description = "User"), ("template" = String, Path, description = "Template"), ("right" = RightKind, Path, description = "Right")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke_template(
    State(state): State<AppState>,
    p: Principal,
    P((user, template, right)): P<(String, String, RightKind)>,
) -> ApiResult<StatusCode> {
    need(&p, Need::Admin)?;
    let entry = AclEntry { user, vm: confine::template_object(&template), right: right.name().into() };
    db(&state, move |s| s.revoke(&entry)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes a right on a network.
#[utoipa::path(delete, path = "/api/acl/{user}/networks/{net}/{right}", tag = "users",
    params(("user" = String, Path, description = "User"), ("net" = String, Path, description = "Network"), ("right" = RightKind, Path, description = "Right")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke_network(
    State(state): State<AppState>,
    p: Principal,
    P((user, net, right)): P<(String, String, RightKind)>,
) -> ApiResult<StatusCode> {
    need(&p, Need::Admin)?;
    let entry = AclEntry { user, vm: confine::network_object(&net), right: right.name().into() };
    db(&state, move |s| s.revoke(&entry)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes a right.
#[utoipa::path(delete, path = "/api/acl/{user}/{vm}/{right}", tag = "users",
    params(("user" = String, Path, description = "User"), ("vm" = String, Path, description = "VM"), ("right" = RightKind, Path, description = "Right")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke(
    State(state): State<AppState>,
    p: Principal,
    P((user, vm, right)): P<(String, String, RightKind)>,
) -> ApiResult<StatusCode> {
    need(&p, Need::Admin)?;
    let entry = AclEntry { user, vm, right: right.name().into() };
    db(&state, move |s| s.revoke(&entry)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An event script.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Hook {
    /// Id.
    pub id: u64,
    /// Event kind, e.g. `vm.crashed`.
    pub event: String,
    /// Executable.
    pub script: String,
    /// Only for this VM.
    pub vm: Option<String>,
    /// Seconds before it is killed.
    pub timeout_s: u32,
}

/// A new event script.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewHook {
    /// Event kind, e.g. `vm.crashed`, or `*` for all.
    pub event: String,
    /// Absolute path of an executable.
    pub script: String,
    /// Only for this VM.
    #[serde(default)]
    pub vm: Option<String>,
    /// Seconds before it is killed (default 30, 1–3600).
    #[serde(default)]
    pub timeout_s: Option<u32>,
}

/// Event scripts.
#[utoipa::path(get, path = "/api/hooks", tag = "hooks", responses((status = 200, body = [Hook]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn list_hooks(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Vec<Hook>>> {
    need(&p, Need::Admin)?;
    Ok(Json(
        state
            .store
            .list_hooks()?
            .into_iter()
            .map(|h| Hook { id: h.id, event: h.event, script: h.script, vm: h.vm, timeout_s: h.timeout_s })
            .collect(),
    ))
}

/// Adds an event script: it runs with the event in its environment (VINE_EVENT, VINE_VM,
/// VINE_LEVEL, VINE_MESSAGE, VINE_EVENT_ID, VINE_TIME_MS); its output and exit status are logged.
#[utoipa::path(post, path = "/api/hooks", tag = "hooks", request_body = NewHook,
    responses((status = 201, body = Hook), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn create_hook(
    State(state): State<AppState>,
    p: Principal,
    Body(n): Body<NewHook>,
) -> ApiResult<(StatusCode, Json<Hook>)> {
    need(&p, Need::Admin)?;
    let ok_event = n.event == "*"
        || (n.event.len() <= 64
            && n.event.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            && !n.event.is_empty());
    if !ok_event {
        return Err(ApiError::bad(format!(
            "event: {:?} is not an event kind like vm.crashed (or *)",
            n.event
        )));
    }
    crate::hooks::check_script(std::path::Path::new(&n.script))
        .map_err(|e| ApiError::bad(format!("script: {e}")))?;
    let timeout_s = n.timeout_s.unwrap_or(30);
    if !(1..=3600).contains(&timeout_s) {
        return Err(ApiError::bad("timeout_s: must be 1 to 3600"));
    }
    let rec = HookRecord { id: 0, event: n.event, script: n.script, vm: n.vm, timeout_s };
    let stored = rec.clone();
    let id = db(&state, move |s| s.add_hook(&stored)).await?;
    Ok((StatusCode::CREATED, Json(Hook { id, event: rec.event, script: rec.script, vm: rec.vm, timeout_s })))
}

/// Removes an event script.
#[utoipa::path(delete, path = "/api/hooks/{id}", tag = "hooks", params(("id" = u64, Path, description = "Hook id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_hook(
    State(state): State<AppState>,
    p: Principal,
    P(id): P<u64>,
) -> ApiResult<StatusCode> {
    need(&p, Need::Admin)?;
    db(&state, move |s| s.delete_hook(id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
