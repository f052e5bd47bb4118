//! The pool's coordinator: the one host that runs the pool-wide work (the policy pipeline),
//! elected through etcd.
//!
//! Every host campaigns: it takes a lease of [`COORDINATOR_TTL_S`] seconds and writes its name
//! to `/vine/coordinator` under it, in a transaction that holds only while the key is absent.
//! The winner refreshes its lease every [`COORDINATOR_RENEW`]; the others try again at that
//! pace, so when the coordinator's daemon dies its key goes with its lease and another host
//! holds it within `COORDINATOR_TTL_S` plus one try (about 5 s). A daemon that stops cleanly
//! gives its lease back at once.
//!
//! **Timing invariant** (why a cut-off coordinator never acts alongside its successor): the
//! coordinator acts only while [`Cluster::is_coordinator`] says so, which is until
//! `t + COORDINATOR_TTL_S − COORDINATOR_MARGIN`, `t` being when it *sent* the last refresh etcd
//! answered. etcd counts the lease from when it *received* that refresh, which is later, so the
//! lease — and with it the key another host needs — outlives the coordinator's right to act by
//! at least the margin, whatever the network does. Both sides measure time with monotonic clocks
//! over a few seconds; their rates agree far better than the margin.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use tokio::sync::watch;

use crate::client::timed;
use crate::{Cluster, ClusterError};

/// The key the coordinator holds.
pub const COORDINATOR: &str = "/vine/coordinator";
/// The coordinator's lease, in seconds: the longest the pool goes without one after its
/// coordinator's daemon died (plus one try).
pub const COORDINATOR_TTL_S: i64 = 4;
/// How often the coordinator refreshes its lease, and the others try to take the key.
pub const COORDINATOR_RENEW: Duration = Duration::from_secs(1);
/// How much sooner than its lease the coordinator stops counting itself one.
pub const COORDINATOR_MARGIN: Duration = Duration::from_secs(1);

/// This host's coordinatorship as the campaign last saw it.
#[derive(Debug, Default)]
pub(crate) struct Leadership {
    /// Until when this host may act as the coordinator (None: it is not).
    until: Option<Instant>,
    /// The lease it holds the key with.
    lease: Option<i64>,
}

impl Cluster {
    /// Whether this host is the pool's coordinator now (see the module's timing invariant).
    pub fn is_coordinator(&self) -> bool {
        self.leadership().until.is_some_and(|u| Instant::now() < u)
    }

    /// The host that holds the coordinator's key, as etcd says now.
    pub fn coordinator(&self) -> Result<Option<String>, ClusterError> {
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let r = timed!(&e, "reading the coordinator", c.get(COORDINATOR, None)).await?;
            Ok(r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).to_string()))
        })
    }

    fn leadership(&self) -> std::sync::MutexGuard<'_, Leadership> {
        self.leadership.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts this host's campaign (once, with the membership task).
    pub(crate) fn spawn_campaign(&self) {
        let (client, e, host, lead) = (
            self.client(),
            self.endpoints().to_string(),
            self.config().host.clone(),
            self.leadership.clone(),
        );
        self.spawn(move |stop| campaign(client, e, host, lead, stop));
    }

    /// Gives the coordinator's key back at once if this host holds it (a clean stop).
    pub(crate) fn resign(&self) {
        let lease = {
            let mut l = self.leadership();
            l.until = None;
            l.lease.take()
        };
        if let Some(id) = lease {
            let mut c = self.client();
            let e = self.endpoints().to_string();
            let _ = self
                .block_on(async move { timed!(&e, "resigning as coordinator", c.lease_revoke(id)).await });
        }
    }
}

async fn campaign(
    mut c: Client,
    e: String,
    host: String,
    lead: Arc<Mutex<Leadership>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = campaign_round(&mut c, &e, &host, &lead) => {
                if let Err(err) = r {
                    tracing::debug!("coordinator campaign: {err}");
                }
            }
            _ = stop.changed() => {
                lead.lock().unwrap_or_else(|p| p.into_inner()).until = None;
                return;
            }
        }
        {
            let mut l = lead.lock().unwrap_or_else(|p| p.into_inner());
            if l.until.is_some() {
                tracing::warn!("host '{host}' is no longer the pool's coordinator");
            }
            l.until = None;
            l.lease = None;
        }
        tokio::select! {
            _ = tokio::time::sleep(COORDINATOR_RENEW) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One try at the key and, when this host wins it (or holds it already), the refreshes until
/// something fails.
async fn campaign_round(
    c: &mut Client,
    e: &str,
    host: &str,
    lead: &Mutex<Leadership>,
) -> Result<(), ClusterError> {
    let sent = Instant::now();
    let lease = timed!(e, "taking a coordinator lease", c.lease_grant(COORDINATOR_TTL_S, None)).await?.id();
    let txn = Txn::new()
        .when([Compare::version(COORDINATOR, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(COORDINATOR, host.as_bytes(), Some(PutOptions::new().with_lease(lease)))])
        .or_else([TxnOp::get(COORDINATOR, None)]);
    let r = timed!(e, "campaigning for coordinator", c.txn(txn.clone())).await?;
    let held = if r.succeeded() {
        Some(lease)
    } else {
        let _ = timed!(e, "giving back an unused lease", c.lease_revoke(lease)).await;
        // The key may be this host's from before a failed refresh: its lease is still good.
        r.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(g) => {
                g.kvs().first().filter(|kv| kv.value() == host.as_bytes()).map(|kv| kv.lease())
            }
            _ => None,
        })
    };
    let Some(lease) = held else { return Ok(()) };
    let (mut keeper, mut answers) =
        timed!(e, "keeping the coordinator lease", c.lease_keep_alive(lease)).await?;
    let mut sent = sent;
    if !r.succeeded() {
        // An earlier lease: how long it has left is unknown until it is refreshed.
        sent = Instant::now();
        refresh(e, &mut keeper, &mut answers).await?;
    }
    loop {
        {
            let mut l = lead.lock().unwrap_or_else(|p| p.into_inner());
            if l.until.is_none() {
                tracing::info!("host '{host}' is the pool's coordinator");
            }
            l.until = Some(sent + Duration::from_secs(COORDINATOR_TTL_S as u64) - COORDINATOR_MARGIN);
            l.lease = Some(lease);
        }
        tokio::time::sleep(COORDINATOR_RENEW).await;
        sent = Instant::now();
        refresh(e, &mut keeper, &mut answers).await?;
    }
}

/// Refreshes the coordinator's lease once; an error unless etcd renewed it.
async fn refresh(
    e: &str,
    keeper: &mut etcd_client::LeaseKeeper,
    answers: &mut etcd_client::LeaseKeepAliveStream,
) -> Result<(), ClusterError> {
    timed!(e, "refreshing the coordinator lease", keeper.keep_alive()).await?;
    match timed!(e, "refreshing the coordinator lease", answers.message()).await? {
        Some(a) if a.ttl() > 0 => Ok(()),
        _ => Err(ClusterError::Conflict("the coordinator lease expired".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coordinator_stops_acting_before_its_lease_can_expire() {
        let act = Duration::from_secs(COORDINATOR_TTL_S as u64) - COORDINATOR_MARGIN;
        assert!(act > COORDINATOR_RENEW * 2, "two refreshes fit in before the right to act ends");
        assert!(COORDINATOR_MARGIN >= Duration::from_millis(500), "etcd checks leases every 500 ms");
    }
}
