//! vine's management plane over HTTP: the REST API served on the local Unix socket (root only;
//! the peer's uid 0 is the administrator) and over HTTPS on `--listen` (users log in or present
//! API tokens).
//!
//! * [`routes`]: every endpoint, the rights each needs, the OpenAPI document generated from them.
//! * [`auth`]: argon2id passwords, sessions and API tokens, the first `admin` account.
//! * [`throttle`]: failed logins slow further tries per user and address, never locking a user out.
//! * [`tls`]: the host's certificate, made on first start, and its fingerprint.
//! * [`metrics`]: the Prometheus text format of host and VM metrics.
//! * [`hooks`]: event scripts run on events with a timeout, their results logged.
//! * [`client`]: the CLI's blocking HTTP client (Unix socket, or HTTPS pinned to a fingerprint).
//! * [`serve`]: accept loops binding connections to the router with who the peer is.
//! * [`console`]: the serial and graphical consoles over websockets, the live event stream.
//! * [`relay`]: those consoles for a VM another host of the pool owns, relayed from that host.
//! * [`web`]: the web admin site's static files (built from `web/` by `scripts/web.sh`).
#![warn(missing_docs)]

pub mod auth;
pub mod client;
pub mod console;
pub mod hasher;
pub mod hooks;
pub mod metrics;
pub mod relay;
pub mod routes;
pub mod serve;
pub mod throttle;
pub mod tls;
pub mod web;

pub use routes::{router, ApiDoc, AppState};

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// The local socket, with the peer's uid.
    Local {
        /// Its uid (`SO_PEERCRED`).
        uid: u32,
    },
    /// A TCP (TLS) client.
    Remote(std::net::SocketAddr),
}
