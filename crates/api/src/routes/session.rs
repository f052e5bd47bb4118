//! Logging in and out, and what a user may see of themselves: who they are, their rights, their
//! own password.

use super::*;

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

/// A new session or token; the secret is shown only now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Issued {
    /// `id.secret`, for `Authorization: Bearer`.
    pub token: String,
    /// Token id (to revoke it).
    pub id: String,
    /// The user.
    pub user: String,
    /// Expiry, ms since the epoch (sessions).
    pub expires_ms: Option<i64>,
}

/// Logs in: answers a session token and sets the session cookie.
#[utoipa::path(post, path = "/api/login", request_body = Login, tag = "auth", security(()),
    responses((status = 200, body = Issued), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 429, body = ErrorBody, description = "Too many failed logins of this user from this address \
               (or from this address): try again after the Retry-After header's seconds")))]
pub(super) async fn login(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    Body(l): Body<Login>,
) -> ApiResult<Response> {
    check_login(&state, &l.user, l.password, peer_addr(peer.map(|p| p.0))).await?;
    let store = state.store.clone();
    let user = l.user.clone();
    let (token, rec) =
        blocking(move || Ok(auth::issue(store.as_ref(), &user, "session", "web login")?)).await?;
    let cookie = format!(
        "{}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        auth::COOKIE,
        auth::SESSION_MS / 1000
    );
    let body = Issued { token, id: rec.id, user: rec.user, expires_ms: rec.expires_ms };
    Ok(([(SET_COOKIE, cookie)], Json(body)).into_response())
}

/// The address logins from `peer` are throttled by (the local socket: loopback).
pub(crate) fn peer_addr(peer: Option<Peer>) -> std::net::IpAddr {
    match peer {
        Some(Peer::Remote(a)) => a.ip(),
        _ => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
    }
}

/// Checks a user's password as a login does, for `POST /api/login` and Redfish's sessions and
/// Basic authentication alike: bounded lengths (400), failed logins slowed per user and address
/// (429 with `Retry-After`), the hash checked on the hashing threads, a failure logged (401).
pub(crate) async fn check_login(
    state: &AppState,
    user: &str,
    password: String,
    addr: std::net::IpAddr,
) -> ApiResult<()> {
    if user.is_empty() || user.len() > auth::MAX_USER_NAME || password.len() > auth::MAX_PASSWORD {
        return Err(ApiError::bad(format!(
            "user must be 1 to {} bytes and password at most {} bytes",
            auth::MAX_USER_NAME,
            auth::MAX_PASSWORD
        )));
    }
    let now = auth::now_ms().max(0) as u64;
    let throttled = state.throttle.lock().unwrap_or_else(|p| p.into_inner()).check(user, addr, now);
    if let Err(t) = throttled {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed logins of {}; try again in {} s", t.what, t.retry_after_s),
        );
        e.retry_after_s = Some(t.retry_after_s);
        return Err(e);
    }
    let (store, name) = (state.store.clone(), user.to_string());
    let hash = blocking(move || Ok(store.get_user(&name)?.map(|u| u.password_hash))).await?;
    let ok = state
        .hasher
        .run(move || {
            // An unknown user is checked against a stand-in hash: the same work as a wrong password.
            let matches = auth::verify_password(&password, hash.as_deref().unwrap_or(auth::stand_in_hash()));
            matches && hash.is_some()
        })
        .await?;
    if !ok {
        let starts = state.throttle.lock().unwrap_or_else(|p| p.into_inner()).failed(user, addr, now);
        let who = format!("{:?}", daemon::protocol::clip(user));
        tracing::warn!(user = who, %addr, "failed login");
        let d = state.daemon.clone();
        // Logged in the background: the answer does not wait for the event's commit, so a wrong
        // password and an unknown user both answer as soon as the hash is checked.
        tokio::task::spawn_blocking(move || {
            d.ctx().event(
                None,
                "warning",
                "auth.login-failed",
                &format!("failed login of user {who} from {addr}"),
            );
            if starts {
                d.ctx().event(
                    None,
                    "warning",
                    "auth.throttled",
                    &format!("logins of user {who} from {addr} are now slowed down after repeated failures"),
                );
            }
        });
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong user name or password"));
    }
    state.throttle.lock().unwrap_or_else(|p| p.into_inner()).succeeded(user, addr);
    Ok(())
}

