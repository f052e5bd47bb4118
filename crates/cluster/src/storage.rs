//! Storage the hosts of a pool share: shared storage pools (`/vine/shared-pools/NAME`: a
//! directory every host mounts at the same path) and who writes each of their volumes
//! (`/vine/writers/POOL/VOLUME`: `HOST/VM`, taken with a compare-and-swap transaction when a VM
//! starts and given back when it stops), so a volume every host can open is written by one VM
//! of the whole pool at a time.

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};

use crate::client::{json, parse, timed};
use crate::{Cluster, ClusterError};

const SHARED_POOLS: &str = "/vine/shared-pools/";
const WRITERS: &str = "/vine/writers/";

/// A shared storage pool: its name and the directory every host mounts it at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedPool {
    /// Its name.
    pub name: String,
    /// Its directory, the same on every host.
    pub path: String,
    /// The host that made it.
    pub made_by: String,
}

/// What taking the write role of a volume found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// The role is this holder's (now, or already).
    Granted,
    /// Another holder (`HOST/VM`) has it.
    Held(String),
}

pub(crate) fn writer_key(volume: &str) -> String {
    format!("{WRITERS}{volume}")
}

impl Cluster {
    /// Every shared storage pool.
    pub fn shared_pools(&self) -> Result<Vec<SharedPool>, ClusterError> {
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let r = timed!(
                &e,
                "listing shared storage pools",
                c.get(SHARED_POOLS, Some(GetOptions::new().with_prefix()))
            )
            .await?;
            r.kvs().iter().map(|kv| parse(&String::from_utf8_lossy(kv.key()), kv.value())).collect()
        })
    }

    /// Records a shared pool; false if the pool has one of that name already.
    pub fn add_shared_pool(&self, p: &SharedPool) -> Result<bool, ClusterError> {
        let key = format!("{SHARED_POOLS}{}", p.name);
        let mut c = self.client();
        let e = self.endpoints().to_string();
        let value = json(p);
        self.block_on(async move {
            let txn = Txn::new()
                .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.as_str(), value.clone(), None)]);
            Ok(timed!(&e, "recording a shared storage pool", c.txn(txn.clone())).await?.succeeded())
        })
    }

    /// Forgets a shared pool (every host unregisters it).
    pub fn remove_shared_pool(&self, name: &str) -> Result<(), ClusterError> {
        let key = format!("{SHARED_POOLS}{name}");
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            timed!(&e, "forgetting a shared storage pool", c.delete(key.as_str(), None)).await?;
            Ok(())
        })
    }

    /// Takes the write role of `volume` (`POOL/NAME`) for `holder` (`HOST/VM`), unless another
    /// holder has it.
    pub fn claim_writer(&self, volume: &str, holder: &str) -> Result<Writer, ClusterError> {
        let key = writer_key(volume);
        let mut c = self.client();
        let e = self.endpoints().to_string();
        let holder = holder.to_string();
        self.block_on(async move {
            let txn = Txn::new()
                .when([Compare::version(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.as_str(), holder.as_str(), None)])
                .or_else([TxnOp::get(key.as_str(), None)]);
            let r =
                timed!(&e, format!("taking the write role of volume {volume}"), c.txn(txn.clone())).await?;
            if r.succeeded() {
                return Ok(Writer::Granted);
            }
            let now = r
                .op_responses()
                .into_iter()
                .find_map(|op| match op {
                    TxnOpResponse::Get(g) => {
                        g.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).to_string())
                    }
                    _ => None,
                })
                .unwrap_or_default();
            Ok(if now == holder { Writer::Granted } else { Writer::Held(now) })
        })
    }

    /// Gives back the write role of `volume` if `holder` has it.
    pub fn release_writer(&self, volume: &str, holder: &str) -> Result<(), ClusterError> {
        let key = writer_key(volume);
        let mut c = self.client();
        let e = self.endpoints().to_string();
        let holder = holder.to_string();
        self.block_on(async move {
            let txn = Txn::new()
                .when([Compare::value(key.as_str(), CompareOp::Equal, holder.as_str())])
                .and_then([TxnOp::delete(key.as_str(), None)]);
            timed!(&e, format!("giving back the write role of volume {volume}"), c.txn(txn.clone())).await?;
            Ok(())
        })
    }

    /// Every write role held, as `(volume, holder)`.
    pub fn writers(&self) -> Result<Vec<(String, String)>, ClusterError> {
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let r =
                timed!(&e, "listing volume writers", c.get(WRITERS, Some(GetOptions::new().with_prefix())))
                    .await?;
            Ok(r.kvs()
                .iter()
                .map(|kv| {
                    let k = String::from_utf8_lossy(kv.key());
                    (
                        k.trim_start_matches(WRITERS).to_string(),
                        String::from_utf8_lossy(kv.value()).to_string(),
                    )
                })
                .collect())
        })
    }
}
