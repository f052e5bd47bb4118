//! Accept loops: each connection is served by hyper (HTTP/1.1) with the router, after the peer
//! is recorded in the request's extensions ([`Peer`]): the Unix socket's peer uid from
//! `SO_PEERCRED`, or the TLS client's address.

use std::sync::Arc;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, UnixListener};
use tower::ServiceExt;

use crate::Peer;

async fn serve_conn<S>(io: S, app: Router, peer: Peer)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = app.map_request(move |mut r: axum::http::Request<hyper::body::Incoming>| {
        r.extensions_mut().insert(peer);
        r
    });
    let conn = hyper::server::conn::http1::Builder::new()
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
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
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
