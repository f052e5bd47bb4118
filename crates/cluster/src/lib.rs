//! A pool of vine hosts: the state that must outlive one machine, kept in etcd (v3 API).
//!
//! - [`config`]: how this host reaches its pool (`<data>/cluster.toml`: etcd endpoints, TLS
//!   files, this host's name), written when the host initialises or joins a pool and read at
//!   every daemon start. A host without it is a host on its own, on SQLite only, as before.
//! - [`keys`]: the key layout under `/vine/`, in one place.
//! - [`records`]: what the keys hold (JSON): the pool, each host, and the host status that
//!   [`Cluster::hosts`] derives from them.
//! - [`token`]: join tokens (one host, once, within the hour).
//! - [`vms`]: which host owns each VM (compare-and-swap transactions only) and what the owner
//!   publishes of it for every host to list.
//! - [`shared`]: the users, tokens, rights and hooks every host shares (etcd the truth, each
//!   host a copy kept by a watch), and the pool's event log (each host journals locally, then
//!   ships).
//! - [`storage`]: shared storage pools and the one writer of each of their volumes.
//! - [`coordinator`]: the one host that runs the pool-wide work, elected through etcd, and the
//!   timing that keeps a cut-off coordinator from acting alongside its successor.
//! - [`ha`]: HA guests' definitions, and taking one over from a host whose lease expired.
//! - [`fence`]: self-fencing, so a host cut off from etcd stops its HA guests before its lease
//!   can expire and the pool restarts them elsewhere (the timing invariant is written there).
//! - [`automation`]: how far the policy engine acts (mode, policy, threshold), each VM's rules
//!   (own mode, pin, affinity group), and the coordinator's last round.
//! - [`networks`]: virtual networks that span the pool (VNI, home host, published leases).
//! - [`Cluster`]: one host's connection to the pool: initialise or join a pool, rejoin it at
//!   start, keep this host's liveness key alive, list hosts, issue join tokens, leave.
//!
//! Liveness: each host holds `/vine/alive/HOST` under an etcd lease of [`LEASE_TTL_S`] seconds
//! and refreshes it every [`KEEPALIVE`]; a host whose daemon stops refreshing (killed, cut off
//! the network) loses the key when the lease expires and is listed `offline` by every other
//! host. etcd's own lease expiry is the one clock that decides, so hosts need not agree on time.
//!
//! Calls block (the daemon's request handlers run on threads of their own); the crate owns a
//! small tokio runtime for the etcd client and the keepalive task.
#![warn(missing_docs)]

pub mod automation;
pub mod config;
pub mod coordinator;
pub mod fence;
pub mod ha;
pub mod keys;
pub mod networks;
pub mod records;
pub mod shared;
pub mod storage;
pub mod token;
pub mod vms;

mod client;

pub use automation::{Automation, Mode, VmRules};
pub use client::{Cluster, KEEPALIVE, LEASE_TTL_S, REQUEST_TIMEOUT};
pub use config::{ClusterConfig, EtcdTls};
pub use fence::Fence;
pub use ha::HaRecord;
pub use networks::SpanNetwork;
pub use records::{HostLoad, HostRecord, HostState, HostStatus, PoolInfo, PoolRecord};
pub use shared::{MirrorSink, MirrorUpdate};
pub use storage::{SharedPool, Writer};
pub use token::JoinToken;
pub use vms::Claim;

/// What can go wrong talking to the pool's etcd; each message names etcd and the endpoints.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// etcd did not answer or refused the request.
    #[error("etcd ({endpoints}): {what}: {source}")]
    Etcd {
        /// The endpoints tried.
        endpoints: String,
        /// What vine was doing.
        what: String,
        /// The client's error.
        #[source]
        source: etcd_client::Error,
    },
    /// etcd did not answer in time.
    #[error("etcd ({endpoints}) did not answer within {secs} s while {what}: is a majority of its members up and reachable?")]
    Timeout {
        /// The endpoints tried.
        endpoints: String,
        /// What vine was doing.
        what: String,
        /// The limit.
        secs: u64,
    },
    /// The request makes no sense in the pool's present state (e.g. initialising a pool that exists).
    #[error("{0}")]
    Conflict(String),
    /// A bad argument (endpoint, name, file).
    #[error("{0}")]
    Invalid(String),
    /// A record in etcd could not be read.
    #[error("etcd key {key}: {problem}")]
    Record {
        /// The key.
        key: String,
        /// What was wrong.
        problem: String,
    },
    /// The local configuration file could not be read or written.
    #[error("{path}: {problem}")]
    Config {
        /// The file.
        path: std::path::PathBuf,
        /// What was wrong.
        problem: String,
    },
    /// The crate's runtime could not start.
    #[error("starting the etcd client's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// Milliseconds since the epoch, now (the time stamps of pool records).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
