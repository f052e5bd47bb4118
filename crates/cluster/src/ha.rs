//! High availability in etcd: what the pool needs to start an HA guest again when its host dies.
//!
//! The owner of each HA guest publishes its definition and whether it should be running
//! (`/vine/ha/VM`, an [`HaRecord`]), written only while that host owns the VM. When a host's
//! liveness key is gone (its lease expired, so it has fenced itself: [`crate::fence`]), the
//! coordinator picks a host for each of its HA guests that should run, and that host takes it
//! over with [`Cluster::take_over_vm`]: one transaction that holds only while the dead host still
//! owns the VM *and* has no liveness key, and that moves the ownership, the write role of each of
//! its shared volumes and the HA record together.

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use crate::client::{json, timed};
use crate::{keys, Cluster, ClusterError};

/// Prefix of the HA records.
pub const HA: &str = "/vine/ha/";

/// An HA guest's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HaRecord {
    /// The VM.
    pub vm: String,
    /// The host that owns it.
    pub host: String,
    /// Its definition (TOML), from which another host registers it.
    pub definition: String,
    /// Whether it should be running (it was running or paused when last published): only those
    /// are started again elsewhere.
    pub running: bool,
}

fn ha_key(vm: &str) -> String {
    format!("{HA}{vm}")
}

impl Cluster {
    /// Publishes the HA records of VMs this host owns (a record of a VM it does not own is not
    /// written).
    pub fn publish_ha(&self, records: &[HaRecord]) -> Result<(), ClusterError> {
        let me = self.config().host.clone();
        for r in records {
            let mut r = r.clone();
            r.host = me.clone();
            let (owner, key) = (keys::owner(&r.vm), ha_key(&r.vm));
            let mut c = self.client();
            let e = self.endpoints().to_string();
            let me = me.clone();
            self.block_on(async move {
                let txn = Txn::new()
                    .when([Compare::value(owner.as_str(), CompareOp::Equal, me.as_bytes())])
                    .and_then([TxnOp::put(key.as_str(), json(&r), None)]);
                timed!(&e, format!("publishing the HA record of '{}'", r.vm), c.txn(txn.clone())).await?;
                Ok::<_, ClusterError>(())
            })?;
        }
        Ok(())
    }

    /// Removes the HA record of `vm` (HA turned off, or the VM gone) if this host owns it, or
    /// if no host does.
    pub fn remove_ha(&self, vm: &str) -> Result<(), ClusterError> {
        let me = self.config().host.clone();
        let (owner, key) = (keys::owner(vm), ha_key(vm));
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let txn = Txn::new()
                .when([Compare::value(owner.as_str(), CompareOp::Equal, me.as_bytes())])
                .and_then([TxnOp::delete(key.as_str(), None)])
                .or_else([TxnOp::txn(
                    Txn::new()
                        .when([Compare::version(owner.as_str(), CompareOp::Equal, 0)])
                        .and_then([TxnOp::delete(key.as_str(), None)]),
                )]);
            timed!(&e, format!("removing the HA record of '{vm}'"), c.txn(txn.clone())).await?;
            Ok(())
        })
    }

    /// Every HA record of the pool.
    pub fn ha_records(&self) -> Result<Vec<HaRecord>, ClusterError> {
        self.range_all(HA, "listing the pool's HA guests", true)
    }

    /// Takes HA guest `record.vm` over from host `from`, whose liveness key is gone: ownership,
    /// the write role of each of `volumes` and the HA record move to this host in one
    /// transaction, which holds only while `from` owns the VM and is not alive. False when
    /// either no longer holds.
    pub fn take_over_vm(
        &self,
        record: &HaRecord,
        from: &str,
        volumes: &[String],
    ) -> Result<bool, ClusterError> {
        let me = self.config().host.clone();
        let vm = record.vm.clone();
        let (owner, alive, key) = (keys::owner(&vm), keys::alive(from), ha_key(&vm));
        let holder = format!("{me}/{vm}");
        let mut r = record.clone();
        r.host = me.clone();
        let mut ops =
            vec![TxnOp::put(owner.as_str(), me.as_bytes(), None), TxnOp::put(key.as_str(), json(&r), None)];
        for v in volumes {
            ops.push(TxnOp::put(crate::storage::writer_key(v), holder.as_bytes(), None));
        }
        let from = from.to_string();
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let txn = Txn::new()
                .when([
                    Compare::value(owner.as_str(), CompareOp::Equal, from.as_bytes()),
                    Compare::version(alive.as_str(), CompareOp::Equal, 0),
                ])
                .and_then(ops);
            Ok(timed!(&e, format!("taking '{vm}' over from host '{from}'"), c.txn(txn.clone()))
                .await?
                .succeeded())
        })
    }

    /// Gives HA guest `record.vm`, taken over by this host, back to host `to` (its registration
    /// here failed): ownership and the HA record go back together, so the coordinator may try
    /// another host. The write roles are given back by the sync round (nothing runs here).
    pub fn hand_back_vm(&self, record: &HaRecord, to: &str) -> Result<bool, ClusterError> {
        let me = self.config().host.clone();
        let vm = record.vm.clone();
        let (owner, key) = (keys::owner(&vm), ha_key(&vm));
        let mut r = record.clone();
        r.host = to.to_string();
        let to = to.to_string();
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let txn = Txn::new()
                .when([Compare::value(owner.as_str(), CompareOp::Equal, me.as_bytes())])
                .and_then([
                    TxnOp::put(owner.as_str(), to.as_bytes(), None),
                    TxnOp::put(key.as_str(), json(&r), None),
                ]);
            Ok(timed!(&e, format!("giving '{vm}' back to host '{to}'"), c.txn(txn.clone()))
                .await?
                .succeeded())
        })
    }
}
