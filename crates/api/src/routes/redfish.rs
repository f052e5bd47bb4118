//! A Redfish service (DMTF DSP0266, schemas DSP8010) at `/redfish/v1`, so that tools written for
//! servers' management controllers (OpenStack Ironic through `sushy`, Redfish scripts) manage the
//! pool's VMs: each VM the caller may see is a `ComputerSystem` (power state, processors,
//! memory, and `ComputerSystem.Reset` carried out by vine's controls); each pool host is a
//! `Manager` and a `Chassis`; `SessionService` sessions are vine login sessions.
//!
//! It is a second protocol, not a second path to the VMs: the caller is vine's own
//! [`Principal`] (an `X-Auth-Token` session, HTTP Basic checked like a login, or anything the
//! REST API accepts), rights are checked with [`need`], and VMs are read and controlled through
//! [`call`] (forwarded to the owning host like any request). A VM the caller may not see is
//! absent from `Systems` and answers 404, so names do not leak; one they may see but not use
//! answers 403 to a reset. The root, `/redfish`, `odata` and `$metadata` are open, as DSP0266
//! requires; everything else needs credentials (401). Every error is a Redfish error
//! ([`error`]). It stays out of the OpenAPI document, which describes vine's own API.

mod error;
mod power;
mod resources;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, RawPathParams, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use daemon::protocol::{ControlOptions, Request, VmInfo};
use serde_json::Value;

use self::error::{MessageId, RfError, RfResult};
use self::power::{plan, ResetType};
use self::resources::*;
use super::{blocking, call, call_typed, check_login, db, need, peer_addr, AppState, Need};
use crate::auth::{self, Principal};
use crate::Peer;

/// The Redfish service: [`router`] behind a step that drops a trailing `/` (clients ask for
/// `/redfish/v1/` as often as `/redfish/v1`).
type Service = tower::util::MapRequest<Router, fn(axum::extract::Request) -> axum::extract::Request>;

/// The wildcard of the route the service is mounted at (its own routes' parameters follow it).
const MOUNT_REST: &str = "rest";

/// `app` with the Redfish service over `state` at `/redfish` and below.
pub(super) fn mount(app: Router<AppState>, state: &AppState) -> Router<AppState> {
    use tower::ServiceExt;
    let service: Service =
        router(state.clone()).map_request(trim_slash as fn(axum::extract::Request) -> axum::extract::Request);
    app.route_service("/redfish", service.clone())
        .route_service("/redfish/", service.clone())
        .route_service(&format!("/redfish/{{*{MOUNT_REST}}}"), service)
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/redfish", get(versions))
        .route(ROOT, get(root))
        .route("/redfish/v1/odata", get(odata))
        .route("/redfish/v1/$metadata", get(metadata))
        .route(SYSTEMS, get(systems))
        .route("/redfish/v1/Systems/{id}", get(system))
        .route("/redfish/v1/Systems/{id}/Actions/ComputerSystem.Reset", post(reset))
        .route("/redfish/v1/Systems/{id}/Processors", get(processors))
        .route("/redfish/v1/Systems/{id}/Processors/{cpu}", get(processor))
        .route("/redfish/v1/Systems/{id}/Memory", get(memories))
        .route("/redfish/v1/Systems/{id}/Memory/{dimm}", get(memory))
        .route(MANAGERS, get(managers))
        .route("/redfish/v1/Managers/{id}", get(manager))
        .route(CHASSIS, get(chassis_list))
        .route("/redfish/v1/Chassis/{id}", get(chassis))
        .route(SESSION_SERVICE, get(session_service))
        .route(SESSIONS, get(sessions).post(create_session))
        .route("/redfish/v1/SessionService/Sessions/{id}", get(session).delete(delete_session))
        .fallback(missing)
        .method_not_allowed_fallback(not_allowed)
        .with_state(state)
        .layer(axum::middleware::map_response(odata_version))
}

