//! A VM's NICs and the virtual networks: list, create, show, delete, reservations, leases.

use super::*;

/// Plugs a new NIC into a network (the VM must be off).
#[utoipa::path(post, path = "/api/vms/{name}/nics", tag = "vms", request_body = NewNic,
    params(("name" = String, Path, description = "VM name")),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn add_nic(
    State(state): State<AppState>,
    p: Principal,
    P(name): P<String>,
    Body(n): Body<NewNic>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Configure(&name))?;
    need(&p, Need::UseNetwork(&n.network))?;
    Ok(Json(call(&state, Request::VmNicAdd { name, network: n.network, mac: n.mac }).await?))
}

/// Removes NIC `index` (0 = the first; the VM must be off).
#[utoipa::path(delete, path = "/api/vms/{name}/nics/{index}", tag = "vms",
    params(("name" = String, Path, description = "VM name"), ("index" = usize, Path, description = "NIC position")),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn remove_nic(
    State(state): State<AppState>,
    p: Principal,
    P((name, index)): P<(String, usize)>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Configure(&name))?;
    Ok(Json(call(&state, Request::VmNicRemove { name, index }).await?))
}

/// Virtual networks.
#[utoipa::path(get, path = "/api/networks", tag = "networks", responses((status = 200, body = [Object]), (status = 401, body = ErrorBody)))]
pub(super) async fn list_networks(State(state): State<AppState>, p: Principal) -> ApiResult<Json<Value>> {
    need(&p, Need::Login)?;
    Ok(Json(call(&state, Request::NetworkList).await?))
}

/// Creates a virtual network: `{"name", "kind": internal|host|nat|bridged, "subnet", "range",
/// "gateway", "dns": [..], "lease_s", "uplink", "no_dhcp", "span"}` (see docs/network.md).
#[utoipa::path(post, path = "/api/networks", tag = "networks", request_body = Object,
    responses((status = 201, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_network(
    State(state): State<AppState>,
    p: Principal,
    Body(v): Body<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    need(&p, Need::Admin)?;
    let a: daemon::protocol::NetworkCreate = serde_json::from_value(v)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("network: {e}")))?;
    Ok((StatusCode::CREATED, Json(call(&state, Request::NetworkCreate(a)).await?)))
}

/// One network.
#[utoipa::path(get, path = "/api/networks/{net}", tag = "networks", params(("net" = String, Path, description = "Network")),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn show_network(
    State(state): State<AppState>,
    p: Principal,
    P(net): P<String>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Login)?;
    Ok(Json(call(&state, Request::NetworkShow { name: net }).await?))
}

/// Deletes a network no NIC uses (its bridge, rules and DHCP server go with it).
#[utoipa::path(delete, path = "/api/networks/{net}", tag = "networks", params(("net" = String, Path, description = "Network")),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn delete_network(
    State(state): State<AppState>,
    p: Principal,
    P(net): P<String>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Admin)?;
    let v = call(&state, Request::NetworkDelete { name: net.clone() }).await?;
    db(&state, move |s| s.revoke_vm(&confine::network_object(&net))).await?;
    Ok(Json(v))
}

/// A static DHCP reservation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reservation {
    /// The client's MAC.
    pub mac: String,
    /// The address it always gets.
    pub ip: String,
}

/// Reserves an address for a MAC.
#[utoipa::path(post, path = "/api/networks/{net}/reservations", tag = "networks", request_body = Reservation,
    params(("net" = String, Path, description = "Network")),
    responses((status = 200, body = Object), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn reserve(
    State(state): State<AppState>,
    p: Principal,
    P(net): P<String>,
    Body(r): Body<Reservation>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Admin)?;
    Ok(Json(call(&state, Request::NetworkReserve { name: net, mac: r.mac, ip: r.ip }).await?))
}

/// The leases of a network's DHCP server.
#[utoipa::path(get, path = "/api/networks/{net}/leases", tag = "networks", params(("net" = String, Path, description = "Network")),
    responses((status = 200, body = [Object]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn leases(
    State(state): State<AppState>,
    p: Principal,
    P(net): P<String>,
) -> ApiResult<Json<Value>> {
    need(&p, Need::Admin)?;
    Ok(Json(call(&state, Request::NetworkLeases { name: net }).await?))
}
