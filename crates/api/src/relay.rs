//! Consoles of a VM another host of the pool owns. The caller's rights are checked here, as for
//! every request; then this host opens the same websocket on the owner (TLS with the owner's
//! certificate pinned by the fingerprint it published, the pool's secret as the credential) and
//! relays every message both ways until either side closes. The owner's refusal (a VM with no
//! graphical console now, say) comes back as this host's answer, before the caller's websocket is
//! accepted.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::auth::POOL_TOKEN_PREFIX;
use crate::routes::{ApiError, AppState};

type Remote = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// Opens websocket `path` on `host` (with subprotocol `binary` for a graphical console).
async fn open(state: &AppState, vm: &str, host: &str, path: &str, binary: bool) -> Result<Remote, ApiError> {
    let unreachable = |why: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("VM '{vm}' is on host '{host}', which did not answer: {why}"),
        )
    };
    let d = state.daemon.clone();
    let h = host.to_string();
    let (contact, secret) = tokio::task::spawn_blocking(move || (d.host_contact(&h), d.pool_secret()))
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let (url, fingerprint) = contact.map_err(ApiError::from)?;
    let secret = secret.ok_or_else(|| unreachable("this host cannot read the pool's secret".into()))?;
    let addr = url.strip_prefix("https://").unwrap_or(&url).to_string();
    let config = crate::client::Client::pinned_config(&fingerprint).map_err(unreachable)?;
    let tcp = tokio::time::timeout(std::time::Duration::from_secs(5), tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| unreachable("no connection within 5 s".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
    let name = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(&addr).trim_matches(['[', ']']).to_string();
    let server = rustls::pki_types::ServerName::try_from(name).map_err(|e| unreachable(e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(server, tcp)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let mut req =
        format!("wss://{addr}{path}").into_client_request().map_err(|e| unreachable(e.to_string()))?;
    let auth = format!("Bearer {POOL_TOKEN_PREFIX}{secret}");
    req.headers_mut()
        .insert("authorization", auth.parse().map_err(|_| unreachable("the pool's secret".into()))?);
    if binary {
        req.headers_mut().insert("sec-websocket-protocol", axum::http::HeaderValue::from_static("binary"));
    }
    match tokio_tungstenite::client_async(req, tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => {
            let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let body = resp.body().as_deref().map(String::from_utf8_lossy).unwrap_or_default().to_string();
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| format!("host '{host}' answered {status}"));
            Err(ApiError::new(status, message))
        }
        Err(e) => Err(unreachable(e.to_string())),
    }
}

/// Accepts the caller's websocket and relays it to the same console on the VM's owner.
pub async fn relay(
    state: &AppState,
    ws: WebSocketUpgrade,
    vm: &str,
    host: &str,
    path: &str,
    binary: bool,
) -> Result<Response, ApiError> {
    let remote = open(state, vm, host, path, binary).await?;
    let (vm, host) = (Arc::<str>::from(vm), Arc::<str>::from(host));
    tracing::info!(vm = &*vm, host = &*host, "console relayed to the VM's host");
    let ws = if binary { ws.protocols(["binary"]) } else { ws };
    Ok(ws.on_upgrade(move |socket| pump(socket, remote, vm)))
}

async fn pump(mut local: WebSocket, mut remote: Remote, vm: Arc<str>) {
    loop {
        tokio::select! {
            m = local.recv() => {
                let out = match m {
                    Some(Ok(Message::Binary(b))) => tungstenite::Message::Binary(b),
                    Some(Ok(Message::Text(t))) => tungstenite::Message::text(t.as_str()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                };
                if remote.send(out).await.is_err() {
                    break;
                }
            }
            m = remote.next() => {
                let out = match m {
                    Some(Ok(tungstenite::Message::Binary(b))) => Message::Binary(b),
                    Some(Ok(tungstenite::Message::Text(t))) => Message::Text(t.as_str().into()),
                    Some(Ok(tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) | tungstenite::Message::Frame(_))) => continue,
                    Some(Ok(tungstenite::Message::Close(_)) | Err(_)) | None => break,
                };
                if local.send(out).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = local.send(Message::Close(None)).await;
    let _ = remote.close(None).await;
    tracing::info!(vm = &*vm, "relayed console detached");
}
