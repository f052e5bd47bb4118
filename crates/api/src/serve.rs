//! Accept loops: each connection is served by hyper (HTTP/1.1) with the router, after the peer
//! is recorded in the request's extensions ([`Peer`]): the Unix socket's peer uid from
//! `SO_PEERCRED`, or the TLS client's address.
//!
//! Limits, so that slow or idle clients cannot hold the daemon: at most [`MAX_CONNECTIONS`] HTTPS
//! connections (more are closed at once), a TLS handshake within [`HANDSHAKE_TIMEOUT`], a
//! request's headers within [`HEADER_TIMEOUT`] (an idle keep-alive connection is closed after
//! it), and a body within [`crate::routes::BODY_TIMEOUT`]. Each connection is its own task, so
//! those that wait cost memory, not workers.

use std::sync::Arc;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, UnixListener};
use tower::ServiceExt;

use crate::Peer;

/// Most HTTPS connections at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// Time for a client's TLS handshake.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Time for a request's headers (and for an idle keep-alive connection's next request).
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn serve_conn<S>(io: S, app: Router, peer: Peer)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = app.map_request(move |mut r: axum::http::Request<hyper::body::Incoming>| {
        r.extensions_mut().insert(peer);
        r
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(svc))
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, ?peer, "connection ended with an error");
    }
}

/// Serves the local socket until the task is dropped.
pub async fn unix(listener: UnixListener, app: Router) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let Ok(cred) = stream.peer_cred() else { continue };
                let peer = Peer::Local { uid: cred.uid() };
                tokio::spawn(serve_conn(stream, app.clone(), peer));
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept on the local socket failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves HTTPS until the task is dropped.
pub async fn tls(listener: TcpListener, config: Arc<rustls::ServerConfig>, app: Router) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%addr, "{MAX_CONNECTIONS} HTTPS connections are open; closing a new one");
                    continue;
                };
                // An answer goes out as it is written: with Nagle's algorithm, a small write
                // that follows another waits for the client's delayed ACK (40 ms on Linux).
                if let Err(e) = stream.set_nodelay(true) {
                    tracing::debug!(error = %e, %addr, "cannot set TCP_NODELAY");
                }
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => serve_conn(tls, app, Peer::Remote(addr)).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, %addr, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept on the HTTPS port failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}