fn trim_slash(mut req: axum::extract::Request) -> axum::extract::Request {
    let path = req.uri().path();
    let trimmed = path.trim_end_matches('/');
    if trimmed.len() != path.len() && !trimmed.is_empty() {
        let uri = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_string(),
        };
        if let Ok(uri) = uri.parse::<Uri>() {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// DSP0266: every answer carries `OData-Version: 4.0`.
async fn odata_version(mut r: Response) -> Response {
    r.headers_mut().insert(HeaderName::from_static("odata-version"), HeaderValue::from_static("4.0"));
    r
}

async fn missing(uri: Uri) -> RfError {
    RfError::missing(uri.path())
}

async fn not_allowed(method: Method, uri: Uri) -> RfError {
    RfError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        MessageId::GeneralError,
        format!("{method} is not allowed on {}", uri.path()),
        &[],
    )
    .resolve("Use a method the resource supports (most resources of this service are read-only).")
}

// ----- who is asking -----

/// The caller of a Redfish request: a session (`X-Auth-Token`), HTTP Basic (checked, throttled
/// and logged like a login), or anything vine's API accepts (a bearer token, the session cookie,
/// root on the local socket).
struct Caller(Principal);

const X_AUTH_TOKEN: &str = "x-auth-token";

fn no_session(why: &str) -> RfError {
    RfError::new(StatusCode::UNAUTHORIZED, MessageId::NoValidSession, why, &[]).resolve(format!(
        "Create a session (POST {SESSIONS} with UserName and Password) and send its X-Auth-Token, \
         or use HTTP Basic authentication."
    ))
}

/// The user and password of an `Authorization: Basic` header, if the request has one.
fn basic_credentials(headers: &HeaderMap) -> RfResult<Option<(String, String)>> {
    use base64::Engine;
    let Some(value) = headers.get(AUTHORIZATION) else { return Ok(None) };
    let Some(encoded) = value.to_str().ok().and_then(|v| {
        let (scheme, rest) = v.split_once(' ')?;
        scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
    }) else {
        return Ok(None);
    };
    let bad = || no_session("the Basic credentials are not base64 of UTF-8 'user:password'");
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (user, password) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some((user.to_string(), password.to_string())))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = RfError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if let Some(token) = parts.headers.get(X_AUTH_TOKEN) {
            let token = token.to_str().map_err(|_| no_session("the X-Auth-Token is not text"))?.to_string();
            let store = state.store.clone();
            let p = blocking(move || Ok(auth::check_token(store.as_ref(), &token))).await?;
            return p
                .map(Caller)
                .ok_or_else(|| no_session("the session of this X-Auth-Token is not valid (any more)"));
        }
        if let Some((user, password)) = basic_credentials(&parts.headers)? {
            let addr = peer_addr(parts.extensions.get::<Peer>().copied());
            check_login(state, &user, password, addr).await?;
            let store = state.store.clone();
            let p = blocking(move || Ok(auth::principal_of(store.as_ref(), &user, None))).await?;
            return p.map(Caller).ok_or_else(|| no_session("this user no longer exists"));
        }
        match Principal::from_request_parts(parts, state).await {
            Ok(p) => Ok(Caller(p)),
            Err(e) if e.status() == StatusCode::UNAUTHORIZED => {
                Err(no_session("this request has no valid credentials"))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The path parameters of a Redfish route (one, or a tuple); one that cannot be read names no
/// resource (404).
struct Id<T>(T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Id<T> {
    type Rejection = RfError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let path = parts.uri.path().to_string();
        let missing = || RfError::missing(&path);
        let raw = RawPathParams::from_request_parts(parts, state).await.map_err(|_| missing())?;
        let mut values: Vec<Value> =
            raw.iter().filter(|(k, _)| *k != MOUNT_REST).map(|(_, v)| Value::String(v.to_string())).collect();
        let v = if values.len() == 1 { values.remove(0) } else { Value::Array(values) };
        serde_json::from_value(v).map(Id).map_err(|_| missing())
    }
}

/// Whether `p` may see VM `vm` (configure or use it): vine's own listing rule.
fn visible(p: &Principal, vm: &str) -> bool {
    need(p, Need::See(vm)).is_ok()
}

/// A JSON request body: `Content-Type: application/json` (DSP0266; it also keeps browsers'
/// cross-site forms out), an object.
fn json_body(headers: &HeaderMap, body: &Bytes) -> RfResult<serde_json::Map<String, Value>> {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(RfError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            MessageId::GeneralError,
            "the request body must be sent with Content-Type: application/json",
            &[],
        )
        .resolve("Send the body as JSON with the header Content-Type: application/json."));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(RfError::malformed("the body must be a JSON object")),
        Err(e) => Err(RfError::malformed(&e.to_string())),
    }
}

// ----- the service root -----

async fn versions() -> Json<Versions> {
    Json(Versions { v1: "/redfish/v1/" })
}

async fn root() -> Json<ServiceRoot> {
    Json(ServiceRoot::new())
}

async fn odata() -> Json<OData> {
    Json(OData::new())
}

async fn metadata() -> Response {
    ([(CONTENT_TYPE, "application/xml")], METADATA).into_response()
}

// ----- systems: the VMs -----

/// The name of the host `vm` runs on: its owner in a pool, else this host.
fn host_of(state: &AppState, vm: &VmInfo) -> String {
    vm.host.clone().unwrap_or_else(|| state.daemon.ctx().host.hostname.clone())
}

/// VM `name`, if `p` may see it (else 404, as for a VM that does not exist).
async fn visible_vm(state: &AppState, p: &Principal, name: &str) -> RfResult<VmInfo> {
    if !visible(p, name) {
        return Err(RfError::not_found("ComputerSystem", name));
    }
    call_typed(state, Request::VmShow { name: name.to_string() }).await.map_err(|e| {
        if e.status() == StatusCode::NOT_FOUND {
            RfError::not_found("ComputerSystem", name)
        } else {
            e.into()
        }
    })
}

/// Links to the VMs `p` may see, of the host named `host` (every host's with `None`).
async fn visible_vms(state: &AppState, p: &Principal, host: Option<&str>) -> RfResult<Vec<Link>> {
    let all: Vec<VmInfo> = call_typed(state, Request::VmList).await?;
    Ok(all
        .iter()
        .filter(|v| visible(p, &v.name) && host.is_none_or(|h| host_of(state, v) == h))
        .map(|v| Link::to(system_uri(&v.name)))
        .collect())
}

async fn systems(State(state): State<AppState>, Caller(p): Caller) -> RfResult<Json<Collection>> {
    need(&p, Need::Login)?;
    let members = visible_vms(&state, &p, None).await?;
    Ok(Json(Collection::new(
        SYSTEMS,
        "#ComputerSystemCollection.ComputerSystemCollection",
        "Computer System Collection",
        members,
    )))
}

async fn system(
    State(state): State<AppState>,
    Caller(p): Caller,
    Id(id): Id<String>,
) -> RfResult<Json<ComputerSystem>> {
    let vm = visible_vm(&state, &p, &id).await?;
    Ok(Json(ComputerSystem::of(&vm, &host_of(&state, &vm))))
}

/// The reset type of a `ComputerSystem.Reset` body: `{"ResetType": "…"}` and nothing else.
fn reset_type(body: &serde_json::Map<String, Value>) -> RfResult<ResetType> {
    const PARAM: &str = "ResetType";
    if let Some(other) = body.keys().find(|k| *k != PARAM) {
        return Err(RfError::new(
            StatusCode::BAD_REQUEST,
            MessageId::ActionParameterUnknown,
            format!("The action {RESET_ACTION} was submitted with the invalid parameter {other}."),
            &[RESET_ACTION, other],
        )
        .resolve("Correct the invalid action parameter and resubmit the request if the operation failed."));
    }
    let value = body.get(PARAM).ok_or_else(|| {
        RfError::new(
            StatusCode::BAD_REQUEST,
            MessageId::ActionParameterMissing,
            format!("The action {RESET_ACTION} requires the parameter {PARAM} to be present in the request body."),
            &[RESET_ACTION, PARAM],
        )
        .resolve("Supply the action with the required parameter in the request body when the request is resubmitted.")
    })?;
    let Value::String(name) = value else {
        let shown = value.to_string();
        return Err(RfError::new(
            StatusCode::BAD_REQUEST,
            MessageId::ActionParameterValueTypeError,
            format!(
                "The value '{shown}' for the parameter {PARAM} in the action {RESET_ACTION} is of a different \
                 type than the parameter can accept."
            ),
            &[&shown, PARAM, RESET_ACTION],
        )
        .resolve("Send ResetType as a string."));
    };
    ResetType::parse(name).ok_or_else(|| {
        let allowed: Vec<&str> = ResetType::ALL.iter().map(|r| r.name()).collect();
        RfError::new(
            StatusCode::BAD_REQUEST,
            MessageId::ActionParameterValueNotInList,
            format!(
                "The value '{name}' for the parameter {PARAM} in the action {RESET_ACTION} is not in the list of \
                 acceptable values."
            ),
            &[name, PARAM, RESET_ACTION],
        )
        .resolve(format!("Choose one of: {}.", allowed.join(", ")))
    })
}

/// `ComputerSystem.Reset`: the reset type as vine controls ([`plan`]) from the VM's state,
/// carried out in order; 204 when done (or when there was nothing to do).
async fn reset(
    State(state): State<AppState>,
    Caller(p): Caller,
    Id(id): Id<String>,
    headers: HeaderMap,
    body: Bytes,
) -> RfResult<StatusCode> {
    if !visible(&p, &id) {
        return Err(RfError::not_found("ComputerSystem", &id));
    }
    need(&p, Need::Use(&id))?;
    let reset = reset_type(&json_body(&headers, &body)?)?;
    let vm = visible_vm(&state, &p, &id).await?;
    let controls = plan(reset, vm.state);
    tracing::info!(vm = %id, user = %p.user, reset = reset.name(), ?controls, "redfish reset");
    for control in controls {
        let req = Request::VmControl { name: id.clone(), control, options: ControlOptions::default() };
        call(&state, req).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn processors(
    State(state): State<AppState>,
    Caller(p): Caller,
    Id(id): Id<String>,
) -> RfResult<Json<Collection>> {
    let vm = visible_vm(&state, &p, &id).await?;
    let uri = format!("{}/Processors", system_uri(&vm.name));
    let members = vec![Link::to(format!("{uri}/{CPU_ID}"))];
    Ok(Json(Collection::new(
        uri,
        "#ProcessorCollection.ProcessorCollection",
        "Processors Collection",
        members,
    )))
}

async fn processor(
    State(state): State<AppState>,
    Caller(p): Caller,
    Id((id, cpu)): Id<(String, String)>,
    uri: Uri,
) -> RfResult<Json<Processor>> {
    let vm = visible_vm(&state, &p, &id).await?;
    if cpu != CPU_ID {
        return Err(RfError::missing(uri.path()));
    }
    Ok(Json(Processor::of(&vm)))
}

async fn memories(
    State(state): State<AppState>,
    Caller(p): Caller,
    Id(id): Id<String>,
) -> RfResult<Json<Collection>> {
    let vm = visible_vm(&state, &p, &id).await?;
    let uri = format!("{}/Memory", system_uri(&vm.name));
    let members = vec![Link::to(format!("{uri}/{MEMORY_ID}"))];
    Ok(Json(Collection::new(uri, "#MemoryCollection.MemoryCollection", "Memory Module Collection", members)))
}

async fn memory(
    State(state): State<AppState>,
    Caller(p): Caller,
    Id((id, dimm)): Id<(String, String)>,
    uri: Uri,
) -> RfResult<Json<Memory>> {
    let vm = visible_vm(&state, &p, &id).await?;
    if dimm != MEMORY_ID {
        return Err(RfError::missing(uri.path()));
    }
    Ok(Json(Memory::of(&vm)))
}

// ----- managers and chassis: the hosts -----

async fn host_links(state: &AppState, base: &str) -> RfResult<Vec<Link>> {
    let hosts: Vec<cluster::HostStatus> = call_typed(state, Request::HostList).await?;
    Ok(hosts.iter().map(|h| Link::to(format!("{base}/{}", h.record.name))).collect())
}

/// Host `name` (404 as a `kind` when there is none) and the links to its VMs `p` may see.
async fn host_and_vms(
    state: &AppState,
    p: &Principal,
    name: String,
    kind: &str,
) -> RfResult<(cluster::HostStatus, Vec<Link>)> {
    let h: cluster::HostStatus =
        call_typed(state, Request::HostShow { name: name.clone() }).await.map_err(|e| {
            if e.status() == StatusCode::NOT_FOUND {
                RfError::not_found(kind, &name)
            } else {
                e.into()
            }
        })?;
    let vms = visible_vms(state, p, Some(&h.record.name)).await?;
    Ok((h, vms))
}

async fn managers(State(state): State<AppState>, Caller(p): Caller) -> RfResult<Json<Collection>> {
    need(&p, Need::Login)?;
    let members = host_links(&state, MANAGERS).await?;
    Ok(Json(Collection::new(MANAGERS, "#ManagerCollection.ManagerCollection", "Manager Collection", members)))
}

async fn manager(
    State(state): State<AppState>,
    Caller(p): Caller,
    Id(id): Id<String>,
) -> RfResult<Json<Manager>> {
    need(&p, Need::Login)?;
    let (h, vms) = host_and_vms(&state, &p, id, "Manager").await?;
    Ok(Json(Manager::of(&h, vms)))
}

async fn chassis_list(State(state): State<AppState>, Caller(p): Caller) -> RfResult<Json<Collection>> {
    need(&p, Need::Login)?;
    let members = host_links(&state, CHASSIS).await?;
    Ok(Json(Collection::new(CHASSIS, "#ChassisCollection.ChassisCollection", "Chassis Collection", members)))
}

async fn chassis(
    State(state): State<AppState>,
    Caller(p): Caller,
    Id(id): Id<String>,
) -> RfResult<Json<Chassis>> {
    need(&p, Need::Login)?;
    let (h, vms) = host_and_vms(&state, &p, id, "Chassis").await?;
    Ok(Json(Chassis::of(&h, vms)))
}

// ----- sessions: vine login sessions -----

async fn session_service(Caller(p): Caller) -> RfResult<Json<SessionService>> {
    need(&p, Need::Login)?;
    Ok(Json(SessionService::new(auth::SESSION_MS / 1000)))
}

/// Logs in (as `POST /api/login` does, throttled alike): 201 with the session's token in
/// `X-Auth-Token` and its URI in `Location`.
async fn create_session(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    body: Bytes,
) -> RfResult<Response> {
    let body = json_body(&headers, &body)?;
    let field = |name: &str| -> RfResult<String> {
        match body.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(RfError::new(
                StatusCode::BAD_REQUEST,
                MessageId::PropertyMissing,
                format!("The property {name} is a required property and must be included in the request."),
                &[name],
            )
            .resolve("Send UserName and Password as strings.")),
        }
    };
    let (user, password) = (field("UserName")?, field("Password")?);
    check_login(&state, &user, password, peer_addr(peer.map(|p| p.0))).await?;
    let name = user.clone();
    let (token, rec) = db(&state, move |s| auth::issue(s, &name, "session", "redfish session")).await?;
    let s = Session::new(&rec.id, &user);
    // Token ids and secrets are hex (auth::issue): both headers are plain ASCII.
    let location = HeaderValue::from_str(&s.odata_id).expect("a hex session id makes a valid header");
    let token = HeaderValue::from_str(&token).expect("a hex token makes a valid header");
    let mut r = (StatusCode::CREATED, Json(s)).into_response();
    r.headers_mut().insert(HeaderName::from_static(X_AUTH_TOKEN), token);
    r.headers_mut().insert(LOCATION, location);
    Ok(r)
}

/// Session `id`, if it is `p`'s own (or `p` administers).
async fn own_session(state: &AppState, p: &Principal, id: String) -> RfResult<store::TokenRecord> {
    let asked = id.clone();
    match db(state, move |s| s.get_token(&asked)).await? {
        Some(t) if t.kind == "session" && (t.user == p.user || p.admin) => Ok(t),
        _ => Err(RfError::not_found("Session", &id)),
    }
}

async fn sessions(State(state): State<AppState>, Caller(p): Caller) -> RfResult<Json<Collection>> {
    need(&p, Need::Login)?;
    let (me, admin) = (p.user.clone(), p.admin);
    let tokens = db(&state, move |s| {
        let users = if admin { s.list_users()?.into_iter().map(|u| u.name).collect() } else { vec![me] };
        let mut all = Vec::new();
        for u in users {
            all.extend(s.list_tokens(&u)?.into_iter().filter(|t| t.kind == "session"));
        }
        Ok::<_, store::StoreError>(all)
    })
    .await?;
    let members = tokens.iter().map(|t| Link::to(format!("{SESSIONS}/{}", t.id))).collect();
    Ok(Json(Collection::new(SESSIONS, "#SessionCollection.SessionCollection", "Session Collection", members)))
}

async fn session(
    State(state): State<AppState>,
    Caller(p): Caller,
    Id(id): Id<String>,
) -> RfResult<Json<Session>> {
    let t = own_session(&state, &p, id).await?;
    Ok(Json(Session::new(&t.id, &t.user)))
}

/// Logs the session out.
async fn delete_session(
    State(state): State<AppState>,
    Caller(p): Caller,
    Id(id): Id<String>,
) -> RfResult<StatusCode> {
    let t = own_session(&state, &p, id).await?;
    db(&state, move |s| s.delete_token(&t.id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn a_reset_body_names_one_allowable_reset_type() {
        assert_eq!(
            reset_type(&object(serde_json::json!({"ResetType": "ForceOff"}))).unwrap(),
            ResetType::ForceOff
        );
        let cases = [
            (serde_json::json!({"ResetType": "Explode"}), MessageId::ActionParameterValueNotInList),
            (serde_json::json!({"ResetType": "on"}), MessageId::ActionParameterValueNotInList),
            (serde_json::json!({}), MessageId::ActionParameterMissing),
            (serde_json::json!({"ResetType": 1}), MessageId::ActionParameterValueTypeError),
            (serde_json::json!({"ResetType": "On", "Force": true}), MessageId::ActionParameterUnknown),
        ];
        for (body, id) in cases {
            let e = reset_type(&object(body.clone())).unwrap_err();
            assert_eq!((e.status(), e.id()), (StatusCode::BAD_REQUEST, id), "{body}");
        }
    }

    #[test]
    fn bodies_must_be_json_objects_sent_as_json() {
        let mut h = HeaderMap::new();
        let e = json_body(&h, &Bytes::from_static(b"{}")).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "no content type");
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        assert!(json_body(&h, &Bytes::from_static(b"{\"a\": 1}")).unwrap().contains_key("a"));
        for bad in [&b"[1]"[..], b"{", b"", b"\"x\""] {
            assert_eq!(
                json_body(&h, &Bytes::copy_from_slice(bad)).unwrap_err().id(),
                MessageId::MalformedJSON
            );
        }
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        let e = json_body(&h, &Bytes::from_static(b"{\"ResetType\": \"On\"}")).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "a cross-site form's type");
    }

    #[test]
    fn basic_credentials_are_read_and_malformed_ones_refused() {
        let mut h = HeaderMap::new();
        assert!(basic_credentials(&h).unwrap().is_none());
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc.def"));
        assert!(basic_credentials(&h).unwrap().is_none(), "someone else's scheme");
        // "admin:pa:ss" in base64: the password may hold a colon.
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic YWRtaW46cGE6c3M="));
        assert_eq!(basic_credentials(&h).unwrap(), Some(("admin".into(), "pa:ss".into())));
        h.insert(AUTHORIZATION, HeaderValue::from_static("basic !!!"));
        assert_eq!(basic_credentials(&h).unwrap_err().status(), StatusCode::UNAUTHORIZED);
        // "nocolon"
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic bm9jb2xvbg=="));
        assert_eq!(basic_credentials(&h).unwrap_err().id(), MessageId::NoValidSession);
    }

    #[test]
    fn a_trailing_slash_names_the_same_resource() {
        let req = |u: &str| axum::extract::Request::builder().uri(u).body(axum::body::Body::empty()).unwrap();
        assert_eq!(trim_slash(req("/redfish/v1/")).uri(), "/redfish/v1");
        assert_eq!(trim_slash(req("/redfish/v1/Systems/?a=b")).uri(), "/redfish/v1/Systems?a=b");
        assert_eq!(trim_slash(req("/redfish/v1")).uri(), "/redfish/v1");
        assert_eq!(trim_slash(req("/")).uri(), "/");
    }
}
