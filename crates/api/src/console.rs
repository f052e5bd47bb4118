//! Live channels of the web UI, authenticated like every endpoint (session cookie or token):
//!
//! * the serial console over a websocket: what the guest prints comes from the console log (so
//!   a viewer that attaches late sees the boot, and nothing is lost or doubled), what the viewer
//!   types goes to QEMU's serial socket (`console.sock`, which logs to `console.log`);
//! * the graphical console: a websocket carrying QEMU's VNC socket (`vnc.sock`) for noVNC;
//! * the event log as a server-sent event stream.
//!
//! A websocket from a page of another origin is refused (cross-site websocket hijacking). A
//! console of a VM another host of the pool owns is relayed from that host (`crate::relay`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::header::{HOST, ORIGIN};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use daemon::layout::VmPaths;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use utoipa::IntoParams;

use crate::auth::Principal;
use crate::routes::{need, ApiError, AppState, Event, Need, P, Q};

/// How much of the console log a new viewer is sent first.
pub const CONSOLE_TAIL: u64 = 256 << 10;
/// How often the console log is checked for new output.
const CONSOLE_POLL: Duration = Duration::from_millis(50);
/// How often a detached serial socket is tried again (the VM may start meanwhile).
const RECONNECT: Duration = Duration::from_secs(1);
/// Largest websocket message sent.
const CHUNK: usize = 64 << 10;
/// How often the event stream looks for new events.
const EVENT_POLL: Duration = Duration::from_millis(300);

type ApiResult<T> = Result<T, ApiError>;

/// Refuses a websocket opened by a page of another origin than this server.
fn same_origin(headers: &HeaderMap) -> ApiResult<()> {
    let Some(origin) = headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(()); // not a browser: the credentials alone decide
    };
    let host = headers.get(HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let authority = origin.split_once("://").map(|(_, a)| a).unwrap_or(origin);
    if !host.is_empty() && authority.eq_ignore_ascii_case(host) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        format!("websocket from origin {origin} refused: not this server"),
    ))
}

fn upgrade(ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>) -> ApiResult<WebSocketUpgrade> {
    ws.map_err(|r| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("a websocket upgrade is expected: {}", r.body_text()))
    })
}

/// The host of the pool that owns VM `name`, when it is not this one.
async fn owner_elsewhere(state: &AppState, name: &str) -> ApiResult<Option<String>> {
    if state.daemon.has_vm(name) {
        return Ok(None);
    }
    let (d, n) = (state.daemon.clone(), name.to_string());
    tokio::task::spawn_blocking(move || d.owner_elsewhere(&n))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("worker failed: {e}")))?
        .map_err(ApiError::from)
}

fn vm_paths(state: &AppState, name: &str) -> ApiResult<VmPaths> {
    if !state.daemon.has_vm(name) {
        return Err(ApiError::new(StatusCode::NOT_FOUND, format!("no VM named '{name}'")));
    }
    Ok(VmPaths::new(&state.daemon.ctx().data, name))
}

/// The serial console, live: binary messages both ways (guest output, keystrokes).
#[utoipa::path(get, path = "/api/vms/{name}/console/ws", tag = "vms", params(("name" = String, Path, description = "VM name")),
    responses((status = 101, description = "Websocket: the console log's last 256 KiB, then the guest's output as it comes; what the client sends goes to the serial port"),
              (status = 400, body = crate::routes::ErrorBody), (status = 401, body = crate::routes::ErrorBody),
              (status = 403, body = crate::routes::ErrorBody), (status = 404, body = crate::routes::ErrorBody)))]
pub async fn serial_ws(
    State(state): State<AppState>,
    p: Principal,
    P(name): P<String>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    need(&p, Need::Use(&name))?;
    same_origin(&headers)?;
    let ws = upgrade(ws)?;
    if let Some(host) = owner_elsewhere(&state, &name).await? {
        return crate::relay::relay(&state, ws, &name, &host, &format!("/api/vms/{name}/console/ws"), false)
            .await;
    }
    let paths = vm_paths(&state, &name)?;
    tracing::info!(vm = name, user = p.user, "serial console attached");
    Ok(ws.on_upgrade(move |socket| serial_bridge(socket, paths.console, paths.console_socket, name)))
}

