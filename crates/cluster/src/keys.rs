//! The pool's key layout in etcd. Every key vine writes is under [`ROOT`], so one etcd cluster
//! can serve other programs besides.
//!
//! | key | holds |
//! |---|---|
//! | `/vine/pool` | the pool ([`crate::PoolRecord`]) |
//! | `/vine/secret` | the pool's secret: hosts present it to each other when one forwards a request |
//! | `/vine/hosts/HOST` | a member host ([`crate::HostRecord`]) |
//! | `/vine/alive/HOST` | present while HOST's daemon keeps its lease alive (empty value) |
//! | `/vine/join/HOST` | a join token's secret (SHA-256, hex) for HOST, under a one-hour lease |
//! | `/vine/owners/VM` | the host that owns VM (its name, plain text): the one truth of ownership |
//! | `/vine/vms/VM` | what the owner last published of VM (its `vine vm show` JSON plus `host`) |
//! | `/vine/load/HOST` | what HOST last published of its use ([`crate::HostLoad`]) |
//! | `/vine/shared/…`, `/vine/hook-seq`, `/vine/events/…`, `/vine/shipped/HOST` | see [`crate::shared`] |
//! | `/vine/shared-pools/NAME`, `/vine/writers/POOL/VOLUME` | see [`crate::storage`] |
//! | `/vine/ha/VM` | an HA guest's definition and whether it should run (see [`crate::ha`]) |
//! | `/vine/coordinator` | the coordinator's host, under its lease (see [`crate::coordinator`]) |
//! | `/vine/policy/settings`, `/vine/policy/vms/VM`, `/vine/policy/last` | see [`crate::automation`] |
//! | `/vine/networks/NAME`, `/vine/vnis/VNI`, `/vine/leases/NAME` | see [`crate::networks`] |

/// Prefix of every key.
pub const ROOT: &str = "/vine/";
/// The pool record.
pub const POOL: &str = "/vine/pool";
/// The secret hosts of the pool present to each other.
pub const SECRET: &str = "/vine/secret";
/// Prefix of host records.
pub const HOSTS: &str = "/vine/hosts/";
/// Prefix of liveness keys.
pub const ALIVE: &str = "/vine/alive/";
/// Prefix of VM ownership keys.
pub const OWNERS: &str = "/vine/owners/";
/// Prefix of published VM records.
pub const VMS: &str = "/vine/vms/";

/// Prefix of hosts' published loads.
pub const LOAD: &str = "/vine/load/";

/// A host's published load.
pub fn load(name: &str) -> String {
    format!("{LOAD}{name}")
}

/// A VM's ownership key.
pub fn owner(vm: &str) -> String {
    format!("{OWNERS}{vm}")
}

/// A VM's published record.
pub fn vm(name: &str) -> String {
    format!("{VMS}{name}")
}

/// Prefix of outstanding join tokens.
pub const JOIN: &str = "/vine/join/";

/// A host's outstanding join token.
pub fn join(name: &str) -> String {
    format!("{JOIN}{name}")
}

/// A host's record.
pub fn host(name: &str) -> String {
    format!("{HOSTS}{name}")
}

/// A host's liveness key.
pub fn alive(name: &str) -> String {
    format!("{ALIVE}{name}")
}

/// The end of the range of keys starting with `prefix` (etcd's "prefix" range end).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_prefix_ends() {
        assert_eq!(host("h1"), "/vine/hosts/h1");
        assert_eq!(alive("h1"), "/vine/alive/h1");
        assert_eq!(prefix_end(HOSTS), b"/vine/hosts0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }
}
