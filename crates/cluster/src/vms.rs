//! VMs in a pool: which host owns each (`/vine/owners/VM`, changed only by transactions that
//! compare the current owner, so two hosts can never both own a VM) and what the owner last
//! published of it (`/vine/vms/VM`), which every host lists.

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};
use serde_json::Value;

use crate::client::{json, parse, timed};
use crate::{keys, Cluster, ClusterError};

/// What claiming a VM's name found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The name was free and is now this host's.
    Claimed,
    /// This host owned it already.
    Mine,
    /// Another host owns it.
    Theirs(String),
}

/// Keys per page of a long range read.
const PAGE: i64 = 1000;

impl Cluster {
    /// Claims `vm` for this host and publishes `record`, if no host owns it.
    pub fn claim_vm(&self, vm: &str, record: &Value) -> Result<Claim, ClusterError> {
        let me = self.config().host.clone();
        let (owner_key, vm_key) = (keys::owner(vm), keys::vm(vm));
        let record = with_host(record, &me);
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let txn = Txn::new()
                .when([Compare::version(owner_key.as_str(), CompareOp::Equal, 0)])
                .and_then([
                    TxnOp::put(owner_key.as_str(), me.as_bytes(), None),
                    TxnOp::put(vm_key.as_str(), json(&record), None),
                ])
                .or_else([TxnOp::get(owner_key.as_str(), None)]);
            let r = timed!(&e, &format!("claiming VM '{vm}'"), c.txn(txn.clone())).await?;
            if r.succeeded() {
                return Ok(Claim::Claimed);
            }
            let owner = owner_in(r.op_responses()).unwrap_or_default();
            Ok(if owner == me { Claim::Mine } else { Claim::Theirs(owner) })
        })
    }

    /// Hands `vm` from this host to host `to`, with the record `to` will publish (a cold
    /// move): one transaction that holds only while this host owns it.
    pub fn transfer_vm(&self, vm: &str, to: &str, record: &Value) -> Result<bool, ClusterError> {
        self.hand_over_vm(vm, to, record, &[])
    }

    /// Hands `vm` from this host to host `to` with the write roles of `volumes` it holds (a live
    /// migration's switchover): one transaction that holds only while this host owns it, so the
    /// VM and its volumes change hands together or not at all.
    pub fn hand_over_vm(
        &self,
        vm: &str,
        to: &str,
        record: &Value,
        volumes: &[String],
    ) -> Result<bool, ClusterError> {
        let me = self.config().host.clone();
        let (owner_key, vm_key) = (keys::owner(vm), keys::vm(vm));
        let record = with_host(record, to);
        let holder = format!("{to}/{vm}");
        let mut ops = vec![
            TxnOp::put(owner_key.as_str(), to.as_bytes(), None),
            TxnOp::put(vm_key.as_str(), json(&record), None),
        ];
        for v in volumes {
            ops.push(TxnOp::put(crate::storage::writer_key(v), holder.as_bytes(), None));
        }
        let to = to.to_string();
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let txn = Txn::new()
                .when([Compare::value(owner_key.as_str(), CompareOp::Equal, me.as_bytes())])
                .and_then(ops);
            Ok(timed!(&e, format!("handing VM '{vm}' to host '{to}'"), c.txn(txn.clone())).await?.succeeded())
        })
    }

    /// Hands `vm` back from host `from` to this host (a move that failed after the handover).
    pub fn take_back_vm(&self, vm: &str, from: &str) -> Result<bool, ClusterError> {
        let me = self.config().host.clone();
        let owner_key = keys::owner(vm);
        let from = from.to_string();
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let txn = Txn::new()
                .when([Compare::value(owner_key.as_str(), CompareOp::Equal, from.as_bytes())])
                .and_then([TxnOp::put(owner_key.as_str(), me.as_bytes(), None)]);
            Ok(timed!(&e, format!("taking VM '{vm}' back"), c.txn(txn.clone())).await?.succeeded())
        })
    }

    /// Publishes this host's view of the VMs it owns (each `(name, record)`); a VM whose name
    /// is owned by another host is not published and is returned with that owner, and one no
    /// host owns yet is claimed.
    pub fn publish_vms(&self, vms: &[(String, Value)]) -> Result<Vec<(String, String)>, ClusterError> {
        let mut conflicts = Vec::new();
        for (name, record) in vms {
            let me = self.config().host.clone();
            let (owner_key, vm_key) = (keys::owner(name), keys::vm(name));
            let record = with_host(record, &me);
            let mut c = self.client();
            let e = self.endpoints().to_string();
            let owner = self.block_on(async move {
                let put = TxnOp::put(vm_key.as_str(), json(&record), None);
                let txn = Txn::new()
                    .when([Compare::value(owner_key.as_str(), CompareOp::Equal, me.as_bytes())])
                    .and_then([put.clone()])
                    .or_else([TxnOp::txn(
                        Txn::new()
                            .when([Compare::version(owner_key.as_str(), CompareOp::Equal, 0)])
                            .and_then([TxnOp::put(owner_key.as_str(), me.as_bytes(), None), put])
                            .or_else([TxnOp::get(owner_key.as_str(), None)]),
                    )]);
                let r = timed!(&e, &format!("publishing VM '{name}'"), c.txn(txn.clone())).await?;
                if r.succeeded() {
                    return Ok(None);
                }
                // The inner transaction: claimed now, or owned by someone else.
                for op in r.op_responses() {
                    if let TxnOpResponse::Txn(inner) = op {
                        if inner.succeeded() {
                            return Ok(None);
                        }
                        return Ok(owner_in(inner.op_responses()));
                    }
                }
                Ok::<_, ClusterError>(None)
            })?;
            if let Some(o) = owner {
                conflicts.push((name.clone(), o));
            }
        }
        Ok(conflicts)
    }

    /// Gives up `vm` (deleted or moved away): its ownership and record go, if this host owns it.
    pub fn release_vm(&self, vm: &str) -> Result<(), ClusterError> {
        let me = self.config().host.clone();
        let (owner_key, vm_key) = (keys::owner(vm), keys::vm(vm));
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let txn = Txn::new()
                .when([Compare::value(owner_key.as_str(), CompareOp::Equal, me.as_bytes())])
                .and_then([TxnOp::delete(owner_key.as_str(), None), TxnOp::delete(vm_key.as_str(), None)]);
            timed!(&e, &format!("releasing VM '{vm}'"), c.txn(txn.clone())).await.map(|_| ())
        })
    }

    /// Every VM of the pool as its owner last published it (with `host`), by name.
    pub fn vms(&self) -> Result<Vec<Value>, ClusterError> {
        self.range_all(keys::VMS, "listing the pool's VMs", false)
    }

    /// [`Cluster::vms`], each record read straight into `T` (the daemon's VM view); a record
    /// that is not a `T` (written by another version of vine, say) is left out, with a warning.
    pub fn vms_as<T: serde::de::DeserializeOwned + Send>(&self) -> Result<Vec<T>, ClusterError> {
        self.range_all(keys::VMS, "listing the pool's VMs", true)
    }

    /// Every record under `prefix`, read as `T`, in pages of [`PAGE`] keys all at the revision
    /// of the first page (one consistent view, however many keys: one answer holding them all
    /// would pass gRPC's 4 MiB limit at about 8,500 VM records).
    pub(crate) fn range_all<T: serde::de::DeserializeOwned + Send>(
        &self,
        prefix: &str,
        what: &str,
        lenient: bool,
    ) -> Result<Vec<T>, ClusterError> {
        let mut c = self.client();
        let e = self.endpoints().to_string();
        let end = keys::prefix_end(prefix);
        self.block_on(async move {
            let mut out = Vec::new();
            let mut from = prefix.as_bytes().to_vec();
            let mut revision = 0;
            loop {
                let mut o = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
                if revision > 0 {
                    o = o.with_revision(revision);
                }
                let r = timed!(&e, what, c.get(from.clone(), Some(o.clone()))).await?;
                if revision == 0 {
                    revision = r.header().map_or(0, |h| h.revision());
                }
                for kv in r.kvs() {
                    match parse(&String::from_utf8_lossy(kv.key()), kv.value()) {
                        Ok(v) => out.push(v),
                        Err(e) if lenient => tracing::warn!("{e}"),
                        Err(e) => return Err(e),
                    }
                }
                match r.kvs().last() {
                    Some(last) if r.more() => {
                        from = last.key().to_vec();
                        from.push(0);
                    }
                    _ => return Ok(out),
                }
            }
        })
    }

    /// What the owner last published of `vm` (with `host`), if any host owns it.
    pub fn vm(&self, vm: &str) -> Result<Option<Value>, ClusterError> {
        let mut c = self.client();
        let e = self.endpoints().to_string();
        let key = keys::vm(vm);
        self.block_on(async move {
            let r = timed!(&e, &format!("reading VM '{vm}'"), c.get(key.as_str(), None)).await?;
            r.kvs().first().map(|kv| parse(&key, kv.value())).transpose()
        })
    }

    /// The host that owns `vm`, if any.
    pub fn owner_of(&self, vm: &str) -> Result<Option<String>, ClusterError> {
        let mut c = self.client();
        let e = self.endpoints().to_string();
        let key = keys::owner(vm);
        self.block_on(async move {
            let r = timed!(&e, &format!("reading the owner of VM '{vm}'"), c.get(key.as_str(), None)).await?;
            Ok(r.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).to_string()))
        })
    }
}

impl Cluster {
    /// Whether host `name`'s daemon keeps its liveness key alive.
    pub fn is_alive(&self, name: &str) -> Result<bool, ClusterError> {
        let mut c = self.client();
        let e = self.endpoints().to_string();
        let key = keys::alive(name);
        self.block_on(async move {
            let r = timed!(
                &e,
                &format!("reading whether host '{name}' is alive"),
                c.get(key.as_str(), Some(GetOptions::new().with_keys_only())),
            )
            .await?;
            Ok(!r.kvs().is_empty())
        })
    }
}

fn with_host(record: &Value, host: &str) -> Value {
    let mut r = record.clone();
    if let Some(o) = r.as_object_mut() {
        o.insert("host".into(), Value::String(host.into()));
    }
    r
}

fn owner_in(ops: Vec<TxnOpResponse>) -> Option<String> {
    ops.into_iter().find_map(|op| match op {
        TxnOpResponse::Get(g) => g.kvs().first().map(|kv| String::from_utf8_lossy(kv.value()).to_string()),
        _ => None,
    })
}
