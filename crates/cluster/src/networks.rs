//! Virtual networks that span the pool: every host has them, joined by VXLAN.
//!
//! - `/vine/networks/NAME`: the network ([`SpanNetwork`]): its settings as its home host made
//!   them, its VXLAN network identifier and its home, the one host that holds its address, its
//!   DHCP server and its NAT (the network's L3, from one place).
//! - `/vine/vnis/VNI`: the name of the network that has VNI. Taken in the same transaction as
//!   the network's key, so two hosts creating networks at once never share a VNI.
//! - `/vine/leases/NAME`: the leases the home's DHCP server holds now (a JSON array as
//!   `vine network leases --json` prints it), so every host can hold each guest's tap to the
//!   address it leased, wherever the guest runs.
//! - `/vine/macs/MAC`: the NIC ([`MacHolder`]) that holds MAC on a spanning network, pool-wide:
//!   one L2 segment across hosts needs MACs unique across hosts. Given back only by the host
//!   that owns the VM (or by any host once nobody owns it), so a host a VM migrated away from
//!   never frees the MAC the VM took along.

use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use crate::client::{json, parse, timed};
use crate::{Cluster, ClusterError};

const NETWORKS: &str = "/vine/networks/";
const VNIS: &str = "/vine/vnis/";
const LEASES: &str = "/vine/leases/";
const MACS: &str = "/vine/macs/";

/// The NIC that holds a MAC on a spanning network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MacHolder {
    /// The VM.
    pub vm: String,
    /// Which of its NICs.
    pub index: u32,
}

/// Tries at taking a free VNI before giving up (others keep taking the one picked).
const VNI_TRIES: usize = 16;

/// A network that spans the pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpanNetwork {
    /// Its name.
    pub name: String,
    /// Its VXLAN network identifier.
    pub vni: u32,
    /// The host that holds its address, DHCP server and NAT.
    pub home: String,
    /// Its settings, as the home host keeps them (JSON the daemon reads).
    pub settings: serde_json::Value,
}

fn network_key(name: &str) -> String {
    format!("{NETWORKS}{name}")
}

fn vni_key(vni: u32) -> String {
    format!("{VNIS}{vni}")
}

/// The smallest VNI from 1 up that `taken` lacks, not above `max`.
pub fn free_vni(taken: &[u32], max: u32) -> Option<u32> {
    let mut t = taken.to_vec();
    t.sort_unstable();
    let mut want = 1;
    for v in t {
        if v == want {
            want += 1;
        } else if v > want {
            break;
        }
    }
    (want <= max).then_some(want)
}

impl Cluster {
    /// Every network that spans the pool.
    pub fn span_networks(&self) -> Result<Vec<SpanNetwork>, ClusterError> {
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let r = timed!(&e, "listing networks", c.get(NETWORKS, Some(GetOptions::new().with_prefix())))
                .await?;
            r.kvs().iter().map(|kv| parse(&String::from_utf8_lossy(kv.key()), kv.value())).collect()
        })
    }

    /// Records a new spanning network with a VNI no other has (its `vni` field is ignored);
    /// returns the record as stored. A conflict when a network of that name spans the pool.
    pub fn add_span_network(&self, net: &SpanNetwork, max_vni: u32) -> Result<SpanNetwork, ClusterError> {
        let key = network_key(&net.name);
        let e = self.endpoints().to_string();
        for _ in 0..VNI_TRIES {
            let mut c = self.client();
            let taken: Vec<u32> = self.block_on(async {
                let r = timed!(
                    &e,
                    "listing VNIs",
                    c.get(VNIS, Some(GetOptions::new().with_prefix().with_keys_only()))
                )
                .await?;
                Ok::<_, ClusterError>(
                    r.kvs()
                        .iter()
                        .filter_map(|kv| {
                            String::from_utf8_lossy(kv.key()).trim_start_matches(VNIS).parse().ok()
                        })
                        .collect(),
                )
            })?;
            let vni = free_vni(&taken, max_vni)
                .ok_or_else(|| ClusterError::Conflict(format!("every VNI up to {max_vni} is taken")))?;
            let rec = SpanNetwork { vni, ..net.clone() };
            let vk = vni_key(vni);
            let value = json(&rec);
            let won = self.block_on(async {
                let txn = Txn::new()
                    .when([
                        Compare::version(key.as_str(), CompareOp::Equal, 0),
                        Compare::version(vk.as_str(), CompareOp::Equal, 0),
                    ])
                    .and_then([
                        TxnOp::put(key.as_str(), value.clone(), None),
                        TxnOp::put(vk.as_str(), net.name.as_bytes(), None),
                    ]);
                Ok::<_, ClusterError>(
                    timed!(&e, format!("recording network '{}'", net.name), c.txn(txn.clone()))
                        .await?
                        .succeeded(),
                )
            })?;
            if won {
                return Ok(rec);
            }
            let exists = self.block_on(async {
                let r = timed!(&e, "reading a network", c.get(key.as_str(), None)).await?;
                Ok::<_, ClusterError>(!r.kvs().is_empty())
            })?;
            if exists {
                return Err(ClusterError::Conflict(format!(
                    "a network named '{}' spans the pool already",
                    net.name
                )));
            }
        }
        Err(ClusterError::Conflict(format!(
            "could not take a free VNI for network '{}' in {VNI_TRIES} tries: other hosts kept taking them",
            net.name
        )))
    }

    /// Forgets a spanning network, its VNI and its leases (every host removes its part).
    pub fn remove_span_network(&self, net: &SpanNetwork) -> Result<(), ClusterError> {
        let (key, vk, lk) = (network_key(&net.name), vni_key(net.vni), format!("{LEASES}{}", net.name));
        let mut c = self.client();
        let e = self.endpoints().to_string();
        let name = net.name.clone();
        self.block_on(async move {
            let txn = Txn::new()
                .when([Compare::value(vk.as_str(), CompareOp::Equal, name.as_bytes())])
                .and_then([
                    TxnOp::delete(key.as_str(), None),
                    TxnOp::delete(vk.as_str(), None),
                    TxnOp::delete(lk.as_str(), None),
                ])
                .or_else([TxnOp::delete(key.as_str(), None), TxnOp::delete(lk.as_str(), None)]);
            timed!(&e, format!("forgetting network '{name}'"), c.txn(txn.clone())).await?;
            Ok(())
        })
    }

    /// Publishes the leases of spanning network `name` (its home host does, when they change).
    pub fn publish_leases(&self, name: &str, leases: &serde_json::Value) -> Result<(), ClusterError> {
        let key = format!("{LEASES}{name}");
        let mut c = self.client();
        let e = self.endpoints().to_string();
        let value = json(leases);
        self.block_on(async move {
            timed!(
                &e,
                format!("publishing the leases of network '{name}'"),
                c.put(key.as_str(), value.clone(), None)
            )
            .await?;
            Ok(())
        })
    }

    /// The leases every spanning network's home published: `(network, leases)`.
    pub fn span_leases(&self) -> Result<Vec<(String, serde_json::Value)>, ClusterError> {
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let r =
                timed!(&e, "reading published leases", c.get(LEASES, Some(GetOptions::new().with_prefix())))
                    .await?;
            r.kvs()
                .iter()
                .map(|kv| {
                    let k = String::from_utf8_lossy(kv.key()).to_string();
                    Ok((k.trim_start_matches(LEASES).to_string(), parse(&k, kv.value())?))
                })
                .collect()
        })
    }
}