/// Ends the session (or revokes the token) this request came with.
#[utoipa::path(post, path = "/api/logout", tag = "auth", responses((status = 204), (status = 401, body = ErrorBody)))]
pub(super) async fn logout(State(state): State<AppState>, p: Principal) -> ApiResult<Response> {
    need(&p, Need::Login)?;
    if let Some(id) = p.token {
        db(&state, move |s| s.delete_token(&id)).await?;
    }
    let clear = format!("{}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0", auth::COOKIE);
    Ok((StatusCode::NO_CONTENT, [(SET_COOKIE, clear)]).into_response())
}

/// The caller and their rights.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// User name.
    pub user: String,
    /// Administrator.
    pub admin: bool,
    /// May create VMs.
    pub can_create: bool,
    /// Rights on VMs.
    pub rights: Vec<Right>,
}

/// One right of one user on one object: a VM (`configure`, `use`), a storage pool or a network
/// (`use`). Exactly one of `vm`, `pool` and `network` is given.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Right {
    /// The user.
    pub user: String,
    /// The VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// The storage pool (`use`: make, upload and attach its volumes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The network (`use`: attach NICs to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// The template (`use`: make VMs from it; `configure`: delete it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The right.
    pub right: RightKind,
}

/// Rights (Virtual Server's configure a VM and use a VM; use a pool, use a network).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RightKind {
    /// Change a VM's configuration, delete it.
    Configure,
    /// A VM's console and power controls; a pool's volumes; a network's ports.
    Use,
}

impl RightKind {
    pub(super) fn name(self) -> &'static str {
        match self {
            RightKind::Configure => "configure",
            RightKind::Use => "use",
        }
    }
}

pub(super) fn right_of(e: AclEntry) -> Option<Right> {
    let right = match e.right.as_str() {
        "configure" => RightKind::Configure,
        "use" => RightKind::Use,
        _ => return None,
    };
    let mut r = Right { user: e.user, vm: None, pool: None, network: None, template: None, right };
    if let Some(pool) = e.vm.strip_prefix("pool/") {
        r.pool = Some(pool.into());
    } else if let Some(net) = e.vm.strip_prefix("network/") {
        r.network = Some(net.into());
    } else if let Some(t) = e.vm.strip_prefix("template/") {
        r.template = Some(t.into());
    } else {
        r.vm = Some(e.vm);
    }
    Some(r)
}

/// Who am I.
#[utoipa::path(get, path = "/api/me", tag = "auth", responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub(super) async fn me(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Me>> {
    need(&p, Need::Login)?;
    let user = p.user.clone();
    let rights =
        db(&state, move |s| s.acl(Some(&user), None)).await?.into_iter().filter_map(right_of).collect();
    Ok(Json(Me { user: p.user, admin: p.admin, can_create: p.can_create, rights }))
}

/// A new password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPassword {
    /// At least 8 characters.
    pub password: String,
}

pub(super) fn check_password(pw: &str) -> ApiResult<()> {
    if pw.chars().count() < 8 || pw.len() > 1024 {
        return Err(ApiError::bad("password: must be 8 to 1024 characters"));
    }
    Ok(())
}

/// Changes the caller's password.
#[utoipa::path(put, path = "/api/me/password", request_body = NewPassword, tag = "auth",
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn my_password(
    State(state): State<AppState>,
    p: Principal,
    Body(n): Body<NewPassword>,
) -> ApiResult<StatusCode> {
    need(&p, Need::Login)?;
    check_password(&n.password)?;
    let store = state.store.clone();
    let hash = state.hasher.run(move || auth::hash_password(&n.password)).await?;
    blocking(move || {
        let mut u = store.get_user(&p.user)?.ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("'{}' is not a stored user", p.user))
        })?;
        u.password_hash = hash;
        store.update_user(&u)?;
        auth::end_sessions(store.as_ref(), &p.user, p.token.as_deref())?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}