/// New bytes of `log` from `*offset` (at most [`CHUNK`]); a log that shrank starts over.
fn read_new(log: &Path, offset: &mut u64) -> Vec<u8> {
    let Ok(mut f) = std::fs::File::open(log) else { return Vec::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len < *offset {
        *offset = 0;
    }
    if len == *offset || f.seek(SeekFrom::Start(*offset)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::with_capacity(((len - *offset) as usize).min(CHUNK));
    let _ = f.by_ref().take(CHUNK as u64).read_to_end(&mut buf);
    *offset += buf.len() as u64;
    buf
}

async fn serial_bridge(mut ws: WebSocket, log: PathBuf, sock: PathBuf, name: String) {
    let mut offset = std::fs::metadata(&log).map(|m| m.len().saturating_sub(CONSOLE_TAIL)).unwrap_or(0);
    let mut serial: Option<UnixStream> = None;
    let mut next_try = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(CONSOLE_POLL);
    let mut drain = vec![0u8; 4096];
    loop {
        if serial.is_none() && tokio::time::Instant::now() >= next_try {
            serial = UnixStream::connect(&sock).await.ok();
            next_try = tokio::time::Instant::now() + RECONNECT;
        }
        tokio::select! {
            msg = ws.recv() => {
                let bytes = match msg {
                    Some(Ok(Message::Binary(b))) => b.to_vec(),
                    Some(Ok(Message::Text(t))) => t.as_str().as_bytes().to_vec(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                };
                if let Some(s) = serial.as_mut() {
                    if s.write_all(&bytes).await.is_err() {
                        serial = None;
                    }
                }
            }
            // QEMU's socket echoes the output the log already has: drain it so the guest never
            // waits on a full socket.
            n = async { match serial.as_mut() { Some(s) => s.read(&mut drain).await, None => std::future::pending().await } } => {
                if !matches!(n, Ok(n) if n > 0) {
                    serial = None;
                }
            }
            _ = tick.tick() => {
                loop {
                    let (path, mut off) = (log.clone(), offset);
                    let Ok((chunk, off)) = tokio::task::spawn_blocking(move || (read_new(&path, &mut off), off)).await else { return };
                    offset = off;
                    if chunk.is_empty() {
                        break;
                    }
                    let full = chunk.len() == CHUNK;
                    if ws.send(Message::Binary(chunk.into())).await.is_err() {
                        tracing::info!(vm = name, "serial console detached");
                        return;
                    }
                    if !full {
                        break;
                    }
                }
            }
        }
    }
    tracing::info!(vm = name, "serial console detached");
}

/// The graphical console: the websocket carries the VM's VNC connection (RFB) for noVNC.
#[utoipa::path(get, path = "/api/vms/{name}/vnc/ws", tag = "vms", params(("name" = String, Path, description = "VM name")),
    responses((status = 101, description = "Websocket (subprotocol `binary` when asked) carrying RFB both ways"),
              (status = 400, body = crate::routes::ErrorBody), (status = 401, body = crate::routes::ErrorBody),
              (status = 403, body = crate::routes::ErrorBody), (status = 404, body = crate::routes::ErrorBody),
              (status = 409, body = crate::routes::ErrorBody)))]
pub async fn vnc_ws(
    State(state): State<AppState>,
    p: Principal,
    P(name): P<String>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    need(&p, Need::Use(&name))?;
    same_origin(&headers)?;
    let ws = upgrade(ws)?;
    if let Some(host) = owner_elsewhere(&state, &name).await? {
        return crate::relay::relay(&state, ws, &name, &host, &format!("/api/vms/{name}/vnc/ws"), true).await;
    }
    let paths = vm_paths(&state, &name)?;
    let vnc = UnixStream::connect(&paths.vnc).await.map_err(|e| {
        ApiError::new(
            StatusCode::CONFLICT,
            format!("'{name}' has no graphical console now (is it running?): {e}"),
        )
    })?;
    tracing::info!(vm = name, user = p.user, "graphical console attached");
    Ok(ws.protocols(["binary"]).on_upgrade(move |socket| vnc_bridge(socket, vnc, name)))
}

async fn vnc_bridge(mut ws: WebSocket, mut vnc: UnixStream, name: String) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        tokio::select! {
            msg = ws.recv() => {
                let bytes = match msg {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Text(t))) => axum::body::Bytes::copy_from_slice(t.as_str().as_bytes()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                };
                if vnc.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            n = vnc.read(&mut buf) => {
                let Ok(n @ 1..) = n else { break };
                if ws.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = ws.send(Message::Close(None)).await;
    tracing::info!(vm = name, "graphical console detached");
}

/// `GET /api/events/stream` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Only this VM.
    pub vm: Option<String>,
    /// Only events after this id (default 0: the whole log first, then live).
    #[serde(default)]
    pub after: u64,
    /// End the stream after this many seconds (default: never).
    pub seconds: Option<u64>,
}

/// The event log, live: every new event as a server-sent event (`event: vine`, data the event's
/// JSON, `id` its position), as soon as it is logged.
#[utoipa::path(get, path = "/api/events/stream", tag = "events", params(StreamQuery),
    responses((status = 200, description = "text/event-stream of Event objects", content_type = "text/event-stream"),
              (status = 401, body = crate::routes::ErrorBody), (status = 403, body = crate::routes::ErrorBody)))]