impl Cluster {
    /// Claims `mac` for NIC `index` of `vm` pool-wide: `Ok(None)` when it is this NIC's now (a
    /// VM may move its MAC between its own NICs), `Ok(Some(holder))` when another VM holds it.
    pub fn claim_mac(&self, mac: &str, vm: &str, index: u32) -> Result<Option<MacHolder>, ClusterError> {
        let key = format!("{MACS}{mac}");
        let mine = MacHolder { vm: vm.to_string(), index };
        let value = json(&mine);
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            for _ in 0..8 {
                let r =
                    timed!(&e, format!("reading the holder of MAC {mac}"), c.get(key.as_str(), None)).await?;
                let cmp = match r.kvs().first() {
                    None => Compare::version(key.as_str(), CompareOp::Equal, 0),
                    Some(kv) => {
                        let held: MacHolder = parse(&key, kv.value())?;
                        if held.vm != vm {
                            return Ok(Some(held));
                        }
                        if held == mine {
                            return Ok(None);
                        }
                        Compare::mod_revision(key.as_str(), CompareOp::Equal, kv.mod_revision())
                    }
                };
                let txn = Txn::new().when([cmp]).and_then([TxnOp::put(key.as_str(), value.clone(), None)]);
                if timed!(&e, format!("claiming MAC {mac}"), c.txn(txn.clone())).await?.succeeded() {
                    return Ok(None);
                }
            }
            Err(ClusterError::Conflict(format!("MAC {mac}: its holder kept changing; try again")))
        })
    }

    /// Gives back `mac` if `vm` holds it and `vm` is this host's or nobody's.
    pub fn release_mac(&self, mac: &str, vm: &str) -> Result<(), ClusterError> {
        let key = format!("{MACS}{mac}");
        let owner = crate::keys::owner(vm);
        let me = self.config().host.clone();
        let mut c = self.client();
        let e = self.endpoints().to_string();
        self.block_on(async move {
            let r = timed!(&e, format!("reading the holder of MAC {mac}"), c.get(key.as_str(), None)).await?;
            let Some(kv) = r.kvs().first() else { return Ok(()) };
            let held: MacHolder = parse(&key, kv.value())?;
            if held.vm != vm {
                return Ok(());
            }
            let rev = kv.mod_revision();
            for owned in [
                Compare::value(owner.as_str(), CompareOp::Equal, me.as_bytes()),
                Compare::version(owner.as_str(), CompareOp::Equal, 0),
            ] {
                let txn = Txn::new()
                    .when([Compare::mod_revision(key.as_str(), CompareOp::Equal, rev), owned])
                    .and_then([TxnOp::delete(key.as_str(), None)]);
                if timed!(&e, format!("giving back MAC {mac}"), c.txn(txn.clone())).await?.succeeded() {
                    break;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_free_vni_is_taken() {
        assert_eq!(free_vni(&[], 10), Some(1));
        assert_eq!(free_vni(&[1, 2, 4], 10), Some(3));
        assert_eq!(free_vni(&[3, 1, 2], 10), Some(4));
        assert_eq!(free_vni(&[2], 10), Some(1));
        assert_eq!(free_vni(&[1, 2], 2), None);
    }
}