pub async fn event_stream(
    State(state): State<AppState>,
    p: Principal,
    Q(q): Q<StreamQuery>,
) -> ApiResult<Response> {
    match &q.vm {
        Some(vm) => need(&p, Need::See(vm))?,
        None => need(&p, Need::Login)?,
    }
    struct Cursor {
        state: AppState,
        p: Principal,
        vm: Option<String>,
        after: u64,
        ready: VecDeque<Event>,
        end: Option<tokio::time::Instant>,
    }
    if q.after > i64::MAX as u64 {
        return Err(crate::routes::ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            format!("after: must be 0 to {}", i64::MAX),
        ));
    }
    let end = q.seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s.min(86_400 * 365)));
    let start = Cursor { state, p, vm: q.vm, after: q.after, ready: VecDeque::new(), end };
    let stream = futures_util::stream::unfold(start, |mut c| async move {
        loop {
            if let Some(e) = c.ready.pop_front() {
                let data = serde_json::to_string(&e).expect("events serialise");
                let ev = SseEvent::default().event("vine").id(e.id.to_string()).data(data);
                return Some((Ok::<_, Infallible>(ev), c));
            }
            if c.end.is_some_and(|e| tokio::time::Instant::now() >= e) {
                return None;
            }
            let (store, vm, after) = (c.state.store.clone(), c.vm.clone(), c.after);
            let batch = tokio::task::spawn_blocking(move || store.events(vm.as_deref(), after, 1000)).await;
            match batch {
                Ok(Ok(list)) if !list.is_empty() => {
                    c.after = list.last().map(|e| e.id).unwrap_or(c.after);
                    let visible = list
                        .into_iter()
                        .filter(|e| e.vm.as_deref().is_none_or(|vm| need(&c.p, Need::See(vm)).is_ok()));
                    c.ready.extend(visible.map(|e| Event {
                        id: e.id,
                        time_ms: e.time_ms,
                        vm: e.vm,
                        host: e.host,
                        level: e.level,
                        kind: e.kind,
                        message: e.message,
                    }));
                }
                Ok(Ok(_)) => {
                    let nap = c.end.map_or(EVENT_POLL, |e| {
                        e.saturating_duration_since(tokio::time::Instant::now()).min(EVENT_POLL)
                    });
                    tokio::time::sleep(nap).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "event stream: reading the log failed");
                    tokio::time::sleep(EVENT_POLL * 10).await;
                }
                Err(_) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            h.insert(ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        h
    }

    #[test]
    fn websockets_from_other_origins_are_refused() {
        assert!(same_origin(&headers(Some("https://127.0.0.1:8443"), "127.0.0.1:8443")).is_ok());
        assert!(same_origin(&headers(None, "127.0.0.1:8443")).is_ok(), "CLI clients send no origin");
        let e = same_origin(&headers(Some("https://evil.example"), "127.0.0.1:8443")).unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        let e = same_origin(&headers(Some("https://127.0.0.1:9999"), "127.0.0.1:8443")).unwrap_err();
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
    }

    #[test]
    fn the_console_log_is_followed_from_an_offset_and_restarted_when_it_shrinks() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        let mut off = 0;
        assert!(read_new(&log, &mut off).is_empty(), "no log yet");
        std::fs::write(&log, b"hello ").unwrap();
        assert_eq!(read_new(&log, &mut off), b"hello ");
        assert!(read_new(&log, &mut off).is_empty());
        std::fs::write(&log, b"hello world").unwrap();
        assert_eq!(read_new(&log, &mut off), b"world");
        std::fs::write(&log, b"new").unwrap();
        assert_eq!(read_new(&log, &mut off), b"new", "a shorter log starts over");
        std::fs::write(&log, vec![b'x'; CHUNK + 10]).unwrap();
        off = 0;
        assert_eq!(read_new(&log, &mut off).len(), CHUNK);
        assert_eq!(read_new(&log, &mut off).len(), 10);
    }
}
